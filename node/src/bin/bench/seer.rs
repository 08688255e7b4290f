//! Seer benchmarks.
//!
//! 1. DNS queries answered per second at concurrency 1 and 32 (each client a UDP socket that
//!    sends a query and waits for its answer, for a few seconds), for a service name (from the
//!    heartbeat table) and a registered domain (through the domain cache), on a 4-node local
//!    cloud with 2 substrate nodes. Baseline: the same client against a UDP echo server in
//!    another process (the loopback round trip with no DNS work at all). With `dnsperf` on the
//!    machine, its figure too.
//! 2. Time from a substrate node's SIGTERM until seer's answers no longer name it. Baseline: the
//!    health window itself (a node is unhealthy once its last beat is this old).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tau_proto::tns::TnsProtocol;

use anyhow::Context;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use libp2p::identity::Keypair;
use tau_node::NodeConfig;
use tau_proto::bench::Figure;
use tau_proto::tns::values::DomainClaim;
use tau_proto::tns::{Draft, TnsRequest, TnsResponse, keys};
use tau_proto::{Client, CloudProfile, cbor};
use tokio::net::UdpSocket;

use crate::{start_dev_with, stop};

const RUN: Duration = Duration::from_secs(3);

/// A UDP echo server for the baseline: prints its port, echoes every datagram.
pub(crate) async fn udp_echo_server() -> anyhow::Result<()> {
    let socket = UdpSocket::bind(("127.0.0.1", 0)).await?;
    println!("{}", socket.local_addr()?.port());
    let mut buffer = [0u8; 1500];
    loop {
        let (len, from) = socket.recv_from(&mut buffer).await?;
        socket.send_to(&buffer[..len], from).await?;
    }
}

fn query(name: &str) -> anyhow::Result<Vec<u8>> {
    let mut message = Message::query();
    message.metadata.id = 1;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    Ok(message.to_vec()?)
}

/// Answers per second from `clients` sockets, each sending `packet` and waiting for the answer.
async fn rate(server: SocketAddr, packet: &[u8], clients: usize) -> anyhow::Result<(f64, u64)> {
    let answered = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + RUN;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (answered, lost, packet) = (answered.clone(), lost.clone(), packet.to_vec());
        tasks.push(tokio::spawn(async move {
            let socket = UdpSocket::bind(("127.0.0.1", 0)).await?;
            socket.connect(server).await?;
            let mut buffer = [0u8; 1500];
            while Instant::now() < deadline {
                socket.send(&packet).await?;
                match tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buffer)).await {
                    Ok(Ok(_)) => answered.fetch_add(1, Ordering::Relaxed),
                    _ => lost.fetch_add(1, Ordering::Relaxed),
                };
            }
            anyhow::Ok(())
        }));
    }
    let started = Instant::now();
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok((answered.load(Ordering::Relaxed) as f64 / elapsed, lost.load(Ordering::Relaxed)))
}

/// `dnsperf`'s queries per second for `name`, if dnsperf is installed.
async fn dnsperf(server: SocketAddr, name: &str, tmp: &Path) -> anyhow::Result<Option<f64>> {
    let input = tmp.join("dnsperf-queries");
    std::fs::write(&input, format!("{name} A\n"))?;
    let output = tokio::process::Command::new("dnsperf")
        .args(["-s", &server.ip().to_string(), "-p", &server.port().to_string(), "-d"])
        .arg(&input)
        .args(["-l", "3", "-c", "32", "-q", "64"])
        .output()
        .await;
    let Ok(output) = output else { return Ok(None) };
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Queries per second:"))
        .and_then(|v| v.trim().parse().ok()))
}

