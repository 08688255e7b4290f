//! The `tns` service: the cloud's replicated registry of projects, functions, domains and routes.
//!
//! - [`store`]: the records on disk (redb) and the in-memory index (summaries, bucket digests,
//!   project owners); every check a record must pass before it is stored.
//! - `service`: answers `/tau/tns/1` requests, publishes what a `Put` stored on the gossipsub
//!   topic `tau/tns/1`, and stores (and lets gossipsub forward) only valid gossip.
//! - `sync`: anti-entropy. Every [`SYNC_INTERVAL`] the node compares its 256 bucket digests with
//!   one peer (new peers first, then in turn), pulls what it lacks and pushes what the peer lacks,
//!   so a node that was down or partitioned catches up by itself.
//!
//! The store sits behind a mutex shared by the two tasks; no lock is held across an await.
//!
//! A node that joins a running cloud starts with an empty (or old) registry. Until it has
//! finished an anti-entropy round with the tns nodes it is connected to (three of them at most:
//! a joining node connects to its seeds first) ([`Local::caught_up`]), what it lacks may only be
//! new to it: its heartbeats do not offer its gateway to clients, its gateway
//! answers a host it does not know with 503 instead of 404, and its seer answers SERVFAIL
//! instead of NXDOMAIN, so that resolvers ask another seer. A node with no bootstrap peer (the
//! first of a cloud, or a cloud of one) is caught up from the start; one that cannot sync with
//! anyone within [`CATCH_UP_LIMIT`] serves what it has and says so in its log.

mod registry;
mod service;
pub mod store;
mod sync;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tau_proto::tns::TnsProtocol;

use libp2p::PeerId;
pub use registry::{Registry, RegistryError};
pub use store::{Quota, Store};
use tau_proto::identity::WriterKey;
use tau_proto::membership::Admitted;
use tau_proto::protocol::Access;
use tau_proto::tns::{MAX_PAGE, PutOutcome, Record, TnsRequest, TnsResponse};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::p2p;

/// How often anti-entropy runs.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(2);

/// How long a node waits for its first anti-entropy round before it serves what it has.
pub const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);

/// What the service's tasks share.
struct Shared {
    store: Mutex<Store>,
    operator: Option<WriterKey>,
    last_sync: Mutex<HashMap<PeerId, Instant>>,
    /// The keys of every record stored, batch by batch, for the node's other services.
    changes: broadcast::Sender<Arc<[String]>>,
    /// Turns true once the registry has synced with another tns node (see the module's docs).
    caught_up: watch::Sender<bool>,
}

impl Shared {
    /// Applies records (however they came) and tells the watchers which keys changed.
    fn apply(&self, records: Vec<Record>) -> Result<store::Applied, crate::db::DbError> {
        let applied = self.store().apply(records, self.operator.as_ref())?;
        if !applied.stored.is_empty() {
            let keys: Arc<[String]> = applied.stored.iter().map(|r| r.key.clone()).collect();
            // Nobody watching is fine.
            let _ = self.changes.send(keys);
        }
        Ok(applied)
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves the index as it was before the failed apply:
        // the index changes only after a commit.
        self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TnsError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::db::DbError),
    /// The p2p task stopped, or a gossip topic could not be joined.
    #[error("cannot start tns: {0}")]
    P2p(#[from] crate::p2p::GossipError),
}

/// The node's own registry, used in process by its other services (substrate, vault).
#[derive(Clone)]
pub struct Local {
    shared: Arc<Shared>,
    handle: p2p::Handle,
}

impl Local {
    /// The record at `key`, a tombstone included.
    pub fn get(&self, key: &str) -> Result<Option<Record>, crate::db::DbError> {
        self.shared.store().get(key)
    }

    /// Checks and stores records as a `Put` from a peer would, and gossips what was stored.
    pub async fn put(&self, records: Vec<Record>) -> Result<PutOutcome, RegistryError> {
        let (response, stored) = service::answer(&self.shared, TnsRequest::Put { records });
        service::publish(&self.handle, stored).await;
        match response {
            TnsResponse::Put(outcome) => Ok(outcome),
            TnsResponse::Error(e) => Err(RegistryError::Refused(e)),
            _ => Err(RegistryError::Unexpected { peer: self.handle.peer_id(), request: "Put" }),
        }
    }

    /// The highest version stored.
    pub fn clock(&self) -> u64 {
        self.shared.store().counts().3
    }

    /// Every live record whose key starts with `prefix`.
    pub fn list(&self, prefix: &str) -> Result<Vec<Record>, crate::db::DbError> {
        self.scan(prefix, false)
    }

    /// Every record whose key starts with `prefix`, tombstones included.
    pub fn list_with_tombstones(&self, prefix: &str) -> Result<Vec<Record>, crate::db::DbError> {
        self.scan(prefix, true)
    }

