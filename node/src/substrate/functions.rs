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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tau_proto::hoarder::BlobId;
use tau_proto::hoarder::transfer;
use tokio::sync::OnceCell;

use super::engine::{Compiler, Engine, LoadError, Ready};
use crate::{hoarder, p2p};

/// How long a hoarder peer has to start answering for a component before the next is asked.
const PROBE: std::time::Duration = std::time::Duration::from_secs(3);

/// The largest component the node fetches.
const MAX_COMPONENT: u64 = 256 << 20;

/// The component a CID runs as now (the baseline until the optimized one replaces it).
type Current = Arc<Mutex<Arc<Ready>>>;
type Slot = Arc<OnceCell<Result<Current, LoadError>>>;

/// The node's components.
pub struct Functions {
    engine: Arc<Engine>,
    handle: p2p::Handle,
    local: Option<hoarder::Local>,
    slots: Mutex<HashMap<BlobId, Slot>>,
}

impl Functions {
    /// Components run on `engine`, fetched from this node's hoarder store when it has one, else
    /// from hoarder peers.
    pub fn new(engine: Arc<Engine>, handle: p2p::Handle, local: Option<hoarder::Local>) -> Self {
        Self { engine, handle, local, slots: Mutex::default() }
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
        let wasm = match self.fetch(cid, size).await {
            Ok(wasm) => Arc::new(wasm),
            // The blob is not the size its record names: that never changes for a CID.
            Err(e @ LoadError::Invalid(_)) => return Ok(Err(e)),
            Err(e) => return Err(e),
        };
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
                return Ok(optimized.map(|ready| Arc::new(Mutex::new(Arc::new(ready)))));
            }
        };
        tracing::info!(%cid, ?fetched, total = ?started.elapsed(), "component fetched and compiled (baseline)");
        let current: Current = Arc::new(Mutex::new(Arc::new(baseline)));
        let (engine, swap) = (self.engine.clone(), current.clone());
        tokio::task::spawn_blocking(move || {
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

    /// The component's bytes: from the local store, else from the first hoarder peer that has
    /// them (every chunk and the whole are checked against the CID). The blob's manifest must
    /// give the `size` its function record names (which the caller bounded) before a byte of it
    /// is read: a record cannot make the node take in a larger blob.
    async fn fetch(&self, cid: BlobId, size: u64) -> Result<Vec<u8>, LoadError> {
        let wrong_size = |actual: u64| {
            LoadError::Invalid(format!(
                "blob {cid} holds {actual} bytes, not the {size} its function record names"
            ))
        };
        if let Some(local) = &self.local {
            if let Some(actual) = local.size(&cid).filter(|actual| *actual != size) {
                return Err(wrong_size(actual));
            }
            let local = local.clone();
            let read = tokio::task::spawn_blocking(move || local.read(&cid)).await;
            if let Ok(Some(bytes)) = read {
                return Ok(bytes);
            }
        }
        let mut peers = self.handle.peers().await.map_err(|e| LoadError::Io(e.to_string()))?;
        peers.retain(|p| p.services.iter().any(|s| s == "hoarder"));
        // Those that answered a ping most recently first: a peer cut off is still connected for
        // a few seconds, and a request waits for it.
        peers.sort_by_key(|p| p.quiet_ms.unwrap_or(0));
        let mut last = format!("no hoarder node holds {cid}");
        for peer in &peers {
            // A peer that does not give the manifest within PROBE is passed over.
            let probe = transfer::fetch_manifest(&self.handle, peer.peer_id, cid, false);
            let manifest = match tokio::time::timeout(PROBE, probe).await {
                Ok(Ok(manifest)) => manifest,
                Ok(Err(transfer::TransferError::NotFound(_))) => continue,
                Ok(Err(e)) => {
                    last = e.to_string();
                    continue;
                }
                Err(_) => {
                    last = format!("{} gave no answer in {PROBE:?}", peer.peer_id);
                    continue;
                }
            };
            if manifest.size != size {
                return Err(wrong_size(manifest.size));
            }
            let mut bytes = Vec::new();
            let fetched =
                transfer::download_chunks(&self.handle, peer.peer_id, cid, &manifest, &mut bytes);
            match fetched.await {
                Ok(_) => return Ok(bytes),
                Err(transfer::TransferError::NotFound(_)) => {}
                Err(e) => last = e.to_string(),
            }
        }
        Err(LoadError::Io(format!("cannot fetch the component: {last}")))
    }
}
