//! Scale: a 60-node dev cloud on this machine, where no node is connected to every other. Every
//! node is healthy in seer; a project pushed through one node is served by a substrate node
//! with no connection to it; a secret reads back; a blob is at its factor; no node ever holds
//! more connections than its ceiling. Ten nodes killed: seer drops them within 10 s, pins come
//! back to their factor, TNS writes still reach every live node; started again, they rejoin.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use tau_tests::harness::{
    DevCloud, KillOnDrop, Result, Signal, example_wasm, hoarder_pins, http, pin_holders,
    push_project, random_bytes, run_node, signal, tau_node_ok, wait_for,
};

const NODES: usize = 60;
/// Nodes killed (one of the blob's holders among them); the first five run tns, vault and
/// seer.
const KILLED: usize = 10;
const CORE: usize = 5;
/// `connections.ceiling` of a dev node (the default).
const CEILING: usize = 48;

/// Each node's connected nodes (`tau-node peers --json`), by peer id.
fn peers(profile: &Path, ids: &[String]) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut all = BTreeMap::new();
    for id in ids {
        let out =
            tau_node_ok(&["peers", "--cloud", &profile.to_string_lossy(), "--node", id, "--json"])?;
        let list: serde_json::Value = serde_json::from_str(&out)?;
        let connected: BTreeSet<String> = list
            .as_array()
            .ok_or("peers: not a list")?
            .iter()
            .filter_map(|p| p["peer_id"].as_str().map(String::from))
            .collect();
        all.insert(id.clone(), connected);
    }
    Ok(all)
}

/// Fails when a node holds more connections than its ceiling; returns the largest count.
fn under_ceiling(profile: &Path, ids: &[String], when: &str) -> Result<usize> {
    let all = peers(profile, ids)?;
    let most = all.values().map(BTreeSet::len).max().unwrap_or(0);
    if let Some((id, over)) = all.iter().find(|(_, p)| p.len() > CEILING) {
        return Err(
            format!("{when}: {id} holds {} connections (ceiling {CEILING})", over.len()).into()
        );
    }
    Ok(most)
}

/// The peer ids seer counts healthy (`tau-node nodes --json`).
fn healthy(profile: &Path) -> Result<BTreeSet<String>> {
    let out = tau_node_ok(&["nodes", "--cloud", &profile.to_string_lossy(), "--json"])?;
    let nodes: serde_json::Value = serde_json::from_str(&out)?;
    Ok(nodes
        .as_array()
        .ok_or("nodes: not a list")?
        .iter()
        .filter(|n| n["healthy"].as_bool() == Some(true))
        .filter_map(|n| n["heartbeat"]["peer"].as_str().map(String::from))
        .collect())
}

/// The holders of the blob `cid` as node `via` lists them.
fn holders(profile: &Path, via: &str, cid: &str) -> Result<BTreeSet<String>> {
    let pins = hoarder_pins(profile, via)?;
    let pin =
        pins.iter().find(|p| p["cid"].as_str() == Some(cid)).ok_or("the blob is not pinned")?;
    Ok(pin_holders(pin))
}

/// Writes the project `id`: the example `ping` on `GET /ping` at `ping.<id>.tau`, saying
/// `version`.
fn write_ping(dir: &Path, id: &str, route: &str) -> Result {
    std::fs::create_dir_all(dir.join("functions"))?;
    std::fs::write(dir.join("config.yaml"), format!("id: {id}\nname: {id}\n"))?;
    std::fs::copy(example_wasm("ping")?, dir.join("ping.wasm"))?;
    std::fs::write(
        dir.join("functions/ping.yaml"),
        format!(
            "id: ping\ntrigger: {{type: http, method: GET, paths: [/{route}]}}\n\
             domains: [ping.{id}.tau]\nsource: ping.wasm\n"
        ),
    )?;
    Ok(())
}

/// Waits until every gateway in `gateways` answers `GET /<route>` at `ping.<id>.tau` with 200.
fn served_everywhere(gateways: &[&String], id: &str, route: &str, within: Duration) -> Result {
    let host = format!("ping.{id}.tau");
    let path = format!("/{route}");
    wait_for(within, &format!("every live gateway serves {path}"), || {
        let missing: Vec<&&String> = gateways
            .iter()
            .filter(|g| !matches!(http(g, "GET", &host, &path, b""), Ok(a) if a.status == 200))
            .collect();
        Ok(missing.is_empty().then_some(()))
    })?;
    Ok(())
}

