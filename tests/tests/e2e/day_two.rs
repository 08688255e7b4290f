//! Day two on the SSH lab: a running cloud grows from 3 hosts to 5 and shrinks back while a
//! client calls a function through seer (no request fails, no pin drops below its factor, the
//! removed hosts keep nothing); a removal that would break the vault's threshold is refused; a
//! vault host is replaced while a secret is read; a rollout in batches stops and puts back the
//! batch in which a host fails.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tau_tests::harness::{
    Result, binary, create_project, dig, example_wasm, http, push_project, tau_node_ok, wait_for,
};
use tau_tests::ssh_lab::SshLab;

fn spore(args: &[&str]) -> Result<(Output, serde_json::Value)> {
    tau_tests::harness::spore_json(args)
}

fn results(report: &serde_json::Value) -> Vec<(String, String)> {
    tau_tests::harness::host_results(report)
}

/// A playbook of `hosts` (lab host index, shape), with a 6 s drain so that clients' cached
/// DNS answers (5 s) expire before a leaving node stops.
fn write_playbook(lab: &SshLab, dir: &Path, hosts: &[(usize, &str)]) -> Result<String> {
    write_playbook_on(lab, dir, hosts, 8080)
}

/// [`write_playbook`] with the gateways on `http`.
fn write_playbook_on(
    lab: &SshLab,
    dir: &Path,
    hosts: &[(usize, &str)],
    http: u16,
) -> Result<String> {
    let lines: String = hosts
        .iter()
        .map(|(i, shape)| {
            format!(
                "  - {{ name: h{}, address: {}, shape: {shape}, location: {{ region: lab }} }}\n",
                i + 1,
                lab.ip(*i)
            )
        })
        .collect();
    let ports = format!("ports: {{ p2p: 4001, http: {http}, dns: 5353 }}, drain: 6s");
    let text = format!(
        "cloud: {{ name: lab, domain: lab.tau, generated_domain: g.lab.tau, secrets: secrets }}\n\
         transport: ssh\nhost_keys: accept-new\nknown_hosts: known_hosts\n\
         ssh: {{ user: root, key: {key} }}\ninstall_dir: /opt/tau\n\
         shapes:\n\
         \x20 full: {{ services: [tns, hoarder, vault, seer, substrate], {ports} }}\n\
         \x20 worker: {{ services: [hoarder, seer, substrate], {ports} }}\n\
         hosts:\n{lines}",
        key = lab.client_key.display()
    );
    let path = dir.join("playbook.yaml");
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}

