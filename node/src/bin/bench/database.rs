//! Key-value stores: what state costs a function, and what the store costs beside redb.
//!
//! - In process: a get and a set of the node's store (`database::store::Store`: a key's state
//!   decoded, a batch's checks, digests and sizes) beside a raw redb read and write of the same
//!   bytes.
//! - On a 3-node dev cloud (every node a database node holding the store): warm `GET /count`
//!   (one key-value get) beside warm `ping` on the same gateway, concurrency 1; and increments
//!   (`POST /count`: a get and an increment) sent at once through the three gateways beside ping
//!   the same way, every increment answered then found in the counter on every node.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use redb::{ReadableDatabase, TableDefinition};
use tau_node::database::store::{Change, Store};
use tau_proto::bench::Figure;
use tau_proto::database::{Op, StoreId};

use crate::substrate::{Target, create_project, first_answer, load, load_many, push};
use crate::{micros, start_dev_with, stats, stop};

const RAW: TableDefinition<&[u8], &[u8]> = TableDefinition::new("raw");
/// Operations per in-process measurement.
const OPS: usize = 2_000;
/// Concurrent increments across the three gateways.
const CONCURRENCY: usize = 48;

pub(crate) async fn run(tau_node: &Path, tmp: &Path) -> anyhow::Result<()> {
    in_process(tmp)?;
    println!();
    through_functions(tau_node, tmp).await
}

fn in_process(tmp: &Path) -> anyhow::Result<()> {
    let dir = tmp.join("database-local");
    std::fs::create_dir_all(&dir)?;
    let store = Store::open(&dir.join("database.redb"), 1)?;
    let raw = redb::Database::create(dir.join("raw.redb"))?;
    {
        let txn = raw.begin_write()?;
        txn.open_table(RAW)?;
        txn.commit()?;
    }
    let id = StoreId { project: "bench".into(), name: "counts".into() };
    let value = vec![7u8; 64];
    let key = |i: usize| format!("key-{i:05}");
    let (mut set, mut raw_set) = (Vec::with_capacity(OPS), Vec::with_capacity(OPS));
    for i in 0..OPS {
        let started = Instant::now();
        let op = Op::Set { key: key(i), value: value.clone() };
        let change = Change::Write { store: id.clone(), ops: vec![op], max_bytes: 1 << 30 };
        let applied = store.apply(vec![change])?;
        if applied.outcomes.iter().any(Result::is_err) {
            bail!("a set was refused: {:?}", applied.outcomes);
        }
        set.push(started.elapsed());
        let started = Instant::now();
        let txn = raw.begin_write()?;
        txn.open_table(RAW)?.insert(key(i).as_bytes(), value.as_slice())?;
        txn.commit()?;
        raw_set.push(started.elapsed());
    }
    let (mut get, mut raw_get) = (Vec::with_capacity(OPS), Vec::with_capacity(OPS));
    for i in 0..OPS {
        let wanted = [key(i)];
        let started = Instant::now();
        let found = store.states(&id, &wanted)?;
        let value = found[0].as_ref().and_then(|s| s.value());
        get.push(started.elapsed());
        anyhow::ensure!(value.is_some(), "a key set is missing");
        let started = Instant::now();
        let txn = raw.begin_read()?;
        let found = txn.open_table(RAW)?.get(key(i).as_bytes())?.map(|v| v.value().to_vec());
        raw_get.push(started.elapsed());
        anyhow::ensure!(found.is_some(), "a raw key is missing");
    }
    let (set, raw_set, get, raw_get) = (stats(set), stats(raw_set), stats(get), stats(raw_get));
    println!("database: the node's store in process beside raw redb, 64-byte values, p50");
    println!("  {:<30}{:>14}{:>14}", "", "tau store", "raw redb");
    println!("  {:<30}{:>14}{:>14}", "get", micros(get.p50), micros(raw_get.p50));
    println!(
        "  {:<30}{:>14}{:>14}",
        "set (one durable commit)",
        micros(set.p50),
        micros(raw_set.p50)
    );
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    Figure::new("database", "store get p50, in process", us(get.p50), "µs")
        .beside("raw redb read", us(raw_get.p50))
        .record();
    Figure::new("database", "store set p50, in process, one commit", us(set.p50), "µs")
        .beside("raw redb write and commit", us(raw_set.p50))
        .record();
    Ok(())
}