#[test]
fn a_sixty_node_cloud_serves_from_nodes_that_are_not_connected_and_heals() -> Result {
    let started = Instant::now();
    let phase = |what: &str| eprintln!("[{:>6.1?}] {what}", started.elapsed());
    let tmp = tempfile::tempdir()?;
    // Sixty nodes start on two cores beside another test: more than a small cloud's minute.
    let cloud = DevCloud::start_with(NODES, &tmp.path().join("cloud"), &["--timeout", "110"])?;
    let profile = cloud.profile.clone();
    let cloud_arg = profile.to_string_lossy().into_owned();
    let ids = cloud.peer_ids()?;
    assert_eq!(ids.len(), NODES);
    phase("ready");

    // Every node is healthy in seer, though none is connected to all the others.
    let all: BTreeSet<String> = ids.iter().cloned().collect();
    wait_for(Duration::from_secs(30), "every node healthy in seer", || {
        Ok((healthy(&profile)? == all).then_some(()))
    })?;
    let connections = peers(&profile, &ids)?;
    let most = under_ceiling(&profile, &ids, "ready")?;
    assert!(most < NODES - 1, "no node is connected to every other: {most}");
    phase(&format!("all healthy; at most {most} connections per node"));

    // A project pushed through node 0 is served by a substrate node not connected to node 0.
    let owner = tmp.path().join("owner.key");
    tau_node_ok(&["key", "generate", "--out", &owner.to_string_lossy()])?;
    let owner_id = tau_node_ok(&["key", "public", &owner.to_string_lossy()])?;
    tau_node_ok(&[
        "project",
        "create",
        "--id",
        "wide",
        "--owner",
        owner_id.trim(),
        "--cloud",
        &cloud_arg,
    ])?;
    let project = tmp.path().join("wide");
    write_ping(&project, "wide", "ping")?;
    push_project(&profile, &project, &owner, Some(&ids[0]))?;
    let far = (1..NODES)
        .find(|i| !connections[&ids[0]].contains(&ids[*i]))
        .ok_or("every node is connected to node 0")?;
    let gateway = &cloud.gateways[far];
    wait_for(
        Duration::from_secs(30),
        "a node not connected to node 0 serves the function",
        || Ok((http(gateway, "GET", "ping.wide.tau", "/ping", b"")?.status == 200).then_some(())),
    )?;
    phase(&format!("served by node {far}, not connected to node 0"));

    // A secret reads back.
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, b"wide open")?;
    tau_node_ok(&[
        "secret",
        "put",
        "wide",
        "token",
        "--from-file",
        &secret.to_string_lossy(),
        "--cloud",
        &cloud_arg,
        "--key",
        &owner.to_string_lossy(),
    ])?;
    let read = tau_node_ok(&[
        "secret",
        "get",
        "wide",
        "token",
        "--cloud",
        &cloud_arg,
        "--key",
        &owner.to_string_lossy(),
    ])?;
    assert_eq!(read.trim(), "wide open");
    phase("secret read back");

    // A blob stored through a node far from the others reaches its factor.
    let blob = tmp.path().join("blob");
    std::fs::write(&blob, random_bytes(3 << 20, 60))?;
    let put: serde_json::Value = serde_json::from_str(&tau_node_ok(&[
        "hoarder",
        "put",
        &blob.to_string_lossy(),
        "--replicas",
        "3",
        "--cloud",
        &cloud_arg,
        "--node",
        &ids[far],
        "--json",
    ])?)?;
    let cid = put["cid"].as_str().ok_or("no cid")?.to_string();
    wait_for(Duration::from_secs(30), "the blob on three nodes", || {
        Ok((holders(&profile, &ids[0], &cid)?.len() == 3).then_some(()))
    })?;
    under_ceiling(&profile, &ids, "after the writes")?;
    phase("blob at its factor");

    // Ten nodes killed, one of the blob's holders among them: seer drops them within 10 s.
    // One holder only: the others keep the blob to copy from.
    let held = holders(&profile, &ids[0], &cid)?;
    let holder = (CORE..NODES)
        .find(|i| held.contains(&ids[*i]) && *i != far)
        .ok_or("the blob has no holder outside the core")?;
    let mut victims = vec![holder];
    let others: Vec<usize> = (CORE..NODES)
        .rev()
        .filter(|i| *i != far && *i != holder && !held.contains(&ids[*i]))
        .collect();
    victims.extend(others);
    victims.truncate(KILLED);
    let killed: BTreeSet<String> = victims.iter().map(|i| ids[*i].clone()).collect();
    for i in &victims {
        signal(cloud.node_pid(*i)?, Signal::SIGKILL);
    }
    let cut = Instant::now();
    let live: BTreeSet<String> = all.difference(&killed).cloned().collect();
    wait_for(Duration::from_secs(10), "seer drops the killed nodes", || {
        Ok((healthy(&profile)? == live).then_some(()))
    })?;
    phase(&format!("seer dropped the ten in {:.1?}", cut.elapsed()));

    // The blob is back at its factor on live nodes.
    wait_for(Duration::from_secs(60), "the blob back on three live nodes", || {
        let now = holders(&profile, &ids[0], &cid)?;
        Ok((now.len() == 3 && now.is_disjoint(&killed)).then_some(()))
    })?;
    phase("blob back at its factor");

    // A TNS write still reaches every live node: a new route is served by every live gateway.
    write_ping(&project, "wide", "pong")?;
    push_project(&profile, &project, &owner, Some(&ids[1]))?;
    let live_gateways: Vec<&String> =
        (0..NODES).filter(|i| !victims.contains(i)).map(|i| &cloud.gateways[i]).collect();
    served_everywhere(&live_gateways, "wide", "pong", Duration::from_secs(30))?;
    let live_ids: Vec<String> = live.iter().cloned().collect();
    under_ceiling(&profile, &live_ids, "after the kill")?;
    phase("the new route is served by every live node");

    // Started again, they rejoin: healthy, connected, serving.
    let restarted: Vec<KillOnDrop> = victims
        .iter()
        .map(|i| {
            let node = cloud.dir.join(format!("node-{i}"));
            run_node(&node.join("node.yaml"), &node.join("node.log"))
        })
        .collect::<Result<_>>()?;
    wait_for(Duration::from_secs(60), "the ten healthy again", || {
        Ok((healthy(&profile)? == all).then_some(()))
    })?;
    let killed_ids: Vec<String> = killed.iter().cloned().collect();
    let back = peers(&profile, &killed_ids)?;
    assert!(back.values().all(|p| !p.is_empty()), "every restarted node is connected");
    let back_gateways: Vec<&String> = victims.iter().map(|i| &cloud.gateways[*i]).collect();
    served_everywhere(&back_gateways, "wide", "pong", Duration::from_secs(30))?;
    under_ceiling(&profile, &ids, "after the restart")?;
    phase("the ten rejoined");
    drop(restarted);
    Ok(())
}