pub(crate) async fn run(tau_node: &Path, tmp: &Path) -> anyhow::Result<()> {
    println!(
        "seer: DNS answers per second on a 4-node local cloud (2 with substrate), UDP, {RUN:?} each"
    );
    let dir = tmp.join("seer-cloud");
    let (mut dev, profile, gateways) =
        start_dev_with(tau_node, &dir, 4, &["--substrate-nodes", "2"]).await?;
    let result = async {
        let config = NodeConfig::load(&dir.join("node-3/node.yaml"))?;
        let server = *config.dns_listen_addrs().first().context("no dns address")?;
        // A registered generated domain, claimed by a project registered through the vault.
        let client = Client::connect(&CloudProfile::load(&profile)?).await?;
        let owner = Keypair::generate_ed25519();
        client.register_project("bench", &owner, &[]).await?;
        let tns = client.entry();
        let version = client.tns_clock(tns).await?.saturating_add(1);
        let claim = Draft {
            key: keys::domain("ping.bench.tau"),
            scope: "bench".into(),
            value: Some(cbor::to_vec(&DomainClaim { project: "bench".into() })?),
        }
        .sign(version, &owner)
        .context("sign")?;
        match client.call::<TnsProtocol>(tns, TnsRequest::Put { records: vec![claim] }).await? {
            TnsResponse::Put(outcome) if outcome.rejected.is_empty() => {}
            other => anyhow::bail!("the domain claim was refused: {other:?}"),
        }
        let service = query("substrate.tau.dev.")?;
        let domain = query("ping.bench.tau.")?;
        // Wait until both answer with the two substrate nodes.
        let deadline = Instant::now() + Duration::from_secs(30);
        for packet in [&service, &domain] {
            loop {
                let socket = UdpSocket::bind(("127.0.0.1", 0)).await?;
                socket.send_to(packet, server).await?;
                let mut buffer = [0u8; 1500];
                let answers = match tokio::time::timeout(
                    Duration::from_secs(1),
                    socket.recv(&mut buffer),
                )
                .await
                {
                    Ok(Ok(len)) => Message::from_vec(&buffer[..len])?.answers.len(),
                    _ => 0,
                };
                if answers == 2 {
                    break;
                }
                anyhow::ensure!(Instant::now() < deadline, "seer never answered with 2 nodes");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        let mut echo = tokio::process::Command::new(std::env::current_exe()?)
            .arg("--udp-echo-server")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = echo.stdout.take().context("echo stdout")?;
        let mut line = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut tokio::io::BufReader::new(stdout), &mut line)
            .await?;
        let echo_addr: SocketAddr = format!("127.0.0.1:{}", line.trim()).parse()?;

        println!("{:>44} {:>14} {:>14}", "", "concurrency 1", "concurrency 32");
        let mut rows = Vec::new();
        for (name, target, packet) in [
            ("baseline: UDP echo, another process", echo_addr, &service),
            ("seer: substrate.tau.dev (service)", server, &service),
            ("seer: ping.bench.tau (domain)", server, &domain),
        ] {
            let (one, lost_one) = rate(target, packet, 1).await?;
            let (many, lost_many) = rate(target, packet, 32).await?;
            println!("  {name:<42} {one:>12.0}/s {many:>12.0}/s   (lost {lost_one}, {lost_many})");
            rows.push(many);
        }
        for (what, many) in [("service name", rows[1]), ("project domain", rows[2])] {
            Figure::new("seer", &format!("DNS answers, {what}, concurrency 32"), many, "queries/s")
                .beside("UDP echo, another process", rows[0])
                .target(">= 20000 queries/s", many >= 20_000.0)
                .record();
        }
        println!(
            "  seer/echo at concurrency 32: service {:.2}x, domain {:.2}x   (target: 20000 queries/s)",
            rows[1] / rows[0],
            rows[2] / rows[0]
        );
        match dnsperf(server, "ping.bench.tau", tmp).await? {
            Some(qps) => {
                println!("  dnsperf -c 32 -q 64, ping.bench.tau:            {qps:>12.0}/s");
                Figure::new("seer", "DNS answers measured by dnsperf -c 32", qps, "queries/s")
                    .target(">= 20000 queries/s", qps >= 20_000.0)
                    .record();
            }
            None => println!("  (dnsperf is not installed: `apt-get install dnsperf` adds its figure)"),
        }
        drop(echo);

        // Removal: stop substrate node 1, poll until its address is gone.
        let gone: SocketAddr = gateways.get(1).context("no second gateway")?.parse()?;
        let pid: i32 = std::fs::read_to_string(dir.join("node-1/node.pid"))?.trim().parse()?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM)?;
        let stopped = Instant::now();
        let socket = UdpSocket::bind(("127.0.0.1", 0)).await?;
        loop {
            socket.send_to(&domain, server).await?;
            let mut buffer = [0u8; 1500];
            if let Ok(Ok(len)) =
                tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buffer)).await
            {
                let answer = Message::from_vec(&buffer[..len])?;
                let named = answer.answers.iter().any(|r| r.data.to_string() == gone.ip().to_string());
                if !named {
                    break;
                }
            }
            anyhow::ensure!(stopped.elapsed() < Duration::from_secs(30), "never removed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = stopped.elapsed();
        println!(
            "  a stopped substrate node left the answers after {:.1} s   (health window {:.1} s; target: within 10 s)",
            left.as_secs_f64(),
            tau_proto::seer::HEALTHY_FOR.as_secs_f64()
        );
        Figure::new("seer", "a stopped node leaves the DNS answers", left.as_secs_f64(), "s")
            .beside("the health window", tau_proto::seer::HEALTHY_FOR.as_secs_f64())
            .target("< 10 s", left < Duration::from_secs(10))
            .record();
        anyhow::Ok(())
    }
    .await;
    stop(&mut dev).await;
    result
}
