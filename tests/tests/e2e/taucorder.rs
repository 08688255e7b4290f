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

/// Starts taucorder for `cloud` in a fresh tmux pane (with `extra` arguments) and waits until
/// it is connected.
fn taucorder_in_tmux(cloud: &DevCloud, extra: &str) -> Result<Tmux> {
    let tmux = Tmux::start(160, 45)?;
    let command =
        format!("{} --cloud {} {extra}", binary("taucorder")?.display(), cloud.profile.display());
    tmux.text(&command)?;
    tmux.keys(&["Enter"])?;
    tmux.wait("taucorder connected", |s| s.contains("connected"))?;
    Ok(tmux)
}

#[test]
fn taucorder_follows_a_burst_of_ten_thousand_lines_and_its_keys_keep_working() -> Result {
    let tmp = tempfile::tempdir()?;
    let cloud = DevCloud::start(1, &tmp.path().join("cloud"))?;
    let gateway = cloud.gateways.first().ok_or("no gateway")?.clone();
    tau_tests::harness::push_faulty(&cloud, tmp.path())?;
    wait_for(Duration::from_secs(30), "the function answers", || {
        let answer =
            tau_tests::harness::http(&gateway, "GET", "faulty.lab.tau", "/print?lines=1", b"")?;
        Ok((answer.status == 200).then_some(()))
    })?;
    let tmux = taucorder_in_tmux(&cloud, "")?;
    // The node's own log first (9 opens the entry node's), then the function's output.
    tmux.keys(&["9"])?;
    tmux.wait("the node's log", |s| s.contains("logs: node ") && s.contains("node started"))?;
    tmux.text(":logs lab/faulty")?;
    tmux.keys(&["Enter"])?;
    tmux.wait("the function's warm-up line", |s| {
        s.contains("logs: lab/faulty on every substrate node") && s.contains("line 1 of 1")
    })?;

    // A burst of 10,000 lines while keys are pressed: each key's effect shows meanwhile.
    let burst = {
        let gateway = gateway.clone();
        std::thread::spawn(move || {
            tau_tests::harness::http(&gateway, "GET", "faulty.lab.tau", "/print?lines=10000", b"")
                .map(|a| a.status)
                .map_err(|e| e.to_string())
        })
    };
    tmux.keys(&["p"])?;
    tmux.wait("paused during the burst", |s| s.contains("PAUSED"))?;
    tmux.keys(&["p", "w"])?;
    tmux.wait("following again, wrapped", |s| {
        s.contains("following") && s.contains("· wrap") && !s.contains("PAUSED")
    })?;
    tmux.keys(&["t"])?;
    let status = burst.join().map_err(|_| "the burst thread panicked")??;
    assert_eq!(status, 200, "the burst answered");
    // The burst's last lines arrive, followed.
    let screen = tmux.wait("the burst's end", |s| s.contains("printed 10000 lines"))?;
    assert!(screen.contains("line 10000 of 10000"), "{screen}");
    // Every line of the burst is there, or a gap says how many were lost: the filter keeps
    // the burst's lines and every gap, and the tab counts them.
    tmux.keys(&["/"])?;
    tmux.text("of 10000")?;
    tmux.keys(&["Enter"])?;
    let screen = tmux.wait("the burst counted", |s| {
        s.contains("9 logs 10000") || s.contains("lines lost here")
    })?;
    eprintln!(
        "taucorder showed the burst {}",
        if screen.contains("9 logs 10000") { "whole" } else { "with its gaps" }
    );
    // Keys still work after it: help opens and closes.
    tmux.keys(&["?"])?;
    tmux.wait("the help", |s| s.contains("keys (Esc closes)"))?;
    tmux.keys(&["Escape", "q"])?;
    Ok(())
}

