//! The `hoarder` service: content-addressed blobs kept at a replication factor, repaired when
//! nodes leave.
//!
//! - [`store`]: chunks and manifests on disk, written atomically, checked on every read.
//! - [`placement`]: rendezvous hashing over the live members.
//! - [`members`]: who is alive (seer's change feed: a hoarder node is alive while seer counts it
//!   healthy) and what each holds and fetches (each node gossips a [`StateDelta`] on
//!   `tau/hoarder/1` when that changes; one that missed a delta asks for the whole state; every
//!   10 s a node compares digests with a random member).
//! - [`pins`]: every pin (blob, owner, size, factor), merged from deltas and anti-entropy, kept
//!   on disk; a blob's factor is the highest of its owners' pins, and only a pin's owner or the
//!   operator changes it.
//! - `service`: the `/tau/hoarder/1` requests; uploads; a `Put` answers once the blob is on two
//!   nodes (or all, where fewer are live).
//! - `reconcile`: when something changed (and every 10 s), each node fetches the pinned blobs
//!   it should hold and does not, and releases those it holds but should not, once every node
//!   that should hold them does.
//!
//! Transfers go chunk by chunk with at most [`tau_proto::hoarder::transfer::WINDOW`] chunks in
//! flight, so memory does not grow with blob size.

pub mod members;
pub mod pins;
pub mod placement;
mod reconcile;
mod service;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tau_proto::hoarder::{HoarderProtocol, StateDelta, StateVersion};
use tokio::sync::watch;

use libp2p::PeerId;
use tau_proto::hoarder::Manifest;
use tau_proto::hoarder::transfer::Asker;
use tau_proto::hoarder::{BlobId, HoarderRequest, HoarderResponse};
use tau_proto::identity::WriterKey;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::p2p;
use crate::seer::follow::Health;
use members::Members;
use pins::PinTable;
use store::BlobStore;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HoarderError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The p2p task stopped, or a gossip topic could not be joined.
    #[error("cannot start hoarder: {0}")]
    P2p(#[from] crate::p2p::GossipError),
}

/// An upload in progress, and how its replication is going.
struct Upload {
    manifest: Manifest,
    touched: std::time::Instant,
    /// The nodes that took a copy so far, and whether every replication attempt has ended.
    replicas: tokio::sync::watch::Receiver<(Vec<PeerId>, bool)>,
}

/// The service's state, shared by its tasks.
struct Hoarder {
    me: PeerId,
    handle: p2p::Handle,
    store: Arc<BlobStore>,
    pins: Mutex<PinTable>,
    members: Mutex<Members>,
    /// Who is healthy, from seer.
    health: watch::Receiver<Health>,
    /// What this node last said of its own state.
    said: Mutex<Said>,
    /// Counts up whenever something reconcile looks at changes.
    changes: AtomicU64,
    fetching: Mutex<HashSet<BlobId>>,
    uploads: Mutex<HashMap<BlobId, Upload>>,
    /// Woken whenever a chunk is written, for those waiting on an upload in progress.
    chunk_written: tokio::sync::Notify,
    /// Chunks refused because they did not match their hash.
    rejected_chunks: AtomicU64,
    /// Pins from heartbeats refused for a stamp too far beyond this node's clock.
    ahead_pins: AtomicU64,
    /// The operator's key: its pins and unpins apply to every pin of a blob.
    operator: Option<WriterKey>,
    /// This node's disk has less than [`RESERVE`] free: it takes no new replicas (its heartbeat
    /// says so to seer, whose feed tells the other hoarder nodes).
    full: Arc<AtomicBool>,
    /// The node is leaving (drained): like a full one, it takes no new replicas, and lets go of
    /// each of its copies once the nodes that should hold it do.
    leaving: watch::Receiver<bool>,
}

/// This node's state as its last delta said it.
struct Said {
    version: StateVersion,
    held: HashSet<BlobId>,
    fetching: HashSet<BlobId>,
    /// The store's generation then.
    generation: u64,
}

