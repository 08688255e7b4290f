//! taucorder's commands for scripts, against a real local cloud: what they print is what the
//! nodes hold.

use std::process::Command;
use std::time::Duration;

use tau_tests::harness::{DevCloud, Result, binary, run, tau_node_ok, wait_for};

/// Runs `taucorder ARGS --cloud PROFILE --json` and parses what it prints.
fn taucorder(cloud: &DevCloud, args: &[&str]) -> Result<serde_json::Value> {
    let out = run(
        Command::new(binary("taucorder")?)
            .args(args)
            .arg("--json")
            .arg("--cloud")
            .arg(&cloud.profile),
        Duration::from_secs(60),
    )?;
    if !out.status.success() {
        return Err(format!("taucorder {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn ids(list: &serde_json::Value, field: &str) -> Vec<String> {
    let mut ids: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item.pointer(field).and_then(|v| v.as_str()).map(String::from))
        .collect();
    ids.sort();
    ids
}

#[test]
fn taucorder_json_commands_show_what_the_nodes_hold() -> Result {
    let tmp = tempfile::tempdir()?;
    let cloud = DevCloud::start(3, &tmp.path().join("cloud"))?;
    let profile = cloud.profile.to_string_lossy().to_string();
    let mut all = cloud.peer_ids()?;
    all.sort();

    // Peers: the entry node sees the other two.
    let peers = taucorder(&cloud, &["peers"])?;
    let seen = ids(&peers, "/peer_id");
    assert_eq!(seen.len(), 2, "{peers}");
    assert!(seen.iter().all(|p| all.contains(p)), "{peers}");

    // Nodes: seer's view, every node healthy once each has beaten.
    let (nodes, _) = wait_for(Duration::from_secs(30), "seer lists 3 healthy nodes", || {
        let nodes = taucorder(&cloud, &["nodes"])?;
        let healthy =
            nodes.as_array().map_or(0, |n| n.iter().filter(|n| n["healthy"] == true).count());
        Ok((healthy == 3).then_some(nodes))
    })?;
    assert_eq!(ids(&nodes, "/heartbeat/peer"), all, "{nodes}");

    // TNS: the same records as the node's own CLI reads, and one of them whole.
    let listed = taucorder(&cloud, &["tns", "list", "/"])?;
    let theirs: serde_json::Value =
        serde_json::from_str(&tau_node_ok(&["tns", "list", "/", "--json", "--cloud", &profile])?)?;
    let keys = ids(&listed, "/key");
    assert!(!keys.is_empty(), "the dev cloud publishes the vault key set and registrars");
    assert_eq!(keys, ids(&theirs, "/key"));
    let key = &keys[0];
    let record = taucorder(&cloud, &["tns", "get", key])?;
    let expected: serde_json::Value =
        serde_json::from_str(&tau_node_ok(&["tns", "get", key, "--json", "--cloud", &profile])?)?;
    assert_eq!(record, expected);

    // A key with no record is an error that names it.
    let out = run(
        Command::new(binary("taucorder")?).args([
            "tns",
            "get",
            "/projects/nothing-here",
            "--cloud",
            &profile,
        ]),
        Duration::from_secs(60),
    )?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no record under /projects/nothing-here"), "{stderr}");
    Ok(())
}
