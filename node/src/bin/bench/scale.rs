//! Scale: dev clouds of 10, 30, 60 and 100 nodes on this machine, each figure beside the same
//! figure at 10 nodes (the baseline, measured in the same run).
//!
//! For each size: time from `tau-node dev` starting until it prints `ready` (every node healthy
//! in every seer's table); idle CPU per node (the CPU time of the node processes over 15 s,
//! after 15 s of settling, over the node count); RSS per node (mean `VmRSS`); connections per
//! node (mean and largest, `Peers`); and the time from `project push` through node 0 until every
//! node's gateway serves the new route (TNS written, spread, and read by every node).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use libp2p::PeerId;
use tau_proto::bench::Figure;
use tau_proto::{Client, CloudProfile, keyfile};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::{ready_line, stop};

/// The cloud sizes measured by default; the first is the baseline.
pub(crate) const SIZES: [usize; 4] = [10, 30, 60, 100];
const SETTLE: Duration = Duration::from_secs(30);
const MEASURE: Duration = Duration::from_secs(15);

/// What one size measured.
struct Measured {
    nodes: usize,
    ready: Duration,
    cpu_percent: f64,
    rss_mb: f64,
    connections: (f64, usize),
    /// Loopback bytes and packets sent per node per second while idle (every node shares `lo`).
    traffic: (f64, f64),
    push: Pushed,
}

/// What a push measured: the `project push` command, then every gateway's first 200.
struct Pushed {
    command: Duration,
    served_median: Duration,
    served_all: Duration,
}

pub(crate) async fn run(tau_node: &Path, tmp: &Path, sizes: &[usize]) -> anyhow::Result<()> {
    println!("Scale: idle cost per node as the cloud grows (dev clouds, release build)");
    let mut all = Vec::new();
    for &nodes in sizes {
        let m = one(tau_node, &tmp.join(format!("scale-{nodes}")), nodes).await?;
        println!(
            "  {:>3} nodes: ready after {:.1} s, idle CPU {:.2}% of a core per node, RSS {:.0} MB \
             per node, {:.1} connections per node (at most {}), {:.0} bytes and {:.1} packets \
             sent per node per second; push command {} ms, served by half the gateways after \
             {} ms, by all after {} ms",
            m.nodes,
            m.ready.as_secs_f64(),
            m.cpu_percent,
            m.rss_mb,
            m.connections.0,
            m.connections.1,
            m.traffic.0,
            m.traffic.1,
            m.push.command.as_millis(),
            m.push.served_median.as_millis(),
            m.push.served_all.as_millis(),
        );
        all.push(m);
    }
    let base = &all[0];
    println!();
    println!(
        "  | nodes | ready after | idle CPU per node | idle CPU, whole cloud | RSS per node | \
         connections per node (max) | loopback bytes/s per node | push served by all |"
    );
    println!("  |---|---|---|---|---|---|---|---|");
    for m in &all {
        println!(
            "  | {} | {:.1} s | {:.2}% ({:.2}x) | {:.2} cores | {:.0} MB | {:.1} ({}) | {:.0} ({:.2}x) | {} ms ({:.2}x) |",
            m.nodes,
            m.ready.as_secs_f64(),
            m.cpu_percent,
            m.cpu_percent / base.cpu_percent,
            m.cpu_percent * m.nodes as f64 / 100.0,
            m.rss_mb,
            m.connections.0,
            m.connections.1,
            m.traffic.0,
            m.traffic.0 / base.traffic.0,
            m.push.served_all.as_millis(),
            m.push.served_all.as_secs_f64() / base.push.served_all.as_secs_f64()
        );
    }
    for m in all.iter().skip(1) {
        let n = m.nodes;
        let largest = n == 100;
        let cpu =
            Figure::new("scale", &format!("idle CPU per node, {n} nodes"), m.cpu_percent, "%")
                .beside("the same at 10 nodes", base.cpu_percent);
        let cpu = match largest {
            true => cpu.target(
                "<= 1.5x and < 1%",
                m.cpu_percent <= 1.5 * base.cpu_percent && m.cpu_percent < 1.0,
            ),
            false => cpu,
        };
        cpu.record();
        let rss = Figure::new("scale", &format!("RSS per node, {n} nodes"), m.rss_mb, "MB")
            .beside("the same at 10 nodes", base.rss_mb);
        match largest {
            true => rss.target("< 40 MB", m.rss_mb < 40.0),
            false => rss,
        }
        .record();
        let ready = Figure::new("scale", &format!("ready, {n} nodes"), m.ready.as_secs_f64(), "s")
            .beside("the same at 10 nodes", base.ready.as_secs_f64());
        match largest {
            true => ready.target("< 60 s", m.ready < Duration::from_secs(60)),
            false => ready,
        }
        .record();
        let push = Figure::new(
            "scale",
            &format!("push until served by all {n} nodes"),
            m.push.served_all.as_secs_f64() * 1e3,
            "ms",
        )
        .beside("the same at 10 nodes", base.push.served_all.as_secs_f64() * 1e3);
        match largest {
            true => push.target("< 3 s", m.push.served_all < Duration::from_secs(3)),
            false => push,
        }
        .record();
    }
    Ok(())
}