/// Free space below which a node takes no new replicas, so that a full disk fails no write
/// halfway and leaves the node room for its registry and counters.
pub const RESERVE: u64 = 32 << 20;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hoarder {
    /// The live hoarder nodes that take replicas (their disks are not full), this one included
    /// unless its own is, sorted: where blobs are placed.
    fn live(&self) -> Vec<PeerId> {
        let members = lock(&self.members);
        let mut live: Vec<PeerId> =
            members.alive().iter().filter(|p| !members.is_full(p)).copied().collect();
        drop(members);
        if !self.full.load(Ordering::Relaxed) && !*self.leaving.borrow() {
            live.push(self.me);
        }
        live.sort();
        live.dedup();
        live
    }

    /// The live nodes that hold `cid`, this one included.
    fn holders(&self, cid: &BlobId) -> Vec<PeerId> {
        let mut holders = lock(&self.members).holders(cid);
        if self.store.has(cid) {
            holders.push(self.me);
            holders.sort();
        }
        holders
    }

    /// Where `cid` most likely is when no holder is known (a node that just came back knows
    /// little yet): the hoarder nodes placement ranks first for it, among every node admitted
    /// for hoarder, not only the live ones.
    async fn likely_holders(&self, cid: &BlobId) -> Vec<PeerId> {
        let nodes = self.handle.nodes("hoarder").await.unwrap_or_default();
        let all: Vec<PeerId> = nodes.into_iter().map(|n| n.peer).collect();
        placement::holders(cid, &all, LIKELY_HOLDERS)
    }

    /// The known holders of `cid` other than this node, else the likely ones.
    async fn sources(&self, cid: &BlobId) -> Vec<PeerId> {
        let known: Vec<PeerId> = self.holders(cid).into_iter().filter(|p| *p != self.me).collect();
        if !known.is_empty() {
            return known;
        }
        self.likely_holders(cid).await
    }

    /// Something reconcile looks at changed.
    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes who is alive from seer's feed, with the connected hoarder nodes the feed has not
    /// heard of yet (newcomers); while no seer answers, the connected hoarder nodes.
    async fn refresh_members(&self) {
        let Ok(nodes) = self.handle.nodes("hoarder").await else { return };
        let connected = nodes.into_iter().filter(|n| n.connected).map(|n| n.peer);
        // Read in place (no await while borrowed): the table has a line per node of the cloud.
        let (alive, full) = {
            let health = self.health.borrow();
            if health.fresh {
                let mut alive: Vec<PeerId> =
                    health.running("hoarder").into_iter().filter(|p| *p != self.me).collect();
                alive.extend(
                    connected.filter(|p| !health.nodes.contains_key(p) && !health.gone.contains(p)),
                );
                let full =
                    alive.iter().filter(|p| health.nodes.get(p).is_some_and(|m| m.full)).copied();
                let full: HashSet<PeerId> = full.collect();
                (alive, full)
            } else {
                (connected.collect(), HashSet::new())
            }
        };
        let mut members = lock(&self.members);
        let mut sorted = alive.clone();
        sorted.sort();
        sorted.dedup();
        if members.alive() != sorted.as_slice() {
            self.changed();
        }
        members.set_alive(alive, full);
        members.forget_dead(KEEP_DEAD);
    }

    /// The delta from what this node last said to what it holds, fetches and pinned now, if
    /// anything changed.
    fn delta(&self) -> Option<StateDelta> {
        let generation = self.store.generation();
        let fetching = lock(&self.fetching).clone();
        let pins = lock(&self.pins).take_outbox();
        let mut said = lock(&self.said);
        if generation == said.generation && fetching == said.fetching && pins.is_empty() {
            return None;
        }
        let held: HashSet<BlobId> = if generation == said.generation {
            said.held.clone()
        } else {
            self.store.held().unwrap_or_default().into_iter().collect()
        };
        let delta = StateDelta {
            version: StateVersion { seq: said.version.seq + 1, ..said.version },
            added: held.difference(&said.held).copied().collect(),
            removed: said.held.difference(&held).copied().collect(),
            fetching: fetching.iter().copied().collect(),
            pins,
        };
        *said = Said { version: delta.version, held, fetching, generation };
        Some(delta)
    }

    /// This node's whole state, as its last delta left it.
    fn state(&self) -> tau_proto::hoarder::HolderState {
        let said = lock(&self.said);
        tau_proto::hoarder::HolderState {
            version: said.version,
            held: said.held.iter().copied().collect(),
            fetching: said.fetching.iter().copied().collect(),
        }
    }
}

/// How many of the nodes placement ranks first for a blob are asked for it when no holder is
/// known.
const LIKELY_HOLDERS: usize = 8;

/// What is known of hoarder nodes that are not alive is kept for this many of them.
const KEEP_DEAD: usize = 1000;

/// Why a hoarder peer gave no usable answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// It answered with an error.
    #[error("{0}")]
    Refused(String),
    /// It could not be asked.
    #[error("{}", .0.reason)]
    Request(p2p::RequestError),
}

impl Asker for p2p::Handle {
    type Error = AskError;

