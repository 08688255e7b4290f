//! Execution counters: per (project, function) totals for the current window, turned into signed
//! records at the end of each window and kept on disk until the collector acknowledges them.
//!
//! The per-node sequence number lives in the same redb database as the records and moves in the
//! same transaction, so a crash or restart can neither skip nor repeat a number. The totals of
//! the window in progress are in memory: a clean stop writes them as a short last window; a crash
//! loses only them. A window that cannot be written (a full disk) stays in memory and goes out
//! with the next one; after an I/O error the database is opened again ([`crate::db`]), so the
//! node writes again as soon as the disk has room.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p::PeerId;
use libp2p::identity::Keypair;
use redb::{ReadableTable, TableDefinition};
use tau_proto::admin::{AdminRequest, AdminResponse};
use tau_proto::cbor;
use tau_proto::counters::{CounterPage, CounterRecord, MAX_PAGE, SignedCounter, Usage};
use tau_proto::membership::Admitted;
use tau_proto::protocol::Access;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::engine::Outcome;
use crate::db::{Db, DbError, Failure};
use crate::p2p::Inbound;

const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_SEQ: &str = "next_seq";
const ACKED: &str = "acked";
/// What errors call the store.
const STORE: &str = "counter store";

/// Creates the tables, and the sequence starting at 1.
fn init(txn: &redb::WriteTransaction) -> Result<(), Failure> {
    txn.open_table(RECORDS)?;
    let mut meta = txn.open_table(META)?;
    if meta.get(NEXT_SEQ)?.is_none() {
        meta.insert(NEXT_SEQ, 1)?;
        meta.insert(ACKED, 0)?;
    }
    Ok(())
}

/// The upper bounds of the latency histogram's buckets, seconds (the metrics' `le`).
pub const LATENCY_BUCKETS: [f64; 13] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A function's figures since the node started, for its metrics (never taken by a window).
#[derive(Debug, Clone, Default)]
pub struct Lifetime {
    /// Requests, failed ones included.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Invocations per latency bucket ([`LATENCY_BUCKETS`]; slower ones in none).
    pub buckets: [u64; LATENCY_BUCKETS.len()],
    /// Their wall time, seconds.
    pub seconds: f64,
}

/// The running totals of one function; the gateway adds to them, the window task takes them.
#[derive(Debug, Default)]
pub struct FunctionStats {
    totals: Mutex<Usage>,
    lifetime: Mutex<Lifetime>,
}

impl FunctionStats {
    fn totals(&self) -> MutexGuard<'_, Usage> {
        self.totals.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lifetime(&self) -> MutexGuard<'_, Lifetime> {
        self.lifetime.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a finished invocation.
    pub fn finished(&self, outcome: &Outcome) {
        {
            let mut l = self.lifetime();
            let seconds = outcome.wall.as_secs_f64();
            l.requests += 1;
            l.errors += u64::from(outcome.failure.is_some());
            l.seconds += seconds;
            if let Some(bucket) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
                l.buckets[bucket] += 1;
            }
        }
        let mut t = self.totals();
        t.invocations += 1;
        t.errors += u64::from(outcome.failure.is_some());
        t.wall_micros += outcome.wall.as_micros() as u64;
        t.cpu_micros += outcome.cpu.as_micros() as u64;
        t.peak_memory = t.peak_memory.max(outcome.peak_memory);
        t.kv_reads += outcome.kv.reads;
        t.kv_writes += outcome.kv.writes;
        let (requests, sent, received) = outcome.outbound;
        t.outbound_requests += requests;
        t.outbound_sent_bytes += sent;
        t.outbound_received_bytes += received;
        t.storage_read_bytes += outcome.blob_bytes;
        t.storage_written_bytes += outcome.stored_bytes;
    }

    /// Adds a request that failed before an instance ran (the component did not load).
    pub fn failed_early(&self) {
        {
            let mut l = self.lifetime();
            l.requests += 1;
            l.errors += 1;
            l.buckets[0] += 1;
        }
        let mut t = self.totals();
        t.invocations += 1;
        t.errors += 1;
    }

    /// Adds what something other than an invocation used (a build job).
    pub fn add(&self, usage: &Usage) {
        self.totals().add(usage);
    }

    /// Adds request body bytes.
    pub fn bytes_in(&self, n: u64) {
        self.totals().bytes_in += n;
    }

    /// Adds response body bytes.
    pub fn bytes_out(&self, n: u64) {
        self.totals().bytes_out += n;
    }

    fn take(&self) -> Usage {
        std::mem::take(&mut *self.totals())
    }

    /// Puts back totals that were taken but could not be written.
    fn restore(&self, taken: &Usage) {
        self.totals().add(taken);
    }
}

