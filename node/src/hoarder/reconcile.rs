//! Heartbeats and the reconcile loop.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use libp2p::PeerId;
use tau_proto::cbor;
use tau_proto::hoarder::Heartbeat;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::members::BEAT;
use super::{Hoarder, lock, placement};
use crate::p2p::{GossipMessage, Verdict};

/// How many blobs a node fetches at once.
const PARALLEL_FETCHES: usize = 2;

impl Hoarder {
    /// Publishes this node's heartbeat.
    pub(super) async fn beat(&self) {
        let full = self.store.free_bytes().is_some_and(|free| free < super::RESERVE);
        if self.full.swap(full, Ordering::Relaxed) != full {
            if full {
                tracing::warn!(
                    reserve_mib = super::RESERVE >> 20,
                    "hoarder disk nearly full: taking no new replicas"
                );
            } else {
                tracing::info!("hoarder disk has room again: taking replicas");
            }
        }
        let beat = Heartbeat {
            held: self.store.held().unwrap_or_default(),
            fetching: lock(&self.fetching).iter().copied().collect(),
            pins: lock(&self.pins).all(),
            full,
        };
        match cbor::to_vec(&beat) {
            Ok(bytes) => {
                if let Err(e) = self.handle.publish::<tau_proto::hoarder::HoarderTopic>(bytes).await
                {
                    tracing::trace!(error = %e, "hoarder heartbeat not sent");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode the heartbeat"),
        }
    }
}

/// Sends a heartbeat every [`BEAT`] and takes in the others'.
pub(super) async fn heartbeats(
    hoarder: Arc<Hoarder>,
    mut beats: mpsc::Receiver<GossipMessage>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(BEAT);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                hoarder.refresh_connected().await;
                hoarder.beat().await;
            }
            message = beats.recv() => {
                let Some(message) = message else { break };
                let verdict = match (message.author, cbor::from_slice::<Heartbeat>(&message.data)) {
                    (Some(author), Ok(beat)) if author != hoarder.me => {
                        lock(&hoarder.members).record(author, &beat);
                        let merged = lock(&hoarder.pins).merge(beat.pins);
                        if merged.ahead > 0 {
                            let total = hoarder.ahead_pins.fetch_add(merged.ahead, Ordering::Relaxed) + merged.ahead;
                            tracing::warn!(%author, refused = merged.ahead, total, "pins stamped too far beyond this node's clock refused");
                        }
                        Verdict::Accept
                    }
                    (Some(_), Ok(_)) => Verdict::Ignore,
                    _ => Verdict::Reject,
                };
                if hoarder.handle.validate(message.id, verdict).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Every second: fetch the pinned blobs this node should hold, release the ones it should not.
pub(super) async fn run(hoarder: Arc<Hoarder>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_live: Vec<PeerId> = Vec::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let live = hoarder.live();
        if live != last_live {
            tracing::info!(members = live.len(), "hoarder membership changed");
            last_live = live.clone();
        }
        reconcile(&hoarder, &live).await;
    }
}

/// An upload with no chunk for this long is abandoned.
const UPLOAD_IDLE: Duration = Duration::from_secs(600);

async fn reconcile(hoarder: &Arc<Hoarder>, live: &[PeerId]) {
    lock(&hoarder.pins).prune();
    lock(&hoarder.uploads).retain(|cid, upload| {
        let keep = upload.touched.elapsed() < UPLOAD_IDLE;
        if !keep {
            tracing::warn!(%cid, "upload abandoned");
        }
        keep
    });
    let held: HashSet<_> = hoarder.store.held().unwrap_or_default().into_iter().collect();
    let pins = lock(&hoarder.pins).effective();
    for pin in pins {
        let here = held.contains(&pin.cid);
        if pin.factor == 0 {
            if here {
                tracing::info!(cid = %pin.cid, "unpinned: releasing");
                let _ = hoarder.store.remove(&pin.cid);
            }
            continue;
        }
        let target = usize::from(pin.factor).min(live.len());
        let wanted = placement::holders(&pin.cid, live, target);
        let holders = lock(&hoarder.members).holders(&pin.cid);
        if wanted.contains(&hoarder.me) && !here {
            let busy = lock(&hoarder.fetching).len();
            if busy >= PARALLEL_FETCHES
                || lock(&hoarder.fetching).contains(&pin.cid)
                || holders.is_empty()
            {
                continue;
            }
            let (hoarder, cid) = (hoarder.clone(), pin.cid);
            tokio::spawn(async move {
                if let Err(e) = hoarder.fetch(cid, &holders).await {
                    tracing::warn!(%cid, error = %e, "repair fetch failed");
                }
            });
        } else if here
            && !wanted.contains(&hoarder.me)
            && wanted.iter().all(|w| holders.contains(w))
        {
            // Every node that should hold it does: this copy is extra.
            tracing::info!(cid = %pin.cid, "extra replica released");
            let _ = hoarder.store.remove(&pin.cid);
        }
    }
}
