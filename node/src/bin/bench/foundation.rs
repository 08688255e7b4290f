//! The foundation's benchmarks.
//!
//! 1. Admin `Info` round trip over loopback: a light client asks a `tau-node run` process for its
//!    Info, one request at a time. Baseline: a raw TCP request/response of the same size between
//!    two processes over loopback (no pnet, noise, yamux or CBOR).
//! 2. Time from start until a 10-node mesh is complete (`tau-node dev --nodes 10` printing
//!    `ready`). Baseline: the same for a 1-node cloud (process start, listen, first answer).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tau_proto::admin::AdminProtocol;

use anyhow::Context;

use crate::{micros, start_dev, stats, stop};
use tau_proto::admin::AdminRequest;
use tau_proto::bench::Figure;
use tau_proto::{Client, CloudProfile};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const WARMUP: usize = 300;
const ROUND_TRIPS: usize = 5_000;
const MESH_RUNS: usize = 3;

pub(crate) async fn admin_round_trip(tau_node: &Path, tmp: &Path) -> anyhow::Result<()> {
    // One node, one process.
    let (mut dev, profile) = start_dev(tau_node, &tmp.join("one"), 1).await?;
    let profile = CloudProfile::load(&profile)?;
    let client = Client::connect(&profile).await?;
    let node = client.entry();
    // The size of the answer on the wire, as the admin protocol encodes it.
    let info = tau_proto::admin::AdminResponse::Info(Box::new(client.info(node).await?));
    let info_size = cbor4ii::serde::to_vec(Vec::new(), &info)?.len();
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..WARMUP + ROUND_TRIPS {
        let start = Instant::now();
        client.call::<AdminProtocol>(node, AdminRequest::Info).await?;
        if i >= WARMUP {
            samples.push(start.elapsed());
        }
    }
    let tau = stats(samples);
    drop(client);
    stop(&mut dev).await;

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
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    Figure::new("foundation", "admin Info round trip, p50", us(tau.p50), "µs")
        .beside("raw TCP request/response", us(raw.p50))
        .target("< 300 µs", tau.p50 < Duration::from_micros(300))
        .record();
    Figure::new("foundation", "admin Info round trip, p99", us(tau.p99), "µs")
        .beside("raw TCP request/response", us(raw.p99))
        .record();
    Ok(())
}

/// Answers each 8-byte request (a little-endian length) with that many bytes.
pub(crate) async fn echo_server() -> anyhow::Result<()> {
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

async fn time_to_ready(tau_node: &Path, dir: &Path, nodes: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let (mut dev, _) = start_dev(tau_node, dir, nodes).await?;
    let took = start.elapsed();
    stop(&mut dev).await;
    Ok(took)
}

pub(crate) async fn mesh(tau_node: &Path, tmp: &Path) -> anyhow::Result<()> {
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
    Figure::new(
        "foundation",
        "start until a 10-node mesh is complete",
        ten_m.as_secs_f64() * 1e3,
        "ms",
    )
    .beside("1 node", one_m.as_secs_f64() * 1e3)
    .target("< 3 s", ten_m < Duration::from_secs(3))
    .record();
    Ok(())
}