/// The node's counters and their store.
pub struct Counters {
    keypair: Keypair,
    node: PeerId,
    db: Db,
    window: Duration,
    retention: Duration,
    functions: Mutex<HashMap<(String, String), Arc<FunctionStats>>>,
    /// Serializes window flushes with each other.
    flushing: Mutex<()>,
}

impl Counters {
    /// Opens (or creates) the store at `path`.
    pub fn open(
        path: &Path,
        keypair: Keypair,
        window: Duration,
        retention: Duration,
    ) -> Result<Self, DbError> {
        let db = Db::open(STORE, path, init)?;
        Ok(Self::with_db(db, keypair, window, retention))
    }

    /// The counters over an open database.
    fn with_db(db: Db, keypair: Keypair, window: Duration, retention: Duration) -> Self {
        let node = keypair.public().to_peer_id();
        Self {
            keypair,
            node,
            db,
            window,
            retention,
            functions: Mutex::default(),
            flushing: Mutex::new(()),
        }
    }

    /// Every function's figures since the node started.
    pub fn lifetimes(&self) -> Vec<((String, String), Lifetime)> {
        let functions = self.functions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        functions.iter().map(|(key, stats)| (key.clone(), stats.lifetime().clone())).collect()
    }

    /// The running totals of a function (created on first use).
    pub fn stats(&self, project: &str, function: &str) -> Arc<FunctionStats> {
        let mut functions =
            self.functions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        functions.entry((project.to_string(), function.to_string())).or_default().clone()
    }

    /// Signs and stores one record per function with anything counted since the last flush,
    /// all in one transaction with the sequence number. Returns how many were written.
    pub fn flush(&self, window_start_ms: u64, window_ms: u64) -> Result<usize, DbError> {
        let _flushing = self.flushing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let taken: Vec<((String, String), Usage)> = {
            let functions =
                self.functions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut taken: Vec<_> = functions
                .iter()
                .map(|(key, stats)| (key.clone(), stats.take()))
                .filter(|(_, totals)| !totals.is_empty())
                .collect();
            taken.sort_by(|a, b| a.0.cmp(&b.0));
            taken
        };
        if taken.is_empty() {
            return Ok(0);
        }
        let written = self.db.write(|txn| {
            {
                let mut meta = txn.open_table(META)?;
                let mut records = txn.open_table(RECORDS)?;
                let mut seq = meta.get(NEXT_SEQ)?.map_or(1, |v| v.value());
                for ((project, function), t) in &taken {
                    let record = CounterRecord {
                        node: self.node,
                        seq,
                        project: project.clone(),
                        function: function.clone(),
                        window_start_ms,
                        window_ms,
                        usage: *t,
                    };
                    let signed = record
                        .sign(&self.keypair)
                        .ok_or_else(|| Failure::data("the node key cannot sign counter records"))?;
                    let bytes = cbor::to_vec(&signed).map_err(Failure::data)?;
                    records.insert(seq, bytes.as_slice())?;
                    seq += 1;
                }
                meta.insert(NEXT_SEQ, seq)?;
            }
            Ok(taken.len())
        });
        if written.is_err() {
            // Nothing was written: the totals go out with the next window instead.
            let functions =
                self.functions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (key, totals) in &taken {
                if let Some(stats) = functions.get(key) {
                    stats.restore(totals);
                }
            }
        } else {
            tracing::debug!(records = taken.len(), window_start_ms, "counter records written");
        }
        written
    }

    /// Records with `seq >= since`, at most `limit`.
    pub fn page(&self, since: u64, limit: u32) -> Result<CounterPage, DbError> {
        let limit = limit.clamp(1, MAX_PAGE) as usize;
        self.db.read(|txn| {
            let table = txn.open_table(RECORDS)?;
            let meta = txn.open_table(META)?;
            let next_seq = meta.get(NEXT_SEQ)?.map_or(1, |v| v.value());
            let oldest_seq = match table.first()? {
                Some((seq, _)) => seq.value(),
                None => next_seq,
            };
            let mut records = Vec::new();
            for entry in table.range(since..)?.take(limit) {
                let (_, bytes) = entry?;
                let record: SignedCounter =
                    cbor::from_slice(bytes.value()).map_err(Failure::data)?;
                records.push(record);
            }
            Ok(CounterPage { records, next_seq, oldest_seq })
        })
    }

    /// Notes that the collector holds everything up to `through`; prunes acknowledged records
    /// older than the retention period. Returns the acknowledged sequence number.
    pub fn acknowledge(&self, through: u64) -> Result<u64, DbError> {
        let acked = self.db.write(|txn| {
            let mut meta = txn.open_table(META)?;
            let next = meta.get(NEXT_SEQ)?.map_or(1, |v| v.value());
            let old = meta.get(ACKED)?.map_or(0, |v| v.value());
            let acked = old.max(through.min(next - 1));
            meta.insert(ACKED, acked)?;
            Ok(acked)
        })?;
        self.prune()?;
        Ok(acked)
    }