    async fn ask(
        &self,
        peer: PeerId,
        request: HoarderRequest,
    ) -> Result<HoarderResponse, AskError> {
        match self.call::<HoarderProtocol>(peer, request).await {
            Ok(HoarderResponse::Error(message)) => Err(AskError::Refused(message)),
            Ok(response) => Ok(response),
            Err(e) => Err(AskError::Request(e)),
        }
    }
}

/// What a hoarder node said about a blob's manifest.
pub enum ManifestAnswer {
    /// The manifest, checked to be the blob's.
    Found(tau_proto::hoarder::Manifest),
    /// It does not hold the blob; the holders it knows of.
    NotHeld(Vec<PeerId>),
}

/// Asks `peer` for the manifest of `cid`. A hoarder node answers another hoarder node only
/// from its own store (naming the holders it knows otherwise), so a node that fetches asks the
/// holders itself.
pub async fn ask_manifest(
    handle: &p2p::Handle,
    peer: PeerId,
    cid: tau_proto::hoarder::BlobId,
) -> Result<ManifestAnswer, String> {
    let request = HoarderRequest::Manifest { cid, in_progress: false };
    match handle.ask(peer, request).await.map_err(|e| format!("{peer}: {e}"))? {
        HoarderResponse::Manifest(manifest) if manifest.cid == cid => {
            manifest.check().map_err(|e| format!("{peer}: {e}"))?;
            Ok(ManifestAnswer::Found(manifest))
        }
        HoarderResponse::NotFound { holders } => Ok(ManifestAnswer::NotHeld(holders)),
        other => Err(format!("{peer} answered {other:?} for the manifest of {cid}")),
    }
}

/// The node's own blob store, read in process by its other services (substrate), and its
/// hoarder service, asked in process ([`Local`] is an [`Asker`] whatever peer it is given).
#[derive(Clone)]
pub struct Local(Arc<Hoarder>);

/// The most hoarder nodes one operator's anti-entropy compares with at once.
const ANTI_ENTROPY_AT_ONCE: usize = 8;

impl Local {
    /// Compares this node's state with every live hoarder node now (the operator's
    /// anti-entropy), takes what it lacks, and reconciles: how many nodes answered.
    pub async fn anti_entropy(&self) -> u32 {
        use futures::StreamExt;
        let hoarder = &self.0;
        hoarder.refresh_members().await;
        let members: Vec<PeerId> = lock(&hoarder.members).alive().to_vec();
        let pulling = Arc::new(Mutex::new(HashSet::new()));
        let answered = futures::stream::iter(members)
            .map(|peer| {
                let pulling = pulling.clone();
                async move { hoarder.compare_digests_with(peer, &pulling).await }
            })
            .buffer_unordered(ANTI_ENTROPY_AT_ONCE)
            .filter(|answered| std::future::ready(*answered))
            .count()
            .await;
        hoarder.changed();
        answered as u32
    }

    /// Repairs the pin of `cid` now, as far as this node goes: fetches the blob at once when it
    /// should hold it and does not; says where the pin stands here.
    pub fn repair(&self, cid: BlobId) -> tau_proto::admin::RepairReport {
        let hoarder = &self.0;
        let factor = lock(&hoarder.pins).get(&cid).map_or(0, |pin| pin.factor);
        let live = hoarder.live();
        let target = usize::from(factor).min(live.len());
        let wanted_here =
            factor > 0 && placement::holders(&cid, &live, target).contains(&hoarder.me);
        let held = hoarder.store.has(&cid);
        let holders = hoarder.holders(&cid).len() as u32;
        let mut fetching = lock(&hoarder.fetching).contains(&cid);
        if wanted_here && !held && !fetching {
            fetching = true;
            let hoarder = hoarder.clone();
            tokio::spawn(async move {
                let sources = hoarder.sources(&cid).await;
                match hoarder.fetch(cid, &sources).await {
                    Ok(()) => tracing::info!(%cid, "repaired at the operator's request"),
                    Err(e) => tracing::warn!(%cid, error = %e, "repair fetch failed"),
                }
            });
        }
        hoarder.changed();
        tau_proto::admin::RepairReport {
            pinned: factor > 0,
            factor,
            holders,
            wanted_here,
            held,
            fetching,
        }
    }
}

impl Asker for Local {
    type Error = AskError;

    /// Answers `request` as this node's hoarder service would answer this node.
    async fn ask(
        &self,
        _peer: PeerId,
        request: HoarderRequest,
    ) -> Result<HoarderResponse, AskError> {
        match self.0.answer(self.0.me, request).await {
            Ok(HoarderResponse::Error(message)) => Err(AskError::Refused(message)),
            Ok(response) => Ok(response),
            Err(refusal) => Err(AskError::Refused(refusal.to_string())),
        }
    }
}

