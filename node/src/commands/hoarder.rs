//! `tau-node hoarder`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tau_proto::hoarder::HoarderProtocol;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use libp2p::PeerId;
use serde::Serialize;
use tau_proto::Client;
use tau_proto::hoarder::transfer::{self, TransferError};
use tau_proto::hoarder::{BlobId, DEFAULT_REPLICAS, HoarderRequest, HoarderResponse, PinState};
use tokio::io::AsyncWriteExt;

use super::output::{self, ServiceArgs, bytes, table};

/// Blobs in the cloud's hoarder: store a file, fetch one, pin and unpin, list the pins.
///
/// A pin belongs to the key that set it (`--key`): a blob stays at the highest factor any of
/// its pins asks for, and only the same key, or the operator's, lowers or removes a pin. Without
/// `--key` each run is a new key, whose pins only the operator can change later.
#[derive(Debug, Args)]
pub(crate) struct Hoarder {
    #[command(subcommand)]
    command: HoarderCommand,
    #[command(flatten)]
    args: ServiceArgs,
    /// The key file the pins belong to (`tau-node key generate`; the operator's key changes
    /// every pin) [default: a new key for this run].
    #[arg(long, global = true)]
    key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum HoarderCommand {
    /// Store a file; prints its CID once it is on at least two nodes.
    Put {
        /// The file to store (any size; it is sent in 1 MiB chunks).
        file: PathBuf,
        /// How many nodes keep a copy (capped at the live hoarder nodes).
        #[arg(long, default_value_t = DEFAULT_REPLICAS)]
        replicas: u8,
    },
    /// Fetch a blob, checking every chunk and the whole blob against its CID.
    Get {
        /// The blob's CID.
        cid: BlobId,
        /// Write it here [default: standard output].
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Set this key's pin of a stored blob to a factor (the blob keeps the highest of its pins).
    Pin {
        /// The blob's CID.
        cid: BlobId,
        /// How many nodes keep a copy (capped at the live hoarder nodes).
        #[arg(long, default_value_t = DEFAULT_REPLICAS)]
        replicas: u8,
    },
    /// Drop this key's pin of a blob (the operator's key drops every pin); the cloud drops the
    /// blob once no pin is left.
    Unpin {
        /// The blob's CID.
        cid: BlobId,
    },
    /// Every pin: CID, size, factor, holders, state.
    List,
}

/// The hoarder node to use: `node` if given, else the first that runs hoarder.
pub(crate) async fn hoarder_node(client: &Client, node: Option<PeerId>) -> anyhow::Result<PeerId> {
    output::service_node(client, node, "hoarder").await
}

/// The hoarder nodes to store through: `node` alone when one is named, else every one, in the
/// order they are tried.
pub(crate) async fn hoarder_nodes(
    client: &Client,
    node: Option<PeerId>,
) -> anyhow::Result<Vec<PeerId>> {
    match node {
        Some(node) => Ok(vec![node]),
        None => {
            let nodes = client.nodes_running("hoarder").await?;
            anyhow::ensure!(!nodes.is_empty(), "no node of this cloud runs hoarder");
            Ok(nodes)
        }
    }
}

/// Uploads a file through the first of `nodes` that takes it (a node whose disk is full, or
/// that fails, passes it to the next); returns its CID, size and the nodes that hold it. On a
/// terminal, shows progress.
pub(crate) async fn put_file(
    client: &Client,
    nodes: &[PeerId],
    file: &std::path::Path,
    replicas: u8,
) -> anyhow::Result<(BlobId, u64, Vec<PeerId>)> {
    let mut failed = Vec::new();
    for node in nodes {
        match put_file_on(client, *node, file, replicas).await {
            Ok(stored) => return Ok(stored),
            Err(e) if failed.len() + 1 < nodes.len() => {
                eprintln!("{node} did not store {}: {e:#}; trying another node", file.display());
                failed.push(e);
            }
            Err(e) => return Err(e),
        }
    }
    anyhow::bail!("no hoarder node to store {} through", file.display())
}

async fn put_file_on(
    client: &Client,
    node: PeerId,
    file: &std::path::Path,
    replicas: u8,
) -> anyhow::Result<(BlobId, u64, Vec<PeerId>)> {
    let manifest = transfer::manifest_of(file).await?;
    let show = std::io::stderr().is_terminal() && manifest.size >= 16 << 20;
    let done = AtomicU64::new(0);
    let progress = |len: u64| {
        let sent = done.fetch_add(len, Ordering::Relaxed) + len;
        if show {
            eprint!("\rstoring {}: {} of {}   ", file.display(), bytes(sent), bytes(manifest.size));
        }
    };
    let holders = transfer::upload(client, node, file, &manifest, replicas, &progress).await;
    if show {
        eprintln!();
    }
    Ok((manifest.cid, manifest.size, holders?))
}

#[derive(Serialize)]
struct PutReport {
    cid: BlobId,
    size: u64,
    holders: Vec<PeerId>,
    seconds: f64,
}

impl Hoarder {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let identity = match &self.key {
            Some(path) => Some(tau_proto::keyfile::read(path)?),
            None => None,
        };
        let client = output::connect_as(&self.args.cloud, identity).await?;
        if let HoarderCommand::Put { file, replicas } = &self.command {
            let started = Instant::now();
            let nodes = hoarder_nodes(&client, self.args.node).await?;
            let (cid, size, holders) = put_file(&client, &nodes, file, *replicas).await?;
            let report = PutReport { cid, size, holders, seconds: started.elapsed().as_secs_f64() };
            if self.args.json {
                return output::print_json(&report);
            }
            eprintln!(
                "stored {} ({}) on {} nodes in {:.2} s",
                file.display(),
                bytes(size),
                report.holders.len(),
                report.seconds
            );
            println!("{cid}");
            return Ok(());
        }
        let node = hoarder_node(&client, self.args.node).await?;
        match self.command {
            // Stored above, through the first node that takes it.
            HoarderCommand::Put { .. } => {}
            HoarderCommand::Get { cid, out } => {
                // Ask the node; if it does not hold the blob, one that does.
                let mut candidates = vec![node];
                if let Ok(HoarderResponse::NotFound { holders }) = client
                    .call::<HoarderProtocol>(
                        node,
                        HoarderRequest::Manifest { cid, in_progress: false },
                    )
                    .await
                {
                    candidates = holders;
                    if candidates.is_empty() {
                        bail!("no node holds {cid}");
                    }
                }
                let mut last = None;
                for peer in candidates {
                    let result = match &out {
                        Some(path) => {
                            let tmp = path.with_extension("part");
                            let mut file = tokio::fs::File::create(&tmp)
                                .await
                                .with_context(|| format!("cannot create {}", tmp.display()))?;
                            let result = transfer::download(&client, peer, cid, &mut file).await;
                            match &result {
                                Ok(_) => tokio::fs::rename(&tmp, path).await?,
                                Err(_) => {
                                    let _ = tokio::fs::remove_file(&tmp).await;
                                }
                            }
                            result
                        }
                        None => {
                            let mut stdout = tokio::io::stdout();
                            let result = transfer::download(&client, peer, cid, &mut stdout).await;
                            stdout.flush().await?;
                            result
                        }
                    };
                    match result {
                        Ok(size) => {
                            if out.is_some() {
                                eprintln!("fetched {cid} ({}) from {peer}", bytes(size));
                            }
                            return Ok(());
                        }
                        Err(e @ TransferError::Io { .. }) => return Err(e.into()),
                        Err(e) => last = Some(e),
                    }
                }
                return Err(last
                    .map(anyhow::Error::from)
                    .unwrap_or_else(|| anyhow::anyhow!("no node holds {cid}")));
            }
            HoarderCommand::Pin { cid, replicas } => {
                pin(&client, node, HoarderRequest::Pin { cid, replicas }).await?;
                eprintln!("pinned {cid} at {replicas} replicas");
            }
            HoarderCommand::Unpin { cid } => {
                pin(&client, node, HoarderRequest::Unpin { cid }).await?;
                eprintln!("unpinned {cid}");
            }
            HoarderCommand::List => {
                let pins = client.hoarder_pins(node).await?;
                if self.args.json {
                    return output::print_json(&pins);
                }
                let rows: Vec<Vec<String>> = pins
                    .iter()
                    .map(|p| {
                        vec![
                            p.cid.to_string(),
                            bytes(p.size),
                            format!("{}/{}", p.holders.len(), p.target),
                            match p.state {
                                PinState::Ok => "ok".into(),
                                PinState::UnderReplicated => "UNDER-REPLICATED".into(),
                                PinState::Repairing => "repairing".into(),
                            },
                            p.holders.iter().map(short).collect::<Vec<_>>().join(","),
                        ]
                    })
                    .collect();
                println!("{}", table(&["CID", "SIZE", "REPLICAS", "STATE", "HOLDERS"], &rows));
            }
        }
        Ok(())
    }
}

/// Sends a `Pin` or `Unpin` to `node`.
async fn pin(client: &Client, node: PeerId, request: HoarderRequest) -> anyhow::Result<()> {
    match client.call::<HoarderProtocol>(node, request).await? {
        HoarderResponse::Done => Ok(()),
        HoarderResponse::Error(why) => bail!("{node} refused: {why}"),
        other => bail!("{node} gave an unexpected answer: {other:?}"),
    }
}

fn short(peer: &PeerId) -> String {
    let s = peer.to_string();
    format!("…{}", &s[s.len().saturating_sub(6)..])
}