    /// Deletes acknowledged records whose window ended before the retention period.
    pub fn prune(&self) -> Result<usize, DbError> {
        let cutoff = now_ms().saturating_sub(self.retention.as_millis() as u64);
        self.db.write(|txn| {
            let acked = txn.open_table(META)?.get(ACKED)?.map_or(0, |v| v.value());
            let mut table = txn.open_table(RECORDS)?;
            let mut doomed = Vec::new();
            for entry in table.range(..=acked)? {
                let (seq, bytes) = entry?;
                let record: SignedCounter =
                    cbor::from_slice(bytes.value()).map_err(Failure::data)?;
                let end = record.record.window_start_ms + record.record.window_ms;
                if end >= cutoff {
                    break;
                }
                doomed.push(seq.value());
            }
            for seq in &doomed {
                table.remove(*seq)?;
            }
            Ok(doomed.len())
        })
    }

    /// Answers `Counters` and `AckCounters`.
    pub fn answer(&self, request: AdminRequest) -> AdminResponse {
        let result = match request {
            AdminRequest::Counters { since, limit } => {
                self.page(since, limit).map(AdminResponse::Counters)
            }
            AdminRequest::AckCounters { through } => {
                self.acknowledge(through).map(AdminResponse::Acked)
            }
            _ => return AdminResponse::Error("unsupported admin request".into()),
        };
        result.unwrap_or_else(|e| {
            tracing::error!(error = %e, "counter request failed");
            AdminResponse::Error(e.to_string())
        })
    }
}

/// Unix time now, milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Who may acknowledge counter records, and so let the node prune them: q, once the operator
/// admitted its identity for this role.
pub const ACKNOWLEDGER: Access = Access::Role("q");

