//! `tau-node nodes`, and `nodes admit|revoke|admitted`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use libp2p::PeerId;
use tau_proto::identity::WriterKey;
use tau_proto::membership::Admission;

use super::output::{self, bytes, table};

/// Show every node of a cloud as seer sees it: health, services, addresses, CPU, memory, disk,
/// load, requests in flight and location, from the nodes' signed heartbeats.
///
/// Asks the first seer node found, or the node given with --node. Only nodes the operator
/// admitted are listed (`nodes admit`); a peer that merely holds the swarm key is a client.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Nodes {
    #[command(subcommand)]
    command: Option<NodesCommand>,
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

/// The operator's admission of nodes: only an admitted peer is a node.
#[derive(Debug, Subcommand)]
enum NodesCommand {
    /// Admit a peer as a node for the services it may run (an operator-signed `/nodes/<peer id>`
    /// record in TNS). Other nodes list it, believe it for those services, take its heartbeats
    /// and counters, and answer it as a node within seconds. Admitting it again replaces its
    /// services and labels.
    Admit {
        /// The peer id of the node.
        peer: PeerId,
        /// A service it may run (tns, hoarder, vault, seer, substrate), or a tool's role (q:
        /// may acknowledge counter records); repeat for several, or separate with commas.
        #[arg(long = "service", value_delimiter = ',', required = true)]
        services: Vec<String>,
        /// A label, as key=value (such as region=eu-west); repeat for several.
        #[arg(long = "label", value_parser = label)]
        labels: Vec<(String, String)>,
        #[command(flatten)]
        operator: Operator,
    },
    /// Revoke a node's admission (an operator-signed tombstone at `/nodes/<peer id>`): within
    /// seconds no node lists it, believes it, or answers it as a node; it stays a client.
    Revoke {
        /// The peer id of the node.
        peer: PeerId,
        #[command(flatten)]
        operator: Operator,
    },
    /// Drain a node: from now on its heartbeats list no service, so seer stops sending clients
    /// to it (within a health window) and hoarder moves its replicas to other nodes, while it
    /// goes on serving what still reaches it. It stays drained until it restarts. The operator's
    /// only; Spore Drive drains a host before removing it.
    Drain {
        /// The peer id of the node.
        peer: PeerId,
        #[command(flatten)]
        operator: Operator,
    },
    /// Run anti-entropy on a node now instead of at its next turn: it compares its registry with
    /// every tns node and its hoarder state with every hoarder node, and takes what it lacks.
    /// Prints what it found. The operator's only.
    AntiEntropy {
        /// The peer id of the node.
        peer: PeerId,
        #[command(flatten)]
        operator: Operator,
    },
    /// Repair a pin now: every hoarder node that should hold the blob and does not fetches it at
    /// once, rather than at its next reconcile. Prints each node's answer. The operator's only.
    Repair {
        /// The blob's CID (`tau-node hoarder pins` lists them).
        cid: tau_proto::hoarder::BlobId,
        #[command(flatten)]
        operator: Operator,
    },
    /// The admission records TNS holds: each node's services and labels, and revocations.
    Admitted {
        #[command(flatten)]
        operator: Operator,
    },
}

/// Where the cloud and its operator key are.
#[derive(Debug, Args)]
struct Operator {
    /// The cloud profile (`cloud.yaml`).
    #[arg(long, default_value = "cloud.yaml")]
    cloud: PathBuf,
    /// The operator key file [default: the profile's operator_key].
    #[arg(long)]
    operator_key: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl Operator {
    fn key(&self) -> anyhow::Result<libp2p::identity::Keypair> {
        output::operator_key(&self.cloud, self.operator_key.clone())
    }
}

fn label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or("expected key=value")?;
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(format!("label key `{key}`: use letters, digits, -, _ and ."));
    }
    if value.len() > 256 || value.chars().any(char::is_control) {
        return Err("a label value is at most 256 characters, none of them control".into());
    }
    Ok((key.to_string(), value.to_string()))
}

/// What a node may be admitted for: the services a node runs, and q's role.
fn known_services() -> Vec<&'static str> {
    tau_proto::node_config::SERVICES.iter().copied().chain(["q"]).collect()
}

