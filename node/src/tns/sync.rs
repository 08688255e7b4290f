//! Anti-entropy: compare bucket digests with one peer, pull what it has newer, push what it
//! lacks. A peer that appears (new, restarted, back from a partition) is synced with at once;
//! otherwise one peer in turn every [`SYNC_INTERVAL`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tau_proto::tns::TnsProtocol;

use libp2p::PeerId;
use tau_proto::tns::{MAX_PAGE, MAX_PAGE_BYTES, Record, TnsRequest, TnsResponse};
use tokio_util::sync::CancellationToken;

use super::store::{apply_order, precedence};
use super::{CATCH_UP_LIMIT, SYNC_INTERVAL, Shared};
use crate::db::DbError;
use crate::p2p;

/// How often the loop looks for new tns peers (it syncs with a new one at once).
const PEER_CHECK: Duration = Duration::from_millis(100);

/// How many tns nodes a starting node syncs with (fewer if fewer are connected) before its
/// registry counts as caught up.
const CATCH_UP_PEERS: usize = 3;

/// How soon a new peer is tried again after a round with it failed (it may not yet know this
/// node is admitted, and refuse it until it does).
const PEER_RETRY: Duration = Duration::from_secs(1);

pub(super) async fn run(shared: Arc<Shared>, handle: p2p::Handle, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(PEER_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Peers synced with since they (re)appeared, and when each new peer was last tried.
    let mut seen: HashSet<PeerId> = HashSet::new();
    let mut tried: HashMap<PeerId, Instant> = HashMap::new();
    let mut turn = 0usize;
    let mut last_round = Instant::now();
    let since_start = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        if !*shared.caught_up.borrow() && since_start.elapsed() >= CATCH_UP_LIMIT {
            tracing::warn!(
                "no anti-entropy round with another tns node finished within {}s: serving the \
                 registry as it is",
                CATCH_UP_LIMIT.as_secs()
            );
            shared.caught_up.send_replace(true);
        }
        let Ok(nodes) = handle.nodes("tns").await else { break };
        let mut tns_peers: Vec<PeerId> = nodes.iter().map(|n| n.peer).collect();
        if tns_peers.is_empty() {
            continue;
        }
        tns_peers.sort();
        // A peer counts as new when it connects (again): gone and back, it may have missed
        // the most. One not connected is synced with in turn (dialed on demand).
        let connected: Vec<PeerId> = nodes.iter().filter(|n| n.connected).map(|n| n.peer).collect();
        seen.retain(|p| connected.contains(p));
        tried.retain(|p, _| tns_peers.contains(p));
        // A new peer (or one back) goes at once, each of them, and again a second after a
        // failed round until one succeeds: it may have missed the most. Otherwise one peer in
        // turn every SYNC_INTERVAL.
        let fresh = connected.iter().find(|p| {
            !seen.contains(p) && tried.get(p).is_none_or(|at| at.elapsed() >= PEER_RETRY)
        });
        let peer = match fresh {
            Some(peer) => *peer,
            None if last_round.elapsed() >= SYNC_INTERVAL => {
                turn = turn.wrapping_add(1);
                tns_peers[turn % tns_peers.len()]
            }
            None => continue,
        };
        last_round = Instant::now();
        tried.insert(peer, last_round);
        let started = Instant::now();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            result = sync_with(&shared, &handle, peer) => match result {
                Ok((pulled, pushed)) => {
                    seen.insert(peer);
                    // Caught up once synced with every tns node connected, or with a few: a
                    // joining node connects to its seeds first, which hold the registry.
                    if !*shared.caught_up.borrow() && caught_up(&seen, &connected) {
                        shared.caught_up.send_replace(true);
                        tracing::info!(peers = seen.len(), after = ?since_start.elapsed(), "tns caught up");
                    }
                    if let Ok(mut last) = shared.last_sync.lock() {
                        last.insert(peer, Instant::now());
                    }
                    if pulled + pushed > 0 {
                        tracing::info!(%peer, pulled, pushed, took = ?started.elapsed(), "tns anti-entropy repaired");
                    }
                }
                Err(e) => tracing::debug!(%peer, error = %e, "tns anti-entropy failed"),
            }
        }
    }
}

/// Whether a starting node that has synced with `seen` has caught up: with every tns node it is
/// connected to, or with [`CATCH_UP_PEERS`] of them.
fn caught_up(seen: &HashSet<PeerId>, connected: &[PeerId]) -> bool {
    !seen.is_empty() && seen.len() >= connected.len().min(CATCH_UP_PEERS)
}