#[test]
fn taucorder_drains_a_node_after_asking_and_refuses_with_readonly() -> Result {
    let tmp = tempfile::tempdir()?;
    let cloud = DevCloud::start(3, &tmp.path().join("cloud"))?;
    tau_tests::harness::push_ping_project(&cloud, tmp.path(), "lab")?;
    let peers = cloud.peer_ids()?;
    let drained = peers.get(2).ok_or("no third node")?.clone();
    let dns = cloud.dns.first().ok_or("no dns")?.clone();
    let ip_of_node_2: std::net::IpAddr = "127.0.0.3".parse()?;
    wait_for(Duration::from_secs(30), "seer sends clients to all three nodes", || {
        Ok((tau_tests::harness::dig(&dns, "substrate.tau.dev", false)?.len() == 3).then_some(()))
    })?;

    // Read-only: the action is refused, nothing asked, nothing changed.
    let tmux = taucorder_in_tmux(&cloud, "--readonly")?;
    tmux.keys(&["2", "/"])?;
    tmux.text(&short(&drained))?;
    tmux.keys(&["Enter"])?;
    tmux.wait("the node to drain", |s| line_with(s, &short(&drained)).is_some())?;
    tmux.keys(&["D"])?;
    tmux.wait("the refusal", |s| s.contains("read-only: taucorder was started with --readonly"))?;
    tmux.keys(&["q"])?;
    drop(tmux);
    std::thread::sleep(Duration::from_secs(2));
    let answer = tau_tests::harness::dig(&dns, "substrate.tau.dev", false)?;
    assert!(answer.contains(&ip_of_node_2), "a read-only taucorder drained nothing: {answer:?}");

    let tmux = taucorder_in_tmux(&cloud, "")?;
    // Anti-entropy on the first node, then a repair of the function's pin.
    tmux.keys(&["2", "/"])?;
    tmux.text(&short(&peers[0]))?;
    tmux.keys(&["Enter"])?;
    tmux.wait("the first node", |s| line_with(s, &short(&peers[0])).is_some())?;
    tmux.keys(&["A"])?;
    tmux.wait("the question", |s| {
        s.contains("run anti-entropy on node") && s.contains("y: go ahead")
    })?;
    tmux.keys(&["y"])?;
    tmux.wait("anti-entropy's answer", |s| {
        s.contains("anti-entropy on")
            && s.contains(": 2 tns nodes")
            && s.contains("0 failed), 2 hoarder nodes")
    })?;
    tmux.keys(&["4"])?;
    tmux.wait("the wasm pinned", |s| s.contains(" ok "))?;
    tmux.keys(&["R"])?;
    tmux.wait("the question", |s| s.contains("repair pin") && s.contains("y: go ahead"))?;
    tmux.keys(&["y"])?;
    tmux.wait("the repair's answer", |s| s.contains("3 nodes hold it"))?;

    // A question answered with anything but y changes nothing.
    // (Escape alone, then wait: an Escape right before another key reads as Alt and that key.)
    tmux.keys(&["2"])?;
    tmux.keys(&["Escape"])?;
    tmux.wait("the nodes unfiltered", |s| s.contains("nodes (3)"))?;
    tmux.keys(&["/"])?;
    tmux.text(&short(&drained))?;
    tmux.keys(&["Enter"])?;
    tmux.wait("the node to drain", |s| line_with(s, &short(&drained)).is_some())?;
    tmux.keys(&["D"])?;
    tmux.wait("the question", |s| s.contains("drain node") && s.contains("y: go ahead"))?;
    tmux.keys(&["n"])?;
    tmux.wait("cancelled", |s| s.contains("cancelled: nothing changed"))?;
    // Drain it: seer stops listing it.
    tmux.keys(&["D"])?;
    tmux.wait("the question", |s| s.contains("drain node") && s.contains("y: go ahead"))?;
    tmux.keys(&["y"])?;
    tmux.wait("drained", |s| s.contains("is draining: seer stops listing it"))?;
    wait_for(Duration::from_secs(30), "seer stops listing the drained node", || {
        let answer = tau_tests::harness::dig(&dns, "substrate.tau.dev", false)?;
        Ok((answer.len() == 2 && !answer.contains(&ip_of_node_2)).then_some(()))
    })?;
    Ok(())
}