/// A client calling `ping` through seer's answers for `substrate.tau.lab.tau`, over and over,
/// counting calls and failures until stopped.
struct Caller {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Caller {
    fn start(seers: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (s, c, f) = (stop.clone(), calls.clone(), failures.clone());
        let thread = std::thread::spawn(move || {
            let mut turn = 0usize;
            while !s.load(Ordering::Relaxed) {
                turn += 1;
                // A client asks any seer (the first that answers) and calls one of its answers.
                // Like a stub resolver it tries again when no seer gave an address (dig waits
                // 2 s, once; a seer that just started knows no healthy node yet): 3 rounds.
                let mut answer = None;
                let mut empty = 0;
                for _ in 0..3 {
                    for seer in &seers {
                        match dig(seer, "substrate.tau.lab.tau", false) {
                            Ok(ips) if !ips.is_empty() => {
                                answer = Some(ips);
                                break;
                            }
                            Ok(_) => empty += 1,
                            Err(_) => {}
                        }
                    }
                    if answer.is_some() {
                        break;
                    }
                }
                let Some(ips) = answer else {
                    if let Ok(mut f) = f.lock() {
                        f.push(match empty {
                            0 => "no seer answered in 3 rounds".into(),
                            n => format!("no address in 3 rounds ({n} empty answers)"),
                        });
                    }
                    continue;
                };
                let ips: Vec<_> = ips.into_iter().collect();
                let ip = ips[turn % ips.len()];
                let result = http(&format!("{ip}:8080"), "GET", "ping.grow.tau", "/ping", b"");
                c.fetch_add(1, Ordering::Relaxed);
                match result {
                    Ok(answer) if answer.status == 200 => {}
                    Ok(answer) => {
                        if let Ok(mut f) = f.lock() {
                            f.push(format!("{ip}: {} {}", answer.status, answer.text().trim()));
                        }
                    }
                    Err(e) => {
                        if let Ok(mut f) = f.lock() {
                            f.push(format!("{ip}: {e}"));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self { stop, calls, failures, thread: Some(thread) }
    }

    /// Calls so far and every failure.
    fn check(&self, what: &str) -> Result<u64> {
        let failures = self.failures.lock().map_err(|_| "poisoned")?.clone();
        if !failures.is_empty() {
            return Err(format!("{what}: {} failed calls: {failures:?}", failures.len()).into());
        }
        Ok(self.calls.load(Ordering::Relaxed))
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Every pin as `node` lists it.
fn pins(profile: &str, node: &str) -> Result<Vec<serde_json::Value>> {
    tau_tests::harness::hoarder_pins(Path::new(profile), node)
}

/// The peer id of host `name` (from Spore Drive's secrets folder).
fn peer_of(cloud: &Path, name: &str) -> Result<String> {
    let key = cloud.join("secrets/hosts").join(name).join("identity.key");
    Ok(tau_proto::keyfile::read(&key)?.public().to_peer_id().to_string())
}

#[test]
fn a_cloud_grows_and_shrinks_under_load_and_replaces_a_vault_host() -> Result {
    let dir = tempfile::tempdir()?;
    let lab = SshLab::new(6, &dir.path().join("lab"))?;
    let cloud = dir.path().join("cloud");
    std::fs::create_dir_all(&cloud)?;
    let profile = cloud.join("cloud.yaml").to_string_lossy().into_owned();

    // Three hosts, each with a vault share (threshold 2).
    let pb = write_playbook(&lab, &cloud, &[(0, "full"), (1, "full"), (2, "full")])?;
    let (out, report) = spore(&["deploy", &pb, "--yes"])?;
    assert!(out.status.success(), "first deploy: {report}");
    let owner = create_project(Path::new(&profile), dir.path(), "grow")?;
    let project = dir.path().join("grow");
    std::fs::create_dir_all(project.join("functions"))?;
    std::fs::write(project.join("config.yaml"), "id: grow\nname: grow\n")?;
    std::fs::copy(example_wasm("ping")?, project.join("ping.wasm"))?;
    std::fs::write(
        project.join("functions/ping.yaml"),
        "id: ping\ntrigger: {type: http, method: GET, paths: [/ping]}\n\
         domains: [ping.grow.tau]\nsource: ping.wasm\n",
    )?;
    push_project(Path::new(&profile), &project, &owner, None)?;
    // Ten blobs at factor 3, so that new hosts get their share.
    for i in 0..10u64 {
        let file = dir.path().join(format!("blob-{i}"));
        std::fs::write(&file, tau_tests::harness::random_bytes(20_000, 2 * i + 100))?;
        tau_node_ok(&["hoarder", "put", &file.to_string_lossy(), "--cloud", &profile])?;
    }
    let seers: Vec<String> = (0..6).map(|i| format!("{}:5353", lab.ip(i))).collect();
    for i in 0..3 {
        let gateway = format!("{}:8080", lab.ip(i));
        wait_for(Duration::from_secs(60), "every host serves ping", || {
            Ok((http(&gateway, "GET", "ping.grow.tau", "/ping", b"")?.status == 200).then_some(()))
        })?;
    }
    let h1 = peer_of(&cloud, "h1")?;
    let caller = Caller::start(seers.clone());

    // Grow to 5: only the new hosts change; they serve; pins are at factor across 5.
    let pb = write_playbook(
        &lab,
        &cloud,
        &[(0, "full"), (1, "full"), (2, "full"), (3, "worker"), (4, "worker")],
    )?;
    let (out, report) = spore(&["deploy", &pb, "--yes"])?;
    assert!(out.status.success(), "grow: {report}");
    let mut got = results(&report);
    got.sort();
    let want: Vec<(String, String)> = [
        ("h1", "unchanged"),
        ("h2", "unchanged"),
        ("h3", "unchanged"),
        ("h4", "changed"),
        ("h5", "changed"),
    ]
    .iter()
    .map(|(h, r)| (h.to_string(), r.to_string()))
    .collect();
    assert_eq!(got, want, "only the new hosts change");
    for i in 3..5 {
        let gateway = format!("{}:8080", lab.ip(i));
        wait_for(Duration::from_secs(60), "a new host serves ping", || {
            Ok((http(&gateway, "GET", "ping.grow.tau", "/ping", b"")?.status == 200).then_some(()))
        })?;
    }
    let (h4, h5) = (peer_of(&cloud, "h4")?, peer_of(&cloud, "h5")?);
    let last = Mutex::new(String::new());
    let placed =
        wait_for(Duration::from_secs(90), "every pin at factor, some on new hosts", || {
            let pins = pins(&profile, &h1)?;
            if let Ok(mut last) = last.lock() {
                *last = serde_json::to_string(&pins)?;
            }
            let at_factor = pins.iter().all(|p| {
                p["state"] == "ok" && p["holders"].as_array().is_some_and(|h| h.len() >= 3)
            });
            let on_new = pins.iter().any(|p| {
                p["holders"]
                    .as_array()
                    .is_some_and(|h| h.iter().any(|x| x == h4.as_str() || x == h5.as_str()))
            });
            Ok((at_factor && on_new && pins.len() >= 11).then_some(()))
        });
    placed.map_err(|e| {
        format!("{e}; the pins: {}", last.lock().map(|l| l.clone()).unwrap_or_default())
    })?;
    let calls = caller.check("while growing")?;
    eprintln!("grown to 5 hosts: {calls} calls, none failed");

    // Shrink to 3 under the same client: no pin ever below its factor, nothing left behind.
    let watching = Arc::new(AtomicBool::new(true));
    let lowest = Arc::new(AtomicU64::new(u64::MAX));
    let watcher = {
        let (watching, lowest, profile, h1) =
            (watching.clone(), lowest.clone(), profile.clone(), h1.clone());
        std::thread::spawn(move || {
            while watching.load(Ordering::Relaxed) {
                if let Ok(pins) = pins(&profile, &h1) {
                    for pin in pins {
                        let holders = pin["holders"].as_array().map_or(0, Vec::len) as u64;
                        lowest.fetch_min(holders, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let pb = write_playbook(&lab, &cloud, &[(0, "full"), (1, "full"), (2, "full")])?;
    let (out, report) = spore(&["deploy", &pb, "--yes", "--prune"])?;
    watching.store(false, Ordering::Relaxed);
    let _ = watcher.join();
    assert!(out.status.success(), "shrink: {report}");
    let mut got = results(&report);
    got.sort();
    assert_eq!(
        got.iter().map(|(h, r)| format!("{h}:{r}")).collect::<Vec<_>>(),
        ["h1:unchanged", "h2:unchanged", "h3:unchanged", "h4:removed", "h5:removed"]
    );
    assert!(
        lowest.load(Ordering::Relaxed) >= 3,
        "a pin fell to {} holders",
        lowest.load(Ordering::Relaxed)
    );
    for i in 3..5 {
        assert!(lab.files(i).is_empty(), "h{} keeps {:?}", i + 1, lab.files(i));
        assert!(lab.processes(i)?.is_empty(), "h{} runs {:?}", i + 1, lab.processes(i)?);
    }
    assert!(!cloud.join("secrets/hosts/h4").exists(), "h4's identity leaves the secrets folder");
    let calls = caller.check("while shrinking")?;
    eprintln!("shrunk to 3 hosts: {calls} calls, none failed");

    // Removing two vault hosts of three would leave one share, under the threshold: refused.
    let pb_one = write_playbook(&lab, &cloud, &[(0, "full")])?;
    let (out, report) = spore(&["deploy", &pb_one, "--yes", "--prune"])?;
    assert_eq!(out.status.code(), Some(1), "{report}");
    let refusal = report["refused"].to_string();
    assert!(refusal.contains("under the threshold of 2"), "{refusal}");
    assert!(!lab.processes(1)?.is_empty() && !lab.processes(2)?.is_empty(), "nothing changed");

    // Replace vault host h3 with h6 while a secret is read over and over.
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"kept through day two")?;
    let owner_arg = owner.to_string_lossy().into_owned();
    tau_node_ok(&[
        "secret",
        "put",
        "grow",
        "token",
        "--from-file",
        &secret.to_string_lossy(),
        "--cloud",
        &profile,
        "--key",
        &owner_arg,
    ])?;
    let reading = Arc::new(AtomicBool::new(true));
    let reads = Arc::new(Mutex::new((0u32, Vec::<String>::new())));
    let reader = {
        let (reading, reads, profile, owner_arg) =
            (reading.clone(), reads.clone(), profile.clone(), owner_arg.clone());
        std::thread::spawn(move || {
            while reading.load(Ordering::Relaxed) {
                let got = tau_node_ok(&[
                    "secret", "get", "grow", "token", "--cloud", &profile, "--key", &owner_arg,
                ]);
                if let Ok(mut reads) = reads.lock() {
                    reads.0 += 1;
                    match got {
                        Ok(value) if value.trim() == "kept through day two" => {}
                        Ok(value) => reads.1.push(format!("read {value:?}")),
                        Err(e) => reads.1.push(e.to_string()),
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let old_share = std::fs::read(cloud.join("secrets/hosts/h3/vault-share.yaml"))?;
    let pb = write_playbook(&lab, &cloud, &[(0, "full"), (1, "full"), (5, "full")])?;
    let (out, report) = spore(&["deploy", &pb, "--yes", "--prune"])?;
    reading.store(false, Ordering::Relaxed);
    let _ = reader.join();
    assert!(out.status.success(), "replace: {report}");
    let mut got = results(&report);
    got.sort();
    assert_eq!(
        got.iter().map(|(h, r)| format!("{h}:{r}")).collect::<Vec<_>>(),
        ["h1:unchanged", "h2:unchanged", "h3:removed", "h6:changed"]
    );
    let (count, errors) = reads.lock().map_err(|_| "poisoned")?.clone();
    assert!(count > 0 && errors.is_empty(), "{count} reads, failures: {errors:?}");
    assert_eq!(
        std::fs::read(cloud.join("secrets/hosts/h6/vault-share.yaml"))?,
        old_share,
        "h6 holds h3's share"
    );
    assert!(!cloud.join("secrets/hosts/h3").exists(), "the old share is gone from the secrets");
    assert!(lab.files(2).is_empty(), "h3 keeps {:?}", lab.files(2));
    let read =
        tau_node_ok(&["secret", "get", "grow", "token", "--cloud", &profile, "--key", &owner_arg])?;
    assert_eq!(read.trim(), "kept through day two");
    let calls = caller.check("while replacing a vault host")?;
    eprintln!("vault host replaced: {count} secret reads and {calls} calls, none failed");
    drop(caller);

    // A rollout in batches of 2 with no failure allowed: a new binary and the gateways moved
    // to 8081, where h2's port is taken. h2 fails its health check and is rolled back, h1
    // (healthy, same batch) is put back, h6 (the next batch) is not touched.
    let h6_config = std::fs::read(lab.host_dir(5).join("opt/tau/node.yaml"))?;
    let held = lab.hold_port(1, 8081)?;
    let listening = Command::new("ip")
        .args(["netns", "exec", &lab.lab.hosts[1].netns, "ss", "-ltnH", "sport = :8081"])
        .output()?;
    let listening = String::from_utf8_lossy(&listening.stdout);
    assert!(listening.contains(":8081"), "h2's port 8081 is taken: {listening:?}");
    let new_binary = dir.path().join("tau-node");
    let mut bytes = std::fs::read(binary("tau-node")?)?;
    bytes.extend_from_slice(b"\0a new build\0");
    std::fs::write(&new_binary, bytes)?;
    std::fs::set_permissions(&new_binary, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let pb = write_playbook_on(&lab, &cloud, &[(0, "full"), (1, "full"), (5, "full")], 8081)?;
    let (out, report) = spore(&[
        "deploy",
        &pb,
        "--yes",
        "--batch",
        "2",
        "--max-failed",
        "0",
        "--node-binary",
        &new_binary.to_string_lossy(),
    ])?;
    drop(held);
    assert_eq!(out.status.code(), Some(1), "a failed batch fails the deploy: {report}");
    let got = results(&report);
    assert_eq!(
        got.iter().map(|(h, r)| format!("{h}:{r}")).collect::<Vec<_>>(),
        ["h1:rolled-back", "h2:rolled-back", "h6:skipped"],
        "{report}"
    );
    let error = |host: &str| {
        report["hosts"]
            .as_array()
            .and_then(|hosts| hosts.iter().find(|h| h["host"] == host))
            .and_then(|h| h["error"].as_str())
            .unwrap_or("")
            .to_string()
    };
    assert!(error("h2").contains("health check failed"), "{}", error("h2"));
    assert!(error("h1").contains("put back with its batch"), "{}", error("h1"));
    assert!(error("h6").contains("not touched"), "{}", error("h6"));
    assert_eq!(
        std::fs::read(lab.host_dir(5).join("opt/tau/node.yaml"))?,
        h6_config,
        "the skipped host keeps its config"
    );
    for i in [0, 1, 5] {
        let gateway = format!("{}:8080", lab.ip(i));
        wait_for(Duration::from_secs(60), "every host serves on 8080 again", || {
            Ok((http(&gateway, "GET", "ping.grow.tau", "/ping", b"")?.status == 200).then_some(()))
        })?;
    }
    Ok(())
}
