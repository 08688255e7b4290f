//! Hoarder benchmarks, on a 5-node cloud on loopback.
//!
//! - Put of a 256 MB blob at 3 replicas: until the `Put` answers (two copies), and until the
//!   third copy is in place.
//! - Get of the same blob from a holder (checked chunk by chunk and whole).
//! - Repair: a holder is killed; time until the pin is back at 3 live holders.
//! - Peak RSS of each node during the put (`VmHWM`).
//! - The ceiling: hashing the same file in this process with BLAKE3 (`b3sum`-style) and with
//!   `sha256sum`, in the same run.

use std::path::Path;
use std::time::{Duration, Instant};
use tau_proto::hoarder::HoarderProtocol;

use anyhow::{Context, bail};
use libp2p::PeerId;
use tau_proto::bench::Figure;
use tau_proto::hoarder::transfer;
use tau_proto::hoarder::{HoarderRequest, HoarderResponse, PinInfo};
use tau_proto::{Client, CloudProfile, keyfile};
use tokio::io::AsyncReadExt;

use crate::{start_dev, stop};

const SIZE: usize = 256 << 20;

fn mb_per_s(bytes: usize, took: Duration) -> String {
    format!("{:>7.1} MB/s", bytes as f64 / 1e6 / took.as_secs_f64())
}