async fn one(tau_node: &Path, dir: &Path, nodes: usize) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let mut dev = tokio::process::Command::new(tau_node)
        .args(["dev", "--nodes", &nodes.to_string(), "--timeout", "120", "--dir"])
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let (profile, gateways) = ready_line(&mut dev).await?;
    let ready = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    let pids: Vec<u32> = (0..nodes)
        .map(|i| {
            let path = dir.join(format!("node-{i}/node.pid"));
            Ok(std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .trim()
                .parse()?)
        })
        .collect::<anyhow::Result<_>>()?;
    let before = cpu_ticks(&pids)?;
    let lo_before = loopback()?;
    tokio::time::sleep(MEASURE).await;
    let after = cpu_ticks(&pids)?;
    let lo_after = loopback()?;
    let per_node_second = |a: u64, b: u64| (b - a) as f64 / MEASURE.as_secs_f64() / nodes as f64;
    let traffic =
        (per_node_second(lo_before.0, lo_after.0), per_node_second(lo_before.1, lo_after.1));
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    let cores = (after - before) as f64 / ticks / MEASURE.as_secs_f64();
    let cpu_percent = 100.0 * cores / nodes as f64;
    let rss_mb = pids.iter().map(|p| rss_kb(*p)).sum::<anyhow::Result<u64>>()? as f64
        / 1024.0
        / nodes as f64;
    let connections = connections(&profile, dir, nodes).await?;
    let push = push_until_served(tau_node, dir, &profile, &gateways).await?;
    stop(&mut dev).await;
    Ok(Measured { nodes, ready, cpu_percent, rss_mb, connections, traffic, push })
}

/// User and system CPU ticks of `pids`, summed.
fn cpu_ticks(pids: &[u32]) -> anyhow::Result<u64> {
    let mut total = 0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("node process {pid} is gone"))?;
        // The fields after the command name, which may hold spaces, in parentheses.
        let rest = stat.rsplit_once(") ").context("unexpected /proc stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        total += fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    }
    Ok(total)
}

/// Bytes and packets sent on the loopback interface so far (`/proc/net/dev`).
fn loopback() -> anyhow::Result<(u64, u64)> {
    let dev = std::fs::read_to_string("/proc/net/dev")?;
    let line = dev
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("lo:"))
        .context("no loopback interface in /proc/net/dev")?;
    let fields: Vec<u64> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
    // Receive: bytes packets errs drop fifo frame compressed multicast; then transmit.
    Ok((*fields.get(8).context("short /proc/net/dev")?, fields[9]))
}

fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("no VmRSS value")?.parse()?)
}

/// Mean and largest number of nodes each node is connected to.
async fn connections(profile: &Path, dir: &Path, nodes: usize) -> anyhow::Result<(f64, usize)> {
    let client = Client::connect(&CloudProfile::load(profile)?).await?;
    let text = std::fs::read_to_string(profile)?;
    let addrs: Vec<libp2p::Multiaddr> =
        text.lines().filter_map(|l| l.trim().trim_start_matches("- ").parse().ok()).collect();
    let mut counts = Vec::new();
    for i in 0..nodes {
        let peer: PeerId =
            keyfile::read(&dir.join(format!("node-{i}/identity.key")))?.public().to_peer_id();
        if let Some(addr) = addrs.iter().find(|a| tau_proto::profile::peer_id_of(a) == Some(peer)) {
            client.add_address(peer, addr.clone()).await?;
        }
        counts.push(client.peers(peer).await?.len());
    }
    let mean = counts.iter().sum::<usize>() as f64 / nodes as f64;
    Ok((mean, counts.into_iter().max().unwrap_or(0)))
}

