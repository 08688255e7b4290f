//! The network task: joins the cloud, asks it everything each tick (or when the user presses
//! `r`), follows the logs the logs view reads, carries out the actions the user confirmed, and
//! sends what it finds to the app as [`Update`]s. It never blocks the app: the app reads
//! updates between key presses. When the cloud stops answering, it reconnects by itself.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p::PeerId;
use libp2p::identity::Keypair;
use tau_proto::Client;
use tau_proto::hoarder::BlobId;
use tau_proto::logs::{LogQuery, LogSource, MAX_PAGE_LINES, MAX_WAIT_MS};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::sleep;

use super::app::Update;
use super::format::short_peer;
use super::jobs::JobRow;
use super::logs::LogTarget;
use super::tns::sort_for_tree;
use crate::query::{Cloud, QueryError};
use crate::usage::UsageTracker;

/// What the app asks of the network task.
#[derive(Debug, Clone)]
pub enum Request {
    /// Ask the cloud now instead of at the next tick.
    Refresh,
    /// Read `target` for the logs view from now on (its generation).
    Logs(u64, LogTarget),
    /// Carry out an action the user confirmed.
    Act(Act),
}

/// An action that changes the cloud (refused with `--readonly`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// Drain a node.
    Drain(PeerId),
    /// Run anti-entropy on a node now.
    AntiEntropy(PeerId),
    /// Repair a pin now, on every hoarder node.
    Repair(BlobId),
}

impl std::fmt::Display for Act {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Act::Drain(peer) => write!(f, "drain node {peer}"),
            Act::AntiEntropy(peer) => write!(f, "run anti-entropy on node {peer}"),
            Act::Repair(cid) => write!(f, "repair pin {cid}"),
        }
    }
}

impl Act {
    /// What it does, for the confirmation.
    pub fn consequence(&self) -> &'static str {
        match self {
            Act::Drain(_) => {
                "Seer stops sending it clients and hoarder moves its replicas to other nodes; it \
                 goes on serving what still reaches it, and stays drained until it restarts."
            }
            Act::AntiEntropy(_) => {
                "It compares its registry with every tns node and its hoarder state with every \
                 hoarder node now, and takes what it lacks."
            }
            Act::Repair(_) => {
                "Every hoarder node that should hold the blob and does not fetches it now."
            }
        }
    }

    /// Carries it out; what it did, for the status line.
    async fn run(self, client: &Client) -> Result<String, String> {
        let short = |peer: &PeerId| short_peer(peer);
        match self {
            Act::Drain(peer) => match client.drain(peer).await {
                Ok(true) => Ok(format!("{} was draining already", short(&peer))),
                Ok(false) => Ok(format!("{} is draining: seer stops listing it", short(&peer))),
                Err(e) => Err(format!("drain {}: {e}", short(&peer))),
            },
            Act::AntiEntropy(peer) => match client.anti_entropy(peer).await {
                Ok(r) => Ok(format!(
                    "anti-entropy on {}: {} tns nodes ({} records pulled, {} pushed, {} \
                     failed), {} hoarder nodes",
                    short(&peer),
                    r.tns_peers,
                    r.tns_pulled,
                    r.tns_pushed,
                    r.tns_failed.len(),
                    r.hoarder_peers
                )),
                Err(e) => Err(format!("anti-entropy on {}: {e}", short(&peer))),
            },
            Act::Repair(cid) => {
                let nodes = client.nodes_running("hoarder").await.map_err(|e| e.to_string())?;
                let answers =
                    futures::future::join_all(nodes.iter().map(|n| client.repair(*n, cid))).await;
                let (mut holding, mut fetching, mut failed) = (0, 0, Vec::new());
                for (node, answer) in nodes.iter().zip(answers) {
                    match answer {
                        Ok(r) if r.held => holding += 1,
                        Ok(r) if r.fetching => fetching += 1,
                        Ok(_) => {}
                        Err(e) => failed.push(format!("{node}: {e}")),
                    }
                }
                let cid = cid.to_string();
                let cid = format!("{}…", &cid[..cid.len().min(16)]);
                match failed.first() {
                    Some(first) if holding + fetching == 0 => Err(format!("repair {cid}: {first}")),
                    _ => Ok(format!(
                        "repair {cid}: {holding} nodes hold it, {fetching} fetching now, {} did \
                         not answer",
                        failed.len()
                    )),
                }
            }
        }
    }
}

