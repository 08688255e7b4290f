//! Collecting: ask each substrate node for its counter records since q's cursor, sort each page
//! into a [`Batch`] (verified records, records kept aside, gaps), store it in one transaction,
//! and only then acknowledge it to the node (which may then prune it).

use std::collections::HashSet;
use std::sync::Arc;
use tau_proto::admin::AdminProtocol;

use libp2p::PeerId;
use serde::Serialize;
use tau_proto::Client;
use tau_proto::admin::{AdminRequest, AdminResponse};
use tau_proto::client::ClientError;
use tau_proto::counters::{CounterPage, MAX_PAGE, SignedCounter};

use crate::period::OPEN_END;
use crate::store::{Batch, Ingested, Reason, Store, StoreError};
use crate::verify::verify_all;

/// Why collecting stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    /// The cloud did not answer.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The store failed; nothing of the batch was written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Verifying a page failed to run.
    #[error("verifying a page: {0}")]
    Verify(String),
    /// The cloud has no seer to list its nodes.
    #[error("no node of this cloud runs seer, which q asks for the list of nodes")]
    NoSeer,
}

/// Sorts one page that `node` served, read from `since`, into a batch. `known` is every node of
/// the cloud.
pub fn sort_page(node: PeerId, since: u64, page: CounterPage, known: &HashSet<PeerId>) -> Batch {
    let mut batch = Batch::new(node, since);
    let mut records = page.records;
    records.sort_by_key(|r| r.record.seq);
    // The store orders sequence numbers and windows as signed 64-bit integers: a record beyond
    // them is kept aside; a sequence number beyond moves neither the gaps nor the cursor.
    let (records, beyond): (Vec<_>, Vec<_>) =
        records.into_iter().partition(|r: &SignedCounter| r.record.seq <= OPEN_END);
    batch.rejected.extend(beyond.into_iter().map(|r| (r, Reason::OutOfRange)));
    let (own, foreign): (Vec<_>, Vec<_>) = records.into_iter().partition(|r| r.record.node == node);
    for record in foreign {
        let reason = if known.contains(&record.record.node) {
            Reason::WrongNode
        } else {
            Reason::UnknownNode
        };
        batch.rejected.push((record, reason));
    }
    let verdicts = verify_all(&own);
    let mut expected = since;
    let mut seen = std::collections::HashMap::new();
    for (record, ok) in own.into_iter().zip(verdicts) {
        let seq = record.record.seq;
        if seq > expected {
            batch.gaps.push((expected, seq - 1));
        }
        expected = expected.max(seq.saturating_add(1));
        if !ok {
            batch.rejected.push((record, Reason::BadSignature));
            continue;
        }
        if record.record.window_start_ms > OPEN_END {
            batch.rejected.push((record, Reason::OutOfRange));
            continue;
        }
        match seen.get(&seq) {
            None => {
                seen.insert(seq, record.hash());
                batch.accepted.push(record);
            }
            // The same record twice in one page: once is enough.
            Some(hash) if *hash == record.hash() => {}
            Some(_) => batch.rejected.push((record, Reason::Conflict)),
        }
    }
    batch.next_seq = expected;
    batch
}

/// What one collection did, per node and in all.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Nodes asked.
    pub nodes: usize,
    /// Records read.
    pub read: u64,
    /// What storing them did.
    #[serde(flatten)]
    pub ingested: Ingested,
    /// Nodes that did not answer, with why.
    pub unreachable: Vec<(String, String)>,
    /// Nodes that refused q's acknowledgements, with why (q's identity is not admitted for the
    /// `q` role): their records were stored all the same and the nodes keep them until their
    /// retention.
    pub unacknowledged: Vec<(String, String)>,
}

/// Every node of the cloud and those that keep counters (substrate and ci nodes): the nodes the
/// entry node is connected to, and every node seer has heard from (healthy or not), which also
/// covers a node that the entry node has lost.
pub async fn nodes(client: &Client) -> Result<(HashSet<PeerId>, Vec<PeerId>), CollectError> {
    let services = client.services().await?;
    let mut known: HashSet<PeerId> = services.values().flatten().copied().collect();
    let mut substrate = tau_proto::counters::counting_nodes(&services);
    let seers = services.get("seer").cloned().unwrap_or_default();
    let seer = seers.first().copied().ok_or(CollectError::NoSeer)?;
    for status in client.seer_nodes(seer).await? {
        let beat = status.heartbeat;
        known.insert(beat.peer);
        if tau_proto::counters::counts(&beat.services) && !substrate.contains(&beat.peer) {
            substrate.push(beat.peer);
        }
    }
    Ok((known, substrate))
}

