//! `tau-node dev`.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tau_proto::seer::{SeerProtocol, SeerRequest, SeerResponse};
use tau_proto::tns::TnsProtocol;

use anyhow::{Context, bail};
use clap::Args;
use futures::future::join_all;
use libp2p::PeerId;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tau_node::config::{DatabaseConfig, SubstrateConfig, TnsConfig};
use tau_node::dev::{self, DevCloud, DevNode, DevOptions};
use tau_proto::admin::{AdminProtocol, AdminRequest, AdminResponse};
use tau_proto::client::{ClientError, ConnectOptions};
use tau_proto::membership::Admission;
use tau_proto::tns::values::CloudNames;
use tau_proto::tns::{TnsRequest, TnsResponse, keys};
use tau_proto::{Client, CloudProfile, keyfile};
use tokio::sync::mpsc;

/// Run a local cloud of N nodes on 127.0.0.1, for development and tests.
///
/// Generates the cloud's swarm key and operator key in DIR (kept across runs, like each node's
/// identity), writes DIR/cloud.yaml, starts one `tau-node run` process per node (logs in
/// DIR/node-<i>/node.log, pid in node.pid), and once every node is healthy in every seer's
/// table (each node keeps connections to at most `connections.ceiling` others, 48 by default)
/// prints `gateway node-<i> http://127.0.0.1:<port>` per substrate node, `dns node-<i>
/// 127.0.0.1:<port>` per seer node (the cloud's domain is `dev`: `substrate.tau.dev`; generated
/// domains end in `.tau`), `webhook node-<i> http://127.0.0.1:<port>` per ci node (patrick,
/// `patrick.tau.dev`), then `ready <path to cloud.yaml>`. Runs until SIGINT or SIGTERM, then
/// stops every node cleanly.
#[derive(Debug, Args)]
pub(crate) struct Dev {
    /// How many nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=250))]
    nodes: u16,
    /// How many nodes (the first ones) run tns, vault and seer; the others run hoarder and
    /// substrate only, as the storage and compute nodes of a larger cloud.
    #[arg(long, default_value_t = dev::DEFAULT_CORE as u16, value_parser = clap::value_parser!(u16).range(1..=250))]
    core: u16,
    /// The cloud's folder [default: a new folder under the system's temp folder].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// How long the cloud may take to be ready before giving up, seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// The substrate nodes' counter window: one signed record per function per window.
    #[arg(long, default_value = "60s", value_parser = counter_window)]
    counter_window: String,
    /// How many nodes (the first ones) run substrate [default: all]; the others run every
    /// other service.
    #[arg(long)]
    substrate_nodes: Option<u16>,
    /// Where seer looks up TXT records that validate custom domains [default: the host's
    /// resolv.conf].
    #[arg(long)]
    txt_resolver: Option<std::net::SocketAddr>,
    /// The most live records one project may hold on each node (TNS quota).
    #[arg(long, default_value_t = TnsConfig::default().max_records_per_project,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_project_records: u64,
    /// The most bytes of live records one project may hold on each node (TNS quota).
    #[arg(long, default_value_t = TnsConfig::default().max_bytes_per_project, value_parser = project_bytes)]
    max_project_bytes: String,
    /// The nodes' regions (`location.region`), given in turn: `--regions dev,edge` puts node-0
    /// in `dev`, node-1 in `edge`, node-2 in `dev`... (to try a project's `branches:`).
    #[arg(long, value_delimiter = ',', default_value = "dev", value_parser = region)]
    regions: Vec<String>,
    /// Address blocks functions may reach although they are private (`127.0.0.1/32` to call a
    /// server on this machine); written into every node's `substrate.outbound_allow`.
    #[arg(long, value_delimiter = ',', value_parser = outbound_block)]
    outbound_allow: Vec<String>,
    /// A PEM file of certificate authorities functions' outgoing https trusts besides the
    /// public ones; written into every node's `substrate.outbound_roots`.
    #[arg(long)]
    outbound_roots: Vec<PathBuf>,
    /// How old a storage's pin of a blob no key names must be before the blob is let go;
    /// written into every node's `database.storage_grace`.
    #[arg(long, default_value_t = DatabaseConfig::default().storage_grace, value_parser = storage_grace)]
    storage_grace: String,
}

fn storage_grace(text: &str) -> Result<String, String> {
    let config = DatabaseConfig { storage_grace: text.to_string() };
    match config.problem() {
        Some((_, why)) => Err(why),
        None => Ok(text.to_string()),
    }
}

fn outbound_block(text: &str) -> Result<String, String> {
    tau_proto::outbound::Cidr::parse(text).map(|_| text.to_string())
}

fn region(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 63
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(text.to_string()) } else { Err("1-63 of a-z, A-Z, 0-9, - and _".into()) }
}