/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Asks the cloud at `profile` everything every `every`, or at once when asked; follows the
/// logs and carries out the actions the app asks for; stops when the app goes away (either
/// channel closes). Connects as `identity` (the operator's key: logs and actions are theirs).
pub async fn watch(
    profile: PathBuf,
    identity: Option<Keypair>,
    every: Duration,
    updates: mpsc::Sender<Update>,
    mut requests: mpsc::Receiver<Request>,
) {
    let refresh = Arc::new(Notify::new());
    let (client_tx, client_rx) = watch::channel::<Option<Client>>(None);
    let (target_tx, target_rx) = watch::channel::<Option<(u64, LogTarget)>>(None);
    let dispatch = {
        let (refresh, updates, client_rx) = (refresh.clone(), updates.clone(), client_rx.clone());
        async move {
            while let Some(request) = requests.recv().await {
                match request {
                    Request::Refresh => refresh.notify_one(),
                    Request::Logs(generation, target) => {
                        target_tx.send_replace(Some((generation, target)));
                    }
                    Request::Act(act) => {
                        let client = client_rx.borrow().clone();
                        let updates = updates.clone();
                        tokio::spawn(async move {
                            let result = match client {
                                Some(client) => act.run(&client).await,
                                None => Err("not connected to the cloud yet".into()),
                            };
                            let _ = updates.send(Update::Acted(result)).await;
                        });
                    }
                }
            }
        }
    };
    let logs = follow_logs(client_rx, target_rx, updates.clone());
    let rounds = ask_rounds(profile, identity, every, updates, refresh, client_tx);
    tokio::select! {
        () = dispatch => {}
        () = logs => {}
        () = rounds => {}
    }
}

/// Connects, asks everything each round, and reconnects when the cloud stops answering.
async fn ask_rounds(
    profile: PathBuf,
    identity: Option<Keypair>,
    every: Duration,
    updates: mpsc::Sender<Update>,
    refresh: Arc<Notify>,
    client_tx: watch::Sender<Option<Client>>,
) {
    let mut attempt = 0u32;
    loop {
        let cloud = match Cloud::connect_as(&profile, identity.clone()).await {
            Ok(cloud) => cloud,
            Err(e) => {
                attempt += 1;
                let update = Update::Connecting { attempt, error: Some(e.to_string()) };
                if updates.send(update).await.is_err() {
                    return;
                }
                let backoff = Duration::from_millis(250 << attempt.min(5)).min(MAX_BACKOFF);
                tokio::select! {
                    _ = sleep(backoff) => {}
                    () = refresh.notified() => {}
                }
                continue;
            }
        };
        client_tx.send_replace(Some(cloud.client().clone()));
        if updates.send(Update::Connected { entry: cloud.client().entry() }).await.is_err() {
            return;
        }
        let mut rounds = Rounds::default();
        loop {
            match rounds.ask(&cloud, &updates).await {
                Ok(()) => {}
                Err(Lost::App) => return,
                Err(Lost::Cloud(error)) => {
                    attempt = 1;
                    if updates
                        .send(Update::Connecting { attempt, error: Some(error) })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    break;
                }
            }
            tokio::select! {
                _ = sleep(every) => {}
                () = refresh.notified() => {}
            }
        }
    }
}

/// The newest lines a log target shows first.
const FIRST_LINES: u32 = 500;

/// Follows the logs view's target with the latest client: one reader per node read, started
/// again whenever the target or the connection changes. Ends when the app is gone.
async fn follow_logs(
    mut client_rx: watch::Receiver<Option<Client>>,
    mut target_rx: watch::Receiver<Option<(u64, LogTarget)>>,
    updates: mpsc::Sender<Update>,
) {
    loop {
        let client = client_rx.borrow_and_update().clone();
        let target = target_rx.borrow_and_update().clone();
        let reading = async {
            let (Some(client), Some((generation, target))) = (client, target) else {
                return std::future::pending().await;
            };
            let nodes = match target.node {
                Some(node) => vec![node],
                None => match client.nodes_running("substrate").await {
                    Ok(nodes) if !nodes.is_empty() => nodes,
                    Ok(_) => vec![],
                    Err(e) => {
                        let _ = updates
                            .send(Update::Acted(Err(format!("logs: cannot list the nodes: {e}"))))
                            .await;
                        vec![]
                    }
                },
            };
            let readers = nodes
                .into_iter()
                .map(|node| read_log(&client, node, target.source.clone(), generation, &updates));
            futures::future::join_all(readers).await;
            std::future::pending::<()>().await
        };
        tokio::select! {
            () = reading => {}
            changed = client_rx.changed() => if changed.is_err() { return },
            changed = target_rx.changed() => if changed.is_err() { return },
        }
        if updates.is_closed() {
            return;
        }
    }
}