/// Writes a record per function at the end of every window (windows are aligned to multiples of
/// their length since the Unix epoch), answers counter requests, and writes the partial window
/// when the node stops.
pub async fn run(
    counters: Arc<Counters>,
    mut requests: mpsc::Receiver<Inbound<tau_proto::admin::AdminRequest, AdminResponse>>,
    admitted: watch::Receiver<Admitted>,
    shutdown: CancellationToken,
) {
    let window_ms = counters.window.as_millis().max(1) as u64;
    let mut start = now_ms() / window_ms * window_ms;
    loop {
        let end = start + window_ms;
        let wait = Duration::from_millis(end.saturating_sub(now_ms()));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(inbound) = requests.recv() => {
                if matches!(inbound.request, AdminRequest::AckCounters { .. })
                    && !admitted.borrow().allows(ACKNOWLEDGER, &inbound.peer)
                {
                    tracing::warn!(peer = %inbound.peer, "counter acknowledgement refused: not an admitted q");
                    let _ = inbound.reply.send(AdminResponse::Error(format!(
                        "only a client the operator admitted for the `q` role may acknowledge \
                         counters (tau-node nodes admit {} --service q); the records are kept \
                         until their retention",
                        inbound.peer
                    )));
                    continue;
                }
                let counters = counters.clone();
                let answer = tokio::task::spawn_blocking(move || counters.answer(inbound.request));
                if let Ok(answer) = answer.await {
                    let _ = inbound.reply.send(answer);
                }
            }
            _ = tokio::time::sleep(wait) => {
                let c = counters.clone();
                let written = tokio::task::spawn_blocking(move || {
                    let written = c.flush(start, window_ms);
                    let _ = c.prune();
                    written
                }).await;
                match written {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "counter window not written"),
                    Err(e) => tracing::error!(error = %e, "counter flush failed"),
                }
                start = end.max(now_ms() / window_ms * window_ms);
            }
        }
    }
    let partial = now_ms().saturating_sub(start).max(1);
    match counters.flush(start, partial) {
        Ok(0) => {}
        Ok(n) => tracing::info!(records = n, "last counter window written"),
        Err(e) => tracing::error!(error = %e, "last counter window lost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::substrate::engine::Failure;

    fn outcome(failure: Option<Failure>) -> Outcome {
        Outcome {
            failure,
            wall: Duration::from_micros(120),
            cpu: Duration::from_micros(80),
            peak_memory: 1 << 20,
            kv: Default::default(),
            outbound: (0, 0, 0),
            blob_bytes: 0,
            stored_bytes: 0,
        }
    }

    fn open(dir: &Path, key: &Keypair) -> Counters {
        Counters::open(
            &dir.join("counters.redb"),
            key.clone(),
            Duration::from_secs(60),
            Duration::from_secs(3600),
        )
        .unwrap()
    }

    #[test]
    fn a_window_of_n_requests_says_n() {
        let dir = tempfile::tempdir().unwrap();
        let key = Keypair::generate_ed25519();
        let counters = open(dir.path(), &key);
        let ping = counters.stats("example", "ping");
        for _ in 0..41 {
            ping.finished(&outcome(None));
        }
        ping.finished(&outcome(Some(Failure::NoResponse)));
        ping.bytes_out(5 * 42);
        counters.stats("example", "idle");
        assert_eq!(counters.flush(1_000_000, 60_000).unwrap(), 1, "idle functions write nothing");
        let page = counters.page(1, 100).unwrap();
        assert_eq!(page.records.len(), 1);
        let r = &page.records[0];
        r.verify().unwrap();
        assert_eq!(r.record.node, key.public().to_peer_id());
        assert_eq!((r.record.seq, r.record.usage.invocations, r.record.usage.errors), (1, 42, 1));
        assert_eq!((r.record.usage.wall_micros, r.record.usage.cpu_micros), (42 * 120, 42 * 80));
        assert_eq!((r.record.usage.bytes_out, r.record.usage.peak_memory), (210, 1 << 20));
        assert_eq!(page.next_seq, 2);
        // The window's totals were taken: the next flush has nothing.
        assert_eq!(counters.flush(1_060_000, 60_000).unwrap(), 0);
    }

    #[test]
    fn a_window_that_cannot_be_written_goes_out_with_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let key = Keypair::generate_ed25519();
        let path = dir.path().join("counters.redb");
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let opener = crate::db::failing_disk::opener(&path, &failing);
        let (window, retention) = (Duration::from_secs(60), Duration::from_secs(3600));
        let db = Db::open_with(STORE, &path, opener, init).unwrap();
        let counters = Counters::with_db(db, key, window, retention);
        let ping = counters.stats("example", "ping");
        for _ in 0..3 {
            ping.finished(&outcome(None));
        }
        assert_eq!(counters.flush(0, 60_000).unwrap(), 1);

        // The disk fails: two windows are not written, and their totals are kept.
        failing.store(true, std::sync::atomic::Ordering::SeqCst);
        for window in 1..=2 {
            for _ in 0..5 {
                ping.finished(&outcome(None));
            }
            let failed = counters.flush(window * 60_000, 60_000);
            assert!(failed.is_err(), "window {window} written on a failing disk: {failed:?}");
        }
        // The disk works again: the store is opened anew and the next window carries them.
        failing.store(false, std::sync::atomic::Ordering::SeqCst);
        ping.finished(&outcome(None));
        assert_eq!(counters.flush(180_000, 60_000).unwrap(), 1);
        let page = counters.page(1, 100).unwrap();
        let seen: Vec<(u64, u64)> =
            page.records.iter().map(|r| (r.record.seq, r.record.usage.invocations)).collect();
        assert_eq!(seen, [(1, 3), (2, 11)], "3 calls, then 5 + 5 + 1, gap-free");
        page.records.iter().for_each(|r| r.verify().unwrap());
    }

    #[test]
    fn a_restart_keeps_the_sequence_gap_free() {
        let dir = tempfile::tempdir().unwrap();
        let key = Keypair::generate_ed25519();
        {
            let counters = open(dir.path(), &key);
            counters.stats("p", "a").finished(&outcome(None));
            counters.stats("p", "b").finished(&outcome(None));
            assert_eq!(counters.flush(0, 60_000).unwrap(), 2);
        }
        let counters = open(dir.path(), &key);
        counters.stats("p", "a").finished(&outcome(None));
        counters.flush(60_000, 60_000).unwrap();
        let seqs: Vec<u64> =
            counters.page(0, 100).unwrap().records.iter().map(|r| r.record.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
    }

    #[test]
    fn acknowledged_records_go_only_after_the_retention_period() {
        let dir = tempfile::tempdir().unwrap();
        let key = Keypair::generate_ed25519();
        let counters = open(dir.path(), &key);
        let old = now_ms() - 2 * 3600 * 1000;
        for i in 0..3 {
            counters.stats("p", "f").finished(&outcome(None));
            counters.flush(old + i * 60_000, 60_000).unwrap();
        }
        counters.stats("p", "f").finished(&outcome(None));
        counters.flush(now_ms(), 60_000).unwrap();
        // Nothing acknowledged: nothing pruned, however old.
        assert_eq!(counters.prune().unwrap(), 0);
        // Acknowledging past the end is capped at what exists.
        assert_eq!(counters.acknowledge(99).unwrap(), 4);
        let page = counters.page(0, 100).unwrap();
        let seqs: Vec<u64> = page.records.iter().map(|r| r.record.seq).collect();
        assert_eq!(seqs, [4], "the old acknowledged records are pruned, the recent one stays");
        assert_eq!((page.oldest_seq, page.next_seq), (4, 5));
        // Acknowledgements never go backwards.
        assert_eq!(counters.acknowledge(1).unwrap(), 4);
    }
}
