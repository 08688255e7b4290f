//! `tau-node nodes`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use libp2p::PeerId;

use super::output::{self, bytes, table};

/// Show every node of a cloud as seer sees it: health, services, addresses, CPU, memory, disk,
/// load, requests in flight and location, from the nodes' signed heartbeats.
///
/// Asks the first seer node found, or the node given with --node.
#[derive(Debug, Args)]
pub(crate) struct Nodes {
    /// The cloud profile (`cloud.yaml`).
    #[arg(long, default_value = "cloud.yaml")]
    cloud: PathBuf,
    /// The seer node to ask (its peer id).
    #[arg(long)]
    node: Option<PeerId>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl Nodes {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let client = output::connect(&self.cloud).await?;
        let seer = output::service_node(&client, self.node, "seer").await?;
        let nodes = client.seer_nodes(seer).await.context("cannot list the nodes")?;
        if self.json {
            return output::print_json(&nodes);
        }
        let rows: Vec<Vec<String>> = nodes
            .iter()
            .map(|n| {
                let beat = &n.heartbeat;
                let r = &beat.resources;
                vec![
                    beat.peer.to_string(),
                    if n.healthy { "healthy".into() } else { "UNHEALTHY".into() },
                    format!("{:.1}s", n.age_ms as f64 / 1000.0),
                    beat.services.join(","),
                    beat.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "),
                    format!("{:.0}%", r.cpu_percent),
                    format!("{}/{}", bytes(r.memory_used), bytes(r.memory_total)),
                    format!("{} free", bytes(r.disk_available)),
                    format!("{:.2}", r.load[0]),
                    beat.active_requests.to_string(),
                    beat.location.as_ref().map_or("-".into(), |l| l.region.clone()),
                ]
            })
            .collect();
        let headers = [
            "PEER ID",
            "HEALTH",
            "LAST BEAT",
            "SERVICES",
            "ADDRESSES",
            "CPU",
            "MEMORY",
            "DISK",
            "LOAD",
            "ACTIVE",
            "REGION",
        ];
        println!("{}", table(&headers, &rows));
        let healthy = nodes.iter().filter(|n| n.healthy).count();
        println!("{} nodes, {healthy} healthy (as seen by seer {seer})", nodes.len());
        Ok(())
    }
}
