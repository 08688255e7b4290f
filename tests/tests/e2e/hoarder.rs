//! Hoarder across real processes: a 50 MB blob is read back from every node, repaired to three
//! holders when one dies, stays readable when three are down, loses nothing when they return
//! (extra copies released), and a chunk that does not match its hash is refused.

use std::path::Path;
use std::time::Duration;
use tau_proto::hoarder::HoarderProtocol;

use tau_proto::hoarder::{HoarderRequest, ManifestBuilder};
use tau_proto::{Client, CloudProfile};
use tau_tests::harness::{
    DevCloud, Result, Signal, hoarder_pins, pin_holders, random_bytes, run_node, signal, tau_node,
    tau_node_ok, wait_for,
};

/// The pin of the only blob, as node `node` lists it.
fn pin(profile: &Path, node: &str) -> Result<serde_json::Value> {
    hoarder_pins(profile, node)?.into_iter().next().ok_or_else(|| "no pin".into())
}

/// Fetches `cid` through `node` and checks it is `expected`, byte for byte.
fn check_read(profile: &Path, node: &str, cid: &str, expected: &[u8], dir: &Path) -> Result {
    let out = dir.join(format!("read-{node}"));
    tau_node_ok(&[
        "hoarder",
        "get",
        cid,
        "--cloud",
        &profile.to_string_lossy(),
        "--node",
        node,
        "-o",
        &out.to_string_lossy(),
    ])?;
    let read = std::fs::read(&out)?;
    std::fs::remove_file(&out)?;
    if read != expected {
        return Err(format!("the blob read through {node} differs ({} bytes)", read.len()).into());
    }
    Ok(())
}

