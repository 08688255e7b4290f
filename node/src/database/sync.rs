//! Anti-entropy: every [`super::SYNC_INTERVAL`] each store this node holds is compared with one
//! of its other holders (in turn), by [`BUCKETS`] digests; each bucket that differs is pulled
//! (the peer's states merged here) and pushed (this node's states merged there). Merging is a
//! join, so the two end with the same states whatever either had.

use std::sync::Arc;

use libp2p::PeerId;
use tau_proto::database::{BUCKETS, DatabaseProtocol, DatabaseRequest, DatabaseResponse, StoreId};
use tokio_util::sync::CancellationToken;

use super::service::{Shared, chunks};
use crate::p2p::RequestError;

/// The most stores compared in one round.
const STORES_PER_ROUND: usize = 64;

pub(crate) async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut round: usize = 0;
    let mut interval = tokio::time::interval(super::SYNC_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let stores = shared.store.stores();
        if stores.is_empty() {
            continue;
        }
        let start = (round * STORES_PER_ROUND) % stores.len();
        for info in stores.iter().cycle().skip(start).take(STORES_PER_ROUND.min(stores.len())) {
            let round_sync = sync_store(&shared, &info.store, round);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                result = round_sync => if let Err(e) = result {
                    tracing::debug!(store = %info.store, error = %e, "anti-entropy round failed");
                },
            }
        }
        round = round.wrapping_add(1);
    }
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error(transparent)]
    Call(#[from] RequestError),
    #[error("{0}")]
    Refused(String),
    #[error("an answer that does not fit the request")]
    Unexpected,
}

async fn sync_store(shared: &Shared, store: &StoreId, round: usize) -> Result<(), SyncError> {
    let Ok(record) = shared.existing(store).await else {
        // A store no project declares any more: nothing to compare.
        return Ok(());
    };
    let me = shared.handle.peer_id();
    let others: Vec<PeerId> = shared
        .placement
        .holders(store, record.replicas)
        .await
        .into_iter()
        .filter(|p| *p != me)
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    let peer = others[round % others.len()];
    let call = |request| shared.handle.call::<DatabaseProtocol>(peer, request);
    let theirs = match call(DatabaseRequest::Digest { store: store.clone() }).await? {
        DatabaseResponse::Digest(digests) if digests.len() == BUCKETS => digests,
        DatabaseResponse::Refused(e) => return Err(SyncError::Refused(e)),
        _ => return Err(SyncError::Unexpected),
    };
    let ours = shared.store.digests(store);
    for bucket in (0..BUCKETS).filter(|b| ours[*b] != theirs[*b]) {
        // Pull.
        let mut after = None;
        loop {
            let request =
                DatabaseRequest::Bucket { store: store.clone(), bucket: bucket as u8, after };
            let (entries, more) = match call(request).await? {
                DatabaseResponse::Entries { entries, more } => (entries, more),
                DatabaseResponse::Refused(e) => return Err(SyncError::Refused(e)),
                _ => return Err(SyncError::Unexpected),
            };
            after = entries.last().map(|(key, _)| key.clone());
            if !entries.is_empty() {
                shared.merge(store.clone(), entries).await.map_err(SyncError::Refused)?;
            }
            if !more || after.is_none() {
                break;
            }
        }
        // Push.
        let mut after: Option<String> = None;
        loop {
            let (entries, more) = shared
                .store
                .bucket(store, bucket as u8, after.as_deref())
                .map_err(|e| SyncError::Refused(e.to_string()))?;
            after = entries.last().map(|(key, _)| key.clone());
            for chunk in chunks(entries) {
                match call(DatabaseRequest::Merge { store: store.clone(), entries: chunk }).await? {
                    DatabaseResponse::Merged => {}
                    DatabaseResponse::Refused(e) => return Err(SyncError::Refused(e)),
                    _ => return Err(SyncError::Unexpected),
                }
            }
            if !more || after.is_none() {
                break;
            }
        }
    }
    Ok(())
}