fn project_bytes(text: &str) -> Result<String, String> {
    let config = TnsConfig { max_bytes_per_project: text.to_string(), ..TnsConfig::default() };
    match config.problem() {
        Some((_, why)) => Err(why),
        None => Ok(text.to_string()),
    }
}

/// Why a `--counter-window` is refused.
#[derive(Debug, thiserror::Error)]
enum WindowError {
    #[error("must be at least 1s")]
    TooShort,
    #[error("not a duration (like 60s or 5m): {0}")]
    NotADuration(#[from] humantime::DurationError),
}

fn counter_window(text: &str) -> Result<String, WindowError> {
    match humantime::parse_duration(text)? {
        d if d >= Duration::from_secs(1) => Ok(text.to_string()),
        _ => Err(WindowError::TooShort),
    }
}

struct Process {
    name: String,
    pid: Pid,
}

impl Dev {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let started = Instant::now();
        let dir = self.dir.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("tau-dev-{}", std::process::id()))
        });
        let substrate = SubstrateConfig {
            counter_window: self.counter_window,
            outbound_allow: self.outbound_allow,
            outbound_roots: self
                .outbound_roots
                .iter()
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
                .collect(),
            ..SubstrateConfig::default()
        };
        let count = usize::from(self.nodes);
        let options = DevOptions {
            count,
            substrate_nodes: self.substrate_nodes.map_or(count, usize::from).min(count),
            substrate,
            txt_resolver: self.txt_resolver,
            tns: TnsConfig {
                max_records_per_project: self.max_project_records,
                max_bytes_per_project: self.max_project_bytes,
            },
            database: DatabaseConfig { storage_grace: self.storage_grace },
            core: usize::from(self.core).min(count),
            regions: self.regions,
        };
        let cloud = dev::prepare(&dir, &options)?;
        let exe = std::env::current_exe().context("cannot find the tau-node binary")?;
        let (exits, mut exited) = mpsc::unbounded_channel();
        let mut processes = Vec::new();
        for node in &cloud.nodes {
            let log = std::fs::File::create(&node.log)
                .with_context(|| format!("cannot create {}", node.log.display()))?;
            let mut child = tokio::process::Command::new(&exe)
                .arg("run")
                .arg("--config")
                .arg(&node.config)
                .arg("--exit-with-parent")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {}", node.name))?;
            let pid = child.id().context("a just-started child has a pid")?;
            let pid_file = node.log.with_file_name("node.pid");
            std::fs::write(&pid_file, format!("{pid}\n"))
                .with_context(|| format!("cannot write {}", pid_file.display()))?;
            let name = node.name.clone();
            processes.push(Process { name: name.clone(), pid: Pid::from_raw(pid as i32) });
            let exits = exits.clone();
            tokio::spawn(async move {
                let status = child.wait().await;
                let _ = exits.send((name, status));
            });
        }
        eprintln!(
            "started {} nodes in {} (logs: node-*/node.log)",
            cloud.nodes.len(),
            dir.display()
        );

        let mesh = tokio::select! {
            mesh = async {
                let timeout = Duration::from_secs(self.timeout);
                admit(&cloud, &dir, timeout).await?;
                wait_ready(&cloud, timeout).await?;
                publish_vault(&cloud, &dir, timeout).await
            } => mesh,
            signal = super::shutdown_signal() => Err(anyhow::anyhow!("interrupted by {}", signal?)),
            Some((name, status)) = exited.recv() => Err(anyhow::anyhow!(
                "{name} exited before the cloud was ready ({}); see its node.log",
                describe(status)
            )),
        };
        if let Err(e) = mesh {
            stop(&processes, &mut exited).await;
            return Err(e);
        }
        eprintln!("{} nodes ready in {:.2?}", cloud.nodes.len(), started.elapsed());
        for node in cloud.nodes.iter().filter(|n| n.runs("substrate")) {
            println!("gateway {} http://{}", node.name, node.http);
        }
        for node in cloud.nodes.iter().filter(|n| n.runs("seer")) {
            println!("dns {} {}", node.name, node.dns);
        }
        for node in cloud.nodes.iter().filter(|n| n.runs("ci")) {
            println!("webhook {} http://{}", node.name, node.webhook);
        }
        for node in &cloud.nodes {
            println!("metrics {} http://{}/metrics", node.name, node.admin);
        }
        println!("ready {}", cloud.profile.display());
        std::io::stdout().flush()?;

        let mut gone = Vec::new();
        loop {
            tokio::select! {
                signal = super::shutdown_signal() => {
                    eprintln!("{}: stopping the nodes", signal?);
                    break;
                }
                Some((name, status)) = exited.recv() => {
                    eprintln!("{name} exited ({})", describe(status));
                    gone.push(name);
                }
            }
        }
        let running: Vec<&Process> = processes.iter().filter(|p| !gone.contains(&p.name)).collect();
        stop_all(&running, &mut exited).await;
        Ok(())
    }
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(e) => e.to_string(),
    }
}