/// Why an anti-entropy round stopped.
#[derive(Debug, thiserror::Error)]
pub(super) enum SyncError {
    /// The peer could not be asked.
    #[error(transparent)]
    Request(#[from] p2p::RequestError),
    /// The peer answered something that does not fit.
    #[error("unexpected answer to {request}: {answer}")]
    Unexpected { request: &'static str, answer: String },
    /// This node's store failed.
    #[error(transparent)]
    Store(#[from] DbError),
}

fn unexpected(request: &'static str, answer: &TnsResponse) -> SyncError {
    SyncError::Unexpected { request, answer: format!("{answer:?}") }
}

/// One anti-entropy round with `peer`: returns how many records were pulled and pushed.
pub(super) async fn sync_with(
    shared: &Shared,
    handle: &p2p::Handle,
    peer: PeerId,
) -> Result<(usize, usize), SyncError> {
    let digests = shared.store().digests().to_vec();
    let (buckets, theirs) =
        match handle.call::<TnsProtocol>(peer, TnsRequest::Sync { digests }).await {
            Ok(TnsResponse::Diff { buckets, summaries }) => (buckets, summaries),
            Ok(other) => return Err(unexpected("Sync", &other)),
            Err(e) => return Err(e.into()),
        };
    if buckets.is_empty() {
        return Ok((0, 0));
    }
    // Decide what to pull and what to push, under one short lock.
    let (pull, push) = {
        let store = shared.store();
        let operator = shared.operator.as_ref();
        let theirs_by_key: HashMap<&str, _> = theirs.iter().map(|s| (s.key.as_str(), s)).collect();
        let mut pull: Vec<String> = theirs
            .iter()
            .filter(|t| {
                store.summary(&t.key).is_none_or(|ours| precedence(t, ours, operator).is_gt())
            })
            .map(|t| t.key.clone())
            .collect();
        // Projects before their records: a record whose project is not stored yet is refused.
        pull.sort_by_key(|key| apply_order(key));
        let mut push: Vec<Record> = Vec::new();
        for ours in store.summaries(&buckets) {
            let newer = theirs_by_key
                .get(ours.key.as_str())
                .is_none_or(|t| precedence(&ours, t, operator).is_gt());
            if newer {
                match store.get(&ours.key) {
                    Ok(Some(record)) => push.push(record),
                    Ok(None) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        push.sort_by_key(|record| apply_order(&record.key));
        (pull, push)
    };
    let mut pulled = 0;
    for keys in pull.chunks(MAX_PAGE as usize) {
        // An answer holds at most MAX_PAGE_BYTES: ask again for what it left out.
        let mut keys: Vec<String> = keys.to_vec();
        while !keys.is_empty() {
            let request = TnsRequest::Get { keys: keys.clone() };
            let records = match handle.call::<TnsProtocol>(peer, request).await {
                Ok(TnsResponse::Records(records)) => records,
                Ok(other) => return Err(unexpected("Get", &other)),
                Err(e) => return Err(e.into()),
            };
            let got: HashSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
            let before = keys.len();
            keys.retain(|key| !got.contains(key.as_str()));
            let progressed = keys.len() < before;
            let applied = shared.apply(records)?;
            pulled += applied.stored.len();
            if !progressed {
                break;
            }
        }
    }
    let pushed = push.len();
    for records in tau_proto::tns::batches(push, MAX_PAGE_BYTES) {
        match handle.call::<TnsProtocol>(peer, TnsRequest::Put { records }).await {
            Ok(TnsResponse::Put(_)) => {}
            Ok(other) => return Err(unexpected("Put", &other)),
            Err(e) => return Err(e.into()),
        }
    }
    Ok((pulled, pushed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_starting_node_is_caught_up_after_every_connected_tns_node_or_three() {
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        let seen = |n: usize| peers[..n].iter().copied().collect::<HashSet<_>>();
        assert!(!caught_up(&seen(0), &peers[..2]), "no round yet");
        assert!(!caught_up(&seen(1), &peers[..2]), "one of two connected");
        assert!(caught_up(&seen(2), &peers[..2]));
        assert!(!caught_up(&seen(2), &peers));
        assert!(caught_up(&seen(3), &peers), "three of five");
        assert!(caught_up(&seen(1), &[]), "a round with a node dialed on demand");
    }
}