/// Pushes a project with one route through node 0 and times it until every gateway serves the
/// route.
async fn push_until_served(
    tau_node: &Path,
    dir: &Path,
    profile: &Path,
    gateways: &[String],
) -> anyhow::Result<Pushed> {
    let project = dir.join("project");
    let owner = dir.join("owner.key");
    let cloud = profile.to_string_lossy().into_owned();
    cli(tau_node, &["key", "generate", "--out", &owner.to_string_lossy()]).await?;
    let owner_id = cli(tau_node, &["key", "public", &owner.to_string_lossy()]).await?;
    cli(
        tau_node,
        &["project", "create", "--id", "scale", "--owner", owner_id.trim(), "--cloud", &cloud],
    )
    .await?;
    std::fs::create_dir_all(project.join("functions"))?;
    std::fs::write(project.join("config.yaml"), "id: scale\nname: scale\n")?;
    std::fs::copy(example("ping")?, project.join("ping.wasm"))?;
    std::fs::write(
        project.join("functions/ping.yaml"),
        "id: ping\ntrigger: {type: http, method: GET, paths: [/ping]}\n\
         domains: [ping.scale.tau]\nsource: ping.wasm\n",
    )?;
    let node0 = keyfile::read(&dir.join("node-0/identity.key"))?.public().to_peer_id().to_string();
    let start = Instant::now();
    cli(
        tau_node,
        &[
            "project",
            "push",
            &project.to_string_lossy(),
            "--cloud",
            &cloud,
            "--key",
            &owner.to_string_lossy(),
            "--node",
            &node0,
        ],
    )
    .await?;
    let command = start.elapsed();
    // Each gateway polled on its own until it serves the route, over one kept-alive
    // connection (a new connection every 20 ms to each of 100 gateways would take a good part
    // of the machine from the nodes).
    let served = futures::future::join_all(gateways.iter().map(|g| async move {
        let mut connection = None;
        loop {
            let answer = match connection.take() {
                Some(stream) => status(stream, "ping.scale.tau", "/ping").await,
                None => match tokio::net::TcpStream::connect(g.as_str()).await {
                    Ok(stream) => status(BufReader::new(stream), "ping.scale.tau", "/ping").await,
                    Err(e) => Err(e.into()),
                },
            };
            if let Ok((code, stream)) = answer {
                if code == 200 {
                    return Ok(start.elapsed());
                }
                connection = Some(stream);
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("{g} did not serve the pushed route within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }))
    .await;
    let mut served = served.into_iter().collect::<anyhow::Result<Vec<Duration>>>()?;
    served.sort();
    Ok(Pushed {
        command,
        served_median: served[served.len() / 2],
        served_all: served[served.len() - 1],
    })
}

/// The HTTP status of `GET path` with `Host: host` on a kept-alive connection, and the
/// connection, its answer read to the end.
async fn status(
    mut stream: BufReader<tokio::net::TcpStream>,
    host: &str,
    path: &str,
) -> anyhow::Result<(u16, BufReader<tokio::net::TcpStream>)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.get_mut().write_all(request.as_bytes()).await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let code = line.split_whitespace().nth(1).context("no status")?.parse()?;
    let mut length = 0usize;
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            bail!("the connection closed in the headers");
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse()?;
        }
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    Ok((code, stream))
}

async fn cli(tau_node: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(tau_node).args(args).output().await?;
    if !out.status.success() {
        bail!("tau-node {} failed: {}", args[..2].join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The built example function `name` (`scripts/build-examples`).
fn example(name: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/functions/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    if !path.exists() {
        bail!("{} is missing: run scripts/build-examples", path.display());
    }
    Ok(path)
}