/// Where a node's pages come from: the node over the network (`q collect`), or records in
/// memory (the benchmark, tests).
pub trait Source: Sync {
    /// The node whose records these are.
    fn node(&self) -> PeerId;
    /// Its records from `since` on, at most [`MAX_PAGE`].
    fn page(&self, since: u64) -> impl Future<Output = Result<CounterPage, CollectError>> + Send;
    /// Tells the node that everything through `through` is stored.
    fn ack(&self, through: u64) -> impl Future<Output = Result<(), CollectError>> + Send;
}

/// A node over the network. A node that refuses an acknowledgement is not asked again in this
/// collection; why is kept for the report.
struct Remote<'a> {
    client: &'a Client,
    node: PeerId,
    refused: std::sync::Mutex<Option<String>>,
}

impl Source for Remote<'_> {
    fn node(&self) -> PeerId {
        self.node
    }

    async fn page(&self, since: u64) -> Result<CounterPage, CollectError> {
        Ok(self.client.counters(self.node, since, MAX_PAGE).await?)
    }

    async fn ack(&self, through: u64) -> Result<(), CollectError> {
        let refused = || self.refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if refused().is_some() {
            return Ok(());
        }
        let request = AdminRequest::AckCounters { through };
        match self.client.call::<AdminProtocol>(self.node, request).await {
            Ok(AdminResponse::Acked(_)) => Ok(()),
            Ok(_) => Err(ClientError::Unexpected { peer: self.node }.into()),
            Err(ClientError::Remote { message, .. }) => {
                *refused() = Some(message);
                Ok(())
            }
            Err(other) => Err(other.into()),
        }
    }
}

/// Reads every substrate node's new records into the store, page by page, each page in one
/// transaction, acknowledged after it is committed. A node that does not answer is reported and
/// skipped; a store failure stops everything (nothing of the failed batch is written).
pub async fn collect_once(
    client: &Client,
    store: &Store,
    mut progress: impl FnMut(&PeerId, &Ingested),
) -> Result<Report, CollectError> {
    let (known, substrate) = nodes(client).await?;
    let known = Arc::new(known);
    let mut report = Report { nodes: substrate.len(), ..Report::default() };
    for node in substrate {
        let source = Remote { client, node, refused: std::sync::Mutex::new(None) };
        let drained = drain(store, &source, &known, |done| progress(&node, done)).await;
        if let Some(reason) = source.refused.into_inner().unwrap_or_else(|e| e.into_inner()) {
            report.unacknowledged.push((node.to_string(), reason));
        }
        match drained {
            Ok((read, ingested)) => {
                report.read += read;
                report.ingested += ingested;
            }
            Err(CollectError::Client(e)) => {
                report.unreachable.push((node.to_string(), e.to_string()))
            }
            Err(other) => return Err(other),
        }
    }
    Ok(report)
}