async fn stop(
    processes: &[Process],
    exited: &mut mpsc::UnboundedReceiver<(String, std::io::Result<std::process::ExitStatus>)>,
) {
    let all: Vec<&Process> = processes.iter().collect();
    stop_all(&all, exited).await;
}

/// Sends SIGTERM to every process, waits up to 10 s for them, then kills the rest.
async fn stop_all(
    processes: &[&Process],
    exited: &mut mpsc::UnboundedReceiver<(String, std::io::Result<std::process::ExitStatus>)>,
) {
    let mut waiting: Vec<&str> = processes.iter().map(|p| p.name.as_str()).collect();
    for p in processes {
        let _ = kill(p.pid, Signal::SIGTERM);
    }
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    while !waiting.is_empty() {
        tokio::select! {
            _ = &mut deadline => break,
            Some((name, status)) = exited.recv() => {
                if !matches!(&status, Ok(s) if s.success()) {
                    eprintln!("{name} exited ({})", describe(status));
                }
                waiting.retain(|n| *n != name);
            }
        }
    }
    for p in processes.iter().filter(|p| waiting.contains(&p.name.as_str())) {
        eprintln!("{} did not stop within 10 s: killing it", p.name);
        let _ = kill(p.pid, Signal::SIGKILL);
    }
}

/// Publishes the vault key set and names every node a registrar (with the operator key), then
/// waits until every node's registry holds both: a project can be registered through any node.
async fn publish_vault(
    cloud: &DevCloud,
    dir: &std::path::Path,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let profile = CloudProfile::load(&cloud.profile)?;
    let client = Client::connect(&profile).await.context("no dev node answered")?;
    let operator = keyfile::read(&dir.join("operator.key"))?;
    let vaults: Vec<_> =
        cloud.nodes.iter().filter(|n| n.runs("vault")).map(|n| n.peer_id).collect();
    client
        .publish_vault(&cloud.keyset, &vaults, &operator)
        .await
        .context("cannot publish the vault key set")?;
    let mut wanted = vec![keys::VAULT_KEYSET.to_string()];
    wanted.extend(vaults.iter().map(|p| keys::registrar(&p.to_string())));
    for node in &cloud.nodes {
        client.add_address(node.peer_id, node.addr.clone()).await?;
    }
    let registries: Vec<_> =
        cloud.nodes.iter().filter(|n| n.runs("tns")).map(|n| n.peer_id).collect();
    loop {
        let answers = join_all(
            registries
                .iter()
                .map(|p| client.call::<TnsProtocol>(*p, TnsRequest::Get { keys: wanted.clone() })),
        )
        .await;
        let complete = answers
            .iter()
            .filter(|a| matches!(a, Ok(TnsResponse::Records(r)) if r.len() == wanted.len()))
            .count();
        if complete == registries.len() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "only {complete} of {} tns nodes received the vault key set in time",
                registries.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client of the dev cloud, once a node answers.
async fn connect(cloud: &DevCloud, deadline: Instant) -> anyhow::Result<Client> {
    let profile = CloudProfile::load(&cloud.profile)?;
    let options = ConnectOptions { timeout: Duration::from_secs(2), ..ConnectOptions::default() };
    loop {
        match Client::connect_with(&profile, options.clone()).await {
            Ok(client) => return Ok(client),
            Err(ClientError::Unreachable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e).context("no dev node answered"),
        }
    }
}

/// Admits every node for the services it runs (`/nodes/<peer id>`, signed with the operator
/// key), as Spore Drive does: until then the nodes treat each other as clients. Writes the
/// cloud's names (`/cloud`) too, which registry nodes check domain claims against.
async fn admit(cloud: &DevCloud, dir: &std::path::Path, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let client = connect(cloud, deadline).await?;
    let operator = keyfile::read(&dir.join("operator.key"))?;
    let admissions: Vec<_> = cloud
        .nodes
        .iter()
        .map(|node| {
            let labels = [("name".to_string(), node.name.clone())].into();
            (node.peer_id, Some(Admission { services: node.services.clone(), labels }))
        })
        .collect();
    let names = CloudNames {
        domain: dev::DEV_DOMAIN.into(),
        generated_domain: dev::DEV_GENERATED_DOMAIN.into(),
    };
    // Through the first tns node: before admission a node lists no other as its peer.
    let tns = cloud.nodes.iter().find(|n| n.runs("tns")).context("no dev node runs tns")?;
    client.add_address(tns.peer_id, tns.addr.clone()).await?;
    loop {
        let written = async {
            client.admit_at(tns.peer_id, &admissions, &operator).await?;
            client.publish_names_at(tns.peer_id, &names, &operator).await
        };
        match written.await {
            Ok(_) => return Ok(()),
            // The entry node's tns may not serve yet.
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "admission not written yet");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e).context("cannot admit the dev nodes"),
        }
    }
}

