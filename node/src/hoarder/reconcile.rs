//! State deltas, anti-entropy, and the reconcile loop.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use rand::seq::IndexedRandom;
use tau_proto::cbor;
use tau_proto::hoarder::{HoarderProtocol, HoarderRequest, HoarderResponse, StateDelta};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::members::Applied;
use super::{Hoarder, lock, placement};
use crate::p2p::{GossipMessage, Verdict};

/// How many blobs a node fetches at once.
const PARALLEL_FETCHES: usize = 2;
/// How often the node looks for a change of its own state to gossip.
const DELTA_EVERY: Duration = Duration::from_millis(200);
/// How often it takes who is alive from seer's feed.
const MEMBERS_EVERY: Duration = Duration::from_secs(1);
/// How often it compares digests with a random member (what gossip missed).
const DIGEST_EVERY: Duration = Duration::from_secs(10);
/// Whole states asked for at once.
const PARALLEL_PULLS: usize = 4;

impl Hoarder {
    /// Gossips this node's state delta, if its state changed.
    pub(super) async fn publish_delta(&self) {
        let full = self.store.free_bytes().is_some_and(|free| free < super::RESERVE);
        if self.full.swap(full, Ordering::Relaxed) != full {
            self.changed();
            if full {
                tracing::warn!(
                    reserve_mib = super::RESERVE >> 20,
                    "hoarder disk nearly full: taking no new replicas"
                );
            } else {
                tracing::info!("hoarder disk has room again: taking replicas");
            }
        }
        let Some(delta) = self.delta() else { return };
        self.changed();
        match cbor::to_vec(&delta) {
            Ok(bytes) => {
                if let Err(e) = self.handle.publish::<tau_proto::hoarder::HoarderTopic>(bytes).await
                {
                    // Peers find the change by digest, or ask for the whole state.
                    tracing::trace!(error = %e, "hoarder state delta not sent");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode a state delta"),
        }
    }

    /// Asks `from` for what it knows of the states of `peers` (in the background; one ask of
    /// each node at a time).
    fn pull_states(
        self: &Arc<Self>,
        from: PeerId,
        peers: Vec<PeerId>,
        pulling: &Arc<std::sync::Mutex<HashSet<PeerId>>>,
    ) {
        {
            let mut pulling = lock(pulling);
            if pulling.len() >= PARALLEL_PULLS || !pulling.insert(from) {
                return;
            }
        }
        let (hoarder, pulling) = (self.clone(), pulling.clone());
        tokio::spawn(async move {
            let request = HoarderRequest::States { peers };
            match hoarder.handle.call::<HoarderProtocol>(from, request).await {
                Ok(HoarderResponse::States(states)) => {
                    let mut members = lock(&hoarder.members);
                    for (peer, state) in states.into_iter().filter(|(p, _)| *p != hoarder.me) {
                        members.replace(peer, state);
                    }
                    drop(members);
                    hoarder.changed();
                }
                Ok(other) => tracing::debug!(%from, ?other, "no hoarder states"),
                Err(error) => tracing::debug!(%error, "hoarder states not read"),
            }
            lock(&pulling).remove(&from);
        });
    }

    /// A live member this node is connected to, picked at random (any live member when none
    /// is): whom to ask without a new connection.
    async fn nearby_member(&self) -> Option<PeerId> {
        let alive: Vec<PeerId> = lock(&self.members).alive().to_vec();
        let connected: Vec<PeerId> = match self.handle.nodes("hoarder").await {
            Ok(nodes) => nodes
                .into_iter()
                .filter(|n| n.connected && alive.contains(&n.peer))
                .map(|n| n.peer)
                .collect(),
            Err(_) => Vec::new(),
        };
        let pool = if connected.is_empty() { &alive } else { &connected };
        pool.choose(&mut rand::rng()).copied()
    }

    /// Compares digests with a random live member: asks each node whose state it knows newer
    /// for that state, and merges its pins when they differ.
    async fn compare_digests(self: &Arc<Self>, pulling: &Arc<std::sync::Mutex<HashSet<PeerId>>>) {
        let Some(peer) = self.nearby_member().await else { return };
        self.compare_digests_with(peer, pulling).await;
    }

    /// Compares digests with `peer` (see [`Hoarder::compare_digests`]); false when it did not
    /// answer.
    pub(super) async fn compare_digests_with(
        self: &Arc<Self>,
        peer: PeerId,
        pulling: &Arc<std::sync::Mutex<HashSet<PeerId>>>,
    ) -> bool {
        let digest = match self.handle.call::<HoarderProtocol>(peer, HoarderRequest::Digest).await {
            Ok(HoarderResponse::Digest(digest)) => digest,
            Ok(_) => return false,
            Err(error) => {
                tracing::debug!(%error, "hoarder digest not read");
                return false;
            }
        };
        let behind: Vec<PeerId> = {
            let members = lock(&self.members);
            digest
                .versions
                .iter()
                .filter(|(p, v)| {
                    *p != self.me
                        && members.alive().contains(p)
                        && members.version(p).is_none_or(|known| known < *v)
                })
                .map(|(p, _)| *p)
                .collect()
        };
        if !behind.is_empty() {
            self.pull_states(peer, behind, pulling);
        }
        if digest.pins != lock(&self.pins).digest() {
            match self.handle.call::<HoarderProtocol>(peer, HoarderRequest::PinRecords).await {
                Ok(HoarderResponse::PinRecords(records)) => self.merge_pins(peer, records),
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, "pin records not read"),
            }
        }
        true
    }

    /// Merges pin records from `from`.
    fn merge_pins(&self, from: PeerId, records: Vec<tau_proto::hoarder::PinRecord>) {
        let merged = lock(&self.pins).merge(records);
        if merged.changed {
            self.changed();
        }
        if merged.ahead > 0 {
            let total = self.ahead_pins.fetch_add(merged.ahead, Ordering::Relaxed) + merged.ahead;
            tracing::warn!(%from, refused = merged.ahead, total, "pins stamped too far beyond this node's clock refused");
        }
    }
}

/// Gossips this node's state changes and takes in the others', follows who is alive, and
/// compares digests now and then.
pub(super) async fn gossip(
    hoarder: Arc<Hoarder>,
    mut deltas: mpsc::Receiver<GossipMessage>,
    shutdown: CancellationToken,
) {
    let mut own = tokio::time::interval(DELTA_EVERY);
    own.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut members = tokio::time::interval(MEMBERS_EVERY);
    members.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut digest =
        tokio::time::interval_at(tokio::time::Instant::now() + DIGEST_EVERY, DIGEST_EVERY);
    digest.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let pulling = Arc::new(std::sync::Mutex::new(HashSet::new()));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = own.tick() => hoarder.publish_delta().await,
            _ = members.tick() => {
                hoarder.refresh_members().await;
                // What the nodes not heard from yet hold: from a member nearby, which knows
                // most (a newcomer that holds nothing yet says so in its first delta).
                let unknown = lock(&hoarder.members).unknown();
                if !unknown.is_empty() && let Some(from) = hoarder.nearby_member().await {
                    hoarder.pull_states(from, unknown, &pulling);
                }
            }
            _ = digest.tick() => hoarder.compare_digests(&pulling).await,
            message = deltas.recv() => {
                let Some(message) = message else { break };
                let verdict = match (message.author, cbor::from_slice::<StateDelta>(&message.data)) {
                    (Some(author), Ok(delta)) if author != hoarder.me => {
                        let pins = delta.pins.clone();
                        let applied = lock(&hoarder.members).apply(author, &delta);
                        match applied {
                            Applied::Applied => hoarder.changed(),
                            Applied::Missed => hoarder.pull_states(author, vec![author], &pulling),
                            Applied::Old => {}
                        }
                        hoarder.merge_pins(author, pins);
                        match applied {
                            Applied::Old => Verdict::Ignore,
                            _ => Verdict::Accept,
                        }
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

/// When something changed, and every [`SWEEP_EVERY`] in any case: fetch the pinned blobs this
/// node should hold, release the ones it should not.
pub(super) async fn run(hoarder: Arc<Hoarder>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_live: Vec<PeerId> = Vec::new();
    let mut live_since = Instant::now();
    let mut seen = u64::MAX;
    let mut last_sweep = Instant::now();
    // The last run held back the releases (the membership had just changed): run again once it
    // has settled, without waiting for the next sweep.
    let mut held_back = false;
    let mut leaving = hoarder.leaving.clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            // Drained: its copies go elsewhere from now on.
            Ok(()) = leaving.changed() => hoarder.changed(),
        }
        let changes = hoarder.changes.load(Ordering::Relaxed);
        let busy = !lock(&hoarder.fetching).is_empty();
        let now_settled = held_back && live_since.elapsed() >= SETTLE;
        if changes == seen && !busy && last_sweep.elapsed() < SWEEP_EVERY && !now_settled {
            continue;
        }
        seen = changes;
        last_sweep = Instant::now();
        let live = hoarder.live();
        if live != last_live {
            tracing::info!(members = live.len(), "hoarder membership changed");
            last_live = live.clone();
            live_since = Instant::now();
        }
        let settled = live_since.elapsed() >= SETTLE;
        held_back = !settled;
        reconcile(&hoarder, &live, settled).await;
    }
}

/// How often reconcile runs when nothing changed.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// How long the live members must stay the same before a node lets go of an extra copy. Nodes
/// learn of a change (a node draining, another joining) a beat or two apart, and two of them
/// that each saw the other as a holder could otherwise both let go of one blob: with two nodes
/// draining at once, a pin would briefly fall below its factor.
const SETTLE: Duration = Duration::from_secs(5);

/// An upload with no chunk for this long is abandoned.
const UPLOAD_IDLE: Duration = Duration::from_secs(600);

/// Fetches the copies this node should hold and, once the membership has `settled`, lets go of
/// those it should not that every node that should hold them does.
async fn reconcile(hoarder: &Arc<Hoarder>, live: &[PeerId], settled: bool) {
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
            if busy >= PARALLEL_FETCHES || lock(&hoarder.fetching).contains(&pin.cid) {
                continue;
            }
            let (hoarder, cid) = (hoarder.clone(), pin.cid);
            tokio::spawn(async move {
                // No holder known (this node just came back): where placement says it is.
                let sources = match holders.is_empty() {
                    true => hoarder.likely_holders(&cid).await,
                    false => holders,
                };
                let sources: Vec<PeerId> =
                    sources.into_iter().filter(|p| *p != hoarder.me).collect();
                if let Err(e) = hoarder.fetch(cid, &sources).await {
                    tracing::warn!(%cid, error = %e, "repair fetch failed");
                }
            });
        } else if here
            && settled
            && !wanted.contains(&hoarder.me)
            && wanted.iter().all(|w| holders.contains(w))
        {
            // Every node that should hold it does: this copy is extra.
            tracing::info!(cid = %pin.cid, "extra replica released");
            let _ = hoarder.store.remove(&pin.cid);
        }
    }
}
