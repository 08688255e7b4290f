//! `tau-node status`.

use std::path::PathBuf;

use clap::Args;
use futures::future::join_all;
use serde::Serialize;
use tau_proto::admin::NodeInfo;
use tau_proto::text::printable;

use super::output::{self, bytes, duration, table};

/// Show every node of a cloud: version, services, uptime, CPU, memory, disk, addresses.
///
/// Connects as a light client with the profile's swarm key, asks the first reachable node for
/// its peers, then asks each node for its own Info.
#[derive(Debug, Args)]
pub(crate) struct Status {
    /// The cloud profile (`cloud.yaml`).
    #[arg(long)]
    cloud: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    nodes: Vec<NodeInfo>,
    unreachable: Vec<Unreachable>,
}

#[derive(Serialize)]
struct Unreachable {
    peer_id: String,
    error: String,
}

impl Status {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let client = output::connect(&self.cloud).await?;
        let peers = client.nodes().await?;
        let answers = join_all(peers.iter().map(|peer| client.info(*peer))).await;
        let mut report = Report { nodes: Vec::new(), unreachable: Vec::new() };
        for (peer, answer) in peers.iter().zip(answers) {
            match answer {
                Ok(info) => report.nodes.push(info),
                Err(e) => report
                    .unreachable
                    .push(Unreachable { peer_id: peer.to_string(), error: e.to_string() }),
            }
        }
        if self.json {
            return output::print_json(&report);
        }
        let rows: Vec<Vec<String>> = report
            .nodes
            .iter()
            .map(|n| {
                let r = &n.resources;
                vec![
                    n.peer_id.to_string(),
                    n.version.clone(),
                    if n.services.is_empty() { "-".into() } else { n.services.join(",") },
                    duration(n.uptime_secs),
                    format!("{:.0}% of {}", r.cpu_percent, r.cpus),
                    format!("{}/{}", bytes(r.memory_used), bytes(r.memory_total)),
                    format!("{} free", bytes(r.disk_available)),
                    n.location.as_ref().map(|l| l.region.clone()).unwrap_or_else(|| "-".into()),
                    n.listen_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "),
                ]
            })
            .collect();
        println!(
            "{}",
            table(
                &[
                    "PEER ID",
                    "VERSION",
                    "SERVICES",
                    "UPTIME",
                    "CPU",
                    "MEMORY",
                    "DISK",
                    "REGION",
                    "ADDRESSES"
                ],
                &rows
            )
        );
        for u in &report.unreachable {
            println!("unreachable: {} ({})", u.peer_id, printable(&u.error));
        }
        println!("{} nodes answered, {} unreachable", report.nodes.len(), report.unreachable.len());
        Ok(())
    }
}
