//! `tau-node tns`.

use anyhow::bail;
use clap::{Args, Subcommand};
use futures::future::join_all;
use libp2p::PeerId;
use serde::Serialize;
use tau_proto::Client;
use tau_proto::client::registry::RecordView;
use tau_proto::tns::TnsStatus;

use super::output::{self, ServiceArgs, table};

/// Read the cloud's registry (TNS): records, listings, each node's status.
#[derive(Debug, Args)]
pub(crate) struct Tns {
    #[command(subcommand)]
    command: TnsCommand,
    #[command(flatten)]
    args: ServiceArgs,
}

#[derive(Debug, Subcommand)]
enum TnsCommand {
    /// Show the record under KEY, its value decoded.
    Get {
        /// The key, such as /projects/example/functions/ping.
        key: String,
    },
    /// List the records under PREFIX (all pages).
    List {
        /// Only keys starting with it, such as /projects/example/ (every record by default).
        #[arg(default_value = "/")]
        prefix: String,
        /// Include deleted keys (tombstones).
        #[arg(long)]
        tombstones: bool,
    },
    /// Each tns node's record count, digest, clock, refused records and last syncs.
    Status,
}

/// The tns node to use: `node` if given, else the first that runs tns.
pub(super) async fn tns_node(client: &Client, node: Option<PeerId>) -> anyhow::Result<PeerId> {
    output::service_node(client, node, "tns").await
}

impl Tns {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let client = output::connect(&self.args.cloud).await?;
        match self.command {
            TnsCommand::Get { key } => {
                let node = tns_node(&client, self.args.node).await?;
                let Some(record) = client.tns_record(node, &key).await? else {
                    bail!("no record under {key}");
                };
                let view = RecordView::from(&record);
                if self.args.json {
                    return output::print_json(&view);
                }
                println!("{}", serde_yaml_ng::to_string(&view)?.trim_end());
            }
            TnsCommand::List { prefix, tombstones } => {
                let node = tns_node(&client, self.args.node).await?;
                let records = client.tns_list(node, &prefix, tombstones).await?;
                let views: Vec<RecordView> = records.iter().map(RecordView::from).collect();
                if self.args.json {
                    return output::print_json(&views);
                }
                let rows: Vec<Vec<String>> = views
                    .iter()
                    .map(|v| {
                        vec![
                            v.key.clone(),
                            v.version.to_string(),
                            if v.deleted { "deleted".into() } else { "live".into() },
                            v.scope.clone(),
                            v.writer.chars().take(20).collect::<String>() + "…",
                        ]
                    })
                    .collect();
                println!("{}", table(&["KEY", "VERSION", "STATE", "SCOPE", "WRITER"], &rows));
                println!("{} records under {prefix}", views.len());
            }
            TnsCommand::Status => {
                let nodes = match self.args.node {
                    Some(node) => vec![node],
                    None => client.nodes_running("tns").await?,
                };
                let answers = join_all(nodes.iter().map(|n| client.tns_status(*n))).await;
                #[derive(Serialize)]
                struct NodeStatus {
                    peer_id: String,
                    #[serde(flatten)]
                    status: Option<TnsStatus>,
                    error: Option<String>,
                }
                let report: Vec<NodeStatus> = nodes
                    .iter()
                    .zip(answers)
                    .map(|(n, a)| match a {
                        Ok(status) => {
                            NodeStatus { peer_id: n.to_string(), status: Some(status), error: None }
                        }
                        Err(e) => NodeStatus {
                            peer_id: n.to_string(),
                            status: None,
                            error: Some(format!("{e:#}")),
                        },
                    })
                    .collect();
                if self.args.json {
                    return output::print_json(&report);
                }
                let rows: Vec<Vec<String>> = report
                    .iter()
                    .map(|r| match &r.status {
                        Some(s) => vec![
                            r.peer_id.clone(),
                            s.records.to_string(),
                            s.tombstones.to_string(),
                            s.digest.chars().take(16).collect(),
                            s.clock.to_string(),
                            s.forged.to_string(),
                            s.unauthorized.to_string(),
                            s.ahead.to_string(),
                            s.over_quota.to_string(),
                        ],
                        None => vec![r.peer_id.clone(), r.error.clone().unwrap_or_default()],
                    })
                    .collect();
                println!(
                    "{}",
                    table(
                        &[
                            "PEER ID",
                            "RECORDS",
                            "DELETED",
                            "DIGEST",
                            "CLOCK",
                            "FORGED",
                            "UNAUTHORIZED",
                            "AHEAD",
                            "OVER QUOTA"
                        ],
                        &rows
                    )
                );
            }
        }
        Ok(())
    }
}
