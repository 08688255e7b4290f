//! Storages' pins ([`tau_proto::storage`]): every so often (a quarter of the node's
//! `database.storage_grace`, between 1 s and 1 min) the first holder of each storage index
//! compares the blobs its keys name with the storage's pins in hoarder: a named blob without a
//! pin is pinned (a put whose pin was lost), a pinned blob no key names is unpinned once its pin
//! is older than the grace (a key deleted or overwritten, or a put whose key was refused or
//! lost to a later write). A pin younger than the grace is left: its key may not have reached
//! this node yet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use tau_proto::database::StoreId;
use tau_proto::hoarder::transfer::Asker;
use tau_proto::hoarder::{
    BlobId, DEFAULT_REPLICAS, HoarderRequest, HoarderResponse, MAX_PIN_RECORDS, PinRecord,
};
use tokio_util::sync::CancellationToken;

use super::service::Shared;

/// What one sweep of a storage did.
#[derive(Debug, Default, PartialEq, Eq)]
struct Swept {
    pinned: usize,
    unpinned: usize,
}

pub(crate) async fn run(shared: Arc<Shared>, grace: Duration, shutdown: CancellationToken) {
    let every = (grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let me = shared.handle.peer_id();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        for info in shared.store.stores() {
            let store = info.store;
            if tau_proto::storage::storage_of(&store).is_none() {
                continue;
            }
            // A storage no longer declared keeps its pins (see ARCHITECTURE.md).
            let Ok(record) = shared.existing(&store).await else { continue };
            let first = shared.placement.holders(&store, record.replicas).await.first().copied();
            if first != Some(me) {
                continue;
            }
            let swept = tokio::select! {
                _ = shutdown.cancelled() => return,
                swept = sweep(&shared, &store, grace) => swept,
            };
            match swept {
                Ok(swept) if swept != Swept::default() => {
                    tracing::info!(%store, pinned = swept.pinned, unpinned = swept.unpinned, "storage swept");
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(%store, error = %e, "cannot sweep a storage"),
            }
        }
    }
}

async fn sweep(shared: &Shared, store: &StoreId, grace: Duration) -> Result<Swept, String> {
    // This node's own hoarder when it runs one, else a connected hoarder node.
    match &shared.hoarder {
        Some(local) => sweep_through(shared, local, shared.handle.peer_id(), store, grace).await,
        None => {
            let hoarder = shared
                .handle
                .nodes("hoarder")
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|n| n.connected)
                .map(|n| n.peer)
                .ok_or("no hoarder node is connected")?;
            sweep_through(shared, &shared.handle, hoarder, store, grace).await
        }
    }
}

/// Sweeps `store`'s pins as `hoarder` (asked through `asker`) knows them.
async fn sweep_through<A: Asker>(
    shared: &Shared,
    asker: &A,
    hoarder: PeerId,
    store: &StoreId,
    grace: Duration,
) -> Result<Swept, String> {
    let named = {
        let (db, store) = (shared.store.clone(), store.clone());
        tokio::task::spawn_blocking(move || db.named_blobs(&store))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
    };
    let pins = storage_pins(asker, hoarder, store).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (pin, unpin) = differences(&named, &pins, now, grace);
    let mut swept = Swept::default();
    for (cid, size, replicas) in pin
        .into_iter()
        .map(|(cid, size)| (cid, size, DEFAULT_REPLICAS))
        .chain(unpin.into_iter().map(|(cid, size)| (cid, size, 0)))
    {
        let request = HoarderRequest::StoragePin { cid, size, storage: store.clone(), replicas };
        match asker.ask(hoarder, request).await {
            Ok(HoarderResponse::Done) if replicas > 0 => swept.pinned += 1,
            Ok(HoarderResponse::Done) => swept.unpinned += 1,
            Ok(other) => return Err(format!("{hoarder} answered {other:?} to a pin")),
            Err(e) => return Err(format!("{hoarder}: {e}")),
        }
    }
    Ok(swept)
}

/// Every pin record of the storage whose index is `store`, as `hoarder` knows them.
async fn storage_pins<A: Asker>(
    asker: &A,
    hoarder: PeerId,
    store: &StoreId,
) -> Result<Vec<PinRecord>, String> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let request = HoarderRequest::StoragePins { storage: store.clone(), after };
        let page = match asker.ask(hoarder, request).await {
            Ok(HoarderResponse::PinRecords(page)) => page,
            Ok(other) => return Err(format!("{hoarder} answered {other:?} for pins")),
            Err(e) => return Err(format!("{hoarder}: {e}")),
        };
        let full = page.len() >= MAX_PIN_RECORDS;
        after = page.last().map(|p| p.cid);
        all.extend(page);
        if !full || after.is_none() {
            return Ok(all);
        }
    }
}

/// Blobs with their sizes.
type BlobSizes = Vec<(BlobId, u64)>;

/// What to pin (named, no live pin) and what to unpin (a live pin older than `grace` that no
/// key names), each blob with its size.
fn differences(
    named: &BTreeMap<BlobId, u64>,
    pins: &[PinRecord],
    now_ms: u64,
    grace: Duration,
) -> (BlobSizes, BlobSizes) {
    let live: BTreeMap<BlobId, &PinRecord> =
        pins.iter().filter(|p| p.factor > 0).map(|p| (p.cid, p)).collect();
    let pin = named
        .iter()
        .filter(|(cid, _)| !live.contains_key(cid))
        .map(|(cid, size)| (*cid, *size))
        .collect();
    let horizon = now_ms.saturating_sub(grace.as_millis() as u64);
    let unpin = live
        .values()
        .filter(|p| !named.contains_key(&p.cid) && p.updated_ms < horizon)
        .map(|p| (p.cid, p.size))
        .collect();
    (pin, unpin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_blobs_stay_pinned_and_others_go_only_after_the_grace() {
        let blob = |b: &[u8]| BlobId::of(b);
        let pin =
            |cid, factor, updated_ms| PinRecord { cid, size: 1, factor, updated_ms, owner: None };
        let named: BTreeMap<BlobId, u64> = [(blob(b"kept"), 1), (blob(b"lost pin"), 9)].into();
        let pins = [
            pin(blob(b"kept"), 3, 1_000),
            pin(blob(b"lost pin"), 0, 1_000),
            pin(blob(b"deleted"), 3, 1_000),
            pin(blob(b"just put"), 3, 99_000),
            pin(blob(b"already unpinned"), 0, 1_000),
        ];
        let (to_pin, to_unpin) = differences(&named, &pins, 100_000, Duration::from_secs(10));
        assert_eq!(to_pin, [(blob(b"lost pin"), 9)]);
        assert_eq!(to_unpin, [(blob(b"deleted"), 1)], "a pin younger than the grace stays");
    }
}