/// Reads one node's buffer for `source`: the newest lines, then every new one as it comes,
/// long-polling; a failed read is said and tried again a second later. Ends when the app is
/// gone.
async fn read_log(
    client: &Client,
    node: PeerId,
    source: LogSource,
    generation: u64,
    updates: &mpsc::Sender<Update>,
) {
    let mut query = LogQuery {
        source,
        after: None,
        since_ms: None,
        level: None,
        limit: FIRST_LINES,
        wait_ms: 0,
    };
    loop {
        let page = client.logs(node, query.clone()).await.map_err(|e| e.to_string());
        let failed = page.is_err();
        if let Ok(page) = &page {
            query.after = Some(page.next);
            query.limit = MAX_PAGE_LINES;
            query.wait_ms = MAX_WAIT_MS;
        }
        if updates.send(Update::Logs { generation, node, page }).await.is_err() {
            return;
        }
        if failed {
            sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Why a round ended early.
enum Lost {
    /// The app is gone.
    App,
    /// The entry node stopped answering.
    Cloud(String),
}

/// What one connection remembers between rounds.
#[derive(Default)]
struct Rounds {
    usage: UsageTracker,
    /// The TNS node asked last and its digest then: the registry is listed again only when the
    /// digest changes.
    tns_seen: Option<(PeerId, String, u64)>,
    /// The job logs fetched (each once: a log never changes).
    logs: HashSet<BlobId>,
    /// The logs of the ended jobs in the last read of the registry, newest first.
    job_logs: Vec<BlobId>,
}

/// The most job logs fetched in one round (the newest jobs' first).
const LOGS_PER_ROUND: usize = 8;

impl Rounds {
    /// One round: every question at once, each answer sent as soon as it arrives.
    async fn ask(&mut self, cloud: &Cloud, updates: &mpsc::Sender<Update>) -> Result<(), Lost> {
        let services = match cloud.client().services().await {
            Ok(services) => services,
            Err(e) => return Err(Lost::Cloud(e.to_string())),
        };
        let first = |service: &str| services.get(service).and_then(|nodes| nodes.first().copied());
        let no = |service: &'static str| QueryError::NoService(service).to_string();
        let send = |update: Update| async move { updates.send(update).await.is_ok() };
        // The nodes that keep counters: substrate's invocations, ci's build jobs.
        let substrate = tau_proto::counters::counting_nodes(&services);

        let peers =
            async { send(Update::Peers(cloud.peers(None).await.map_err(|e| e.to_string()))).await };
        let nodes = async {
            let result = match first("seer") {
                Some(seer) => cloud.nodes(Some(seer)).await.map_err(|e| e.to_string()),
                None => Err(no("seer")),
            };
            send(Update::Nodes(result)).await
        };
        let tns_seen = &mut self.tns_seen;
        let job_logs = &mut self.job_logs;
        let tns = async {
            let Some(node) = first("tns") else { return send(Update::Tns(Err(no("tns")))).await };
            let status = match cloud.client().tns_status(node).await {
                Ok(status) => status,
                Err(e) => return send(Update::Tns(Err(e.to_string()))).await,
            };
            let seen = (node, status.digest.clone(), status.records);
            if tns_seen.as_ref() == Some(&seen) {
                return true;
            }
            let mut result = cloud.tns_list("/", Some(node)).await.map_err(|e| e.to_string());
            if let Ok(records) = &mut result {
                sort_for_tree(records);
            }
            if result.is_ok() {
                *tns_seen = Some(seen);
            }
            if let Ok(records) = &result {
                *job_logs = JobRow::from_records(records).iter().filter_map(JobRow::log).collect();
            }
            send(Update::Tns(result)).await
        };
        let hoarder = async {
            let result = match first("hoarder") {
                Some(node) => cloud.hoarder_pins(Some(node)).await.map_err(|e| e.to_string()),
                None => Err(no("hoarder")),
            };
            send(Update::Hoarder(result)).await
        };
        let vault =
            async { send(Update::Vault(cloud.vault().await.map_err(|e| e.to_string()))).await };
        let tracker = &mut self.usage;
        let usage = async {
            let result = if substrate.is_empty() {
                Err(no("substrate"))
            } else {
                tracker
                    .poll(cloud.client(), &substrate)
                    .await
                    .map(|()| tracker.rows())
                    .map_err(|e| e.to_string())
            };
            send(Update::Usage(result)).await
        };
        let stores = async {
            let result = match services.get(tau_proto::database::SERVICE) {
                Some(nodes) if !nodes.is_empty() => cloud.stores().await.map_err(|e| e.to_string()),
                _ => Err(no("database")),
            };
            send(Update::Stores(result)).await
        };
        let sent = tokio::join!(peers, nodes, tns, hoarder, vault, usage, stores);
        let all_sent =
            [sent.0, sent.1, sent.2, sent.3, sent.4, sent.5, sent.6].into_iter().all(|s| s);
        if !all_sent || !self.fetch_logs(cloud, updates).await {
            return Err(Lost::App);
        }
        if !send(Update::Round { at_ms: unix_ms() }).await {
            return Err(Lost::App);
        }
        Ok(())
    }
}

impl Rounds {
    /// Fetches the logs of ended jobs not fetched yet, the newest first, a few per round (one
    /// that cannot be fetched now is tried again next round); false when the app is gone.
    async fn fetch_logs(&mut self, cloud: &Cloud, updates: &mpsc::Sender<Update>) -> bool {
        let wanted: Vec<BlobId> = self
            .job_logs
            .iter()
            .filter(|cid| !self.logs.contains(cid))
            .take(LOGS_PER_ROUND)
            .copied()
            .collect();
        for cid in wanted {
            let log = cloud.client().fetch_blob(cid, tau_proto::git::MAX_LOG).await;
            let log = log.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
            if log.is_ok() {
                self.logs.insert(cid);
            }
            let update = Update::JobLog { cid, log: log.map_err(|e| e.to_string()) };
            if updates.send(update).await.is_err() {
                return false;
            }
        }
        true
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
