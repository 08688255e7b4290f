//! Functions that read the cloud's blobs (issue 25): the example `gateway` serves a 50 MB
//! hoarder blob by CID through a node that does not hold it, byte for byte, streamed: the
//! node's resident memory stays under 100 MB while it passes through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tau_tests::harness::{
    DevCloud, Result, create_project, example_wasm, http, push_project, random_bytes, tau_node_ok,
    wait_for,
};

/// The resident memory of process `pid`, bytes.
fn rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or("no VmRSS")?;
    let kb: u64 = line.split_whitespace().nth(1).ok_or("no VmRSS value")?.parse()?;
    Ok(kb * 1024)
}

#[test]
fn the_gateway_streams_a_50_mb_blob_byte_for_byte_in_little_memory() -> Result {
    let tmp = tempfile::tempdir()?;
    let cloud = DevCloud::start(3, &tmp.path().join("cloud"))?;
    let profile = cloud.profile.to_string_lossy().into_owned();
    let ids = cloud.peer_ids()?;
    let blob = random_bytes(50 << 20, 7);
    let file = tmp.path().join("blob");
    std::fs::write(&file, &blob)?;
    let put = tau_node_ok(&[
        "hoarder",
        "put",
        &file.to_string_lossy(),
        "--replicas",
        "2",
        "--cloud",
        &profile,
        "--json",
    ])?;
    let put: serde_json::Value = serde_json::from_str(&put)?;
    let cid = put["cid"].as_str().ok_or("no cid")?.to_string();

    let key = create_project(&cloud.profile, tmp.path(), "cdn")?;
    let project = tmp.path().join("cdn");
    std::fs::create_dir_all(project.join("functions"))?;
    std::fs::write(project.join("config.yaml"), "id: cdn\n")?;
    std::fs::copy(example_wasm("gateway")?, project.join("gateway.wasm"))?;
    std::fs::write(
        project.join("functions/gateway.yaml"),
        "id: gateway\ntrigger: {type: http, method: GET, paths: [/blob]}\n\
         domains: [blobs.cdn.tau]\nsource: gateway.wasm\nexecution: {timeout: 60s, memory: 32MB}\n",
    )?;
    push_project(&cloud.profile, &project, &key, None)?;

    // A node that does not hold the blob: it reads every chunk from a holder.
    let (node, _) = wait_for(Duration::from_secs(30), "two nodes hold the blob", || {
        let pins: serde_json::Value = serde_json::from_str(&tau_node_ok(&[
            "hoarder", "list", "--cloud", &profile, "--json",
        ])?)?;
        let holders: Vec<String> = pins
            .as_array()
            .and_then(|p| p.iter().find(|p| p["cid"] == cid.as_str()))
            .and_then(|p| p["holders"].as_array())
            .map(|h| h.iter().filter_map(|h| h.as_str().map(String::from)).collect())
            .unwrap_or_default();
        Ok((holders.len() == 2).then(|| ids.iter().position(|id| !holders.contains(id))).flatten())
    })?;
    let gateway = &cloud.gateways[node];
    let host = "blobs.cdn.tau";
    wait_for(Duration::from_secs(30), "the gateway function answers", || {
        Ok((http(gateway, "GET", host, "/blob/not-a-cid", b"")?.status == 400).then_some(()))
    })?;
    let missing = "bafkr4ihkr4ld3m4gqkjf4reryxsy2s5tkbxprqkow6fin2iiyvgusfzf5e";
    let answer = http(gateway, "GET", host, &format!("/blob/{missing}"), b"")?;
    assert_eq!(answer.status, 404, "{}", answer.text());

    // The node's resident memory, sampled every 20 ms while the blob passes through it.
    let pid = cloud.node_pid(node)?;
    let before = rss(pid)?;
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if let Ok(now) = rss(pid) {
                    peak.fetch_max(now, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let started = std::time::Instant::now();
    let answer = http(gateway, "GET", host, &format!("/blob/{cid}"), b"");
    done.store(true, Ordering::SeqCst);
    sampler.join().map_err(|_| "the sampler panicked")?;
    let answer = answer?;
    let peak = peak.load(Ordering::SeqCst);
    eprintln!(
        "50 MB through node {node} in {:?}: RSS {} MB before, {} MB at most",
        started.elapsed(),
        before >> 20,
        peak >> 20
    );
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body[..200.min(answer.body.len())])
    );
    assert_eq!(answer.header("content-length"), Some(blob.len().to_string().as_str()));
    assert!(answer.body == blob, "the blob came back different ({} bytes)", answer.body.len());
    assert!(peak < 100 << 20, "the node held {} MB while streaming", peak >> 20);
    Ok(())
}
