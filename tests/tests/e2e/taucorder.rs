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

    // Hoarder: a stored blob shows up with its size and holders, as the node's CLI lists it.
    let blob = tmp.path().join("blob");
    std::fs::write(&blob, tau_tests::harness::random_bytes(300_000, 7))?;
    let cid = tau_node_ok(&["hoarder", "put", &blob.to_string_lossy(), "--cloud", &profile])?;
    let cid = cid.trim().to_string();
    let (pins, _) = wait_for(Duration::from_secs(30), "the pin is held by 3 nodes", || {
        let pins = taucorder(&cloud, &["hoarder"])?;
        let held =
            pins.as_array().into_iter().flatten().any(|p| {
                p["cid"] == cid.as_str() && p["holders"].as_array().map(Vec::len) == Some(3)
            });
        Ok(held.then_some(pins))
    })?;
    let pin = pins.as_array().into_iter().flatten().find(|p| p["cid"] == cid.as_str());
    assert_eq!(pin.map(|p| p["size"].clone()), Some(serde_json::json!(300_000)), "{pins}");
    let theirs: serde_json::Value =
        serde_json::from_str(&tau_node_ok(&["hoarder", "list", "--json", "--cloud", &profile])?)?;
    assert_eq!(ids(&pins, "/cid"), ids(&theirs, "/cid"));

    // Vault: every node's share, and the key set readable.
    let vault = taucorder(&cloud, &["vault"])?;
    assert_eq!(vault["readable"], true, "{vault}");
    assert_eq!(ids(&vault["nodes"], "/node"), all, "{vault}");
    let theirs: serde_json::Value =
        serde_json::from_str(&tau_node_ok(&["vault", "shares", "--json", "--cloud", &profile])?)?;
    assert_eq!(vault["keyset"], theirs["keyset"]);
    let mut indexes: Vec<u64> = vault["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["index"].as_u64())
        .collect();
    indexes.sort();
    assert_eq!(indexes, [0, 1, 2], "one distinct share per node: {vault}");
    let text = vault.to_string();
    for share in std::fs::read_dir(tmp.path().join("cloud"))?.flatten() {
        let path = share.path().join("vault-share.yaml");
        let Ok(contents) = std::fs::read_to_string(&path) else { continue };
        for line in contents.lines().filter(|l| l.len() > 40) {
            let value = line.split_once(':').map_or(line, |(_, v)| v.trim());
            assert!(!text.contains(value), "a vault share leaked into taucorder's output");
        }
    }

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
