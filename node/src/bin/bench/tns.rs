//! TNS benchmarks.
//!
//! 1. Local `Get` (in process, on a registry of 10,000 records): p50 and p99. Baseline: a raw
//!    redb read of the same bytes under the same key (no decoding).
//! 2. Push to visible everywhere: 100 records `Put` to one node of a 10-node cloud until every
//!    node has them (polled with `Status` on all ten). Baseline: the `Put` acknowledged by the
//!    first node.
//! 3. Anti-entropy catch-up: a node that was down while 10,000 records were written is started
//!    again; time from its start until it holds all of them. Baseline: applying the same records
//!    to a fresh local registry in process (signature checks and the redb commit).

use std::path::Path;
use std::time::{Duration, Instant};
use tau_proto::tns::TnsProtocol;

use anyhow::{Context, bail};
use futures::future::join_all;
use libp2p::PeerId;
use libp2p::identity::Keypair;
use redb::{Database, ReadableDatabase, TableDefinition};
use tau_node::tns::Store;
use tau_proto::bench::Figure;
use tau_proto::client::ConnectOptions;
use tau_proto::identity::WriterKey;
use tau_proto::tns::values::ProjectRoot;
use tau_proto::tns::{Draft, Record, TnsRequest, TnsResponse, keys};
use tau_proto::{Client, CloudProfile, cbor, keyfile};

use crate::{micros, millis, start_dev, start_dev_with, stats, stop};

const GETS: usize = 20_000;
const CATCH_UP: usize = 10_000;
const SPREAD: usize = 100;
const SPREAD_RUNS: usize = 3;

fn root(id: &str, owner: &Keypair, operator: &Keypair) -> anyhow::Result<Record> {
    let value = cbor::to_vec(&ProjectRoot { owner: WriterKey::of(owner).context("ed25519")? })?;
    Draft { key: keys::project(id), scope: id.into(), value: Some(value) }
        .sign(1, operator)
        .context("sign")
}

/// `count` records of project `id` signed by `owner` at `version`, with 100-byte values.
fn records(
    id: &str,
    tag: &str,
    count: usize,
    version: u64,
    owner: &Keypair,
) -> anyhow::Result<Vec<Record>> {
    (0..count)
        .map(|i| {
            let draft = Draft {
                key: format!("/projects/{id}/files/{tag}-{i:05}"),
                scope: id.into(),
                value: Some(vec![b'v'; 100]),
            };
            draft.sign(version, owner).context("sign")
        })
        .collect()
}

pub(crate) fn local_get(tmp: &Path) -> anyhow::Result<()> {
    let (operator, owner) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let mut store = Store::open(&tmp.join("get.redb"))?;
    let operator_key = WriterKey::of(&operator).context("ed25519")?;
    store.apply(vec![root("bench", &owner, &operator)?], Some(&operator_key))?;
    let records = records("bench", "f", CATCH_UP, 2, &owner)?;
    for chunk in records.chunks(1_000) {
        store.apply(chunk.to_vec(), Some(&operator_key))?;
    }
    // The baseline: the same bytes under the same keys in a bare redb table.
    const RAW: TableDefinition<&str, &[u8]> = TableDefinition::new("raw");
    let raw = Database::create(tmp.join("raw.redb"))?;
    let txn = raw.begin_write()?;
    {
        let mut table = txn.open_table(RAW)?;
        for record in &records {
            table.insert(record.key.as_str(), cbor::to_vec(record)?.as_slice())?;
        }
    }
    txn.commit()?;

    let order: Vec<usize> = (0..GETS).map(|i| (i * 7_919) % records.len()).collect();
    let mut ours = Vec::with_capacity(GETS);
    let mut theirs = Vec::with_capacity(GETS);
    for &i in &order {
        let key = records[i].key.as_str();
        let start = Instant::now();
        let found = store.get(key)?;
        ours.push(start.elapsed());
        if found.is_none() {
            bail!("{key} missing");
        }
        let start = Instant::now();
        let txn = raw.begin_read()?;
        let table = txn.open_table(RAW)?;
        let bytes = table.get(key)?.map(|v| v.value().to_vec());
        theirs.push(start.elapsed());
        if bytes.is_none() {
            bail!("{key} missing from the baseline");
        }
    }
    let (ours, theirs) = (stats(ours), stats(theirs));
    println!("TNS local Get ({GETS} reads of a registry of {CATCH_UP} records, in process)");
    println!("  {:<44} {:>10} {:>10}", "", "p50", "p99");
    println!(
        "  {:<44} {:>10} {:>10}",
        "tns Store::get (redb read + CBOR decode)",
        micros(ours.p50),
        micros(ours.p99)
    );
    println!(
        "  {:<44} {:>10} {:>10}",
        "baseline: raw redb read of the same bytes",
        micros(theirs.p50),
        micros(theirs.p99)
    );
    println!(
        "  ratio p50 {:.1}x   (target: local get under 20 µs)",
        ours.p50.as_secs_f64() / theirs.p50.as_secs_f64()
    );
    Figure::new("tns", "local Get, p50", ours.p50.as_secs_f64() * 1e6, "µs")
        .beside("raw redb read of the same bytes", theirs.p50.as_secs_f64() * 1e6)
        .target("< 20 µs", ours.p50 < Duration::from_micros(20))
        .record();
    Ok(())
}