    fn scan(&self, prefix: &str, tombstones: bool) -> Result<Vec<Record>, crate::db::DbError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (records, next) =
                self.shared.store().list(prefix, after.as_deref(), MAX_PAGE, tombstones)?;
            all.extend(records);
            match next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Whether the registry has synced with another tns node since the node started (or needs
    /// not: see the module's docs).
    pub fn caught_up(&self) -> bool {
        *self.shared.caught_up.borrow()
    }

    /// [`Local::caught_up`], watched.
    pub fn watch_caught_up(&self) -> watch::Receiver<bool> {
        self.shared.caught_up.subscribe()
    }

    /// The keys stored from now on, batch by batch.
    pub fn changes(&self) -> broadcast::Receiver<Arc<[String]>> {
        self.shared.changes.subscribe()
    }

    /// Anti-entropy with every tns node now (the operator's), a few at once: how many were
    /// compared, the records pulled and pushed, and which could not be compared and why.
    pub async fn anti_entropy(&self, report: &mut tau_proto::admin::AntiEntropyReport) {
        use futures::StreamExt;
        let me = self.handle.peer_id();
        let peers: Vec<PeerId> = match self.handle.nodes("tns").await {
            Ok(nodes) => nodes.into_iter().map(|n| n.peer).filter(|p| *p != me).collect(),
            Err(e) => {
                report.tns_failed.push(format!("the node's peers: {e}"));
                return;
            }
        };
        let rounds = futures::stream::iter(peers)
            .map(|peer| async move {
                let round = sync::sync_with(&self.shared, &self.handle, peer);
                let result = match tokio::time::timeout(ANTI_ENTROPY_WAIT, round).await {
                    Ok(Ok(counts)) => Ok(counts),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer in {}s", ANTI_ENTROPY_WAIT.as_secs())),
                };
                (peer, result)
            })
            .buffer_unordered(ANTI_ENTROPY_AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        for (peer, result) in rounds {
            report.tns_peers += 1;
            match result {
                Ok((pulled, pushed)) => {
                    report.tns_pulled += pulled as u64;
                    report.tns_pushed += pushed as u64;
                    if let Ok(mut last) = self.shared.last_sync.lock() {
                        last.insert(peer, std::time::Instant::now());
                    }
                }
                Err(e) => report.tns_failed.push(format!("{peer}: {e}")),
            }
        }
    }
}

/// Marks the registry caught up as soon as the node is admitted without tns: no tns node syncs
/// with it then, so what it has is all it will have. Stops once the registry is caught up.
pub fn watch_admission(
    local: Local,
    mut admitted: watch::Receiver<Admitted>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let me = local.handle.peer_id();
    tokio::spawn(async move {
        loop {
            let without_tns = {
                let admitted = admitted.borrow_and_update();
                matches!(&*admitted, Admitted::Listed(_))
                    && admitted.allows(Access::Nodes, &me)
                    && admitted.believed(&me, &["tns".to_string()]).is_empty()
            };
            if without_tns {
                if !local.shared.caught_up.send_replace(true) {
                    tracing::info!(
                        "this node is admitted without tns: its own registry is used as it is"
                    );
                }
                break;
            }
            if local.caught_up() {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = admitted.changed() => if changed.is_err() { break },
            }
        }
    })
}

/// How long the operator's anti-entropy waits for one tns node.
const ANTI_ENTROPY_WAIT: Duration = Duration::from_secs(30);

/// The most tns nodes the operator's anti-entropy compares with at once.
const ANTI_ENTROPY_AT_ONCE: usize = 8;

/// Opens the registry in `data_dir` and starts serving it. The tasks stop on `shutdown`.
/// `seed`: the node has no bootstrap peer to catch up from, so its registry counts as caught up
/// from the start.
pub async fn start(
    handle: p2p::Handle,
    data_dir: &Path,
    operator: Option<WriterKey>,
    quota: Quota,
    seed: bool,
    shutdown: CancellationToken,
) -> Result<(Vec<JoinHandle<()>>, Local), TnsError> {
    let mut store = Store::open(&data_dir.join("tns.redb"))?;
    store.set_quota(quota);
    let (live, tombstones, _, clock) = store.counts();
    tracing::info!(live, tombstones, clock, "tns registry opened");
    let shared = Arc::new(Shared {
        store: Mutex::new(store),
        operator,
        last_sync: Mutex::default(),
        changes: broadcast::channel(256).0,
        caught_up: watch::Sender::new(seed),
    });
    let (inbox, requests) = tokio::sync::mpsc::channel(256);
    handle.serve::<TnsProtocol>(inbox).await.map_err(|e| TnsError::P2p(e.into()))?;
    let gossip = handle.subscribe::<tau_proto::tns::TnsTopic>().await?;
    let tasks = vec![
        tokio::spawn(service::run(
            shared.clone(),
            handle.clone(),
            requests,
            gossip,
            shutdown.clone(),
        )),
        tokio::spawn(sync::run(shared.clone(), handle.clone(), shutdown)),
    ];
    Ok((tasks, Local { shared, handle }))
}
