//! Answers `/tau/tns/1` requests and handles gossip.

use std::sync::Arc;

use tau_proto::cbor;
use tau_proto::tns::{
    BUCKETS, MAX_PAGE, MAX_PAGE_BYTES, PutOutcome, Record, TnsRequest, TnsResponse, TnsStatus,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::store::Rejection;
use crate::p2p::{self, GossipMessage, Inbound, Verdict};

/// The most records one `Put` may carry.
const MAX_PUT: usize = 10_000;
/// Gossip messages stay under this size (the limit is 1 MiB).
const GOSSIP_BATCH: usize = 900 * 1024;

pub(super) async fn run(
    shared: Arc<Shared>,
    handle: p2p::Handle,
    mut requests: mpsc::Receiver<Inbound<TnsRequest, TnsResponse>>,
    mut gossip: mpsc::Receiver<GossipMessage>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(inbound) = requests.recv() => {
                let (response, stored) = answer(&shared, inbound.request);
                let _ = inbound.reply.send(response);
                publish(&handle, stored).await;
            }
            Some(message) = gossip.recv() => {
                let verdict = receive(&shared, &message.data);
                if handle.validate(message.id, verdict).await.is_err() {
                    break;
                }
            }
            else => break,
        }
    }
    tracing::debug!("tns service stopped");
}

/// Answers one request; also returns the records a `Put` stored, to be gossiped.
pub(super) fn answer(shared: &Shared, request: TnsRequest) -> (TnsResponse, Vec<Record>) {
    let error = |e: &dyn std::fmt::Display| (TnsResponse::Error(e.to_string()), Vec::new());
    match request {
        TnsRequest::Get { keys } => {
            if keys.len() > MAX_PAGE as usize {
                return error(&format!("at most {MAX_PAGE} keys per Get"));
            }
            // The records in the order asked, up to MAX_PAGE_BYTES: an asker that got fewer
            // asks again for the rest.
            let store = shared.store();
            let mut found = Vec::with_capacity(keys.len());
            let mut size = 0;
            for key in &keys {
                match store.get(key) {
                    Ok(Some(record)) => {
                        size += record.size();
                        if size > MAX_PAGE_BYTES && !found.is_empty() {
                            break;
                        }
                        found.push(record);
                    }
                    Ok(None) => {}
                    Err(e) => return error(&e),
                }
            }
            (TnsResponse::Records(found), Vec::new())
        }
        TnsRequest::List { prefix, after, limit, tombstones } => {
            match shared.store().list(&prefix, after.as_deref(), limit, tombstones) {
                Ok((records, next)) => (TnsResponse::Page { records, next }, Vec::new()),
                Err(e) => error(&e),
            }
        }
        TnsRequest::Put { records } => {
            if records.len() > MAX_PUT {
                return error(&format!("at most {MAX_PUT} records per Put"));
            }
            match shared.apply(records) {
                Ok(applied) => {
                    let outcome = PutOutcome {
                        stored: applied.stored.len() as u32,
                        unchanged: applied.unchanged,
                        rejected: applied
                            .rejected
                            .iter()
                            .map(|(k, why)| (k.clone(), why.to_string()))
                            .collect(),
                    };
                    if !applied.rejected.is_empty() {
                        tracing::warn!(
                            rejected = applied.rejected.len(),
                            "tns put: records refused"
                        );
                    }
                    (TnsResponse::Put(outcome), applied.stored)
                }
                Err(e) => error(&e),
            }
        }
        TnsRequest::Status => {
            let store = shared.store();
            let (records, tombstones, digest, clock) = store.counts();
            let last_sync = shared
                .last_sync
                .lock()
                .map(|m| m.iter().map(|(p, at)| (*p, at.elapsed().as_secs())).collect())
                .unwrap_or_default();
            let status = TnsStatus {
                records,
                tombstones,
                digest: hex::encode(digest),
                clock,
                forged: store.forged,
                unauthorized: store.unauthorized,
                ahead: store.ahead,
                over_quota: store.over_quota,
                last_sync,
            };
            (TnsResponse::Status(status), Vec::new())
        }
        TnsRequest::Sync { digests } => {
            if digests.len() != BUCKETS {
                return error(&format!("expected {BUCKETS} digests"));
            }
            let store = shared.store();
            let buckets: Vec<u16> = store
                .digests()
                .iter()
                .zip(&digests)
                .enumerate()
                .filter(|(_, (ours, theirs))| ours != theirs)
                .map(|(i, _)| i as u16)
                .collect();
            let summaries = store.summaries(&buckets);
            (TnsResponse::Diff { buckets, summaries }, Vec::new())
        }
        _ => error(&"unsupported tns request"),
    }
}

/// Checks and stores a gossip message; the verdict decides whether gossipsub forwards it.
fn receive(shared: &Shared, data: &[u8]) -> Verdict {
    let Ok(records) = cbor::from_slice::<Vec<Record>>(data) else {
        return Verdict::Reject;
    };
    match shared.apply(records) {
        Ok(applied) if applied.rejected.iter().any(|(_, r)| *r == Rejection::Forged) => {
            tracing::warn!("dropped a gossip message with a forged record");
            Verdict::Reject
        }
        // A record this node may not store is not forwarded either.
        Ok(applied) if !applied.rejected.is_empty() => Verdict::Ignore,
        Ok(applied) if !applied.stored.is_empty() => Verdict::Accept,
        Ok(_) => Verdict::Ignore,
        Err(e) => {
            tracing::error!(error = %e, "cannot store gossiped records");
            Verdict::Ignore
        }
    }
}

/// Publishes stored records on the tns topic, in messages under the gossip size limit.
pub(super) async fn publish(handle: &p2p::Handle, records: Vec<Record>) {
    for batch in tau_proto::tns::batches(records, GOSSIP_BATCH) {
        send(handle, batch).await;
    }
}

async fn send(handle: &p2p::Handle, batch: Vec<Record>) {
    match cbor::to_vec(&batch) {
        Ok(data) => {
            if let Err(e) = handle.publish::<tau_proto::tns::TnsTopic>(data).await {
                // Anti-entropy delivers what gossip could not.
                tracing::debug!(error = %e, records = batch.len(), "tns gossip not sent");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot encode records for gossip"),
    }
}
