//! taucorder's commands for scripts, against a real local cloud: what they print is what the
//! nodes hold.

use std::process::Command;
use std::time::Duration;

use tau_tests::harness::{DevCloud, Result, binary, run, tau_node_ok, wait_for};
use tau_tests::tmux::{Tmux, line_with};

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

    // TNS: the same records as the node's own CLI reads (each may ask another node: once the
    // registry has converged), and one of them whole.
    let (keys, _) =
        wait_for(Duration::from_secs(30), "taucorder lists what tau-node lists", || {
            let listed = ids(&taucorder(&cloud, &["tns", "list", "/"])?, "/key");
            let theirs: serde_json::Value = serde_json::from_str(&tau_node_ok(&[
                "tns", "list", "/", "--json", "--cloud", &profile,
            ])?)?;
            Ok((listed == ids(&theirs, "/key")).then_some(listed))
        })?;
    assert!(!keys.is_empty(), "the dev cloud publishes the vault key set and registrars");
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

/// The tail of a peer id, as taucorder's columns show it.
fn short(peer: &str) -> String {
    peer.chars().skip(peer.chars().count() - 10).collect()
}

#[test]
fn taucorder_ui_in_a_real_terminal_follows_the_cloud() -> Result {
    let tmp = tempfile::tempdir()?;
    let cloud = DevCloud::start_with(3, &tmp.path().join("cloud"), &["--counter-window", "1s"])?;
    let peers = cloud.peer_ids()?;

    // A project with one real function, called 12 times.
    tau_tests::harness::push_ping_project(&cloud, tmp.path(), "lab")?;
    let gateway = cloud.gateways.first().ok_or("no gateway")?;
    for _ in 0..11 {
        let answer = tau_tests::harness::http(gateway, "GET", "ping.lab.tau", "/ping", b"")?;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }

    // The same usage for scripts: the 12 calls, counted by the nodes and signed.
    let (usage, _) = wait_for(Duration::from_secs(30), "12 calls counted", || {
        let usage = taucorder(&cloud, &["usage"])?;
        let ping = usage.as_array().into_iter().flatten().find(|r| r["function"] == "ping");
        Ok((ping.map(|r| r["total_invocations"].clone()) == Some(serde_json::json!(12)))
            .then_some(usage))
    })?;
    assert_eq!(usage[0]["project"], "lab", "{usage}");

    let tmux = Tmux::start(160, 45)?;
    let command = format!("{} --cloud {}", binary("taucorder")?.display(), cloud.profile.display());
    tmux.text(&command)?;
    tmux.keys(&["Enter"])?;
    let screen = tmux.wait("the peers view with 2 peers", |s| {
        s.contains("connected") && s.contains("peers (2)")
    })?;
    assert_eq!(tmux.run(&["display", "-p", "-t", "t", "#{alternate_on}"])?.trim(), "1", "{screen}");

    // Nodes: all three healthy.
    tmux.keys(&["2"])?;
    tmux.wait("3 healthy nodes", |s| {
        peers.iter().all(|p| line_with(s, &short(p)).is_some_and(|l| l.contains("healthy")))
            && !s.contains("UNHEALTHY")
    })?;

    // TNS: filter to the function and select it: its decoded record shows beside the tree.
    tmux.keys(&["3", "/"])?;
    tmux.text("functions/ping")?;
    tmux.keys(&["Enter", "G"])?;
    tmux.wait("the function's record", |s| {
        s.contains("key      /projects/lab/functions/ping") && s.contains("name: ping")
    })?;

    // Hoarder: the function's wasm, held by all three nodes.
    tmux.keys(&["4"])?;
    tmux.wait("the wasm pinned at 3", |s| s.contains("3/3") && s.contains(" ok "))?;

    // Usage: the 12 calls.
    tmux.keys(&["6"])?;
    tmux.wait("ping's 12 calls", |s| line_with(s, "ping").is_some_and(|l| l.contains(" 12 ")))?;

    // Help comes from the key map; Esc closes it.
    tmux.keys(&["?"])?;
    tmux.wait("the help", |s| s.contains("keys (Esc closes)") && s.contains("quit"))?;
    tmux.keys(&["Escape"])?;
    tmux.wait("the help closed", |s| !s.contains("keys (Esc closes)"))?;

    // Kill a node: the nodes view shows it unhealthy, the others stay healthy.
    tmux.keys(&["2"])?;
    let victim = &peers[2];
    tau_tests::harness::signal(cloud.node_pid(2)?, nix::sys::signal::Signal::SIGKILL);
    let screen = tmux.wait("the killed node unhealthy", |s| {
        line_with(s, &short(victim)).is_some_and(|l| l.contains("UNHEALTHY"))
    })?;
    for peer in &peers[..2] {
        let line = line_with(&screen, &short(peer)).ok_or("a live node vanished")?;
        assert!(line.contains("healthy") && !line.contains("UNHEALTHY"), "{screen}");
    }

    // Ctrl-C: taucorder exits and the terminal is as it was (main screen, cooked mode).
    tmux.keys(&["C-c"])?;
    wait_for(Duration::from_secs(10), "the main screen back", || {
        let alternate = tmux.run(&["display", "-p", "-t", "t", "#{alternate_on}"])?;
        Ok((alternate.trim() == "0").then_some(()))
    })?;
    // The typed line says ST''TY; only the answer starts with STTY=.
    tmux.text(
        "stty -a | grep -o -w -e '-\\?icanon' -e '-\\?echo' | paste -sd, | sed 's/^/ST''TY=/'",
    )?;
    tmux.keys(&["Enter"])?;
    let screen = tmux.wait("stty's answer", |s| s.lines().any(|l| l.starts_with("STTY=")))?;
    let answer = screen.lines().find(|l| l.starts_with("STTY=")).unwrap_or_default();
    assert_eq!(
        answer.trim(),
        "STTY=icanon,echo",
        "the terminal is not back in cooked mode: {screen}"
    );
    Ok(())
}
