//! `tau-q-bench`: how fast q ingests and proves, beside the raw signature verification rate
//! measured in the same run.
//!
//! 1. Makes 1,000,000 signed counter records up front (20 nodes, 10 projects of 5 functions),
//!    as the nodes would serve them: pages of 1000 in sequence order.
//! 2. Raw ed25519 verification on this machine, one core: record by record, and batched (1000
//!    per batch), over the records' canonical encodings with keys and signatures already parsed.
//! 3. q's ingest of all 1,000,000 into SQLite and into PostgreSQL (durable: fsync on, a private
//!    cluster started here): each page sorted and verified (`collect::sort_page`) and stored in
//!    one transaction with the node's cursor (`Store::ingest`), exactly as `q collect` does.
//!    Target: at least 0.6x the raw batched rate.
//! 4. `q prove` over the 1,000,000 stored records on each database (the library call plus the
//!    file's rendering). Target: under 10 s.
//! 5. `q prove --rates` (every line priced with a five-meter rate card) beside `q prove` on the
//!    same records. Target: pricing adds under 20%.
//! 6. `q push` of 1,000,000 usage events (CloudEvents, batches of 1000) from SQLite to a local
//!    receiver that acknowledges at once, beside a raw HTTP client (the same reqwest client)
//!    posting the same batch bodies, made up front, one after another. Targets: at least 0.7x
//!    the raw client, and at least 20,000 events/s.
//!
//! Run by `scripts/bench q`. `--records N` changes the count (for a quick look); `--push-only`
//! runs only the last part.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use libp2p::PeerId;
use libp2p::identity::Keypair;
use q::collect::{CollectError, Source, drain, sort_page};
use q::period::Period;
use q::store::Store;
use tau_proto::bench::Figure;
use tau_proto::counters::{CounterPage, CounterRecord, MAX_PAGE, SignedCounter, Usage};
use tau_proto::identity::public_key_of;
use tau_tests::harness::Result;
use tau_tests::postgres::PgServer;

const NODES: usize = 20;
const PROJECTS: u64 = 10;
const FUNCTIONS: u64 = 5;
const RAW_SAMPLE: usize = 100_000;

