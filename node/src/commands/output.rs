//! Helpers for what the commands print: aligned tables, human-readable sizes, JSON.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use tau_proto::text::printable;
use tau_proto::{Client, CloudProfile};

/// The options every service command shares.
#[derive(Debug, clap::Args)]
pub(super) struct ServiceArgs {
    /// The cloud profile (`cloud.yaml`).
    #[arg(long, global = true, default_value = "cloud.yaml")]
    pub(super) cloud: std::path::PathBuf,
    /// The node to ask [default: the first one found that runs the service].
    #[arg(long, global = true)]
    pub(super) node: Option<libp2p::PeerId>,
    /// Print JSON.
    #[arg(long, global = true)]
    pub(super) json: bool,
}

/// Loads a cloud profile and connects to the cloud.
pub(super) async fn connect(cloud: &Path) -> anyhow::Result<Client> {
    connect_as(cloud, None).await
}

/// [`connect`] as the peer `identity` (a new one when `None`): the nodes then know the caller
/// by it, as the owner of the pins it sets.
pub(super) async fn connect_as(
    cloud: &Path,
    identity: Option<libp2p::identity::Keypair>,
) -> anyhow::Result<Client> {
    let profile = CloudProfile::load(cloud)?;
    let options = tau_proto::client::ConnectOptions { identity, ..Default::default() };
    Client::connect_with(&profile, options)
        .await
        .with_context(|| format!("cannot reach the cloud of {}", cloud.display()))
}

/// The node to ask for `service`: `node` if given, else the first one found that runs it (the
/// client learns every node's addresses on the way).
pub(super) async fn service_node(
    client: &Client,
    node: Option<libp2p::PeerId>,
    service: &str,
) -> anyhow::Result<libp2p::PeerId> {
    let nodes = client.nodes_running(service).await?;
    match node {
        Some(node) => Ok(node),
        None => {
            nodes.first().copied().with_context(|| format!("no node of this cloud runs {service}"))
        }
    }
}

/// Prints `value` as pretty JSON on stdout.
pub(super) fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Formats rows under headers, each column as wide as its widest cell. Cells are shown through
/// [`printable`]: what a node sent cannot drive the terminal.
pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> =
        rows.iter().map(|row| row.iter().map(|c| printable(c).into_owned()).collect()).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    for row in &rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `1.5 GiB`-style sizes.
pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// `3d4h`, `5m2s`-style durations.
pub(super) fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

/// The operator key: the file given (`--operator-key`), else the one the profile at `cloud`
/// names.
pub(crate) fn operator_key(
    cloud: &Path,
    given: Option<std::path::PathBuf>,
) -> anyhow::Result<libp2p::identity::Keypair> {
    let profile = CloudProfile::load(cloud)?;
    let path = given
        .or(profile.operator_key)
        .context("no operator key: pass --operator-key or name it in the profile")?;
    Ok(tau_proto::keyfile::read(&path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_tables_sizes_and_durations() {
        let t = table(&["A", "LONG"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONG\nxyz  1");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(3_725), "1h2m");
        assert_eq!(duration(90_000), "1d1h");
    }
}
