//! TNS across real processes: pushes reach every node, a stopped node catches up, deletes
//! spread, a stranger's record is on no node, and a partitioned cloud converges when it heals.

use std::path::Path;
use std::time::Duration;
use tau_proto::tns::TnsProtocol;

use libp2p::identity::Keypair;
use tau_proto::tns::{Draft, TnsRequest, TnsResponse, keys};
use tau_proto::{Client, CloudProfile};
use tau_tests::harness::{
    DevCloud, Result, Signal, converged, create_project, push_project, run_node, signal,
    tau_node_ok, tns_status, wait_for, write_project,
};
use tau_tests::lab::{Lab, LabCloud};

fn push(profile: &Path, project: &Path, key: &Path, node: &str) -> Result<serde_json::Value> {
    push_project(profile, project, key, Some(node))
}

/// The record under `key` as node `node` has it (`None`: no record).
fn get_on(profile: &Path, node: &str, key: &str) -> Result<Option<serde_json::Value>> {
    let out = tau_tests::harness::tau_node(&[
        "tns",
        "get",
        key,
        "--cloud",
        &profile.to_string_lossy(),
        "--node",
        node,
        "--json",
    ])?;
    if out.status.success() {
        return Ok(Some(serde_json::from_slice(&out.stdout)?));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("no record under") {
        return Ok(None);
    }
    Err(format!("tns get {key} on {node}: {stderr}").into())
}

#[test]
fn pushes_spread_a_stopped_node_catches_up_and_strangers_are_refused() -> Result {
    let tmp = tempfile::tempdir()?;
    let cloud = DevCloud::start(5, &tmp.path().join("cloud"))?;
    let ids = cloud.peer_ids()?;
    let profile = cloud.profile.clone();

    // Node 4 is down during the push.
    let pid = cloud.node_pid(4)?;
    signal(pid, Signal::SIGTERM);
    wait_for(Duration::from_secs(10), "node 4 stops", || {
        Ok((!tau_tests::harness::alive(pid)).then_some(()))
    })?;

    let key = create_project(&profile, tmp.path(), "shop")?;
    let project = tmp.path().join("shop");
    write_project(&project, "shop", &["ping", "pong"])?;
    let report = push(&profile, &project, &key, &ids[0])?;
    assert_eq!(report["written"].as_array().map(Vec::len), Some(6), "{report}");

    // Readable on every running node within 2 s.
    let function = keys::function("shop", "pong");
    let (_, took) = wait_for(Duration::from_secs(2), "the push reaches nodes 0-3", || {
        for id in &ids[..4] {
            if get_on(&profile, id, &function)?.is_none() {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })?;
    eprintln!("push visible on 4 nodes after {took:?}");
    // The component is in hoarder, under the id the function record names.
    let record = get_on(&profile, &ids[0], &function)?.ok_or("no function record")?;
    let cid = record["value"]["source"]["cid"]
        .as_str()
        .ok_or("no cid in the function record")?
        .to_string();
    let pins = tau_node_ok(&[
        "hoarder",
        "list",
        "--cloud",
        &profile.to_string_lossy(),
        "--node",
        &ids[0],
        "--json",
    ])?;
    assert!(pins.contains(&cid), "{cid} is not pinned: {pins}");

    // The same folder again writes nothing.
    let again = push(&profile, &project, &key, &ids[1])?;
    assert_eq!(
        (again["written"].as_array().map(Vec::len), again["unchanged"].as_u64()),
        (Some(0), Some(6))
    );

    // Node 4 comes back and catches up by itself.
    let node4 =
        run_node(&cloud.dir.join("node-4/node.yaml"), &cloud.dir.join("node-4/restart.log"))?;
    let (record, took) = wait_for(Duration::from_secs(30), "node 4 catches up", || {
        get_on(&profile, &ids[4], &function)
    })?;
    eprintln!("node 4 caught up {took:?} after its restart");
    assert_eq!(record["deleted"], false);
    wait_for(Duration::from_secs(30), "all five registries are equal", || {
        Ok(converged(&tns_status(&profile)?, 5).then_some(()))
    })?;

    // Removing a function deletes it everywhere.
    write_project(&project, "shop", &["ping"])?;
    let report = push(&profile, &project, &key, &ids[2])?;
    assert_eq!(
        report["deleted"].as_array().map(Vec::len),
        Some(2),
        "the function and its route: {report}"
    );
    wait_for(Duration::from_secs(5), "the delete reaches every node", || {
        for id in &ids {
            match get_on(&profile, id, &function)? {
                Some(r) if r["deleted"] == true => {}
                _ => return Ok(None),
            }
        }
        Ok(Some(()))
    })?;

    // A stranger's record, sent straight to node 0 by a client of its own, is on no node.
    let stranger = Keypair::generate_ed25519();
    let evil =
        Draft { key: keys::function("shop", "evil"), scope: "shop".into(), value: Some(vec![1]) }
            .sign(1_000, &stranger)
            .ok_or("cannot sign")?;
    let runtime = tokio::runtime::Runtime::new()?;
    let outcome = runtime.block_on(async {
        let client = Client::connect(&CloudProfile::load(&profile)?).await?;
        let node0 = ids[0].parse()?;
        client.nodes().await?;
        let answer =
            client.call::<TnsProtocol>(node0, TnsRequest::Put { records: vec![evil] }).await?;
        Ok::<_, tau_tests::harness::Error>(answer)
    })?;
    match outcome {
        TnsResponse::Put(put) => {
            assert_eq!(put.stored, 0);
            assert!(put.rejected[0].1.contains("only the owner of project `shop`"), "{put:?}");
        }
        other => return Err(format!("unexpected answer {other:?}").into()),
    }
    std::thread::sleep(Duration::from_secs(3));
    for id in &ids {
        assert_eq!(get_on(&profile, id, &keys::function("shop", "evil"))?, None, "on {id}");
    }
    let status = tns_status(&profile)?;
    assert!(status.iter().any(|s| s["unauthorized"].as_u64() >= Some(1)), "the refusal is counted");
    drop(node4);
    Ok(())
}

/// Waits (60 s at most; more when the machine is busy with other tests) until every node of
/// `cloud` is connected to exactly `expected` other nodes.
fn wait_for_peers(cloud: &LabCloud, expected: usize, what: &str) -> Result {
    wait_for(Duration::from_secs(60), what, || {
        let counts = cloud.peer_counts()?;
        if counts.iter().all(|&c| c == expected) {
            Ok(Some(()))
        } else {
            // Reported if it never happens: how many peers each node sees.
            Err(format!("peers seen by each node: {counts:?} ({expected} each expected)").into())
        }
    })?;
    Ok(())
}

#[test]
fn a_partitioned_cloud_converges_after_the_partition_heals() -> Result {
    let lab = Lab::new(4)?;
    let tmp = tempfile::tempdir()?;
    let mut ids = Vec::new();
    let result = partition_and_heal(&lab, tmp.path(), &mut ids);
    if result.is_err() {
        // What each node said about the other nodes (connections and pings are logged at debug
        // here; the test's own client connections are left out).
        for i in 0..4 {
            let log = std::fs::read_to_string(tmp.path().join(format!("node-{i}/node.log")));
            let log = log.unwrap_or_default();
            let about_nodes = |line: &&str| {
                !line.contains("peer_id=") || ids.iter().any(|id| line.contains(id.as_str()))
            };
            let tail: Vec<&str> = log.lines().rev().filter(about_nodes).take(80).collect();
            eprintln!("--- node-{i} log, last lines:");
            tail.iter().rev().for_each(|line| eprintln!("{line}"));
        }
    }
    result
}

fn partition_and_heal(lab: &Lab, tmp: &Path, ids: &mut Vec<String>) -> Result {
    let log_filter = "info,libp2p_swarm=warn,tau_node::p2p=debug";
    let cloud = lab.start_cloud(tmp, "tns,hoarder", &[], log_filter)?;
    ids.clone_from(&cloud.ids);
    let (profile, nodes) = (cloud.profile.clone(), &cloud.ids);
    wait_for(Duration::from_secs(60), "the lab cloud forms", || {
        let status = tns_status(&profile)?;
        Ok((status.len() == 4 && status.iter().all(|s| s["digest"].is_string())).then_some(()))
    })?;

    // The full mesh first: each node must know the others before the cut, or the two nodes
    // that joined through node 0 never meet (node 0 is the only one that could introduce them).
    wait_for_peers(&cloud, 3, "every node connects to every other")?;

    let key = create_project(&profile, tmp, "split")?;
    let project = tmp.join("split");
    write_project(&project, "split", &["base"])?;
    push(&profile, &project, &key, &nodes[0])?;
    wait_for(Duration::from_secs(10), "the first push reaches all", || {
        Ok(converged(&tns_status(&profile)?, 4).then_some(()))
    })?;

    // Cut {0,1} off from {2,3}, and write different things on each side.
    lab.partition(&[0, 1], &[2, 3])?;
    // Every node must see the cut, not only one: a push stores its blob through whichever
    // node the client reaches first, and that node must not count on the other side.
    // A node closes a connection after two failed pings (2 s apart, 4 s timeout each): about
    // 12 s, more when the machine is busy with other tests.
    wait_for_peers(&cloud, 1, "the partition takes effect on every node")?;
    write_project(&project, "split", &["base", "left"])?;
    push(&profile, &project, &key, &nodes[0])?;
    write_project(&project, "split", &["right"])?;
    push(&profile, &project, &key, &nodes[2])?;
    std::thread::sleep(Duration::from_secs(3));
    assert!(!converged(&tns_status(&profile)?, 4), "the two sides differ while cut off");
    let left = keys::function("split", "left");
    assert!(get_on(&profile, &nodes[1], &left)?.is_some());
    assert!(get_on(&profile, &nodes[3], &left)?.is_none());

    lab.heal(&[0, 1], &[2, 3])?;
    let (_, took) = wait_for(Duration::from_secs(60), "the cloud converges after healing", || {
        Ok(converged(&tns_status(&profile)?, 4).then_some(()))
    })?;
    eprintln!("converged {took:?} after the partition healed");
    // Every node holds the same merge: both sides' writes, last writer winning per key.
    for node in nodes {
        assert!(get_on(&profile, node, &keys::function("split", "right"))?.is_some());
        assert!(get_on(&profile, node, &left)?.is_some());
    }
    Ok(())
}
