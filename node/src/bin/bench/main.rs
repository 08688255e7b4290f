//! `tau-node-bench`: Tau's benchmarks, each figure beside a baseline measured in the same run.
//!
//! `tau-node-bench [foundation] [tns] [hoarder] [substrate] [database] [vault] [seer] [scale]` (default: all but
//! scale). Run with `scripts/bench` (a release
//! build); it needs `tau-node` beside this binary.
//!
//! - [`foundation`]: admin `Info` round trip; time until a 10-node mesh is complete.
//! - [`tns`]: local `Get`; push to visible on 10 nodes; anti-entropy catch-up of 10,000 records.
//! - [`hoarder`]: put and get of 256 MB, repair time, peak RSS, beside raw hashing.
//! - [`substrate`]: ping served by native hyper, the tau gateway and `wasmtime serve`; cold
//!   starts of components fetched from a peer.
//! - [`vault`]: encrypt, share-decrypt and combine beside an ed25519 verify; end-to-end
//!   `secret get` on 5 nodes beside a TNS `Get`.
//! - [`database`]: key-value get and set in process beside raw redb; warm requests with a
//!   key-value get beside ping; increments per second across 3 nodes, none lost.
//! - [`seer`]: DNS answers per second beside a UDP echo; time until a stopped node leaves the
//!   answers.
//! - [`scale`]: dev clouds of 10, 30, 60 and 100 nodes: ready time, idle CPU, RSS and
//!   connections per node, push until served by every node, each beside its value at 10 nodes
//!   (not part of the default run: name it).

mod database;
mod foundation;
mod hoarder;
mod scale;
mod seer;
mod substrate;
mod tns;
mod vault;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--echo-server") {
        return foundation::echo_server().await;
    }
    if args.first().map(String::as_str) == Some("--udp-echo-server") {
        return seer::udp_echo_server().await;
    }
    if args.first().map(String::as_str) == Some("--hello-server") {
        return substrate::hello_server().await;
    }
    let all = args.is_empty();
    let wants = |name: &str| all || args.iter().any(|a| a == name);
    let tau_node = sibling("tau-node")?;
    let tmp = std::env::temp_dir().join(format!("tau-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    println!("tau-node benchmarks ({} CPUs)", std::thread::available_parallelism()?.get());
    let result = async {
        if wants("foundation") {
            println!();
            foundation::admin_round_trip(&tau_node, &tmp).await?;
            println!();
            foundation::mesh(&tau_node, &tmp).await?;
        }
        if wants("tns") {
            println!();
            tns::local_get(&tmp)?;
            println!();
            tns::spread(&tau_node, &tmp).await?;
            println!();
            tns::catch_up(&tau_node, &tmp).await?;
        }
        if wants("hoarder") {
            println!();
            hoarder::run(&tau_node, &tmp).await?;
        }
        if wants("substrate") {
            println!();
            substrate::run(&tau_node, &tmp).await?;
        }
        if wants("database") {
            println!();
            database::run(&tau_node, &tmp).await?;
        }
        if wants("vault") {
            println!();
            vault::crypto()?;
            println!();
            vault::secret_get(&tau_node, &tmp).await?;
        }
        if wants("seer") {
            println!();
            seer::run(&tau_node, &tmp).await?;
        }
        // Minutes of a 100-node cloud: only when named.
        // `scale=10,100` measures those sizes (the first is the baseline).
        if let Some(arg) = args.iter().find(|a| a.split('=').next() == Some("scale")) {
            let sizes = match arg.split_once('=') {
                Some((_, list)) => list
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<Vec<usize>, _>>()
                    .with_context(|| format!("{arg}: sizes are numbers separated by commas"))?,
                None => scale::SIZES.to_vec(),
            };
            println!();
            scale::run(&tau_node, &tmp, &sizes).await?;
        }
        anyhow::Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p tau-node --bins)",
            path.display()
        );
    }
    Ok(path)
}

/// Percentiles of a sample.
pub(crate) struct Stats {
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) mean: Duration,
}

pub(crate) fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    Stats { p50: at(0.50), p99: at(0.99), mean }
}

pub(crate) fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

pub(crate) fn millis(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// Reads a `tau-node dev` process's `gateway` lines and its `ready <profile>` line.
pub(crate) async fn ready_line(child: &mut Child) -> anyhow::Result<(PathBuf, Vec<String>)> {
    let stdout = child.stdout.take().context("dev stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut gateways = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .context("tau-node dev did not get ready within 120 s")??
            .context("tau-node dev exited before it was ready")?;
        if let Some(path) = line.strip_prefix("ready ") {
            return Ok((PathBuf::from(path), gateways));
        }
        if line.starts_with("dns ") || line.starts_with("webhook ") {
            continue;
        }
        let gateway =
            line.split("http://").nth(1).context("unexpected output from tau-node dev")?;
        gateways.push(gateway.trim().to_string());
    }
}

/// Starts `tau-node dev --nodes N --dir DIR` and waits until it is ready.
pub(crate) async fn start_dev(
    tau_node: &Path,
    dir: &Path,
    nodes: usize,
) -> anyhow::Result<(Child, PathBuf)> {
    let (dev, profile, _) = start_dev_with(tau_node, dir, nodes, &[]).await?;
    Ok((dev, profile))
}

/// [`start_dev`] with more options; also returns the nodes' HTTP gateways.
pub(crate) async fn start_dev_with(
    tau_node: &Path,
    dir: &Path,
    nodes: usize,
    options: &[&str],
) -> anyhow::Result<(Child, PathBuf, Vec<String>)> {
    let mut dev = tokio::process::Command::new(tau_node)
        .args(["dev", "--nodes", &nodes.to_string(), "--dir"])
        .arg(dir)
        .args(options)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let (profile, gateways) = ready_line(&mut dev).await?;
    Ok((dev, profile, gateways))
}

/// Stops a process with SIGTERM and waits (at most 20 s) for it.
pub(crate) async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
}
