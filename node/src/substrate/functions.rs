//! Components by CID: from memory, from this node's compiled cache, or fetched from hoarder and
//! compiled once. Concurrent first requests for one component wait for the same load.
//!
//! A component new to the node is compiled first with the baseline compiler (Winch), which
//! answers the first requests within milliseconds, while the optimizing compiler (Cranelift)
//! works in the background; its result replaces the baseline for later requests and is cached
//! on disk, so a restarted node starts optimized.
//!
//! A component that does not compile or link is remembered as broken (its CID names its bytes,
//! so it will never get better); a fetch that fails is not, and the next request tries again.
//!
//! Memory: a component fetched from a peer is written to disk as it arrives (`fetching/`, its
//! hash checked on the way), so a slow or stalled peer holds none. Its bytes are read into
//! memory only to be compiled, under a budget (`substrate.load_memory`) that every load shares:
//! however many large components are asked for at once, the bytes held stay within it. At most
//! [`MAX_FETCHES`] downloads run at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tau_proto::hoarder::BlobId;
use tau_proto::hoarder::transfer;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use super::engine::{Compiler, Engine, LoadError, Ready};
use crate::{hoarder, p2p};

/// How long a hoarder peer has to start answering for a component before the next is asked.
const PROBE: std::time::Duration = std::time::Duration::from_secs(3);

/// The largest component the node fetches.
const MAX_COMPONENT: u64 = 256 << 20;
/// The most hoarder nodes asked for one component.
const MAX_SOURCES: usize = 8;

/// The component a CID runs as now (the baseline until the optimized one replaces it).
type Current = Arc<Mutex<Arc<Ready>>>;
type Slot = Arc<OnceCell<Result<Current, LoadError>>>;

/// The most components downloaded from peers at once (each holds up to
/// [`transfer::WINDOW`] chunks in memory while it runs).
const MAX_FETCHES: usize = 8;

/// The memory budget's unit: one permit per MiB.
const MIB: u64 = 1 << 20;

/// The node's components.
pub struct Functions {
    engine: Arc<Engine>,
    handle: p2p::Handle,
    local: Option<hoarder::Local>,
    slots: Mutex<HashMap<BlobId, Slot>>,
    /// Component bytes held in memory to be compiled, one permit per MiB.
    budget: Arc<Semaphore>,
    budget_mib: u32,
    /// Where fetched components are written as they arrive.
    fetching: PathBuf,
    /// Downloads running, at most [`MAX_FETCHES`].
    fetches: Semaphore,
}

/// Where a component's checked bytes are, before they are read to be compiled.
enum Fetched {
    /// In this node's hoarder store.
    Local(hoarder::Local),
    /// Fetched into memory (the disk failed).
    Memory(Vec<u8>),
    /// In a file of the `fetching` folder, removed once read.
    File(PathBuf),
}

/// Removes a file of the `fetching` folder when dropped (a failed or abandoned download).
struct Partial(PathBuf);