impl NodesCommand {
    async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Admit { peer, services, labels, operator } => {
                let known = known_services();
                for service in &services {
                    if !known.contains(&service.as_str()) {
                        anyhow::bail!(
                            "--service {service}: not a service or role (one of {})",
                            known.join(", ")
                        );
                    }
                }
                let admission =
                    Admission { services, labels: labels.into_iter().collect::<BTreeMap<_, _>>() };
                write(&operator, peer, Some(admission)).await
            }
            Self::Revoke { peer, operator } => write(&operator, peer, None).await,
            Self::Drain { peer, operator } => {
                let key = operator.key()?;
                let client = output::connect_as(&operator.cloud, Some(key)).await?;
                client.nodes().await?;
                let already =
                    client.drain(peer).await.with_context(|| format!("cannot drain {peer}"))?;
                if operator.json {
                    return output::print_json(&serde_json::json!({
                        "peer_id": peer.to_string(),
                        "draining": true,
                        "already": already,
                    }));
                }
                match already {
                    true => println!("{peer} was draining already"),
                    false => println!(
                        "{peer} is draining: seer stops listing it and hoarder moves its \
                         replicas; it stays drained until it restarts"
                    ),
                }
                Ok(())
            }
            Self::AntiEntropy { peer, operator } => {
                let key = operator.key()?;
                let client = output::connect_as(&operator.cloud, Some(key)).await?;
                client.nodes().await?;
                let report = client
                    .anti_entropy(peer)
                    .await
                    .with_context(|| format!("cannot run anti-entropy on {peer}"))?;
                if operator.json {
                    return output::print_json(&report);
                }
                println!(
                    "{peer}: compared with {} tns nodes ({} records pulled, {} pushed) and {} \
                     hoarder nodes",
                    report.tns_peers, report.tns_pulled, report.tns_pushed, report.hoarder_peers
                );
                for failed in &report.tns_failed {
                    println!("  not compared: {failed}");
                }
                Ok(())
            }
            Self::Repair { cid, operator } => {
                let key = operator.key()?;
                let client = output::connect_as(&operator.cloud, Some(key)).await?;
                let nodes = client.nodes_running("hoarder").await?;
                anyhow::ensure!(!nodes.is_empty(), "no node of this cloud runs hoarder");
                let answers =
                    futures::future::join_all(nodes.iter().map(|n| client.repair(*n, cid))).await;
                let rows: Vec<(PeerId, Result<tau_proto::admin::RepairReport, String>)> = nodes
                    .into_iter()
                    .zip(answers)
                    .map(|(n, a)| (n, a.map_err(|e| e.to_string())))
                    .collect();
                if let Some((peer, Err(e))) = rows.iter().find(|(_, a)| a.is_err())
                    && rows.iter().all(|(_, a)| a.is_err())
                {
                    anyhow::bail!("no hoarder node took the repair; {peer}: {e}");
                }
                if operator.json {
                    let json: Vec<serde_json::Value> = rows
                        .iter()
                        .map(|(peer, answer)| match answer {
                            Ok(report) => {
                                serde_json::json!({"peer_id": peer.to_string(), "report": report})
                            }
                            Err(e) => serde_json::json!({"peer_id": peer.to_string(), "error": e}),
                        })
                        .collect();
                    return output::print_json(&json);
                }
                let mut fetching = 0;
                for (peer, answer) in &rows {
                    match answer {
                        Ok(r) if !r.pinned => println!("{peer}: no pin of {cid} here"),
                        Ok(r) => {
                            let what = match (r.wanted_here, r.held, r.fetching) {
                                (_, true, _) => "holds it",
                                (true, false, true) => "fetching it now",
                                (true, false, false) => "should hold it, not fetching",
                                (false, false, _) => "not one of its holders",
                            };
                            fetching += usize::from(r.fetching && !r.held);
                            println!(
                                "{peer}: {what} (factor {}, {} live holders known)",
                                r.factor, r.holders
                            );
                        }
                        Err(e) => println!("{peer}: {e}"),
                    }
                }
                println!("{fetching} nodes fetching {cid}");
                Ok(())
            }
            Self::Admitted { operator } => {
                let key = operator.key()?;
                let writer = WriterKey::of(&key).context("the operator key is not ed25519")?;
                let client = output::connect(&operator.cloud).await?;
                let views = client.admissions(&writer).await?;
                if operator.json {
                    return output::print_json(&views);
                }
                let rows: Vec<Vec<String>> = views
                    .iter()
                    .map(|v| match &v.admission {
                        Some(a) => vec![
                            v.peer_id.clone(),
                            "admitted".into(),
                            a.services.join(","),
                            a.labels
                                .iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect::<Vec<_>>()
                                .join(" "),
                            v.version.to_string(),
                        ],
                        None => vec![
                            v.peer_id.clone(),
                            "REVOKED".into(),
                            "-".into(),
                            "-".into(),
                            v.version.to_string(),
                        ],
                    })
                    .collect();
                println!(
                    "{}",
                    table(&["PEER ID", "STATE", "SERVICES", "LABELS", "VERSION"], &rows)
                );
                let admitted = views.iter().filter(|v| v.admission.is_some()).count();
                println!("{admitted} admitted, {} revoked", views.len() - admitted);
                Ok(())
            }
        }
    }
}

async fn write(
    operator: &Operator,
    peer: PeerId,
    admission: Option<Admission>,
) -> anyhow::Result<()> {
    let key = operator.key()?;
    let client = output::connect(&operator.cloud).await?;
    let admit = admission.is_some();
    let written = client.admit(&[(peer, admission)], &key).await?;
    if operator.json {
        return output::print_json(&serde_json::json!({
            "peer_id": peer.to_string(),
            "admitted": admit,
            "written": written,
        }));
    }
    match (written.is_empty(), admit) {
        (true, true) => println!("{peer} was already admitted so"),
        (true, false) => println!("{peer} is not admitted: nothing to revoke"),
        (false, true) => println!("admitted {peer}"),
        (false, false) => println!("revoked {peer}"),
    }
    Ok(())
}

impl Nodes {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        if let Some(command) = self.command {
            return command.run().await;
        }
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
