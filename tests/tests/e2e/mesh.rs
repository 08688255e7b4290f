//! A 5-node cloud from `tau-node dev`: the mesh forms, an intruder with another swarm key is
//! refused, a killed node drops out (a client that entered by it goes on through another), and
//! the cloud stops cleanly.

use std::collections::BTreeSet;
use std::time::Duration;

use tau_proto::{Client, CloudProfile};
use tau_tests::harness::{
    DevCloud, Result, Signal, alive, signal, tau_node, tau_node_ok, wait_for,
};

/// The peer ids `node` reports as its peers, through `tau-node peers --json`.
fn peers_of(cloud: &DevCloud, node: &str) -> Result<BTreeSet<String>> {
    let profile = cloud.profile.to_string_lossy();
    let out = tau_node_ok(&["peers", "--cloud", &profile, "--node", node, "--json"])?;
    let peers: serde_json::Value = serde_json::from_str(&out)?;
    let peers = peers.as_array().ok_or("peers --json is not an array")?;
    Ok(peers.iter().filter_map(|p| p["peer_id"].as_str().map(String::from)).collect())
}

#[test]
fn five_nodes_mesh_refuse_an_intruder_and_drop_a_dead_node() -> Result {
    let tmp = tempfile::tempdir()?;
    let cloud = DevCloud::start(5, &tmp.path().join("cloud"))?;
    let ids = cloud.peer_ids()?;
    assert_eq!(ids.len(), 5, "the profile lists every node");

    // Every node lists exactly the other four.
    for id in &ids {
        let expected: BTreeSet<String> = ids.iter().filter(|o| *o != id).cloned().collect();
        assert_eq!(peers_of(&cloud, id)?, expected, "peers of {id}");
    }

    // `status` reaches all five, with their services and resources.
    let profile = cloud.profile.to_string_lossy().to_string();
    let status: serde_json::Value =
        serde_json::from_str(&tau_node_ok(&["status", "--cloud", &profile, "--json"])?)?;
    let nodes = status["nodes"].as_array().ok_or("status has no nodes")?;
    assert_eq!(nodes.len(), 5, "{status}");
    for node in nodes {
        // tns, hoarder, vault, seer, substrate and ci: a dev cloud's core nodes run them all.
        let services = tau_proto::node_config::SERVICES.len();
        assert_eq!(node["services"].as_array().map(Vec::len), Some(services), "{node}");
        assert!(node["resources"]["memory_total"].as_u64() > Some(0), "{node}");
    }

    // An intruder with its own swarm key, pointed at node 0, never joins.
    let intruder = tmp.path().join("intruder");
    let bootstrap = std::fs::read_to_string(&cloud.profile)?
        .lines()
        .find_map(|l| l.strip_prefix("- ").map(str::to_string))
        .ok_or("no bootstrap address in the profile")?;
    let intruder_dir = intruder.to_string_lossy();
    let intruder_id = tau_node_ok(&[
        "init",
        "--dir",
        &intruder_dir,
        "--bootstrap",
        &bootstrap,
        "--listen",
        "127.0.0.1",
        "--p2p-port",
        "0",
        "--admin-port",
        "0",
    ])?
    .trim()
    .to_string();
    let intruder_config = intruder.join("node.yaml");
    let mut intruder_process = std::process::Command::new(tau_tests::harness::binary("tau-node")?)
        .args(["run", "--config"])
        .arg(&intruder_config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(intruder.join("node.log"))?)
        .spawn()?;
    wait_for(Duration::from_secs(30), "node 0 refuses the intruder", || {
        Ok(cloud.node_log(0)?.contains("refused an incoming connection").then_some(()))
    })?;
    std::thread::sleep(Duration::from_secs(1));
    let peers0 = peers_of(&cloud, &ids[0])?;
    assert!(!peers0.contains(&intruder_id), "the intruder joined: {peers0:?}");
    assert_eq!(peers0.len(), 4, "the others go on: {peers0:?}");
    // A client with the intruder's key cannot reach the cloud either.
    let wrong_profile = intruder.join("cloud.yaml");
    std::fs::write(
        &wrong_profile,
        format!("name: wrong\nswarm_key: swarm.key\nbootstrap: [{bootstrap}]\n"),
    )?;
    let out = tau_node(&["status", "--cloud", &wrong_profile.to_string_lossy()])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no node of the cloud could be reached"), "{stderr}");
    intruder_process.kill()?;
    intruder_process.wait()?;

    // A client that entered by node 4 alone, and has asked it once who runs tns.
    let runtime = tokio::runtime::Runtime::new()?;
    let mut by_node_4 = CloudProfile::load(&cloud.profile)?;
    by_node_4.bootstrap.retain(|addr| addr.to_string().ends_with(&ids[4]));
    let client = runtime.block_on(Client::connect(&by_node_4))?;
    assert_eq!(client.entry().to_string(), ids[4]);
    assert_eq!(runtime.block_on(client.nodes_running("tns"))?.len(), 5);

    // Kill node 4 outright: it drops out of node 0's peers within 10 s.
    let pid = cloud.node_pid(4)?;
    signal(pid, Signal::SIGKILL);
    wait_for(Duration::from_secs(5), "node 4 is gone", || Ok((!alive(pid)).then_some(())))?;
    // The client enters by another node it learned of, and asks again there.
    let tns = runtime.block_on(client.nodes_running("tns"))?;
    assert_ne!(client.entry().to_string(), ids[4], "the client still enters by node 4");
    assert!(tns.contains(&client.entry()), "{tns:?}");
    let (_, took) =
        wait_for(Duration::from_secs(10), "node 4 drops out of node 0's peers", || {
            Ok((!peers_of(&cloud, &ids[0])?.contains(&ids[4])).then_some(()))
        })?;
    eprintln!("node 4 dropped out after {took:?}");
    for id in &ids[..4] {
        assert_eq!(peers_of(&cloud, id)?.len(), 3, "peers of {id} after node 4 died");
    }

    // SIGTERM to `tau-node dev` stops every node cleanly.
    let mut cloud = cloud;
    signal(cloud.child.id(), Signal::SIGTERM);
    let (status, _) =
        wait_for(Duration::from_secs(20), "tau-node dev exits", || Ok(cloud.child.try_wait()?))?;
    assert!(status.success(), "tau-node dev exited with {status}: {}", cloud.stderr_text());
    for i in 0..4 {
        let pid = cloud.node_pid(i)?;
        assert!(!alive(pid), "node {i} (pid {pid}) still runs");
        assert!(cloud.node_log(i)?.contains("node stopped"), "node {i} did not stop cleanly");
    }
    Ok(())
}