/// A project with ping, the counter (`POST /count`), its reader (`GET /count`) and the store.
fn write_project(dir: &Path) -> anyhow::Result<()> {
    let wasm_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/functions/target/wasm32-wasip2/release");
    std::fs::create_dir_all(dir.join("functions"))?;
    std::fs::create_dir_all(dir.join("databases"))?;
    std::fs::write(dir.join("config.yaml"), "id: state\nname: state\n")?;
    for name in ["ping", "counter"] {
        let wasm = wasm_dir.join(format!("{name}.wasm"));
        std::fs::copy(&wasm, dir.join(format!("{name}.wasm")))
            .with_context(|| format!("{}: run scripts/build-examples first", wasm.display()))?;
    }
    let functions = [
        ("ping", "GET", "/ping", "ping"),
        ("counter", "POST", "/count", "counter"),
        ("count", "GET", "/count", "counter"),
    ];
    for (name, method, path, source) in functions {
        std::fs::write(
            dir.join(format!("functions/{name}.yaml")),
            format!(
                "id: {name}\ntrigger: {{type: http, method: {method}, paths: [{path}]}}\n\
                 domains: [counter.state.tau]\nsource: {source}.wasm\n\
                 execution: {{timeout: 10s, memory: 64MB}}\n"
            ),
        )?;
    }
    std::fs::write(
        dir.join("databases/counts.yaml"),
        "id: counts\nfunctions: [counter, count]\nsize: 64MB\nreplicas: 3\n",
    )?;
    Ok(())
}

async fn through_functions(tau_node: &Path, tmp: &Path) -> anyhow::Result<()> {
    let dir = tmp.join("database");
    let (mut dev, profile, gateways) = start_dev_with(tau_node, &dir.join("cloud"), 3, &[]).await?;
    let key = create_project(tau_node, &profile, &dir, "state").await?;
    let project = dir.join("state");
    write_project(&project)?;
    push(tau_node, &profile, &project, &key).await?;
    let host = "counter.state.tau";
    let ping: Vec<Target> =
        gateways.iter().map(|g| Target::get("ping", g.clone(), host, "/ping")).collect();
    let read: Vec<Target> = gateways
        .iter()
        .map(|g| Target::get("count", g.clone(), host, "/count?key=bench"))
        .collect();
    let increment: Vec<Target> = read
        .iter()
        .map(|t| Target { name: "counter", method: hyper::Method::POST, ..t.clone() })
        .collect();
    for target in ping.iter().chain(&increment).chain(&read) {
        first_answer(target, Instant::now()).await?;
    }
    // Every node took one increment above: the counter starts at 3.
    let before = value(&read[0]).await?;

    let ping_one = load(&ping[0], 1).await?;
    let read_one = load(&read[0], 1).await?;
    let ping_many = load_many(&ping, CONCURRENCY).await?;
    let counted = load_many(&increment, CONCURRENCY).await?;
    // Every increment answered is in the counter, on every node (anti-entropy has 2 s rounds).
    let expected = before + counted.answered;
    let deadline = Instant::now() + Duration::from_secs(30);
    for target in &read {
        loop {
            let seen = value(target).await?;
            if seen == expected {
                break;
            }
            if Instant::now() > deadline {
                bail!("{} reads {seen}, not {expected}: increments were lost", target.addr);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    stop(&mut dev).await;

    let added = read_one.p50.saturating_sub(ping_one.p50);
    println!("database: a 3-node cloud, every node holding the store `counts` (3 replicas)");
    println!("  {:<44}{:>14}{:>14}", "", "with state", "ping");
    println!(
        "  {:<44}{:>14}{:>14}",
        "warm p50, concurrency 1 (GET /count: one get)",
        micros(read_one.p50),
        micros(ping_one.p50)
    );
    println!(
        "  {:<44}{:>14}{:>14}",
        format!("requests/s, {CONCURRENCY} at once over 3 gateways"),
        format!("{:.0}", counted.per_second),
        format!("{:.0}", ping_many.per_second)
    );
    println!("  a key-value get adds {} to a warm request   (target: under 150 µs)", micros(added));
    println!(
        "  increments: {:.0}/s across 3 nodes (POST /count: a get and an increment), all {} \
         answered found on every node   (target: at least 5,000/s, none lost)",
        counted.per_second, counted.answered
    );
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    Figure::new(
        "database",
        "warm GET /count p50 (one key-value get), concurrency 1",
        us(read_one.p50),
        "µs",
    )
    .beside("warm ping", us(ping_one.p50))
    .target("< 150 µs added", added < Duration::from_micros(150))
    .record();
    Figure::new("database", "increments/s across 3 nodes, none lost", counted.per_second, "inc/s")
        .beside("ping requests/s the same way", ping_many.per_second)
        .target(">= 5,000/s", counted.per_second >= 5_000.0)
        .record();
    Ok(())
}

/// The counter as one node reads it.
async fn value(target: &Target) -> anyhow::Result<u64> {
    let stream = tokio::net::TcpStream::connect(&target.addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::get(target.path.as_str())
        .header(hyper::header::HOST, target.host.as_str())
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let response = sender.send_request(request).await?;
    use http_body_util::BodyExt;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(std::str::from_utf8(&body)?.trim().parse()?)
}
