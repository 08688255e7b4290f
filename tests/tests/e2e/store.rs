//! The store's contract (each record counted once, replays and conflicts told apart, rejects
//! and gaps kept, the cursor moving with its batch and surviving a reopen) on a real SQLite file
//! and on a real PostgreSQL server (a private cluster, started here); and what a hostile node
//! can serve (reordered, duplicated, forged, foreign and unknown records, a sequence jump, a
//! replay) drained into each by q's own ingest: the totals stay exact.

use libp2p::identity::Keypair;
use std::collections::HashSet;
use std::sync::Arc;

use libp2p::PeerId;
use q::collect::{CollectError, Source, drain};
use q::period::Period;
use q::proof;
use q::store::{Batch, Ingested, Reason, Store};
use tau_proto::counters::{CounterPage, CounterRecord, SignedCounter, Usage};
use tau_tests::harness::Result;
use tau_tests::postgres::PgServer;

pub(crate) fn signed(key: &Keypair, seq: u64, function: &str, invocations: u64) -> SignedCounter {
    CounterRecord {
        node: key.public().to_peer_id(),
        seq,
        project: "example".into(),
        function: function.into(),
        window_start_ms: 10_000 + seq * 1_000,
        window_ms: 1_000,
        usage: Usage {
            invocations,
            errors: seq % 2,
            wall_micros: 100 * invocations,
            cpu_micros: 50 * invocations,
            peak_memory: 1 << 20,
            bytes_in: 10,
            bytes_out: 20,
            ..Usage::default()
        },
    }
    .sign(key)
    .expect("own key")
}

fn batch(key: &Keypair, records: Vec<SignedCounter>, next_seq: u64) -> Batch {
    Batch { accepted: records, ..Batch::new(key.public().to_peer_id(), next_seq) }
}

/// The store's contract on the database at `db` (reopened at `reopen`).
async fn each_record_counts_once(db: &str, reopen: &str) {
    let store = Store::open(db).await.expect("open");
    let node = Keypair::generate_ed25519();
    let peer = node.public().to_peer_id();
    assert_eq!(store.cursor(&peer).await.expect("cursor"), 1);

    let first: Vec<_> =
        (1..=5).map(|s| signed(&node, s, if s % 2 == 0 { "echo" } else { "ping" }, s)).collect();
    let done = store.ingest(&batch(&node, first.clone(), 6)).await.expect("ingest");
    assert_eq!(done, Ingested { inserted: 5, replayed: 0, rejected: 0, gaps: 0 });
    assert_eq!(store.cursor(&peer).await.expect("cursor"), 6);

    // The same batch again (a retry after a lost answer): nothing counts twice.
    let again = store.ingest(&batch(&node, first.clone(), 6)).await.expect("ingest");
    assert_eq!(again, Ingested { inserted: 0, replayed: 5, rejected: 0, gaps: 0 });

    // Another record under a stored number is kept aside; a gap is recorded once; the cursor
    // never goes back.
    let mut other = signed(&node, 3, "ping", 999);
    other.record.usage.errors = 7;
    let other = other.record.sign(&node).expect("own key");
    let mut next = batch(&node, vec![other, signed(&node, 8, "ping", 8)], 9);
    next.gaps = vec![(6, 7)];
    next.rejected = vec![(signed(&Keypair::generate_ed25519(), 1, "x", 1), Reason::UnknownNode)];
    let done = store.ingest(&next).await.expect("ingest");
    assert_eq!(done, Ingested { inserted: 1, replayed: 0, rejected: 2, gaps: 1 });
    assert_eq!(store.ingest(&next).await.expect("ingest").gaps, 0);
    store.ingest(&batch(&node, vec![], 4)).await.expect("ingest");
    assert_eq!(store.cursor(&peer).await.expect("cursor"), 9);

    let totals = store.totals(0, u64::MAX >> 1, None).await.expect("totals");
    let summary: Vec<(&str, u64, u64, u64)> =
        totals.iter().map(|t| (t.function.as_str(), t.invocations, t.errors, t.records)).collect();
    assert_eq!(summary, [("echo", 2 + 4, 0, 2), ("ping", 1 + 3 + 5 + 8, 3, 4)]);
    assert_eq!(totals[1].wall_micros, 100 * 17);
    // A period holds the windows that start in it; a project filter keeps only its own.
    let period = store.totals(11_000, 13_000, None).await.expect("totals");
    assert_eq!(period.iter().map(|t| t.invocations).sum::<u64>(), 1 + 2);
    assert!(store.totals(0, u64::MAX >> 1, Some("other")).await.expect("totals").is_empty());

    let rejected = store.rejected().await.expect("rejected");
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(
        rejected.iter().any(|(_, seq, why)| *seq == 3 && why.contains("same node and sequence"))
    );
    assert_eq!(store.gaps().await.expect("gaps"), [(peer.to_string(), 6, 7)]);

    // Reopened: the same numbers.
    drop(store);
    let store = Store::open(reopen).await.expect("reopen");
    assert_eq!(store.cursor(&peer).await.expect("cursor"), 9);
    assert_eq!(store.totals(0, u64::MAX >> 1, None).await.expect("totals"), totals);
}

