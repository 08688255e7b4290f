//! The network task: joins the cloud, asks it everything each tick (or when the user presses
//! `r`), and sends what it finds to the app as [`Update`]s. It never blocks the app: the app
//! reads updates between key presses. When the cloud stops answering, it reconnects by itself.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p::PeerId;
use tau_proto::hoarder::BlobId;
use tokio::sync::mpsc;
use tokio::time::sleep;

use super::app::Update;
use super::jobs::JobRow;
use super::tns::sort_for_tree;
use crate::query::{Cloud, QueryError};
use crate::usage::UsageTracker;

/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Asks the cloud at `profile` everything every `every`, or at once when `refresh` receives;
/// stops when the app goes away (either channel closes).
pub async fn watch(
    profile: PathBuf,
    every: Duration,
    updates: mpsc::Sender<Update>,
    mut refresh: mpsc::Receiver<()>,
) {
    let mut attempt = 0u32;
    loop {
        let cloud = match Cloud::connect(&profile).await {
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
                    asked = refresh.recv() => if asked.is_none() { return },
                }
                continue;
            }
        };
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
                asked = refresh.recv() => if asked.is_none() { return },
            }
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
