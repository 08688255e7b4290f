//! Vault benchmarks.
//!
//! 1. The threshold operations on a 5-share key set (threshold 2) with a 64-byte secret:
//!    encrypt, the ciphertext's validity check (done once by each node and by the client), one
//!    node's decryption share, the client's check of one share, and combining 3 checked shares. Baseline: one ed25519 signature
//!    verification (what checking any signed record costs), measured in the same run.
//! 2. End-to-end `secret get` on a 5-node local cloud from a connected client: the registry
//!    read, the owner-signed request to all five vault nodes, three checked shares, the
//!    combination. Baseline: one TNS `Get` round trip on the same connection. Also the whole
//!    `tau-node secret get` process (connect included), beside `tau-node tns get`.

use std::path::Path;
use std::time::{Duration, Instant};
use tau_proto::tns::TnsProtocol;

use anyhow::Context;
use libp2p::PeerId;
use libp2p::identity::Keypair;
use tau_proto::bench::Figure;
use tau_proto::identity::WriterKey;
use tau_proto::tns::{TnsRequest, keys};
use tau_proto::vault::{self, CheckedCiphertext};
use tau_proto::{Client, CloudProfile};

use crate::{micros, start_dev, stats, stop};

const OPS: usize = 200;
const GETS: usize = 200;
const CLI_RUNS: usize = 10;

fn time_each(count: usize, mut op: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        op()?;
        samples.push(start.elapsed());
    }
    Ok(stats(samples).p50)
}

pub(crate) fn crypto() -> anyhow::Result<()> {
    println!("vault: threshold operations, 5 shares, any 3 decrypt, 64-byte secret (p50 of {OPS})");
    let (keyset, shares) = vault::deal(5, 2)?;
    let secret = [7u8; 64];
    let ct = keyset.encrypt(&secret)?;
    let signer = Keypair::generate_ed25519();
    let message = [1u8; 200];
    let signature = signer.sign(&message)?;
    let writer = WriterKey::of(&signer).context("ed25519")?;
    let baseline = time_each(OPS, || {
        anyhow::ensure!(writer.verify(&message, &signature));
        Ok(())
    })?;
    let checked = CheckedCiphertext::parse(&ct)?;
    let decryption: Vec<(PeerId, u32, Vec<u8>)> = shares
        .iter()
        .map(|s| Ok((PeerId::random(), s.index, s.decryption_share(&checked)?)))
        .collect::<anyhow::Result<_>>()?;
    let mut combiner = keyset.combiner(&checked)?;
    let rows = [
        ("encrypt", time_each(OPS, || keyset.encrypt(&secret).map(|_| ()).map_err(Into::into))?),
        ("ciphertext check", time_each(OPS, || keyset.check(&ct).map_err(Into::into))?),
        (
            "decryption share (one node)",
            time_each(OPS, || {
                shares[0].decryption_share(&checked).map(|_| ()).map_err(Into::into)
            })?,
        ),
        (
            "share check (client, per share)",
            time_each(OPS, || {
                let (node, index, share) = &decryption[1];
                combiner.add(*node, *index, share).map_err(Into::into)
            })?,
        ),
        ("combine 3 checked shares", {
            let mut full = keyset.combiner(&checked)?;
            for (node, index, share) in &decryption[..3] {
                full.add(*node, *index, share)?;
            }
            time_each(OPS, || {
                anyhow::ensure!(full.finish()? == secret);
                Ok(())
            })?
        }),
    ];
    println!("  {:<32} {:>10}", "baseline: ed25519 verify", micros(baseline));
    for (name, p50) in rows {
        let ratio = p50.as_secs_f64() / baseline.as_secs_f64();
        println!("  {name:<32} {:>10}   {ratio:>6.1}x the baseline", micros(p50));
        Figure::new("vault", name, p50.as_secs_f64() * 1e6, "µs")
            .beside("ed25519 verify", baseline.as_secs_f64() * 1e6)
            .record();
    }
    Ok(())
}

