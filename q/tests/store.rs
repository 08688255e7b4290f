//! The store against a real SQLite file: each (node, seq) once, replays and conflicts told
//! apart, gaps and rejects kept, the cursor moving with its batch and surviving a reopen.

use libp2p::identity::Keypair;
use q::store::{Batch, Ingested, Reason, Store};
use tau_proto::counters::{CounterRecord, SignedCounter};

fn signed(key: &Keypair, seq: u64, function: &str, invocations: u64) -> SignedCounter {
    CounterRecord {
        node: key.public().to_peer_id(),
        seq,
        project: "example".into(),
        function: function.into(),
        window_start_ms: 10_000 + seq * 1_000,
        window_ms: 1_000,
        invocations,
        errors: seq % 2,
        wall_micros: 100 * invocations,
        cpu_micros: 50 * invocations,
        peak_memory: 1 << 20,
        bytes_in: 10,
        bytes_out: 20,
    }
    .sign(key)
    .expect("own key")
}

fn batch(key: &Keypair, records: Vec<SignedCounter>, next_seq: u64) -> Batch {
    Batch { accepted: records, ..Batch::new(key.public().to_peer_id(), next_seq) }
}

#[tokio::test]
async fn each_record_counts_once_and_the_cursor_moves_with_it() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("q.db").to_string_lossy().to_string();
    let store = Store::open(&db).await.expect("open");
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
    other.record.errors = 7;
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
    let store = Store::open(&format!("sqlite://{db}")).await.expect("reopen");
    assert_eq!(store.cursor(&peer).await.expect("cursor"), 9);
    assert_eq!(store.totals(0, u64::MAX >> 1, None).await.expect("totals"), totals);
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