/// Connects to a dev cloud and learns every node's address.
async fn connect(profile: &Path) -> anyhow::Result<(Client, Vec<PeerId>)> {
    let profile = CloudProfile::load(profile)?;
    let client = Client::connect(&profile).await?;
    let nodes = client.nodes().await?;
    Ok((client, nodes))
}

async fn record_count(client: &Client, node: PeerId) -> anyhow::Result<u64> {
    match client.call::<TnsProtocol>(node, TnsRequest::Status).await? {
        TnsResponse::Status(status) => Ok(status.records),
        other => bail!("unexpected answer {other:?}"),
    }
}

async fn put(client: &Client, node: PeerId, records: Vec<Record>) -> anyhow::Result<()> {
    match client.call::<TnsProtocol>(node, TnsRequest::Put { records }).await? {
        TnsResponse::Put(outcome) if outcome.rejected.is_empty() => Ok(()),
        other => bail!("put refused: {other:?}"),
    }
}

/// Polls until every node in `nodes` holds at least `expected` live records.
async fn wait_all(
    client: &Client,
    nodes: &[PeerId],
    expected: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let counts = join_all(nodes.iter().map(|n| record_count(client, *n))).await;
        if counts.iter().all(|c| matches!(c, Ok(n) if *n >= expected)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("not every node had {expected} records within {timeout:?}: {counts:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) async fn spread(tau_node: &Path, tmp: &Path) -> anyhow::Result<()> {
    let dir = tmp.join("spread");
    // Every node a tns node, as this benchmark has always measured it.
    let (mut dev, profile, _) = start_dev_with(tau_node, &dir, 10, &["--core", "10"]).await?;
    let (client, nodes) = connect(&profile).await?;
    if nodes.len() != 10 {
        bail!("expected 10 nodes, found {}", nodes.len());
    }
    let operator = keyfile::read(&dir.join("operator.key"))?;
    let owner = Keypair::generate_ed25519();
    put(&client, nodes[0], vec![root("bench", &owner, &operator)?]).await?;
    wait_all(&client, &nodes, 1, Duration::from_secs(30)).await?;

    let mut everywhere = Vec::new();
    let mut acked = Vec::new();
    for run in 0..SPREAD_RUNS {
        let batch = records("bench", &format!("run{run}"), SPREAD, 2 + run as u64, &owner)?;
        let expected = 1 + ((run + 1) * SPREAD) as u64;
        let start = Instant::now();
        put(&client, nodes[run % nodes.len()], batch).await?;
        acked.push(start.elapsed());
        wait_all(&client, &nodes, expected, Duration::from_secs(30)).await?;
        everywhere.push(start.elapsed());
    }
    stop(&mut dev).await;
    let list = |v: &[Duration]| v.iter().map(|d| millis(*d)).collect::<Vec<_>>().join(", ");
    println!("TNS push to visible everywhere ({SPREAD} records, 10 nodes, {SPREAD_RUNS} runs)");
    println!("  visible on all 10 nodes: runs {}", list(&everywhere));
    println!("  baseline, Put acknowledged by the first node: runs {}", list(&acked));
    let (e, a) = (stats(everywhere).p50, stats(acked).p50);
    println!(
        "  median {} vs baseline {}: ratio {:.1}x   (target: under 1 s to all 10 nodes)",
        millis(e),
        millis(a),
        e.as_secs_f64() / a.as_secs_f64()
    );
    Figure::new("tns", "push until visible on 10 nodes", e.as_secs_f64() * 1e3, "ms")
        .beside("Put acknowledged by the first node", a.as_secs_f64() * 1e3)
        .target("< 1 s", e < Duration::from_secs(1))
        .record();
    Ok(())
}

pub(crate) async fn catch_up(tau_node: &Path, tmp: &Path) -> anyhow::Result<()> {
    let dir = tmp.join("catch-up");
    let (mut dev, profile) = start_dev(tau_node, &dir, 3).await?;
    let (client, nodes) = connect(&profile).await?;
    let operator = keyfile::read(&dir.join("operator.key"))?;
    let owner = Keypair::generate_ed25519();

    // Node 2 goes down; 10,000 records are written while it is away.
    let pid: i32 = std::fs::read_to_string(dir.join("node-2/node.pid"))?.trim().parse()?;
    let node2_id = keyfile::read(&dir.join("node-2/identity.key"))?.public().to_peer_id();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM)?;
    while std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z")
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let alive: Vec<PeerId> = nodes.iter().copied().filter(|n| *n != node2_id).collect();
    let root = root("bench", &owner, &operator)?;
    put(&client, alive[0], vec![root.clone()]).await?;
    let batch = records("bench", "f", CATCH_UP, 2, &owner)?;
    for chunk in batch.chunks(1_000) {
        put(&client, alive[0], chunk.to_vec()).await?;
    }
    let expected = 1 + CATCH_UP as u64;
    wait_all(&client, &alive, expected, Duration::from_secs(60)).await?;

    // It comes back: time until it holds everything.
    let start = Instant::now();
    let mut node2 = tokio::process::Command::new(tau_node)
        .args(["run", "--config"])
        .arg(dir.join("node-2/node.yaml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let client2 =
        Client::connect_with(&CloudProfile::load(&profile)?, ConnectOptions::default()).await?;
    loop {
        if matches!(record_count(&client2, node2_id).await, Ok(n) if n >= expected) {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("node 2 did not catch up within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = start.elapsed();
    stop(&mut node2).await;
    stop(&mut dev).await;

    // Baseline: the same records applied to a fresh registry in this process.
    let mut store = Store::open(&tmp.join("baseline.redb"))?;
    let operator_key = WriterKey::of(&operator).context("ed25519")?;
    let start = Instant::now();
    store.apply(vec![root], Some(&operator_key))?;
    for chunk in batch.chunks(1_000) {
        store.apply(chunk.to_vec(), Some(&operator_key))?;
    }
    let local = start.elapsed();
    println!("TNS anti-entropy catch-up ({CATCH_UP} records missed by a node that was down)");
    println!("  from the node's start until it holds them all: {}", millis(took));
    println!("  baseline, the same records applied locally (verify + commit): {}", millis(local));
    println!(
        "  ratio {:.1}x   (target: under 5 s to catch up {CATCH_UP} records; sync runs every {:?})",
        took.as_secs_f64() / local.as_secs_f64(),
        tau_node::tns::SYNC_INTERVAL
    );
    Figure::new(
        "tns",
        &format!("anti-entropy catch-up of {CATCH_UP} records"),
        took.as_secs_f64() * 1e3,
        "ms",
    )
    .beside("the same records applied locally", local.as_secs_f64() * 1e3)
    .target("< 5 s", took < Duration::from_secs(5))
    .record();
    Ok(())
}