async fn pins(client: &Client, node: PeerId) -> anyhow::Result<Vec<PinInfo>> {
    match client.call::<HoarderProtocol>(node, HoarderRequest::List).await? {
        HoarderResponse::Pins(pins) => Ok(pins),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// Polls `node`'s list until the only pin has `count` holders, none of them `dead`.
async fn wait_holders(
    client: &Client,
    node: PeerId,
    count: usize,
    dead: Option<PeerId>,
) -> anyhow::Result<Vec<PeerId>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(pins) = pins(client, node).await
            && let Some(pin) = pins.first()
            && pin.holders.len() == count
            && dead.is_none_or(|d| !pin.holders.contains(&d))
        {
            return Ok(pin.holders.clone());
        }
        if Instant::now() > deadline {
            bail!("the pin did not reach {count} holders within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub(crate) async fn run(tau_node: &Path, tmp: &Path) -> anyhow::Result<()> {
    let file = tmp.join("blob-256m");
    {
        let mut bytes = vec![0u8; SIZE];
        blake3::Hasher::new().update(b"tau bench").finalize_xof().fill(&mut bytes);
        std::fs::write(&file, &bytes)?;
    }

    // The ceiling: hashing the file, in this run.
    let start = Instant::now();
    let mut reader = tokio::fs::File::open(&file).await?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    let b3 = start.elapsed();
    let start = Instant::now();
    let sha = std::process::Command::new("sha256sum").arg(&file).output();
    let sha = match sha {
        Ok(out) if out.status.success() => Some(start.elapsed()),
        _ => None,
    };

    let dir = tmp.join("hoarder");
    let (mut dev, profile) = start_dev(tau_node, &dir, 5).await?;
    let client = Client::connect(&CloudProfile::load(&profile)?).await?;
    let nodes = client.nodes_running("hoarder").await?;
    let entry = nodes[0];

    let start = Instant::now();
    let manifest = transfer::manifest_of(&file).await?;
    let holders = transfer::upload(&client, entry, &file, &manifest, 3, &|_| {}).await?;
    let put_two = start.elapsed();
    let three = wait_holders(&client, entry, 3, None).await?;
    let put_three = start.elapsed();
    if holders.len() < 2 {
        bail!("the put answered with {} holders", holders.len());
    }

    // Peak RSS of every node so far (the put and the replication).
    let mut peak = 0u64;
    for i in 0..5 {
        let pid: u32 =
            std::fs::read_to_string(dir.join(format!("node-{i}/node.pid")))?.trim().parse()?;
        peak = peak.max(peak_rss_kb(pid).context("cannot read a node's VmHWM")?);
    }

    // Get from a holder into memory-less sink.
    let holder = three[0];
    let start = Instant::now();
    let mut sink = tokio::io::sink();
    transfer::download(&client, holder, manifest.cid, &mut sink).await?;
    let get = start.elapsed();

    // Kill a holder; time the repair back to 3.
    let victim = three.iter().copied().find(|h| *h != entry).unwrap_or(three[0]);
    let victim_index = (0..5)
        .find(|i| {
            keyfile::read(&dir.join(format!("node-{i}/identity.key")))
                .map(|k| k.public().to_peer_id() == victim)
                .unwrap_or(false)
        })
        .context("cannot find the victim's folder")?;
    let pid: i32 = std::fs::read_to_string(dir.join(format!("node-{victim_index}/node.pid")))?
        .trim()
        .parse()?;
    let asked = nodes.iter().copied().find(|n| *n != victim).context("no other node")?;
    let start = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)?;
    wait_holders(&client, asked, 3, Some(victim)).await?;
    let repair = start.elapsed();
    stop(&mut dev).await;

    println!("hoarder, a 256 MB blob on a 5-node cloud on loopback");
    println!(
        "  put, until the Put answers (2 copies):     {:>8.0} ms {}",
        put_two.as_secs_f64() * 1e3,
        mb_per_s(SIZE, put_two)
    );
    println!(
        "  put, until 3 replicas are in place:        {:>8.0} ms {}",
        put_three.as_secs_f64() * 1e3,
        mb_per_s(SIZE, put_three)
    );
    println!(
        "  get from a holder (every chunk checked):   {:>8.0} ms {}",
        get.as_secs_f64() * 1e3,
        mb_per_s(SIZE, get)
    );
    println!("  repair to 3 holders after a holder died:   {:>8.0} ms", repair.as_secs_f64() * 1e3);
    println!("  peak RSS of any node during the put:       {:>8.1} MB", peak as f64 / 1024.0);
    println!(
        "  ceiling, BLAKE3 of the file in process:    {:>8.0} ms {}",
        b3.as_secs_f64() * 1e3,
        mb_per_s(SIZE, b3)
    );
    match sha {
        Some(sha) => println!(
            "  ceiling, sha256sum of the file:            {:>8.0} ms {}",
            sha.as_secs_f64() * 1e3,
            mb_per_s(SIZE, sha)
        ),
        None => println!("  ceiling, sha256sum of the file:            (sha256sum not found)"),
    }
    println!(
        "  put/BLAKE3 {:.2}, get/BLAKE3 {:.2}   (targets: put 300 MB/s, get 500 MB/s, repair under 15 s, RSS under 100 MB)",
        b3.as_secs_f64() / put_two.as_secs_f64(),
        b3.as_secs_f64() / get.as_secs_f64()
    );
    let rate = |took: Duration| SIZE as f64 / 1e6 / took.as_secs_f64();
    let ceiling = "BLAKE3 of the file in process";
    Figure::new("hoarder", "put 256 MB until the Put answers (2 copies)", rate(put_two), "MB/s")
        .beside(ceiling, rate(b3))
        .target(">= 300 MB/s", rate(put_two) >= 300.0)
        .record();
    Figure::new("hoarder", "put 256 MB until 3 replicas are in place", rate(put_three), "MB/s")
        .beside(ceiling, rate(b3))
        .record();
    Figure::new("hoarder", "get 256 MB from a holder", rate(get), "MB/s")
        .beside(ceiling, rate(b3))
        .target(">= 500 MB/s", rate(get) >= 500.0)
        .record();
    Figure::new("hoarder", "repair to 3 holders after a holder died", repair.as_secs_f64(), "s")
        .target("< 15 s", repair < Duration::from_secs(15))
        .record();
    let peak_mb = peak as f64 / 1024.0;
    Figure::new("hoarder", "peak RSS of any node during the put", peak_mb, "MB")
        .target("< 100 MB", peak_mb < 100.0)
        .record();
    Ok(())
}