pub(crate) async fn secret_get(tau_node: &Path, tmp: &Path) -> anyhow::Result<()> {
    println!("vault: end-to-end secret get on a 5-node local cloud (threshold 2: 3 shares)");
    let dir = tmp.join("vault-cloud");
    let (mut dev, profile) = start_dev(tau_node, &dir, 5).await?;
    let result = async {
        let client = Client::connect(&CloudProfile::load(&profile)?).await?;
        let owner = Keypair::generate_ed25519();
        client.register_project("bench", &owner, &[("token", b"bench-token".as_slice())]).await?;
        let secret = vec![b's'; 64];
        client.put_secret("bench", "db", &secret, &owner).await?;
        // Warm up: every node binds the ciphertext on its first request.
        anyhow::ensure!(client.get_secret("bench", "db", &owner).await?.plaintext == secret);
        let tns = client.entry();
        let mut base = Vec::with_capacity(GETS);
        let mut gets = Vec::with_capacity(GETS);
        for _ in 0..GETS {
            let start = Instant::now();
            client
                .call::<TnsProtocol>(
                    tns,
                    TnsRequest::Get { keys: vec![keys::secret("bench", "db")] },
                )
                .await?;
            base.push(start.elapsed());
            let start = Instant::now();
            let revealed = client.get_secret("bench", "db", &owner).await?;
            gets.push(start.elapsed());
            anyhow::ensure!(revealed.plaintext == secret);
        }
        let (base, gets) = (stats(base), stats(gets));
        println!(
            "  {:<40} p50 {:>10}  p99 {:>10}",
            "baseline: tns Get round trip",
            micros(base.p50),
            micros(base.p99)
        );
        println!(
            "  {:<40} p50 {:>10}  p99 {:>10}   {:.1}x the baseline (target < 50 ms)",
            "secret get (connected client)",
            micros(gets.p50),
            micros(gets.p99),
            gets.p50.as_secs_f64() / base.p50.as_secs_f64()
        );
        Figure::new(
            "vault",
            "secret get, connected client, p50",
            gets.p50.as_secs_f64() * 1e3,
            "ms",
        )
        .beside("tns Get round trip", base.p50.as_secs_f64() * 1e3)
        .target("< 50 ms", gets.p50 < Duration::from_millis(50))
        .record();
        let key_file = tmp.join("bench-owner.key");
        tau_proto::keyfile::write_new(&key_file, &owner)?;
        let cloud = profile.to_string_lossy().into_owned();
        let key = key_file.to_string_lossy().into_owned();
        let secret_key = keys::secret("bench", "db");
        let cli = |args: Vec<&str>| {
            let mut samples = Vec::with_capacity(CLI_RUNS);
            for _ in 0..CLI_RUNS {
                let start = Instant::now();
                let out = std::process::Command::new(tau_node).args(&args).output()?;
                samples.push(start.elapsed());
                anyhow::ensure!(
                    out.status.success(),
                    "{args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(stats(samples).p50)
        };
        let tns_cli = cli(vec!["tns", "get", &secret_key, "--cloud", &cloud])?;
        let secret_cli =
            cli(vec!["secret", "get", "bench", "db", "--cloud", &cloud, "--key", &key])?;
        println!("  {:<40} p50 {:>10}", "baseline: `tau-node tns get` process", micros(tns_cli));
        println!(
            "  {:<40} p50 {:>10}   {:.1}x the baseline",
            "`tau-node secret get` process",
            micros(secret_cli),
            secret_cli.as_secs_f64() / tns_cli.as_secs_f64()
        );
        Figure::new(
            "vault",
            "`tau-node secret get` process, p50",
            secret_cli.as_secs_f64() * 1e3,
            "ms",
        )
        .beside("`tau-node tns get` process", tns_cli.as_secs_f64() * 1e3)
        .record();
        anyhow::Ok(())
    }
    .await;
    stop(&mut dev).await;
    result
}