impl Partial {
    /// Keeps the file: it is complete.
    fn keep(mut self) {
        self.0 = PathBuf::new();
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl Functions {
    /// Components run on `engine`, fetched from this node's hoarder store when it has one, else
    /// from hoarder peers into `fetching` (emptied now: what is there is from an earlier run);
    /// at most `load_memory` bytes of them held at once to be compiled.
    pub fn new(
        engine: Arc<Engine>,
        handle: p2p::Handle,
        local: Option<hoarder::Local>,
        fetching: &Path,
        load_memory: u64,
    ) -> Result<Self, LoadError> {
        let io = |e: std::io::Error| LoadError::Io(format!("{}: {e}", fetching.display()));
        match std::fs::remove_dir_all(fetching) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        std::fs::create_dir_all(fetching).map_err(io)?;
        let budget_mib = u32::try_from(load_memory / MIB).unwrap_or(u32::MAX).max(1);
        Ok(Self {
            engine,
            handle,
            local,
            slots: Mutex::default(),
            budget: Arc::new(Semaphore::new(budget_mib as usize)),
            budget_mib,
            fetching: fetching.to_path_buf(),
            fetches: Semaphore::new(MAX_FETCHES),
        })
    }

    /// The ready component `cid` (of `size` bytes).
    pub async fn get(&self, cid: BlobId, size: u64) -> Result<Arc<Ready>, LoadError> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            slots.entry(cid).or_default().clone()
        };
        match slot.get_or_try_init(|| self.load(cid, size)).await? {
            Ok(current) => {
                Ok(current.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
            }
            Err(e) => Err(e.clone()),
        }
    }

    /// `Err` is a fetch failure (not remembered); `Ok(Err)` a broken component (remembered).
    async fn load(&self, cid: BlobId, size: u64) -> Result<Result<Current, LoadError>, LoadError> {
        let started = Instant::now();
        let engine = self.engine.clone();
        let cached = tokio::task::spawn_blocking(move || engine.load_cached(&cid))
            .await
            .map_err(|e| LoadError::Io(e.to_string()))?;
        if let Some(ready) = cached {
            tracing::debug!(%cid, elapsed = ?started.elapsed(), "component loaded from the compiled cache");
            return Ok(Ok(Arc::new(Mutex::new(Arc::new(ready)))));
        }
        if size > MAX_COMPONENT {
            return Ok(Err(LoadError::Invalid(format!(
                "the component is {size} bytes, more than the {MAX_COMPONENT} a node runs"
            ))));
        }
        // The bytes are held until the optimizing compiler is done with them: under the budget
        // (taken before the download when that goes to memory).
        let mut held = None;
        let fetched = match self.fetch(cid, size, &mut held).await {
            Ok(fetched) => fetched,
            // The blob is not the size its record names: that never changes for a CID.
            Err(e @ LoadError::Invalid(_)) => return Ok(Err(e)),
            Err(e) => return Err(e),
        };
        if held.is_none() {
            held = Some(self.hold(size).await?);
        }
        let local = matches!(fetched, Fetched::Local(_));
        let wasm = match read(cid, fetched).await {
            Ok(wasm) => wasm,
            // A damaged local copy (hoarder repairs it): from a peer this time.
            Err(e) if local => {
                tracing::warn!(%cid, error = %e, "the local copy is unreadable, fetching it");
                match self.fetch_remote(cid, size, &mut held).await {
                    Ok(fetched) => read(cid, fetched).await?,
                    Err(e @ LoadError::Invalid(_)) => return Ok(Err(e)),
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let permit = held.ok_or_else(|| LoadError::Io("no memory budget held".into()))?;
        let wasm = Arc::new(wasm);
        let fetched = started.elapsed();
        let (engine, bytes) = (self.engine.clone(), wasm.clone());
        let baseline = tokio::task::spawn_blocking(move || engine.compile_baseline(&bytes))
            .await
            .map_err(|e| LoadError::Io(e.to_string()))?;
        let baseline = match baseline {
            Ok(ready) => ready,
            Err(e) => {
                // Winch does not take every component Cranelift does: try the optimizer at once.
                tracing::debug!(%cid, error = %e, "baseline compile failed");
                let engine = self.engine.clone();
                let optimized = tokio::task::spawn_blocking(move || engine.compile(&cid, &wasm))
                    .await
                    .map_err(|e| LoadError::Io(e.to_string()))?;
                if let Err(e) = &optimized {
                    tracing::warn!(%cid, error = %e, "component refused");
                }
                drop(permit);
                return Ok(optimized.map(|ready| Arc::new(Mutex::new(Arc::new(ready)))));
            }
        };
        tracing::info!(%cid, ?fetched, total = ?started.elapsed(), "component fetched and compiled (baseline)");
        let current: Current = Arc::new(Mutex::new(Arc::new(baseline)));
        let (engine, swap) = (self.engine.clone(), current.clone());
        tokio::task::spawn_blocking(move || {
            let _permit: OwnedSemaphorePermit = permit;
            let started = Instant::now();
            match engine.compile(&cid, &wasm) {
                Ok(optimized) => {
                    *swap.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Arc::new(optimized);
                    tracing::info!(%cid, elapsed = ?started.elapsed(), "component optimized");
                }
                Err(e) => {
                    tracing::warn!(%cid, error = %e, "component not optimized: it stays on the baseline compiler")
                }
            }
        });
        Ok(Ok(current))
    }

    /// Which compiler serves `cid` now, if it is loaded.
    pub fn compiler(&self, cid: &BlobId) -> Option<Compiler> {
        let slot =
            self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(cid)?.clone();
        let current = slot.get()?.as_ref().ok()?.clone();
        let compiler = current.lock().unwrap_or_else(std::sync::PoisonError::into_inner).compiler;
        Some(compiler)
    }

    /// Where the component's bytes are: the local store, else a file the first hoarder peer
    /// that has them was downloaded to (every chunk and the whole checked against the CID). The
    /// blob's manifest must give the `size` its function record names (which the caller
    /// bounded) before a byte of it is fetched: a record cannot make the node take in a larger
    /// blob.
    async fn fetch(
        &self,
        cid: BlobId,
        size: u64,
        held: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<Fetched, LoadError> {
        if let Some(local) = &self.local {
            match local.size(&cid) {
                Some(actual) if actual != size => return Err(wrong_size(cid, actual, size)),
                Some(_) => return Ok(Fetched::Local(local.clone())),
                None => {}
            }
        }
        self.fetch_remote(cid, size, held).await
    }

    /// The budget for `size` bytes of component in memory.
    async fn hold(&self, size: u64) -> Result<OwnedSemaphorePermit, LoadError> {
        let wanted =
            u32::try_from(size.div_ceil(MIB)).unwrap_or(u32::MAX).clamp(1, self.budget_mib);
        let permit = self.budget.clone().acquire_many_owned(wanted).await;
        permit.map_err(|e| LoadError::Io(e.to_string()))
    }

    /// [`Self::fetch`] from hoarder peers only: to disk, or, when the disk fails (full), into
    /// memory under the budget (put in `held`, unless it holds it already).
    async fn fetch_remote(
        &self,
        cid: BlobId,
        size: u64,
        held: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<Fetched, LoadError> {
        let _turn = self.fetches.acquire().await.map_err(|e| LoadError::Io(e.to_string()))?;
        let mut peers =
            self.handle.nodes("hoarder").await.map_err(|e| LoadError::Io(e.to_string()))?;
        // Connected ones first, those that answered a ping most recently first: a peer cut off
        // is still connected for a few seconds, and a request waits for it. Any hoarder node
        // gives a blob it does not hold from one that does.
        peers.sort_by_key(|p| (!p.connected, p.quiet.unwrap_or_default()));
        peers.truncate(MAX_SOURCES);
        // A peer that does not hold the blob names the holders it knows: they are asked next.
        let mut queue: Vec<libp2p::PeerId> = peers.iter().rev().map(|p| p.peer).collect();
        let mut asked: Vec<libp2p::PeerId> = Vec::new();
        let mut last = format!("no hoarder node holds {cid}");
        while let Some(peer) = queue.pop() {
            if asked.contains(&peer) || asked.len() >= 2 * MAX_SOURCES {
                continue;
            }
            asked.push(peer);
            // A peer that does not give the manifest within PROBE is passed over.
            let probe = crate::hoarder::ask_manifest(&self.handle, peer, cid);
            let manifest = match tokio::time::timeout(PROBE, probe).await {
                Ok(Ok(crate::hoarder::ManifestAnswer::Found(manifest))) => manifest,
                Ok(Ok(crate::hoarder::ManifestAnswer::NotHeld(holders))) => {
                    queue.extend(holders.into_iter().filter(|h| !asked.contains(h)));
                    continue;
                }
                Ok(Err(e)) => {
                    last = e;
                    continue;
                }
                Err(_) => {
                    last = format!("{peer} gave no answer in {PROBE:?}");
                    continue;
                }
            };
            if manifest.size != size {
                return Err(wrong_size(cid, manifest.size, size));
            }
            let path = self.fetching.join(format!("{cid}.part"));
            let fetched = match self.download(peer, cid, &manifest, &path).await {
                Ok(()) => return Ok(Fetched::File(path)),
                Err(transfer::TransferError::Io { path, source }) => {
                    tracing::warn!(%cid, %path, error = %source, "cannot write a fetched component to disk: fetching it into memory");
                    if held.is_none() {
                        *held = Some(self.hold(size).await?);
                    }
                    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                    let download =
                        transfer::download_chunks(&self.handle, peer, cid, &manifest, &mut bytes);
                    download.await.map(|_| Fetched::Memory(bytes))
                }
                Err(e) => Err(e),
            };
            match fetched {
                Ok(fetched) => return Ok(fetched),
                Err(transfer::TransferError::NotFound(_)) => {}
                Err(e) => last = e.to_string(),
            }
        }
        Err(LoadError::Io(format!("cannot fetch the component: {last}")))
    }

    /// Blob `cid` from `peer` into the file at `path` (removed unless the whole blob is there).
    async fn download(
        &self,
        peer: libp2p::PeerId,
        cid: BlobId,
        manifest: &tau_proto::hoarder::Manifest,
        path: &Path,
    ) -> Result<(), transfer::TransferError> {
        let partial = Partial(path.to_path_buf());
        let io = |source| transfer::TransferError::Io { path: path.display().to_string(), source };
        let mut file = tokio::io::BufWriter::new(tokio::fs::File::create(path).await.map_err(io)?);
        // Flushed, and read back at once: a crash empties the folder at the next start, so it
        // is never synced to disk.
        transfer::download_chunks(&self.handle, peer, cid, manifest, &mut file).await?;
        partial.keep();
        Ok(())
    }
}

fn wrong_size(cid: BlobId, actual: u64, size: u64) -> LoadError {
    LoadError::Invalid(format!(
        "blob {cid} holds {actual} bytes, not the {size} its function record names"
    ))
}

/// The checked bytes of `fetched`, read into memory; a fetched file is removed.
async fn read(cid: BlobId, fetched: Fetched) -> Result<Vec<u8>, LoadError> {
    let read = tokio::task::spawn_blocking(move || match fetched {
        Fetched::Local(local) => {
            local.read(&cid).ok_or_else(|| format!("blob {cid} left this node's store"))
        }
        Fetched::Memory(bytes) => Ok(bytes),
        Fetched::File(path) => {
            let partial = Partial(path);
            std::fs::read(&partial.0).map_err(|e| format!("{}: {e}", partial.0.display()))
        }
    });
    read.await.map_err(|e| LoadError::Io(e.to_string()))?.map_err(LoadError::Io)
}
