//! One `tau-node run` process: it starts from `init`'s files, answers as a light client's only
//! bootstrap node, and shuts down cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use tau_tests::harness::{Result, Signal, binary, signal, tau_node_ok, wait_for};

#[test]
fn a_node_runs_answers_and_stops_cleanly_on_sigterm() -> Result {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("node");
    let dir_arg = dir.to_string_lossy();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let peer_id = tau_node_ok(&[
        "init",
        "--dir",
        &dir_arg,
        "--listen",
        "127.0.0.1",
        "--p2p-port",
        &port,
        "--services",
        "tns,seer",
        "--domain",
        "lab.test",
        "--generated-domain",
        "g.lab.test",
        "--dns-port",
        "0",
        "--admin-port",
        "0",
        "--region",
        "lab",
    ])?
    .trim()
    .to_string();
    let log = dir.join("node.log");
    let mut node = Command::new(binary("tau-node")?)
        .args(["run", "--config"])
        .arg(dir.join("node.yaml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;

    let profile = dir.join("cloud.yaml");
    std::fs::write(
        &profile,
        format!(
            "name: one\nswarm_key: swarm.key\nbootstrap: [/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id}]\n"
        ),
    )?;
    let profile_arg = profile.to_string_lossy();
    let (status, _) = wait_for(Duration::from_secs(30), "the node answers status", || {
        Ok(tau_node_ok(&["status", "--cloud", &profile_arg, "--json"]).ok())
    })?;
    let status: serde_json::Value = serde_json::from_str(&status)?;
    let info = &status["nodes"][0];
    assert_eq!(info["peer_id"], peer_id.as_str(), "{status}");
    assert_eq!(info["services"], serde_json::json!(["tns", "seer"]));
    assert_eq!(info["location"]["region"], "lab");
    assert!(info["resources"]["cpus"].as_u64() >= Some(1), "{status}");

    signal(node.id(), Signal::SIGTERM);
    let (exit, _) =
        wait_for(Duration::from_secs(10), "the node exits after SIGTERM", || Ok(node.try_wait()?))?;
    let log = std::fs::read_to_string(&log)?;
    assert!(exit.success(), "exit status {exit}: {log}");
    assert!(log.contains("SIGTERM") && log.contains("node stopped"), "{log}");
    // The port is free again.
    std::net::TcpListener::bind(format!("127.0.0.1:{port}"))?;
    Ok(())
}

#[test]
fn a_bad_config_is_refused_naming_the_file_and_field() -> Result {
    let tmp = tempfile::tempdir()?;
    let config = tmp.path().join("node.yaml");
    std::fs::write(&config, "identity_key: id.key\nswarm_key: s.key\nservices: [tns, dns]\n")?;
    let out = tau_tests::harness::tau_node(&["run", "--config", &config.to_string_lossy()])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("node.yaml: field `services[1]`: unknown service `dns`"), "{stderr}");

    // A missing identity key is named too.
    std::fs::write(&config, "identity_key: id.key\nswarm_key: s.key\n")?;
    let out = tau_tests::harness::tau_node(&["run", "--config", &config.to_string_lossy()])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("id.key"), "{stderr}");
    Ok(())
}