/// What hoarder's metrics show.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    /// Pins known (blob and owner).
    pub pins: u64,
    /// Blobs held here.
    pub held: u64,
    /// Blobs being fetched now.
    pub fetching: u64,
    /// Chunks refused for a wrong hash.
    pub rejected_chunks: u64,
}

impl Local {
    /// This node's figures, now.
    pub fn figures(&self) -> Figures {
        Figures {
            pins: lock(&self.0.pins).len() as u64,
            held: lock(&self.0.said).held.len() as u64,
            fetching: lock(&self.0.fetching).len() as u64,
            rejected_chunks: self.0.rejected_chunks.load(Ordering::Relaxed),
        }
    }

    /// Whether this node's hoarder store is nearly full (what its heartbeats say).
    pub fn full(&self) -> Arc<AtomicBool> {
        self.0.full.clone()
    }

    /// The size of blob `cid`, from its manifest, if this node holds it.
    pub fn size(&self, cid: &tau_proto::hoarder::BlobId) -> Option<u64> {
        Some(self.0.store.manifest(cid).ok()??.size)
    }

    /// The manifest of blob `cid`, if this node holds it.
    pub fn manifest(
        &self,
        cid: &tau_proto::hoarder::BlobId,
    ) -> Option<tau_proto::hoarder::Manifest> {
        self.0.store.manifest(cid).ok()?
    }

    /// Chunk `index` of the blob `manifest` names, if this node holds it (checked as it is read).
    pub fn chunk(&self, manifest: &tau_proto::hoarder::Manifest, index: u32) -> Option<Vec<u8>> {
        self.0.store.read_chunk(manifest, index).ok()
    }

    /// The whole blob `cid`, if this node holds it (each chunk is checked as it is read).
    pub fn read(&self, cid: &tau_proto::hoarder::BlobId) -> Option<Vec<u8>> {
        let manifest = self.0.store.manifest(cid).ok()??;
        let mut bytes = Vec::with_capacity(manifest.size as usize);
        for index in 0..manifest.chunks.len() as u32 {
            bytes.extend(self.0.store.read_chunk(&manifest, index).ok()?);
        }
        Some(bytes)
    }
}

/// Opens the blob store in `data_dir` and starts the service; who is alive comes from
/// `health`.
pub async fn start(
    handle: p2p::Handle,
    data_dir: &Path,
    operator: Option<WriterKey>,
    health: watch::Receiver<Health>,
    leaving: watch::Receiver<bool>,
    shutdown: CancellationToken,
) -> Result<(Vec<JoinHandle<()>>, Local), HoarderError> {
    let root = data_dir.join("hoarder");
    let store = BlobStore::open(&root)?;
    let generation = store.generation();
    let store_held = store.held()?;
    let held = store_held.len();
    let pins = PinTable::load(&root.join("pins.cbor"));
    tracing::info!(held, pins = pins.all().len(), "hoarder store opened");
    let hoarder = Arc::new(Hoarder {
        me: handle.peer_id(),
        handle: handle.clone(),
        store: Arc::new(store),
        pins: Mutex::new(pins),
        members: Mutex::default(),
        health,
        said: Mutex::new(Said {
            version: StateVersion { started_ms: now_ms(), seq: 0 },
            held: store_held.into_iter().collect(),
            fetching: HashSet::new(),
            generation,
        }),
        changes: AtomicU64::new(0),
        fetching: Mutex::default(),
        uploads: Mutex::default(),
        chunk_written: tokio::sync::Notify::new(),
        rejected_chunks: AtomicU64::new(0),
        ahead_pins: AtomicU64::new(0),
        operator,
        full: Arc::new(AtomicBool::new(false)),
        leaving,
    });
    let (inbox, requests) = tokio::sync::mpsc::channel(256);
    handle.serve::<HoarderProtocol>(inbox).await.map_err(|e| HoarderError::P2p(e.into()))?;
    let deltas = handle.subscribe::<tau_proto::hoarder::HoarderTopic>().await?;
    let local = Local(hoarder.clone());
    let tasks = vec![
        tokio::spawn(service::serve(hoarder.clone(), requests, shutdown.clone())),
        tokio::spawn(reconcile::gossip(hoarder.clone(), deltas, shutdown.clone())),
        tokio::spawn(reconcile::run(hoarder, shutdown)),
    ];
    Ok((tasks, local))
}