/// Reads `source` from q's cursor to its end into the store; returns the records read and what
/// storing them did. Pipelined on two cores: while page N is being stored (and then
/// acknowledged), page N+1 is fetched, sorted and verified on a blocking thread. Page N+1 is
/// asked for from where page N ends, which is known before N is stored; an acknowledgement
/// still only follows its own page's commit, and a failed store drops the page read ahead.
pub async fn drain(
    store: &Store,
    source: &impl Source,
    known: &Arc<HashSet<PeerId>>,
    mut progress: impl FnMut(&Ingested),
) -> Result<(u64, Ingested), CollectError> {
    let node = source.node();
    let (mut read, mut total) = (0, Ingested::default());
    let fetch = |since: u64| async move {
        let page = source.page(since).await?;
        if page.records.is_empty() {
            return Ok::<_, CollectError>(None);
        }
        let full = page.records.len() >= MAX_PAGE as usize;
        let count = page.records.len() as u64;
        let known = known.clone();
        let batch = tokio::task::spawn_blocking(move || sort_page(node, since, page, &known))
            .await
            .map_err(|e| CollectError::Verify(e.to_string()))?;
        Ok(Some((batch, full, count, since)))
    };
    let mut next = fetch(store.cursor(&node).await?).await?;
    while let Some((batch, full, count, since)) = next.take() {
        read += count;
        // No progress (a node serving the same numbers again): stop after storing this page.
        let more = full && batch.next_seq > since;
        let store_and_ack = async {
            let done = store.ingest(&batch).await?;
            if batch.next_seq > 1 {
                source.ack(batch.next_seq - 1).await?;
            }
            Ok::<_, CollectError>(done)
        };
        let read_ahead = async { if more { fetch(batch.next_seq).await } else { Ok(None) } };
        let (done, ahead) = tokio::join!(store_and_ack, read_ahead);
        let done = done?;
        total += done;
        progress(&done);
        next = ahead?;
    }
    Ok((read, total))
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;
    use tau_proto::counters::{CounterRecord, SignedCounter, Usage};

    use super::*;

    fn signed(key: &Keypair, seq: u64) -> SignedCounter {
        CounterRecord {
            node: key.public().to_peer_id(),
            seq,
            project: "p".into(),
            function: "f".into(),
            window_start_ms: seq * 1_000,
            window_ms: 1_000,
            usage: Usage { invocations: 10, wall_micros: 5, cpu_micros: 4, ..Usage::default() },
        }
        .sign(key)
        .expect("own key")
    }

    fn page(records: Vec<SignedCounter>) -> CounterPage {
        CounterPage { records, next_seq: 100, oldest_seq: 1 }
    }

    #[test]
    fn a_page_is_sorted_out() {
        let (a, b, stranger) =
            (Keypair::generate_ed25519(), Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let node = a.public().to_peer_id();
        let known: HashSet<PeerId> = [node, b.public().to_peer_id()].into();
        let mut forged = signed(&a, 4);
        forged.record.usage.invocations = 1_000;
        // Out of order, a gap at 5, a forged record, one relayed from b, one from a stranger.
        let mut other_two = signed(&a, 2);
        other_two.record.usage.errors = 1;
        let other_two = other_two.record.sign(&a).expect("own key");
        let records = vec![
            signed(&a, 3),
            signed(&a, 3),
            other_two,
            forged,
            signed(&a, 1),
            signed(&a, 6),
            signed(&a, 2),
            signed(&b, 7),
            signed(&stranger, 8),
        ];
        let batch = sort_page(node, 1, page(records), &known);
        let seqs: Vec<u64> = batch.accepted.iter().map(|r| r.record.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 6]);
        let reasons: Vec<(u64, Reason)> =
            batch.rejected.iter().map(|(r, why)| (r.record.seq, *why)).collect();
        assert_eq!(
            reasons,
            [
                (7, Reason::WrongNode),
                (8, Reason::UnknownNode),
                (2, Reason::Conflict),
                (4, Reason::BadSignature)
            ]
        );
        assert_eq!(batch.gaps, [(5, 5)]);
        assert_eq!(batch.next_seq, 7);
    }

    #[test]
    fn a_record_beyond_what_the_store_orders_is_kept_aside() {
        let a = Keypair::generate_ed25519();
        let mut late = signed(&a, 3).record;
        late.window_start_ms = u64::MAX;
        let late = late.sign(&a).expect("own key");
        let mut last = signed(&a, 4).record;
        last.seq = u64::MAX;
        let last = last.sign(&a).expect("own key");
        let records = vec![signed(&a, 1), last, late, signed(&a, 2)];
        let batch = sort_page(a.public().to_peer_id(), 1, page(records), &HashSet::new());
        let seqs: Vec<u64> = batch.accepted.iter().map(|r| r.record.seq).collect();
        assert_eq!(seqs, [1, 2]);
        let reasons: Vec<(u64, Reason)> =
            batch.rejected.iter().map(|(r, why)| (r.record.seq, *why)).collect();
        assert_eq!(reasons, [(u64::MAX, Reason::OutOfRange), (3, Reason::OutOfRange)]);
        assert!(batch.gaps.is_empty(), "{:?}", batch.gaps);
        assert_eq!(batch.next_seq, 4);
    }

    #[test]
    fn a_log_pruned_before_q_read_it_is_a_gap() {
        let a = Keypair::generate_ed25519();
        let batch = sort_page(
            a.public().to_peer_id(),
            1,
            page(vec![signed(&a, 40), signed(&a, 41)]),
            &HashSet::new(),
        );
        assert_eq!(batch.gaps, [(1, 39)]);
        assert_eq!(batch.next_seq, 42);
    }
}
