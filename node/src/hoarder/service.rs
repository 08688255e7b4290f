//! The `/tau/hoarder/1` requests.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tau_proto::hoarder::HoarderProtocol;

use futures::StreamExt;
use libp2p::PeerId;
use tau_proto::hoarder::transfer::{self, TransferError};
use tau_proto::hoarder::{
    BlobId, DEFAULT_REPLICAS, HoarderRequest, HoarderResponse, MAX_PIN_RECORDS, PinInfo, PinState,
};
use tau_proto::identity::WriterKey;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::pins::MAX_PINS_PER_BLOB;
use super::store::StoreError;
use super::{Hoarder, Upload, lock, placement};

/// How long a peer waits for the next chunk of an upload in progress.
const UPLOAD_STALL: Duration = Duration::from_secs(60);
/// How long a holder (or a likely one) may take to give a manifest before the next is asked.
const PROBE: Duration = Duration::from_secs(3);
use crate::p2p::Inbound;

pub(super) async fn serve(
    hoarder: Arc<Hoarder>,
    mut requests: mpsc::Receiver<Inbound<HoarderRequest, HoarderResponse>>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            inbound = requests.recv() => {
                let Some(inbound) = inbound else { break };
                // Each request in its own task: a Put waiting for replicas blocks nothing else.
                let hoarder = hoarder.clone();
                tokio::spawn(async move {
                    let response = match hoarder.answer(inbound.peer, inbound.request).await {
                        Ok(response) => response,
                        Err(refusal) => HoarderResponse::Error(refusal.to_string()),
                    };
                    let _ = inbound.reply.send(response);
                });
            }
        }
    }
}

/// How long a fetch waits on one answer from its source (a manifest, a chunk) before it tries
/// another holder.
const STALL: std::time::Duration = std::time::Duration::from_secs(20);

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Refusal> {
    Ok(tokio::task::spawn_blocking(work).await??)
}

/// Why a hoarder request was refused: the text is what the caller reads.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refusal {
    /// The request cannot be served, for the reason given.
    #[error("{0}")]
    Invalid(String),
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blocking store task died.
    #[error("store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The blob could not be fetched from other nodes.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::Invalid(message.into())
}

/// Why a blob could not be fetched.
#[derive(Debug, thiserror::Error)]
pub(super) enum FetchError {
    /// Another fetch of the same blob, which this one waited for, failed.
    #[error("fetching {0} failed")]
    Failed(BlobId),
    /// No node was named to fetch it from.
    #[error("no node holds {0}")]
    NoHolder(BlobId),
    /// Every source failed, each for its reason.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Sources(Vec<TransferError>),
}

/// The owner of a storage's pins, or why `store` is no storage's index.
fn storage_owner(store: &tau_proto::database::StoreId) -> Result<PeerId, Refusal> {
    tau_proto::storage::owner_of(store)
        .ok_or_else(|| invalid(format!("`{store}` is not a storage's index")))
}

/// The most states one answer carries.
const MAX_STATES: usize = 10_000;

