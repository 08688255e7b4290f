//! The `hoarder` service: content-addressed blobs kept at a replication factor, repaired when
//! nodes leave.
//!
//! - [`store`]: chunks and manifests on disk, written atomically, checked on every read.
//! - [`placement`]: rendezvous hashing over the live members.
//! - [`members`]: who is alive (heartbeats on `tau/hoarder/1` every second; dead after three
//!   missed) and what each holds and fetches.
//! - [`pins`]: every pin (blob, owner, size, factor), merged from heartbeats, kept on disk; a
//!   blob's factor is the highest of its owners' pins, and only a pin's owner or the operator
//!   changes it.
//! - `service`: the `/tau/hoarder/1` requests; uploads; a `Put` answers once the blob is on two
//!   nodes (or all, where fewer are live).
//! - `reconcile`: every second, each node fetches the pinned blobs it should hold and does not,
//!   and releases those it holds but should not, once every node that should hold them does.
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
use tau_proto::hoarder::HoarderProtocol;

use libp2p::PeerId;
use tau_proto::hoarder::Manifest;
use tau_proto::hoarder::transfer::Asker;
use tau_proto::hoarder::{BlobId, HoarderRequest, HoarderResponse};
use tau_proto::identity::WriterKey;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::p2p;
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
    /// The connected nodes that run hoarder, refreshed every beat.
    connected: Mutex<Vec<PeerId>>,
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
    /// This node's disk has less than [`RESERVE`] free: it takes no new replicas.
    full: AtomicBool,
}

/// Free space below which a node takes no new replicas, so that a full disk fails no write
/// halfway and leaves the node room for its registry and counters.
pub const RESERVE: u64 = 32 << 20;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hoarder {
    /// The live hoarder nodes that take replicas (their disks are not full), this one included
    /// unless its own is, sorted: where blobs are placed.
    fn live(&self) -> Vec<PeerId> {
        let connected = lock(&self.connected).clone();
        let members = lock(&self.members);
        let mut live = members.live_with(&connected);
        live.retain(|peer| !members.is_full(peer));
        drop(members);
        if !self.full.load(Ordering::Relaxed) {
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
}

impl Hoarder {
    /// Refreshes the connected hoarder nodes from the p2p task.
    async fn refresh_connected(&self) {
        if let Ok(peers) = self.handle.peers().await {
            *lock(&self.connected) = peers
                .into_iter()
                .filter(|p| p.services.iter().any(|s| s == "hoarder"))
                .map(|p| p.peer_id)
                .collect();
        }
    }
}

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

/// The node's own blob store, read in process by its other services (substrate).
#[derive(Clone)]
pub struct Local(Arc<BlobStore>);

impl Local {
    /// The size of blob `cid`, from its manifest, if this node holds it.
    pub fn size(&self, cid: &tau_proto::hoarder::BlobId) -> Option<u64> {
        Some(self.0.manifest(cid).ok()??.size)
    }

    /// The whole blob `cid`, if this node holds it (each chunk is checked as it is read).
    pub fn read(&self, cid: &tau_proto::hoarder::BlobId) -> Option<Vec<u8>> {
        let manifest = self.0.manifest(cid).ok()??;
        let mut bytes = Vec::with_capacity(manifest.size as usize);
        for index in 0..manifest.chunks.len() as u32 {
            bytes.extend(self.0.read_chunk(&manifest, index).ok()?);
        }
        Some(bytes)
    }
}

/// Opens the blob store in `data_dir` and starts the service.
pub async fn start(
    handle: p2p::Handle,
    data_dir: &Path,
    operator: Option<WriterKey>,
    shutdown: CancellationToken,
) -> Result<(Vec<JoinHandle<()>>, Local), HoarderError> {
    let root = data_dir.join("hoarder");
    let store = BlobStore::open(&root)?;
    let held = store.held()?.len();
    let pins = PinTable::load(&root.join("pins.cbor"));
    tracing::info!(held, pins = pins.all().len(), "hoarder store opened");
    let hoarder = Arc::new(Hoarder {
        me: handle.peer_id(),
        handle: handle.clone(),
        store: Arc::new(store),
        pins: Mutex::new(pins),
        members: Mutex::default(),
        connected: Mutex::default(),
        fetching: Mutex::default(),
        uploads: Mutex::default(),
        chunk_written: tokio::sync::Notify::new(),
        rejected_chunks: AtomicU64::new(0),
        ahead_pins: AtomicU64::new(0),
        operator,
        full: AtomicBool::new(false),
    });
    let (inbox, requests) = tokio::sync::mpsc::channel(256);
    handle.serve::<HoarderProtocol>(inbox).await.map_err(|e| HoarderError::P2p(e.into()))?;
    let beats = handle.subscribe::<tau_proto::hoarder::HoarderTopic>().await?;
    let local = Local(hoarder.store.clone());
    let tasks = vec![
        tokio::spawn(service::serve(hoarder.clone(), requests, shutdown.clone())),
        tokio::spawn(reconcile::heartbeats(hoarder.clone(), beats, shutdown.clone())),
        tokio::spawn(reconcile::run(hoarder, shutdown)),
    ];
    Ok((tasks, local))
}