/// A node that misbehaves in every way q guards against: it serves its page out of order, with
/// duplicates, a forged copy of a record and a forged record of its own, a record signed by a
/// node the cloud does not have, one of another node's records, and a jump in its sequence;
/// asked again, it replays everything from the start.
struct Hostile {
    node: Keypair,
    honest: Vec<SignedCounter>,
    extras: Vec<SignedCounter>,
    replay: bool,
}

impl Source for Hostile {
    fn node(&self) -> PeerId {
        self.node.public().to_peer_id()
    }

    async fn page(&self, since: u64) -> std::result::Result<CounterPage, CollectError> {
        let mut records: Vec<SignedCounter> =
            self.honest.iter().filter(|r| self.replay || r.record.seq >= since).cloned().collect();
        records.extend(self.honest.iter().step_by(4).cloned()); // duplicates
        records.extend(self.extras.iter().cloned());
        records.reverse(); // out of order
        Ok(CounterPage { records, next_seq: 31, oldest_seq: 1 })
    }

    async fn ack(&self, _through: u64) -> std::result::Result<(), CollectError> {
        Ok(())
    }
}

/// Whatever the hostile node serves, only its genuine records count, each once.
async fn a_hostile_node_cannot_change_the_totals(db: &str) {
    let store = Store::open(db).await.expect("open");
    let node = Keypair::generate_ed25519();
    let peer = node.public().to_peer_id();
    let other = Keypair::generate_ed25519();
    // Seqs 11..=14 never existed: the node jumped from 10 to 15.
    let honest: Vec<SignedCounter> =
        (1..=30).filter(|s| !(11..=14).contains(s)).map(|s| signed(&node, s, "ping", s)).collect();
    let expected: u64 = honest.iter().map(|r| r.record.usage.invocations).sum();
    let mut forged_copy = honest[4].clone();
    forged_copy.record.usage.invocations += 1000;
    let mut forged_new = signed(&node, 31, "ping", 5);
    forged_new.record.usage.invocations = 5000;
    let stranger = signed(&Keypair::generate_ed25519(), 7, "ping", 700);
    let neighbour = signed(&other, 3, "ping", 300);
    let mut source = Hostile {
        node,
        honest,
        extras: vec![forged_copy, forged_new, stranger, neighbour],
        replay: false,
    };
    let known: Arc<HashSet<PeerId>> = Arc::new([peer, other.public().to_peer_id()].into());

    let (read, done) = drain(&store, &source, &known, |_| {}).await.expect("drain");
    assert_eq!(read, 26 + 7 + 4);
    assert_eq!((done.inserted, done.rejected, done.gaps), (26, 4, 1), "{done:?}");
    let totals = |store: &Store| {
        let store = store.clone();
        async move { store.totals(0, i64::MAX as u64, None).await.expect("totals") }
    };
    let first = totals(&store).await;
    assert_eq!(first.iter().map(|t| t.invocations).sum::<u64>(), expected);
    assert_eq!(first.iter().map(|t| t.records).sum::<u64>(), 26);
    let reasons: Vec<String> =
        store.rejected().await.expect("rejected").into_iter().map(|(_, _, r)| r).collect();
    for reason in ["bad signature", "not part of the cloud", "another node"] {
        assert!(reasons.iter().any(|r| r.contains(reason)), "{reason} not in {reasons:?}");
    }
    assert_eq!(store.gaps().await.expect("gaps"), [(peer.to_string(), 11, 14)]);

    // Replayed from the start, the same faults again: nothing changes.
    source.replay = true;
    let (_, again) = drain(&store, &source, &known, |_| {}).await.expect("drain");
    assert_eq!((again.inserted, again.gaps), (0, 0), "{again:?}");
    assert_eq!(totals(&store).await, first);
}