impl Hoarder {
    pub(super) async fn answer(
        self: &Arc<Self>,
        peer: PeerId,
        request: HoarderRequest,
    ) -> Result<HoarderResponse, Refusal> {
        match request {
            HoarderRequest::PutStart { manifest, replicas } => {
                manifest.check().map_err(|e| invalid(e.to_string()))?;
                if self.store.has(&manifest.cid) {
                    return Ok(HoarderResponse::Exists);
                }
                if let Some(free) = self.store.free_bytes()
                    && free < manifest.size.saturating_add(super::RESERVE)
                {
                    return Err(invalid(format!(
                        "this node's disk is full ({} MiB free, {} MiB needed with its reserve): \
                         store the blob through another node",
                        free >> 20,
                        manifest.size.saturating_add(super::RESERVE) >> 20
                    )));
                }
                let cid = manifest.cid;
                self.refresh_members().await;
                let replicas = self.replicate(cid, replicas);
                lock(&self.uploads)
                    .insert(cid, Upload { manifest, touched: Instant::now(), replicas });
                Ok(HoarderResponse::Ready)
            }
            HoarderRequest::PutChunk { cid, index, data } => {
                let manifest = {
                    let mut uploads = lock(&self.uploads);
                    let upload = uploads
                        .get_mut(&cid)
                        .ok_or_else(|| invalid(format!("no upload of {cid} started")))?;
                    upload.touched = Instant::now();
                    upload.manifest.clone()
                };
                let store = self.store.clone();
                let result = blocking(move || store.write_chunk(&manifest, index, &data)).await;
                self.chunk_written.notify_waiters();
                if result.is_err() {
                    self.rejected_chunks.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, %cid, index, "refused a chunk that does not match its hash");
                }
                result.map(|()| HoarderResponse::Done)
            }
            HoarderRequest::PutFinish { cid, replicas, storage } => {
                let owner = match storage {
                    None => peer,
                    Some(store) => storage_owner(&store)?,
                };
                self.finish_put(owner, cid, replicas).await
            }
            HoarderRequest::StoragePin { cid, size, storage, replicas } => {
                let owner = storage_owner(&storage)?;
                let size = self.size_of(&cid).unwrap_or(size);
                let known = lock(&self.pins).owners(&cid).contains(&Some(owner));
                if replicas > 0 || known {
                    self.pin(owner, cid, size, replicas)?;
                }
                Ok(HoarderResponse::Done)
            }
            HoarderRequest::StoragePins { storage, after } => {
                let owner = Some(storage_owner(&storage)?);
                let pins = lock(&self.pins).of_owner(owner, after.as_ref(), MAX_PIN_RECORDS);
                Ok(HoarderResponse::PinRecords(pins))
            }
            HoarderRequest::Manifest { cid, in_progress } => {
                // Another hoarder node asks its holders itself: looking for the blob on its
                // behalf would bounce the question between nodes that do not hold it.
                let member = lock(&self.members).known().contains(&peer);
                self.manifest(cid, in_progress, !member).await
            }
            HoarderRequest::Chunk { cid, index, in_progress } => {
                self.chunk(cid, index, in_progress).await
            }
            HoarderRequest::Pin { cid, replicas } => {
                let size = self
                    .size_of(&cid)
                    .ok_or_else(|| invalid(format!("no node is known to hold {cid}")))?;
                self.pin(peer, cid, size, replicas.max(1))?;
                Ok(HoarderResponse::Done)
            }
            HoarderRequest::Unpin { cid } => {
                let size = self.size_of(&cid).unwrap_or(0);
                self.pin(peer, cid, size, 0)?;
                Ok(HoarderResponse::Done)
            }
            HoarderRequest::Has { cid } => Ok(HoarderResponse::Has(self.store.has(&cid))),
            HoarderRequest::States { peers } => {
                let members = lock(&self.members);
                let wanted = if peers.is_empty() {
                    let mut all = members.known();
                    all.push(self.me);
                    all
                } else {
                    peers
                };
                let states = wanted
                    .into_iter()
                    .take(MAX_STATES)
                    .filter_map(|peer| match peer == self.me {
                        true => Some((peer, self.state())),
                        false => members.state_of(&peer).map(|state| (peer, state)),
                    })
                    .collect();
                Ok(HoarderResponse::States(states))
            }
            HoarderRequest::Digest => {
                let mut versions = lock(&self.members).versions();
                versions.push((self.me, lock(&self.said).version));
                let pins = lock(&self.pins).digest();
                Ok(HoarderResponse::Digest(tau_proto::hoarder::HoarderDigest { versions, pins }))
            }
            HoarderRequest::PinRecords => Ok(HoarderResponse::PinRecords(lock(&self.pins).all())),
            HoarderRequest::List => Ok(HoarderResponse::Pins(self.list())),
            HoarderRequest::Replicate { cid, from } => {
                let mut sources = vec![from];
                sources.extend(self.sources(&cid).await.into_iter().filter(|p| *p != from));
                Ok(self.fetch(cid, &sources).await.map(|()| HoarderResponse::Done)?)
            }
            _ => Err(invalid("unsupported hoarder request")),
        }
    }

    /// Sets `peer`'s pin of `cid`: its own, or, from the operator, every pin of it. Lowering
    /// (or unpinning) a blob that others pinned higher leaves it at their factor; a peer that
    /// holds no pin of it can only add one.
    fn pin(&self, peer: PeerId, cid: BlobId, size: u64, factor: u8) -> Result<(), Refusal> {
        let mut pins = lock(&self.pins);
        self.changed();
        if self.operator.is_some() && self.operator == WriterKey::of_peer(&peer) {
            pins.set_all(cid, Some(peer), size, factor);
            return Ok(());
        }
        if factor == 0 && !pins.owners(&cid).contains(&Some(peer)) {
            return Err(invalid(format!(
                "{peer} holds no pin of {cid}: only the client that pinned a blob (with the \
                 same key) or the operator may unpin it"
            )));
        }
        if !pins.has_room(&cid, Some(peer)) {
            return Err(invalid(format!(
                "{cid} has {MAX_PINS_PER_BLOB} pins already: pin it with one of their keys, or \
                 ask the operator"
            )));
        }
        pins.set(cid, Some(peer), size, factor);
        Ok(())
    }

    fn size_of(&self, cid: &BlobId) -> Option<u64> {
        if let Some(pin) = lock(&self.pins).get(cid) {
            return Some(pin.size);
        }
        self.store.manifest(cid).ok().flatten().map(|m| m.size)
    }

    /// Asks the nodes that should hold `cid` to fetch it from this node, now: while an upload is
    /// in progress they take each chunk as it arrives. The receiver tells who has a copy so far
    /// and whether every attempt has ended.
    fn replicate(
        self: &Arc<Self>,
        cid: BlobId,
        replicas: u8,
    ) -> watch::Receiver<(Vec<PeerId>, bool)> {
        let replicas = if replicas == 0 { DEFAULT_REPLICAS } else { replicas };
        let live = self.live();
        let target = usize::from(replicas).min(live.len());
        let others: Vec<PeerId> =
            placement::holders(&cid, &live, target).into_iter().filter(|p| *p != self.me).collect();
        let (sender, receiver) = watch::channel((Vec::new(), others.is_empty()));
        let (handle, me) = (self.handle.clone(), self.me);
        // The first copy first: the Put answers once it is there, and the other copies would
        // only slow it down. They follow one after another.
        tokio::spawn(async move {
            for peer in others {
                match handle
                    .call::<HoarderProtocol>(peer, HoarderRequest::Replicate { cid, from: me })
                    .await
                {
                    Ok(HoarderResponse::Done) => sender.send_modify(|(acked, _)| acked.push(peer)),
                    other => tracing::warn!(%peer, %cid, ?other, "replication failed"),
                }
            }
            sender.send_modify(|(_, ended)| *ended = true);
        });
        receiver
    }

    /// Completes an upload, pins the blob and waits until it is on two nodes (or all live ones).
    async fn finish_put(
        self: &Arc<Self>,
        peer: PeerId,
        cid: BlobId,
        replicas: u8,
    ) -> Result<HoarderResponse, Refusal> {
        let started = Instant::now();
        let replicas = if replicas == 0 { DEFAULT_REPLICAS } else { replicas };
        let upload =
            lock(&self.uploads).get(&cid).map(|u| (u.manifest.clone(), u.replicas.clone()));
        let (manifest, mut progress) = match upload {
            Some((manifest, progress)) => {
                let store = self.store.clone();
                let to_commit = manifest.clone();
                let committed = blocking(move || store.commit(&to_commit)).await;
                lock(&self.uploads).remove(&cid);
                committed?;
                (manifest, progress)
            }
            None => {
                let manifest = self
                    .store
                    .manifest(&cid)?
                    .ok_or_else(|| invalid(format!("no upload of {cid} started")))?;
                self.refresh_members().await;
                (manifest, self.replicate(cid, replicas))
            }
        };
        let committed = started.elapsed();
        self.refresh_members().await;
        self.pin(peer, cid, manifest.size, replicas)?;
        self.publish_delta().await;

        let needed = 2.min(self.live().len());
        let holders = loop {
            let (acked, ended) = progress.borrow_and_update().clone();
            if 1 + acked.len() >= needed || ended {
                break std::iter::once(self.me).chain(acked).collect::<Vec<_>>();
            }
            if progress.changed().await.is_err() {
                break vec![self.me];
            }
        };
        if holders.len() < needed {
            return Err(invalid(format!(
                "{cid} is stored here but no second node took a copy; it will be repaired"
            )));
        }
        tracing::info!(%cid, size = manifest.size, ?committed, total = ?started.elapsed(), "blob stored");
        Ok(HoarderResponse::Stored { holders })
    }

    /// A blob's manifest: from the store, from an upload in progress, or from a holder.
    async fn manifest(
        self: &Arc<Self>,
        cid: BlobId,
        in_progress: bool,
        look_elsewhere: bool,
    ) -> Result<HoarderResponse, Refusal> {
        if let Some(manifest) = self.store.manifest(&cid)? {
            return Ok(HoarderResponse::Manifest(manifest));
        }
        if in_progress && let Some(upload) = lock(&self.uploads).get(&cid) {
            return Ok(HoarderResponse::Manifest(upload.manifest.clone()));
        }
        let holders = self.holders(&cid);
        if !look_elsewhere {
            return Ok(HoarderResponse::NotFound { holders });
        }
        for holder in self.sources(&cid).await {
            let asked = transfer::fetch_manifest(&self.handle, holder, cid, false);
            if let Ok(Ok(manifest)) = tokio::time::timeout(PROBE, asked).await {
                return Ok(HoarderResponse::Manifest(manifest));
            }
        }
        Ok(HoarderResponse::NotFound { holders })
    }

    /// Waits (at most [`UPLOAD_STALL`]) until chunk `index` of an upload in progress is written.
    async fn wait_for_upload_chunk(&self, cid: BlobId, index: u32) -> Option<super::Manifest> {
        let deadline = Instant::now() + UPLOAD_STALL;
        loop {
            let written = self.chunk_written.notified();
            let manifest = lock(&self.uploads).get(&cid).map(|u| u.manifest.clone());
            let manifest = manifest?;
            let hash = manifest.chunks.get(index as usize)?;
            if self.store.has_chunk(hash) {
                return Some(manifest);
            }
            if tokio::time::timeout_at(deadline.into(), written).await.is_err() {
                return None;
            }
        }
    }

    /// A chunk from the local store, or from a holder if this node does not hold the blob (or
    /// its copy turned out corrupt).
    async fn chunk(
        self: &Arc<Self>,
        cid: BlobId,
        index: u32,
        in_progress: bool,
    ) -> Result<HoarderResponse, Refusal> {
        let mut manifest = self.store.manifest(&cid)?;
        if manifest.is_none() && in_progress {
            manifest = self.wait_for_upload_chunk(cid, index).await;
        }
        if let Some(manifest) = manifest {
            let store = self.store.clone();
            match blocking(move || store.read_chunk(&manifest, index)).await {
                Ok(bytes) => return Ok(HoarderResponse::Chunk(bytes)),
                Err(e) => {
                    tracing::warn!(%cid, index, error = %e, "local chunk unusable: asking a holder")
                }
            }
        }
        for holder in self.sources(&cid).await {
            if let Ok(HoarderResponse::Chunk(bytes)) = self
                .handle
                .call::<HoarderProtocol>(
                    holder,
                    HoarderRequest::Chunk { cid, index, in_progress: false },
                )
                .await
            {
                return Ok(HoarderResponse::Chunk(bytes));
            }
        }
        Err(invalid(format!("no node could give chunk {index} of {cid}")))
    }

    /// Fetches a blob from the first of `sources` that gives it whole and correct.
    pub(super) async fn fetch(
        self: &Arc<Self>,
        cid: BlobId,
        sources: &[PeerId],
    ) -> Result<(), FetchError> {
        if self.store.has(&cid) {
            return Ok(());
        }
        // One fetch of a blob at a time: a second asker waits for the first.
        if !lock(&self.fetching).insert(cid) {
            while lock(&self.fetching).contains(&cid) {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            return if self.store.has(&cid) { Ok(()) } else { Err(FetchError::Failed(cid)) };
        }
        let mut errors = Vec::new();
        for source in sources {
            match self.fetch_from(cid, *source).await {
                Ok(()) => {
                    lock(&self.fetching).remove(&cid);
                    return Ok(());
                }
                Err(e) => {
                    if matches!(e, TransferError::BadData { .. }) {
                        self.rejected_chunks.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%cid, error = %e, "a peer sent bad data: trying another");
                    }
                    errors.push(e);
                }
            }
        }
        lock(&self.fetching).remove(&cid);
        Err(if errors.is_empty() { FetchError::NoHolder(cid) } else { FetchError::Sources(errors) })
    }

    async fn fetch_from(
        self: &Arc<Self>,
        cid: BlobId,
        source: PeerId,
    ) -> Result<(), TransferError> {
        // A source that stops answering (cut off, but not yet known dead) is left for the next
        // one after STALL, rather than after the protocol's long request timeout.
        let stalled =
            || TransferError::Peer { peer: source, reason: format!("no answer for {STALL:?}") };
        // A source may still be receiving the blob (replication starts with the upload).
        let manifest =
            tokio::time::timeout(STALL, transfer::fetch_manifest(&self.handle, source, cid, true))
                .await
                .map_err(|_| stalled())??;
        let wanted: Vec<u32> = (0..manifest.chunks.len() as u32)
            .filter(|i| !self.store.has_chunk(&manifest.chunks[*i as usize]))
            .collect();
        let store_err = |e: Refusal| TransferError::Peer { peer: self.me, reason: e.to_string() };
        {
            let mut chunks =
                std::pin::pin!(transfer::chunks(&self.handle, source, &manifest, wanted, true));
            while let Some(chunk) =
                tokio::time::timeout(STALL, chunks.next()).await.map_err(|_| stalled())?
            {
                let (index, data) = chunk?;
                let (store, m) = (self.store.clone(), manifest.clone());
                blocking(move || store.write_chunk(&m, index, &data)).await.map_err(store_err)?;
            }
        }
        let store = self.store.clone();
        blocking(move || store.commit(&manifest))
            .await
            .map_err(|e| TransferError::BadData { peer: source, reason: e.to_string() })?;
        tracing::info!(%cid, from = %source, "blob fetched");
        Ok(())
    }

    /// Every pin with its holders and state.
    pub(super) fn list(&self) -> Vec<PinInfo> {
        let live = self.live().len();
        let members = lock(&self.members);
        let fetching_here = lock(&self.fetching).clone();
        lock(&self.pins)
            .effective()
            .into_iter()
            .filter(|p| p.factor > 0)
            .map(|p| {
                let mut holders = members.holders(&p.cid);
                if self.store.has(&p.cid) {
                    holders.push(self.me);
                    holders.sort();
                }
                let target = usize::from(p.factor).min(live) as u8;
                let state = if holders.len() >= usize::from(target) {
                    PinState::Ok
                } else if members.fetching(&p.cid) || fetching_here.contains(&p.cid) {
                    PinState::Repairing
                } else {
                    PinState::UnderReplicated
                };
                PinInfo { cid: p.cid, size: p.size, factor: p.factor, target, holders, state }
            })
            .collect()
    }
}
