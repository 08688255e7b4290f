//! `tau-node peers`.

use std::path::PathBuf;

use clap::Args;
use libp2p::PeerId;

use super::output::{self, duration, table};

/// Show the nodes one node of a cloud is connected to: addresses, ping RTT, services.
///
/// Asks the first reachable bootstrap node, or the node given with --node.
#[derive(Debug, Args)]
pub(crate) struct Peers {
    /// The cloud profile (`cloud.yaml`).
    #[arg(long)]
    cloud: PathBuf,
    /// The node to ask (its peer id).
    #[arg(long)]
    node: Option<PeerId>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl Peers {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let client = output::connect(&self.cloud).await?;
        let node = match self.node {
            Some(node) if node != client.entry() => {
                // Learn every node's addresses from the entry node, so that we can dial it.
                client.nodes().await?;
                node
            }
            _ => client.entry(),
        };
        let peers = client.peers(node).await?;
        if self.json {
            return output::print_json(&peers);
        }
        let rows: Vec<Vec<String>> = peers
            .iter()
            .map(|p| {
                vec![
                    p.peer_id.to_string(),
                    p.rtt_micros
                        .map(|us| format!("{:.2} ms", us as f64 / 1000.0))
                        .unwrap_or("-".into()),
                    if p.services.is_empty() { "-".into() } else { p.services.join(",") },
                    duration(p.connected_secs),
                    p.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "),
                ]
            })
            .collect();
        println!("{}", table(&["PEER ID", "RTT", "SERVICES", "CONNECTED", "ADDRESSES"], &rows));
        println!("{} peers of {node}", peers.len());
        Ok(())
    }
}