/// What one seer lacks: each node it does not count healthy and why, or why it did not answer.
type Lacks<'a> = Result<Vec<(&'a DevNode, String)>, String>;

/// What a node says of its place in the cloud: how many nodes it is connected to, and the
/// seer nodes it knows with the first address it has for each (where its heartbeats go).
async fn own_view(client: &Client, peer: PeerId) -> String {
    let peers = match client.peers(peer).await {
        Ok(peers) => format!("{} peers connected", peers.len()),
        Err(e) => return format!("no answer ({e})"),
    };
    let request = AdminRequest::Directory { service: "seer".into() };
    let seers = match client.call::<AdminProtocol>(peer, request).await {
        Ok(AdminResponse::Directory(seers)) => seers
            .iter()
            .map(|s| match s.addrs.first() {
                Some(addr) => format!("{addr}{}", if s.connected { " (connected)" } else { "" }),
                None => format!("{} (no address)", s.peer_id),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Ok(other) => format!("{other:?}"),
        Err(e) => e.to_string(),
    };
    format!("{peers}, seers known: [{seers}]")
}

/// Waits until every seer node counts every node healthy (each node beats to every seer,
/// whether connected to it or not) and every gateway accepts connections.
async fn wait_ready(cloud: &DevCloud, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let client = connect(cloud, deadline).await?;
    for node in &cloud.nodes {
        client.add_address(node.peer_id, node.addr.clone()).await?;
    }
    let seers: Vec<_> = cloud.nodes.iter().filter(|n| n.runs("seer")).collect();
    let substrate: Vec<_> = cloud.nodes.iter().filter(|n| n.runs("substrate")).collect();
    let all = cloud.nodes.len();
    loop {
        let tables = join_all(
            seers.iter().map(|s| client.call::<SeerProtocol>(s.peer_id, SeerRequest::Nodes)),
        )
        .await;
        // What each seer lacks: the nodes it does not count healthy, or why it did not answer.
        let lacking: Vec<(&str, Lacks)> = seers
            .iter()
            .zip(&tables)
            .map(|(seer, answer)| {
                let lacks = match answer {
                    Ok(SeerResponse::Nodes(nodes)) => Ok(cloud
                        .nodes
                        .iter()
                        .filter_map(|n| {
                            match nodes.iter().find(|s| s.heartbeat.peer == n.peer_id) {
                                Some(s) if s.healthy => None,
                                Some(s) => Some((n, format!("silent {} ms", s.age_ms))),
                                None => Some((n, "never heard".to_string())),
                            }
                        })
                        .collect()),
                    Ok(other) => Err(format!("answered {other:?}")),
                    Err(e) => Err(e.to_string()),
                };
                (seer.name.as_str(), lacks)
            })
            .collect();
        let ready = lacking.iter().all(|(_, lacks)| lacks.as_ref().is_ok_and(Vec::is_empty));
        // The gateways start after the p2p core.
        let gateways =
            join_all(substrate.iter().map(|n| tokio::net::TcpStream::connect(n.http))).await;
        let listening = gateways.iter().filter(|g| g.is_ok()).count();
        if ready && listening == substrate.len() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let seen: Vec<String> = lacking
                .iter()
                .map(|(seer, lacks)| match lacks {
                    Ok(lacks) if lacks.is_empty() => format!("{seer}: all {all} healthy"),
                    Ok(lacks) => {
                        let lacks: Vec<String> =
                            lacks.iter().map(|(n, why)| format!("{} ({why})", n.name)).collect();
                        format!("{seer}: not {}", lacks.join(", "))
                    }
                    Err(e) => format!("{seer}: no answer ({e})"),
                })
                .collect();
            // What the nodes some seer lacks say of themselves (a few of them).
            let mut unheard: Vec<&DevNode> = Vec::new();
            for (node, _) in lacking.iter().filter_map(|(_, l)| l.as_ref().ok()).flatten() {
                if !unheard.iter().any(|u| u.peer_id == node.peer_id) {
                    unheard.push(node);
                }
            }
            unheard.truncate(3);
            let mut own = Vec::new();
            for node in unheard {
                own.push(format!("{}: {}", node.name, own_view(&client, node.peer_id).await));
            }
            bail!(
                "within {timeout:?} the seers did not count every node healthy ({}), and {listening} \
                 of {} gateways answered on their HTTP port{}",
                seen.join("; "),
                substrate.len(),
                match own.is_empty() {
                    true => String::new(),
                    false => format!("; the nodes missed say: {}", own.join("; ")),
                }
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