/// Each node's records, in sequence order.
fn make_records(total: usize) -> Vec<(PeerId, Vec<SignedCounter>)> {
    let per_node = total / NODES;
    let keys: Vec<Keypair> = (0..NODES).map(|_| Keypair::generate_ed25519()).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = keys
            .chunks(NODES.div_ceil(2))
            .map(|keys| {
                scope.spawn(move || {
                    keys.iter()
                        .map(|key| {
                            let node = key.public().to_peer_id();
                            let records = (1..=per_node as u64)
                                .map(|seq| {
                                    let line = seq % (PROJECTS * FUNCTIONS);
                                    CounterRecord {
                                        node,
                                        seq,
                                        project: format!("project-{}", line / FUNCTIONS),
                                        function: format!("function-{}", line % FUNCTIONS),
                                        window_start_ms: 1_790_000_000_000 + seq * 1_000,
                                        window_ms: 1_000,
                                        usage: Usage {
                                            invocations: 1 + seq % 97,
                                            errors: seq % 7 / 6,
                                            wall_micros: 250 * (1 + seq % 97),
                                            cpu_micros: 120 * (1 + seq % 97),
                                            peak_memory: 1 << 20,
                                            bytes_in: 100,
                                            bytes_out: 400,
                                            ..Usage::default()
                                        },
                                    }
                                    .sign(key)
                                    .expect("own key")
                                })
                                .collect();
                            (node, records)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("signer thread")).collect()
    })
}

/// Records per second.
fn rate(count: usize, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64()
}

/// Raw verification rates, one core: (single, batched).
fn raw_rates(records: &[SignedCounter]) -> (f64, f64) {
    let parsed: Vec<(Vec<u8>, Signature, VerifyingKey)> = records
        .iter()
        .map(|r| {
            let key = public_key_of(&r.record.node)
                .and_then(|k| k.try_into_ed25519().ok())
                .expect("ed25519 node");
            (
                r.record.canonical_bytes(),
                Signature::from_slice(&r.signature).expect("64 bytes"),
                VerifyingKey::from_bytes(&key.to_bytes()).expect("valid key"),
            )
        })
        .collect();
    let start = Instant::now();
    for (message, signature, key) in &parsed {
        key.verify(message, signature).expect("verifies");
    }
    let single = rate(parsed.len(), start.elapsed());
    let start = Instant::now();
    for chunk in parsed.chunks(MAX_PAGE as usize) {
        let messages: Vec<&[u8]> = chunk.iter().map(|p| p.0.as_slice()).collect();
        let signatures: Vec<Signature> = chunk.iter().map(|p| p.1).collect();
        let keys: Vec<VerifyingKey> = chunk.iter().map(|p| p.2).collect();
        ed25519_dalek::verify_batch(&messages, &signatures, &keys).expect("verifies");
    }
    (single, rate(parsed.len(), start.elapsed()))
}

/// One node's records in memory, served in pages as the node would.
struct Memory<'a> {
    node: PeerId,
    records: &'a [SignedCounter],
}

impl Source for Memory<'_> {
    fn node(&self) -> PeerId {
        self.node
    }

    async fn page(&self, since: u64) -> std::result::Result<CounterPage, CollectError> {
        let from = (since.max(1) - 1) as usize;
        let to = (from + MAX_PAGE as usize).min(self.records.len());
        let records = self.records.get(from..to).unwrap_or_default().to_vec();
        Ok(CounterPage { records, next_seq: self.records.len() as u64 + 1, oldest_seq: 1 })
    }

    async fn ack(&self, _through: u64) -> std::result::Result<(), CollectError> {
        Ok(())
    }
}

/// q's ingest of every node's records, as `q collect` drains a node; how long it took.
async fn ingest(store: &Store, nodes: &[(PeerId, Vec<SignedCounter>)]) -> Result<Duration> {
    let known: Arc<HashSet<PeerId>> = Arc::new(nodes.iter().map(|(n, _)| *n).collect());
    let start = Instant::now();
    for (node, records) in nodes {
        let (read, done) = drain(store, &Memory { node: *node, records }, &known, |_| {}).await?;
        if done.inserted != read || done.rejected + done.gaps > 0 {
            return Err(format!("ingest went wrong: {read} read, {done:?}").into());
        }
    }
    Ok(start.elapsed())
}

/// Sorting and verifying every page alone, nothing stored: the part of ingest that is CPU.
fn sort_alone(nodes: &[(PeerId, Vec<SignedCounter>)]) -> Duration {
    let known: HashSet<PeerId> = nodes.iter().map(|(n, _)| *n).collect();
    let start = Instant::now();
    for (node, records) in nodes {
        for (i, page) in records.chunks(MAX_PAGE as usize).enumerate() {
            let page = CounterPage { records: page.to_vec(), next_seq: 0, oldest_seq: 1 };
            let since = 1 + (i * MAX_PAGE as usize) as u64;
            let batch = sort_page(*node, since, page, &known);
            assert_eq!(batch.rejected.len(), 0);
        }
    }
    start.elapsed()
}

const RATES: &str = "currency: EUR\ndecimals: 6\nrates:\n  - from: 2026-01-01\n    prices:\n      invocations: \"0.0000002\"\n      gb_seconds: \"0.0000166667\"\n      cpu_ms: \"0.000001\"\n      gb_in: \"0.01\"\n      gb_out: \"0.09\"\n";

async fn prove(store: &Store, expected: u64) -> Result<Duration> {
    prove_priced(store, expected, None).await
}

async fn prove_priced(
    store: &Store,
    expected: u64,
    pricing: Option<&q::proof::Pricing>,
) -> Result<Duration> {
    let key = q::key::SigningKey::random();
    let start = Instant::now();
    let request = q::proof::Request { pricing, ..q::proof::Request::new(Period::ALL, None) };
    let proof = q::proof::prove(store, request, &key).await?;
    let text = proof.render();
    let took = start.elapsed();
    if proof.statement.totals.records != expected {
        return Err(format!("the proof covers {} records", proof.statement.totals.records).into());
    }
    if pricing.is_some() && proof.statement.totals.charge.0 == 0 {
        return Err("the priced proof charges nothing".into());
    }
    q::proof::verify(&text, None, &[])?;
    Ok(took)
}

async fn bench(total: usize, push_only: bool) -> Result {
    let start = Instant::now();
    let nodes = make_records(total);
    let total = nodes.iter().map(|(_, r)| r.len()).sum::<usize>();
    if push_only {
        let dir = tempfile::tempdir()?;
        return push_bench(&nodes, dir.path()).await;
    }
    println!(
        "q: {total} signed records ({NODES} nodes, {} functions), made in {:.1} s",
        PROJECTS * FUNCTIONS,
        start.elapsed().as_secs_f64()
    );

    let sample: Vec<SignedCounter> =
        nodes.iter().flat_map(|(_, r)| r.iter()).take(RAW_SAMPLE).cloned().collect();
    let (single, batched) = raw_rates(&sample);
    println!();
    println!("Raw ed25519 verification, one core ({} records, keys parsed)", sample.len());
    println!("  one by one                {:>10.0} records/s", single);
    println!(
        "  batched, {} per batch    {:>10.0} records/s   (the baseline below)",
        MAX_PAGE, batched
    );
    let raw = format!("raw ed25519, batched by {MAX_PAGE}");
    Figure::new("q", "raw ed25519, one by one", single, "records/s").beside(&raw, batched).record();

    let dir = tempfile::tempdir()?;
    let sqlite = Store::open(&dir.path().join("q.db").to_string_lossy()).await?;
    let server = PgServer::start(true)?;
    let postgres = Store::open(&server.database("bench")?).await?;
    let stores = [("SQLite", &sqlite), ("PostgreSQL", &postgres)];

    println!();
    println!(
        "q ingest of {total} records: pages of {MAX_PAGE} sorted, batch-verified, each stored in one transaction"
    );
    println!("  (pipelined: the next page is sorted and verified while one is stored)");
    println!("  {:<24} {:>12} {:>12} {:>10}", "", "records/s", "vs batched", "time");
    let alone = sort_alone(&nodes);
    let r = rate(total, alone);
    let line = |name: &str, r: f64, took: Duration, note: &str| {
        println!(
            "  {name:<24} {r:>12.0} {:>11.2}x {:>8.1} s{note}",
            r / batched,
            took.as_secs_f64()
        )
    };
    line("sort + verify, no store", r, alone, "");
    Figure::new("q", &format!("sort + verify {total} records, no store"), r, "records/s")
        .beside(&raw, batched)
        .record();
    for (name, store) in stores {
        let took = ingest(store, &nodes).await?;
        let r = rate(total, took);
        line(&format!("ingest into {name}"), r, took, "   (target >= 0.6x)");
        Figure::new("q", &format!("ingest of {total} records into {name}"), r, "records/s")
            .beside(&raw, batched)
            .target(">= 0.6x", r / batched >= 0.6)
            .record();
    }

    println!();
    println!("q prove over {total} records (sum tree, EIP-712 signature, file rendered)");
    for (name, store) in stores {
        let took = prove(store, total as u64).await?;
        println!("  {:<12} {:>8.2} s   (target < 10 s)", name, took.as_secs_f64());
        Figure::new("q", &format!("prove over {total} records, {name}"), took.as_secs_f64(), "s")
            .target("< 10 s", took < Duration::from_secs(10))
            .record();
    }

    let dir_rates = dir.path().join("rates.yaml");
    std::fs::write(&dir_rates, RATES)?;
    let pricing = q::proof::Pricing::load(&dir_rates)?;
    println!();
    println!("q prove --rates over {total} records (5 meters priced) beside q prove without rates");
    println!("  {:<12} {:>10} {:>10} {:>8}", "", "plain", "priced", "added");
    for (name, store) in stores {
        let plain = prove(store, total as u64).await?;
        let priced = prove_priced(store, total as u64, Some(&pricing)).await?;
        let added = priced.as_secs_f64() / plain.as_secs_f64() - 1.0;
        println!(
            "  {:<12} {:>8.2} s {:>8.2} s {:>7.1}%   (target < 20%)",
            name,
            plain.as_secs_f64(),
            priced.as_secs_f64(),
            added * 100.0
        );
        Figure::new(
            "q",
            &format!("prove --rates over {total} records, {name}"),
            priced.as_secs_f64(),
            "s",
        )
        .beside(&format!("prove without rates, {name}"), plain.as_secs_f64())
        .target("< +20%", added < 0.2)
        .record();
    }
    drop(postgres);
    drop(server);

    push_bench(&nodes, dir.path()).await
}

/// The events a record makes: one per additive figure that is not zero.
fn events_in(usage: &Usage) -> usize {
    q::events::FIGURES.iter().filter(|(_, get)| get(usage) > 0).count()
}

/// `q push` of 1,000,000 events beside a raw client posting the same bodies.
async fn push_bench(nodes: &[(PeerId, Vec<SignedCounter>)], dir: &std::path::Path) -> Result {
    use q::events::{Customers, Shape};
    use tau_tests::receiver::{Options, Receiver};
    const EVENTS: usize = 1_000_000;
    const BATCH: usize = 1_000;

    // A store holding the first records of each node, as many as make 1,000,000 events.
    let store = Store::open(&dir.join("push.db").to_string_lossy()).await?;
    let mut events = 0;
    'nodes: for (node, records) in nodes {
        let mut taken = Vec::new();
        for record in records {
            if events >= EVENTS {
                break;
            }
            events += events_in(&record.record.usage);
            taken.push(record.clone());
        }
        for page in taken.chunks(MAX_PAGE as usize) {
            let next = page.last().map_or(1, |r| r.record.seq + 1);
            let batch =
                q::store::Batch { accepted: page.to_vec(), ..q::store::Batch::new(*node, next) };
            store.ingest(&batch).await?;
        }
        if events >= EVENTS {
            break 'nodes;
        }
    }
    let projects: String = (0..PROJECTS).map(|p| format!("  project-{p}: cus_{p}\n")).collect();
    let customers = Customers::parse(
        &format!("projects:\n{projects}"),
        std::path::Path::new("customers.yaml"),
    )?;
    let shape = Shape::Cloudevents;

    // The same batches, rendered up front for the raw client.
    let mut bodies = Vec::new();
    let start = Instant::now();
    let mut reader = q::push::Reader::new(&store, Default::default(), shape, &customers, BATCH);
    while let Some(batch) = reader.next().await? {
        bodies.push(batch.body);
    }
    let rendered = rate(events, start.elapsed());
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    println!();
    println!(
        "q push of {events} usage events (CloudEvents, batches of {BATCH}: {} batches, {:.0} MB) to a local receiver that acknowledges at once",
        bodies.len(),
        bytes as f64 / 1e6
    );

    let receiver = Receiver::start(Options::default())?;
    let client = q::push::client(Duration::from_secs(30))?;
    let start = Instant::now();
    for body in &bodies {
        let answer = client
            .post(&receiver.url)
            .header("content-type", shape.content_type())
            .body(body.clone())
            .send()
            .await?;
        if !answer.status().is_success() {
            return Err(format!("the receiver answered {}", answer.status()).into());
        }
    }
    let raw = rate(events, start.elapsed());

    let receiver = Receiver::start(Options::default())?;
    let target = q::push::Target { url: receiver.url.parse()?, shape, headers: Default::default() };
    let options = q::push::Options { batch: BATCH, ..q::push::Options::default() };
    let start = Instant::now();
    let pushed = q::push::push(&store, &target, &customers, &options, |_| {}).await?;
    let took = start.elapsed();
    if pushed.events as usize != events || receiver.seen().bytes as usize != bytes {
        return Err(format!(
            "q push sent {} events, {} bytes",
            pushed.events,
            receiver.seen().bytes
        )
        .into());
    }
    let push = rate(events, took);
    println!("  {:<44} {:>12} {:>8}", "", "events/s", "vs raw");
    println!("  {:<44} {:>12.0} {:>7.2}x", "raw client, bodies made up front", raw, 1.0);
    println!(
        "  {:<44} {:>12.0} {:>7.2}x",
        "reading and rendering alone (no HTTP)",
        rendered,
        rendered / raw
    );
    println!(
        "  {:<44} {:>12.0} {:>7.2}x   (targets: >= 0.7x and >= 20,000/s)",
        "q push (read, render, post, cursor)",
        push,
        push / raw
    );
    Figure::new("q", &format!("push of {events} events, CloudEvents"), push, "events/s")
        .beside("raw HTTP client, same bodies", raw)
        .target(">= 0.7x and >= 20000/s", push / raw >= 0.7 && push >= 20_000.0)
        .record();
    Ok(())
}

fn main() -> ExitCode {
    let mut total = 1_000_000;
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let push_only = args.iter().any(|a| a == "--push-only");
    args.retain(|a| a != "--push-only");
    if let [flag, n] = args.as_slice()
        && flag == "--records"
    {
        total = n.parse().unwrap_or(total);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tau-q-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(total, push_only)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tau-q-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