/// Counters over the whole `u64` range: a figure above `i64::MAX` counts exactly, export totals
/// equal the proof's, a sum beyond 64 bits is an error for both, and a record whose sequence
/// number or window the store cannot order is kept aside with the reason.
async fn counters_beyond_i64_stay_exact(db: &str) {
    let store = Store::open(db).await.expect("open");
    let node = Keypair::generate_ed25519();
    let peer = node.public().to_peer_id();
    let big = i64::MAX as u64 + 10;
    let in_project = |seq: u64, project: &str, invocations: u64| {
        let mut record = signed(&node, seq, "ping", 1).record;
        record.project = project.into();
        record.usage.invocations = invocations;
        record.usage.wall_micros = invocations;
        record.sign(&node).expect("own key")
    };
    let mut late = signed(&node, 5, "ping", 1).record;
    late.window_start_ms = u64::MAX;
    let mut last = signed(&node, 6, "ping", 1).record;
    last.seq = u64::MAX;
    let records = vec![
        in_project(1, "example", big),
        in_project(2, "example", 5),
        in_project(3, "huge", u64::MAX - 1),
        in_project(4, "huge", 2),
        late.sign(&node).expect("own key"),
        last.sign(&node).expect("own key"),
        in_project(6, "example", 7),
    ];
    let page = CounterPage { records, next_seq: 7, oldest_seq: 1 };
    let batch = q::collect::sort_page(peer, 1, page, &[peer].into());
    let done = store.ingest(&batch).await.expect("ingest");
    assert_eq!((done.inserted, done.rejected, done.gaps), (5, 2, 0), "{done:?}");
    assert_eq!(store.cursor(&peer).await.expect("cursor"), 7);
    let kept: Vec<(u64, String)> =
        store.rejected().await.expect("rejected").into_iter().map(|(_, s, r)| (s, r)).collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    for (seq, why) in &kept {
        assert!([5, u64::MAX].contains(seq) && why.contains("beyond 2^63-1"), "{kept:?}");
    }

    let totals = store.totals(0, Period::ALL.to_ms, Some("example")).await.expect("totals");
    let expected = big + 5 + 7;
    assert_eq!(totals.len(), 1, "{totals:?}");
    assert_eq!((totals[0].invocations, totals[0].wall_micros), (expected, expected));
    let key = q::key::SigningKey::random();
    let proof = proof::prove(&store, proof::Request::new(Period::ALL, Some("example")), &key)
        .await
        .expect("prove");
    assert_eq!(proof.statement.totals.invocations, expected);
    assert_eq!(proof.line_items[0].totals.invocations, totals[0].invocations);
    assert_eq!(proof.line_items[0].totals.wall_micros, totals[0].wall_micros);

    // Sums beyond 64 bits: the export and the proof both refuse, naming the line.
    let export = store.totals(0, Period::ALL.to_ms, Some("huge")).await.expect_err("overflow");
    assert!(export.to_string().contains("huge/ping do not fit in 64 bits"), "{export}");
    let prove = proof::prove(&store, proof::Request::new(Period::ALL, Some("huge")), &key).await;
    let prove = prove.expect_err("overflow").to_string();
    assert!(prove.contains("huge/ping do not fit in 64 bits"), "{prove}");
}

#[test]
fn on_sqlite_each_record_counts_once_and_the_cursor_moves_with_it() -> Result {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("q.db").to_string_lossy().to_string();
    block_on(each_record_counts_once(&db, &format!("sqlite://{db}")))?;
    let db = dir.path().join("hostile.db").to_string_lossy().to_string();
    block_on(a_hostile_node_cannot_change_the_totals(&db))?;
    let db = dir.path().join("wide.db").to_string_lossy().to_string();
    block_on(counters_beyond_i64_stay_exact(&db))
}

#[test]
fn on_postgresql_each_record_counts_once_and_the_cursor_moves_with_it() -> Result {
    let server = PgServer::start(false)?;
    let url = server.database("store")?;
    block_on(each_record_counts_once(&url, &url))?;
    block_on(a_hostile_node_cannot_change_the_totals(&server.database("hostile")?))?;
    block_on(counters_beyond_i64_stay_exact(&server.database("wide")?))
}

fn block_on<F: std::future::Future<Output = ()>>(future: F) -> Result {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(future);
    Ok(())
}

#[tokio::test]
async fn a_bad_url_names_itself_without_its_password() {
    let err = Store::open("mysql://user:hunter2@db/q").await.expect_err("not a backend q speaks");
    let text = err.to_string();
    assert!(text.contains("mysql://user@db/q") && !text.contains("hunter2"), "{text}");
    let err =
        Store::open("postgres://user:hunter2@127.0.0.1:1/q").await.expect_err("nothing there");
    let text = err.to_string();
    assert!(text.contains("postgres://user@127.0.0.1:1/q") && !text.contains("hunter2"), "{text}");
}
