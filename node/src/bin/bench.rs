//! `tau-node-bench`: the foundation's benchmarks, each beside a baseline measured in the same run.
//!
//! 1. Admin `Info` round trip over loopback: a light client asks a `tau-node run` process for its
//!    Info, one request at a time. Baseline: a raw TCP request/response of the same size between
//!    two processes over loopback (no pnet, noise, yamux or CBOR).
//! 2. Time from start until a 10-node mesh is complete (`tau-node dev --nodes 10` printing
//!    `ready`). Baseline: the same for a 1-node cloud (process start, listen, first answer).
//!
//! Run with `scripts/bench` (a release build). Needs `tau-node` beside this binary.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tau_proto::admin::AdminRequest;
use tau_proto::{Client, CloudProfile};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const WARMUP: usize = 300;
const ROUND_TRIPS: usize = 5_000;
const MESH_RUNS: usize = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--echo-server") {
        return echo_server().await;
    }
    let tau_node = sibling("tau-node")?;
    let tmp = tempdir()?;
    println!("tau-node benchmarks ({} CPUs)", std::thread::available_parallelism()?.get());
    println!();
    let result = async {
        admin_round_trip(&tau_node, &tmp).await?;
        println!();
        mesh(&tau_node, &tmp).await
    }
    .await;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p tau-node --bins)",
            path.display()
        );
    }
    Ok(path)
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("tau-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    Stats { p50: at(0.50), p99: at(0.99), mean }
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

async fn admin_round_trip(tau_node: &Path, tmp: &Path) -> anyhow::Result<()> {
    // One node, one process.
    let mut dev = tokio::process::Command::new(tau_node)
        .args(["dev", "--nodes", "1", "--dir"])
        .arg(tmp.join("one"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let profile = ready_line(&mut dev).await?;
    let profile = CloudProfile::load(&profile)?;
    let client = Client::connect(&profile).await?;
    let node = client.entry();
    // The size of the answer on the wire, as the admin protocol encodes it.
    let info = tau_proto::admin::AdminResponse::Info(Box::new(client.info(node).await?));
    let info_size = cbor4ii::serde::to_vec(Vec::new(), &info)?.len();
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..WARMUP + ROUND_TRIPS {
        let start = Instant::now();
        client.admin(node, AdminRequest::Info).await?;
        if i >= WARMUP {
            samples.push(start.elapsed());
        }
    }
    let tau = stats(samples);
    drop(client);
    dev.kill().await?;

    // Baseline: raw TCP request/response of the same size, to another process.
    let mut server = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--echo-server")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = server.stdout.take().context("echo server stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await?;
    let port: u16 = line.trim().parse().context("echo server port")?;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let mut response = vec![0u8; info_size];
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..WARMUP + ROUND_TRIPS {
        let start = Instant::now();
        stream.write_all(&(info_size as u64).to_le_bytes()).await?;
        stream.read_exact(&mut response).await?;
        if i >= WARMUP {
            samples.push(start.elapsed());
        }
    }
    let raw = stats(samples);
    server.kill().await?;

    println!(
        "admin Info round trip over loopback ({ROUND_TRIPS} sequential requests, {info_size}-byte answer)"
    );
    println!("  {:<44} {:>10} {:>10} {:>10}", "", "p50", "p99", "mean");
    println!(
        "  {:<44} {:>10} {:>10} {:>10}",
        "tau admin Info (pnet+noise+yamux+CBOR)",
        micros(tau.p50),
        micros(tau.p99),
        micros(tau.mean)
    );
    println!(
        "  {:<44} {:>10} {:>10} {:>10}",
        "baseline: raw TCP request/response",
        micros(raw.p50),
        micros(raw.p99),
        micros(raw.mean)
    );
    println!(
        "  ratio p50 {:.1}x, p99 {:.1}x   (target: tau p50 under 300 µs)",
        tau.p50.as_secs_f64() / raw.p50.as_secs_f64(),
        tau.p99.as_secs_f64() / raw.p99.as_secs_f64()
    );
    Ok(())
}

/// Answers each 8-byte request (a little-endian length) with that many bytes.
async fn echo_server() -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    println!("{}", listener.local_addr()?.port());
    let (mut stream, _) = listener.accept().await?;
    stream.set_nodelay(true)?;
    let mut len = [0u8; 8];
    let mut buffer = Vec::new();
    while stream.read_exact(&mut len).await.is_ok() {
        buffer.resize(u64::from_le_bytes(len) as usize, 7);
        stream.write_all(&buffer).await?;
    }
    Ok(())
}

async fn ready_line(child: &mut tokio::process::Child) -> anyhow::Result<PathBuf> {
    let stdout = child.stdout.take().context("dev stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
        .await
        .context("tau-node dev did not get ready within 120 s")??
        .context("tau-node dev exited before it was ready")?;
    let path = line.strip_prefix("ready ").context("unexpected output from tau-node dev")?;
    Ok(PathBuf::from(path))
}

async fn time_to_ready(tau_node: &Path, dir: &Path, nodes: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut dev = tokio::process::Command::new(tau_node)
        .args(["dev", "--nodes", &nodes.to_string(), "--dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    ready_line(&mut dev).await?;
    let took = start.elapsed();
    if let Some(pid) = dev.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(20), dev.wait()).await;
    Ok(took)
}

async fn mesh(tau_node: &Path, tmp: &Path) -> anyhow::Result<()> {
    let mut ten = Vec::new();
    let mut one = Vec::new();
    for run in 0..MESH_RUNS {
        ten.push(time_to_ready(tau_node, &tmp.join(format!("ten-{run}")), 10).await?);
        one.push(time_to_ready(tau_node, &tmp.join(format!("one-{run}")), 1).await?);
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let runs = |v: &[Duration]| {
        v.iter().map(|d| format!("{:.0} ms", d.as_secs_f64() * 1e3)).collect::<Vec<_>>().join(", ")
    };
    println!(
        "time from start until the mesh is complete ({MESH_RUNS} runs each; new keys each run)"
    );
    println!("  10-node mesh (tau-node dev --nodes 10): runs {}", runs(&ten));
    println!("  baseline, 1 node (tau-node dev --nodes 1): runs {}", runs(&one));
    let (ten_m, one_m) = (median(&mut ten), median(&mut one));
    println!(
        "  median {:.0} ms vs baseline {:.0} ms: ratio {:.1}x   (target: 10-node mesh under 3 s)",
        ten_m.as_secs_f64() * 1e3,
        one_m.as_secs_f64() * 1e3,
        ten_m.as_secs_f64() / one_m.as_secs_f64()
    );
    Ok(())
}