#[test]
fn a_blob_survives_dying_holders_and_comes_back_whole() -> Result {
    let started = std::time::Instant::now();
    let phase = |what: &str| eprintln!("[{:>6.1?}] {what}", started.elapsed());
    let tmp = tempfile::tempdir()?;
    let cloud = DevCloud::start(5, &tmp.path().join("cloud"))?;
    let ids = cloud.peer_ids()?;
    let profile = cloud.profile.clone();
    let blob = random_bytes(50 << 20, 42);
    let file = tmp.path().join("blob");
    std::fs::write(&file, &blob)?;

    let out = tau_node_ok(&[
        "hoarder",
        "put",
        &file.to_string_lossy(),
        "--cloud",
        &profile.to_string_lossy(),
        "--node",
        &ids[0],
        "--json",
    ])?;
    let put: serde_json::Value = serde_json::from_str(&out)?;
    let cid = put["cid"].as_str().ok_or("no cid")?.to_string();
    assert!(
        put["holders"].as_array().map(Vec::len) >= Some(2),
        "a put answers once two nodes hold it: {put}"
    );

    phase("put");
    for id in &ids {
        check_read(&profile, id, &cid, &blob, tmp.path())?;
    }
    phase("read from all five");
    let (first, _) = wait_for(Duration::from_secs(15), "three holders", || {
        let p = pin(&profile, &ids[0])?;
        Ok((pin_holders(&p).len() == 3 && p["state"] == "ok").then_some(p))
    })?;

    // Kill one holder: within 15 s the pin is back at 3 live holders.
    let index = |peer: &String| ids.iter().position(|i| i == peer).ok_or("unknown holder");
    let victims: Vec<usize> =
        pin_holders(&first).iter().map(index).collect::<std::result::Result<_, _>>()?;
    let first_victim = victims[0];
    signal(cloud.node_pid(first_victim)?, Signal::SIGKILL);
    let survivor = (0..5).find(|i| *i != first_victim).ok_or("no survivor")?;
    let (repaired, took) = wait_for(Duration::from_secs(15), "repair to three holders", || {
        let p = pin(&profile, &ids[survivor])?;
        let h = pin_holders(&p);
        Ok((h.len() == 3 && !h.contains(&ids[first_victim]) && p["state"] == "ok").then_some(p))
    })?;
    eprintln!("repaired to 3 holders {took:?} after a holder died");

    // Kill two more holders: two nodes are left, and the pin is at min(3, 2) = 2.
    let more: Vec<usize> = pin_holders(&repaired)
        .iter()
        .map(index)
        .collect::<std::result::Result<Vec<_>, _>>()?
        .into_iter()
        .take(2)
        .collect();
    for i in &more {
        signal(cloud.node_pid(*i)?, Signal::SIGKILL);
    }
    let dead: Vec<usize> = std::iter::once(first_victim).chain(more.iter().copied()).collect();
    let live: Vec<usize> = (0..5).filter(|i| !dead.contains(i)).collect();
    wait_for(Duration::from_secs(30), "the pin is at min(3, live) = 2", || {
        let p = pin(&profile, &ids[live[0]])?;
        Ok((pin_holders(&p).len() == 2 && p["target"] == 2 && p["state"] == "ok").then_some(()))
    })?;
    phase("at two holders");
    for i in &live {
        check_read(&profile, &ids[*i], &cid, &blob, tmp.path())?;
    }
    phase("read from the two live nodes");

    // Restart them: nothing lost, extra copies released back to three.
    let _restarted: Vec<_> = dead
        .iter()
        .map(|i| {
            run_node(
                &cloud.dir.join(format!("node-{i}/node.yaml")),
                &cloud.dir.join(format!("node-{i}/restart.log")),
            )
        })
        .collect::<Result<_>>()?;
    // Every node answers for its own disk: exactly three copies remain, on live nodes.
    // A node just restarted may not serve its protocols yet: connect once the cloud answers.
    let runtime = tokio::runtime::Runtime::new()?;
    let (client, _) = wait_for(Duration::from_secs(30), "the cloud answers a client", || {
        Ok(runtime
            .block_on(async {
                let client = Client::connect(&CloudProfile::load(&profile)?).await?;
                client.nodes().await?;
                Ok::<_, tau_tests::harness::Error>(client)
            })
            .ok())
    })?;
    let blob_id: tau_proto::hoarder::BlobId = cid.parse()?;
    let copies = || -> Result<usize> {
        runtime.block_on(async {
            let mut copies = 0;
            for id in &ids {
                match client
                    .call::<HoarderProtocol>(id.parse()?, HoarderRequest::Has { cid: blob_id })
                    .await?
                {
                    tau_proto::hoarder::HoarderResponse::Has(true) => copies += 1,
                    tau_proto::hoarder::HoarderResponse::Has(false) => {}
                    other => return Err(format!("unexpected answer {other:?}").into()),
                }
            }
            Ok(copies)
        })
    };
    let (_, took) = wait_for(
        Duration::from_secs(60),
        "extra copies released: exactly 3 of 5 nodes hold it",
        || {
            let p = pin(&profile, &ids[live[0]])?;
            Ok((copies()? == 3 && p["target"] == 3 && p["state"] == "ok").then_some(()))
        },
    )?;
    eprintln!("back to 3 copies {took:?} after the restarts");
    phase("back at three holders");
    for id in &ids {
        check_read(&profile, id, &cid, &blob, tmp.path())?;
    }
    phase("read from all five again");

    // A peer sending a chunk that does not match its hash is refused.
    let other = random_bytes(3 << 20, 7);
    let mut builder = ManifestBuilder::default();
    builder.update(&other);
    let manifest = builder.finish();
    let refused = runtime.block_on(async {
        let node = ids[live[0]].parse()?;
        client
            .call::<HoarderProtocol>(
                node,
                HoarderRequest::PutStart { manifest: manifest.clone(), replicas: 3 },
            )
            .await?;
        let mut bad = other[..1 << 20].to_vec();
        bad[100] ^= 0xff;
        let answer = client
            .call::<HoarderProtocol>(
                node,
                HoarderRequest::PutChunk { cid: manifest.cid, index: 0, data: bad },
            )
            .await;
        Ok::<_, tau_tests::harness::Error>(answer)
    })?;
    match refused {
        Err(e) => assert!(e.to_string().contains("does not match its hash"), "{e}"),
        Ok(answer) => return Err(format!("a bad chunk was accepted: {answer:?}").into()),
    }
    let out = tau_node(&[
        "hoarder",
        "get",
        &manifest.cid.to_string(),
        "--cloud",
        &profile.to_string_lossy(),
        "-o",
        &tmp.path().join("x").to_string_lossy(),
    ])?;
    assert!(!out.status.success(), "the half-uploaded blob does not exist");
    Ok(())
}
