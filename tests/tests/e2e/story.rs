//! The whole story, as a provider, an operator and a billing system live it, on 5 SSH hosts of
//! the lab (network namespaces, each with Debian's sshd and its own /opt): Spore Drive deploys a
//! cloud of two shapes; the example project is registered through vault and pushed; clients
//! resolve its domains at seer and call every function at the addresses it returns; taucorder
//! shows it all. Then one host is cut off, another's node is killed and a third's disk is filled
//! to the brim: the cloud keeps answering HTTP and DNS, hoarder repairs to 3 replicas, secrets
//! still read, and the hosts catch up when they return. A new node build is rolled out one host
//! at a time under a client that sees no failed request. q collects and proves exactly the calls
//! the test made, and `spore-drive destroy` leaves the hosts clean.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tau_tests::harness::{
    Result, Signal, binary, converged, http_on, random_bytes, run, signal, tau_node_ok, tns_status,
    wait_for,
};
use tau_tests::ssh_lab::SshLab;

/// The example project's functions: name, method, path, body, and what the answer holds.
const FUNCTIONS: [(&str, &str, &str, &str, &str); 5] = [
    ("ping", "GET", "/ping", "", "pong"),
    ("echo", "POST", "/echo", "story", "story"),
    ("avatar", "GET", "/avatar/story", "", "<svg"),
    ("json", "POST", "/json", "{\"a\":[1,2]}", "\"a\""),
    ("markdown", "POST", "/markdown", "# Story", "<h1>"),
];

/// The counter window of every node: records come out this often.
const WINDOW: Duration = Duration::from_secs(2);

/// What clients saw: answered calls per (project, function), and the trouble on the way.
#[derive(Default)]
struct Calls {
    answered: std::sync::Mutex<BTreeMap<(String, String), u64>>,
    /// Addresses seer returned that did not take the connection (the client tried the next).
    refused: AtomicU64,
    /// Calls that got no good answer from any address.
    failed: AtomicU64,
}

impl Calls {
    fn total(&self) -> u64 {
        self.answered.lock().map(|a| a.values().sum()).unwrap_or(0)
    }
}

/// A client: asks seer (each DNS server in turn, as a stub resolver does) for a function's
/// domain, connects to the first returned address that takes the connection, and checks the
/// answer.
struct Client {
    dns: Vec<SocketAddr>,
    calls: Arc<Calls>,
}

impl Client {
    /// The addresses seer gives for `name`, from the first DNS server that answers with some.
    fn resolve(&self, name: &str) -> Result<Vec<Ipv4Addr>> {
        let mut tried = Vec::new();
        for server in &self.dns {
            let out = run(
                Command::new("dig").args([
                    &format!("@{}", server.ip()),
                    "-p",
                    &server.port().to_string(),
                    name,
                    "+short",
                    "+time=1",
                    "+tries=1",
                ]),
                Duration::from_secs(10),
            )?;
            let text = String::from_utf8_lossy(&out.stdout);
            let found: Vec<Ipv4Addr> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if out.status.success() && !found.is_empty() {
                return Ok(found);
            }
            tried.push(format!("{server}: {}", text.trim()));
        }
        Err(format!("no seer answered for {name}: {tried:?}").into())
    }

    /// Calls `function` of `project` once; counts it when a function answered.
    fn call(&self, project: &str, function: usize) -> Result {
        let (name, method, path, body, expect) = FUNCTIONS[function];
        let domain = format!("{name}.{project}.tau");
        let result = (|| -> Result {
            for ip in self.resolve(&domain)? {
                let addr = SocketAddr::from((ip, 8080));
                let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
                    self.calls.refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let answer = http_on(stream, method, &domain, path, body.as_bytes())
                    .map_err(|e| format!("{domain}{path} at {addr}: {e}"))?;
                if answer.status != 200 || !answer.text().contains(expect) {
                    return Err(format!(
                        "{domain}{path} at {addr}: {} {}",
                        answer.status,
                        answer.text()
                    )
                    .into());
                }
                let mut answered = self.calls.answered.lock().map_err(|_| "poisoned")?;
                *answered.entry((project.to_string(), name.to_string())).or_default() += 1;
                return Ok(());
            }
            Err(format!("no address seer gave for {domain} took the connection").into())
        })();
        if result.is_err() {
            self.calls.failed.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Every example function once.
    fn call_all(&self, project: &str) -> Result {
        (0..FUNCTIONS.len()).try_for_each(|f| self.call(project, f))
    }
}

/// `spore-drive ARGS --json`: exit code, report, and everything it printed.
fn spore(args: &[&str], timeout: Duration) -> Result<(Option<i32>, serde_json::Value, String)> {
    let out = run(Command::new(binary("spore-drive")?).args(args).arg("--json"), timeout)?;
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    Ok((out.status.code(), report, text))
}

fn results(report: &serde_json::Value) -> Vec<String> {
    report["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            format!("{}={}", h["host"].as_str().unwrap_or("?"), h["result"].as_str().unwrap_or("?"))
        })
        .collect()
}

/// `taucorder --cloud PROFILE --json ARGS`.
fn taucorder(profile: &Path, args: &[&str]) -> Result<serde_json::Value> {
    let out = run(
        Command::new(binary("taucorder")?).arg("--cloud").arg(profile).arg("--json").args(args),
        Duration::from_secs(60),
    )?;
    if !out.status.success() {
        return Err(format!("taucorder {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The peer id of the node at `ip`, as seer knows it.
fn peer_at(nodes: &serde_json::Value, ip: Ipv4Addr) -> Option<String> {
    nodes.as_array()?.iter().find_map(|n| {
        let addrs = n["heartbeat"]["addrs"].as_array()?;
        addrs
            .iter()
            .any(|a| a.as_str() == Some(&ip.to_string()))
            .then(|| n["heartbeat"]["peer"].as_str().map(String::from))?
    })
}

fn healthy_ips(nodes: &serde_json::Value) -> Vec<String> {
    let mut ips: Vec<String> = nodes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["healthy"] == true)
        .flat_map(|n| n["heartbeat"]["addrs"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    ips.sort();
    ips
}

/// Every pin with its holders (as the node taucorder asks sees them).
fn pins(profile: &Path) -> Result<Vec<(String, Vec<String>)>> {
    let pins = taucorder(profile, &["hoarder"])?;
    Ok(pins
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let holders = p["holders"].as_array().into_iter().flatten();
            let holders = holders.filter_map(|h| h.as_str().map(String::from)).collect();
            (p["cid"].as_str().unwrap_or("").to_string(), holders)
        })
        .collect())
}

/// Fills the file system under `dir` to the last byte with one file.
fn fill(path: &Path) -> Result<u64> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    let mut written = 0u64;
    let mut chunk = vec![0x5a; 1 << 20];
    while !chunk.is_empty() {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => {
                let half = chunk.len() / 2;
                chunk.truncate(half);
            }
            Err(e) => return Err(e.into()),
        }
    }
    file.sync_all().ok();
    Ok(written)
}

fn secret_get(profile: &Path, owner: &Path) -> Result<Vec<u8>> {
    let out = run(
        Command::new(binary("tau-node")?)
            .args(["secret", "get", "example", "db-password", "--cloud"])
            .arg(profile)
            .arg("--key")
            .arg(owner),
        Duration::from_secs(60),
    )?;
    if !out.status.success() {
        return Err(format!("secret get: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(out.stdout)
}

#[test]
fn the_whole_story_on_five_ssh_hosts_under_faults() -> Result {
    let tmp = tempfile::tempdir()?;
    let mut lab = SshLab::new(5, &tmp.path().join("lab"))?;
    let result = story(tmp.path(), &mut lab);
    if result.is_err() {
        // What each node said last (nodes log no secret).
        for i in 0..5 {
            let log = std::fs::read_to_string(lab.host_dir(i).join("opt/tau/logs/node.log"));
            let log = log.unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(25).collect();
            eprintln!("--- node-{} log, last lines:", i + 1);
            tail.iter().rev().for_each(|line| eprintln!("{line}"));
        }
    }
    result
}

fn story(tmp: &Path, lab: &mut SshLab) -> Result {
    let started = Instant::now();
    let step = |what: &str| eprintln!("[{:>6.1} s] {what}", started.elapsed().as_secs_f64());
    let node_size = std::fs::metadata(binary("tau-node")?)?.len();
    // node-5's /opt is a small disk of its own: room for two node builds (Spore Drive keeps the
    // previous one) and some data.
    let disk_mib = ((2 * node_size) >> 20) as u32 + 160;
    lab.small_disk(4, disk_mib)?;

    // 1. The provider: init, shape the playbook (3 hosts with everything, 2 with substrate and
    //    hoarder only), deploy.
    step("spore-drive init and deploy 5 hosts");
    let cloud = tmp.join("cloud");
    let (code, report, text) = spore(
        &["init", &cloud.to_string_lossy(), "--name", "story", "--hosts", "5"],
        Duration::from_secs(60),
    )?;
    assert_eq!(code, Some(0), "{text}");
    assert!(report.to_string().contains("playbook.yaml"), "{report}");
    let hosts: String = (0..5)
        .map(|i| {
            let shape = if i < 3 { "full" } else { "edge" };
            format!("  - {{ name: node-{}, address: {}, shape: {shape} }}\n", i + 1, lab.ip(i))
        })
        .collect();
    let pb = cloud.join("playbook.yaml");
    let ports = "ports: { p2p: 4001, http: 8080, dns: 5353 }, substrate: { counter_window: 2s }";
    std::fs::write(
        &pb,
        format!(
            "cloud: {{ name: story, domain: story.tau, generated_domain: tau, secrets: secrets }}\n\
             transport: ssh\nhost_keys: accept-new\nknown_hosts: known_hosts\n\
             ssh: {{ user: root, key: {key} }}\ninstall_dir: /opt/tau\n\
             shapes:\n\
             \x20 full: {{ services: [tns, hoarder, vault, seer, substrate], {ports} }}\n\
             \x20 edge: {{ services: [hoarder, substrate], {ports} }}\n\
             hosts:\n{hosts}",
            key = lab.client_key.display()
        ),
    )?;
    let pb = pb.to_string_lossy().into_owned();
    let (code, report, text) = spore(&["deploy", &pb, "--yes"], Duration::from_secs(600))?;
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(
        results(&report),
        (1..=5).map(|i| format!("node-{i}=changed")).collect::<Vec<_>>(),
        "{text}"
    );
    let profile = cloud.join("cloud.yaml");
    let profile_arg = profile.to_string_lossy().into_owned();
    let ips: Vec<Ipv4Addr> = (0..5).map(|i| lab.ip(i)).collect();
    let (nodes, _) = wait_for(Duration::from_secs(60), "seer knows 5 healthy nodes", || {
        let nodes = taucorder(&profile, &["nodes"])?;
        Ok((healthy_ips(&nodes).len() == 5).then_some(nodes))
    })?;
    let peers: Vec<String> = ips
        .iter()
        .map(|ip| peer_at(&nodes, *ip).ok_or("a node is missing"))
        .collect::<std::result::Result<_, _>>()?;

    // 2. The project owner: register the example project through a vault node, push it, and
    //    store a secret.
    step("register and push the example project; store a secret");
    let owner = tmp.join("owner.key");
    tau_node_ok(&["key", "generate", "--out", &owner.to_string_lossy()])?;
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/project");
    let project = project.to_string_lossy().into_owned();
    let owner_arg = owner.to_string_lossy().into_owned();
    let registered: serde_json::Value = serde_json::from_str(&tau_node_ok(&[
        "project",
        "register",
        &project,
        "--cloud",
        &profile_arg,
        "--key",
        &owner_arg,
        "--json",
    ])?)?;
    assert_eq!(registered["written"][0], "/projects/example", "{registered}");
    tau_node_ok(&["project", "push", &project, "--cloud", &profile_arg, "--key", &owner_arg])?;
    let secret = format!("story-{}", hex(&random_bytes(12, 11)));
    let value_file = tmp.join("secret");
    std::fs::write(&value_file, &secret)?;
    tau_node_ok(&[
        "secret",
        "put",
        "example",
        "db-password",
        "--from-file",
        &value_file.to_string_lossy(),
        "--cloud",
        &profile_arg,
        "--key",
        &owner_arg,
    ])?;
    std::fs::remove_file(&value_file)?;

    // 3. Clients: every function through seer DNS, at the addresses it returns.
    step("clients resolve at seer and call every function");
    let calls = Arc::new(Calls::default());
    let client = Arc::new(Client {
        dns: ips[..3].iter().map(|ip| SocketAddr::from((*ip, 5353))).collect(),
        calls: calls.clone(),
    });
    wait_for(Duration::from_secs(60), "every function answers through seer", || {
        Ok(client.call_all("example").is_ok().then_some(()))
    })?;
    calls.failed.store(0, Ordering::Relaxed);
    // Seer lists a node once it has its heartbeat: a few seconds after the deploy at most.
    wait_for(Duration::from_secs(30), "seer to list 5 substrate nodes", || {
        let substrate = client.resolve("substrate.tau.story.tau")?;
        Ok((substrate.len() == 5).then_some(()))
    })
    .map_err(|e| format!("{e}: {:?}", client.resolve("substrate.tau.story.tau")))?;
    for _ in 0..3 {
        client.call_all("example")?;
    }
    assert_eq!(secret_get(&profile, &owner)?, secret.as_bytes());

    // 4. The operator: taucorder shows 5 healthy nodes, the project, each wasm at 3, vault.
    step("taucorder shows it");
    let records = taucorder(&profile, &["tns", "list", "/projects/example/"])?;
    let keys = records.to_string();
    for (name, ..) in FUNCTIONS {
        assert!(keys.contains(&format!("/projects/example/functions/{name}")), "{keys}");
    }
    wait_for(Duration::from_secs(60), "each wasm pinned at 3", || {
        let pins = pins(&profile)?;
        Ok((pins.len() >= FUNCTIONS.len() && pins.iter().all(|(_, h)| h.len() == 3)).then_some(()))
    })?;
    let vault = taucorder(&profile, &["vault"])?;
    assert_eq!(vault["readable"], true, "{vault}");
    assert_eq!(vault["nodes"].as_array().map(Vec::len), Some(3), "3 vault nodes: {vault}");

    // 5. Faults. Quiet first: a killed node loses only its open counter window, so let every
    //    window close before the kill.
    std::thread::sleep(WINDOW + Duration::from_secs(1));
    step("faults: node-3 cut off, node-4's node killed, node-5's disk full");
    lab.lab.set_link(2, false)?;
    let pid_file = lab.host_dir(3).join("opt/tau/run/node.pid");
    let killed: u32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
    signal(killed, Signal::SIGKILL);
    let filled = fill(&lab.host_dir(4).join("opt/filler"))?;
    eprintln!("node-5's disk filled with {} MiB", filled >> 20);
    wait_for(Duration::from_secs(30), "seer drops node-3", || {
        let nodes = taucorder(&profile, &["nodes"])?;
        Ok((!healthy_ips(&nodes).contains(&ips[2].to_string())).then_some(()))
    })?;
    let nodes = taucorder(&profile, &["nodes"])?;
    assert!(
        !client.resolve("ping.example.tau")?.contains(&ips[2]),
        "seer sends no client to the cut-off host: {nodes}"
    );
    // The cloud keeps answering, and takes new work: a second project and a blob.
    for _ in 0..4 {
        client.call_all("example")?;
    }
    let late = tmp.join("late");
    std::fs::create_dir_all(late.join("functions"))?;
    std::fs::write(late.join("config.yaml"), "id: late\nname: late\n")?;
    std::fs::copy(Path::new(&project).join("ping.wasm"), late.join("ping.wasm"))?;
    std::fs::write(
        late.join("functions/ping.yaml"),
        "id: ping\ntrigger: {type: http, method: GET, paths: [/ping]}\n\
         domains: [ping.late.tau]\nsource: ping.wasm\n",
    )?;
    let late_arg = late.to_string_lossy().into_owned();
    tau_node_ok(&["project", "register", &late_arg, "--cloud", &profile_arg, "--key", &owner_arg])?;
    tau_node_ok(&["project", "push", &late_arg, "--cloud", &profile_arg, "--key", &owner_arg])?;
    wait_for(Duration::from_secs(60), "the new project answers", || {
        Ok(client.call("late", 0).is_ok().then_some(()))
    })?;
    calls.failed.store(0, Ordering::Relaxed);
    let blob = random_bytes(300_000, 5);
    let blob_file = tmp.join("blob");
    std::fs::write(&blob_file, &blob)?;
    let cid =
        tau_node_ok(&["hoarder", "put", &blob_file.to_string_lossy(), "--cloud", &profile_arg])?;
    let cid = cid.trim().to_string();
    assert_eq!(secret_get(&profile, &owner)?, secret.as_bytes(), "2 of 3 vault nodes read");
    step("hoarder repairs to 3 replicas");
    let repaired = wait_for(Duration::from_secs(90), "every pin back at 3 replicas", || {
        let pins = pins(&profile)?;
        let cut = &peers[2];
        Ok((pins.iter().any(|(c, _)| *c == cid)
            && pins.iter().all(|(_, h)| h.len() == 3 && !h.contains(cut)))
        .then_some(pins))
    });
    if let Err(e) = repaired {
        let names: BTreeMap<&String, usize> = peers.iter().zip(1..).collect();
        for (cid, holders) in pins(&profile)? {
            let on: Vec<String> = holders
                .iter()
                .map(|h| names.get(h).map_or(h.clone(), |i| format!("node-{i}")))
                .collect();
            eprintln!("  {cid}: {on:?}");
        }
        return Err(e);
    }
    let restarted: u32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
    assert_ne!(restarted, killed, "the supervisor started node-4's node again");
    client.call_all("example")?;

    // The hosts return: the link comes back, the disk has room again. They catch up.
    step("the hosts return and catch up");
    lab.lab.set_link(2, true)?;
    std::fs::remove_file(lab.host_dir(4).join("opt/filler"))?;
    wait_for(Duration::from_secs(90), "5 healthy nodes, registries converged", || {
        let nodes = taucorder(&profile, &["nodes"])?;
        let status = tns_status(&profile)?;
        Ok((healthy_ips(&nodes).len() == 5 && converged(&status, 3)).then_some(()))
    })?;
    let got = tmp.join("got");
    tau_node_ok(&[
        "hoarder",
        "get",
        &cid,
        "--out",
        &got.to_string_lossy(),
        "--cloud",
        &profile_arg,
    ])?;
    assert!(std::fs::read(&got)? == blob, "the blob stored during the faults reads back whole");
    wait_for(Duration::from_secs(60), "every pin at 3 replicas", || {
        let pins = pins(&profile)?;
        Ok(pins.iter().all(|(_, h)| h.len() >= 3).then_some(()))
    })?;
    for _ in 0..2 {
        client.call_all("example")?;
        client.call("late", 0)?;
    }

    // 6. The upgrade: a new node build, one host at a time, under a client that sees no failure.
    step("rolling upgrade under load");
    let next = tmp.join("tau-node-next");
    let mut build = std::fs::read(binary("tau-node")?)?;
    build.extend_from_slice(b"\0tau-story-build-2\0");
    std::fs::write(&next, build)?;
    std::fs::set_permissions(&next, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let (refused, failed) =
        (calls.refused.load(Ordering::Relaxed), calls.failed.load(Ordering::Relaxed));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, stop) = (client.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut errors = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = client.call("example", n % FUNCTIONS.len()) {
                    errors.push(e.to_string());
                }
                n += 1;
            }
            (n, errors)
        })
    };
    let (code, report, text) = spore(
        &["deploy", &pb, "--yes", "--concurrency", "1", "--node-binary", &next.to_string_lossy()],
        Duration::from_secs(900),
    )?;
    stop.store(true, Ordering::Relaxed);
    let (during, errors) = load.join().map_err(|_| "the client thread panicked")?;
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(
        results(&report),
        (1..=5).map(|i| format!("node-{i}=changed")).collect::<Vec<_>>(),
        "{text}"
    );
    eprintln!(
        "{during} calls during the upgrade; {} addresses refused",
        calls.refused.load(Ordering::Relaxed) - refused
    );
    assert!(errors.is_empty(), "failed requests during the upgrade: {errors:?}");
    assert_eq!(calls.failed.load(Ordering::Relaxed), failed);
    assert_eq!(
        calls.refused.load(Ordering::Relaxed),
        refused,
        "seer sent a client to a node that had stopped"
    );
    assert!(during > 20, "the client kept calling through the upgrade ({during})");
    for i in 0..5 {
        let installed = std::fs::read(lab.host_dir(i).join("opt/tau/bin/tau-node"))?;
        assert!(installed.ends_with(b"tau-story-build-2\0"), "node-{} runs the new build", i + 1);
    }

    // 7. Billing: q collects every node's signed counters and proves exactly the calls made.
    step("q collect, prove, verify-proof");
    std::thread::sleep(WINDOW + Duration::from_secs(1));
    let made = calls.answered.lock().map_err(|_| "poisoned")?.clone();
    let total = calls.total();
    let db = tmp.join("q.db").to_string_lossy().into_owned();
    let q = |args: &[&str]| -> Result<serde_json::Value> {
        let mut command = Command::new(binary("q")?);
        command.args(args).env("Q_IDENTITY", tmp.join("q-identity.key"));
        let out = run(&mut command, Duration::from_secs(120))?;
        if !out.status.success() {
            return Err(format!("q {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let collected = q(&["collect", "--cloud", &profile_arg, "--db", &db, "--json"])?;
    assert_eq!(collected["nodes"], 5, "{collected}");
    assert_eq!(collected["rejected"], 0, "nothing kept aside: {collected}");
    assert_eq!(collected["gaps"], 0, "no node lost a record: {collected}");
    assert_eq!(collected["unreachable"], serde_json::json!([]), "{collected}");
    let key = tmp.join("q.key").to_string_lossy().into_owned();
    let proof = tmp.join("proof.json").to_string_lossy().into_owned();
    let summary =
        q(&["prove", "--db", &db, "--key", &key, "--out", &proof, "--period", "..now", "--json"])?;
    assert_eq!(summary["totals"]["invocations"], total, "{summary}; calls made: {made:?}");
    let lines: Vec<serde_json::Value> =
        serde_json::from_value(q(&["export", "--db", &db, "--format", "json"])?)?;
    let proven: BTreeMap<(String, String), u64> = lines
        .iter()
        .map(|l| {
            let name = |k: &str| l[k].as_str().unwrap_or("").to_string();
            ((name("project"), name("function")), l["invocations"].as_u64().unwrap_or(0))
        })
        .collect();
    assert_eq!(proven, made, "per function, the proof counts what clients were answered");
    let signer = String::from_utf8(
        run(Command::new(binary("q")?).args(["key", "--key", &key]), Duration::from_secs(30))?
            .stdout,
    )?;
    let verified = q(&["verify-proof", &proof, "--signer", signer.trim(), "--json"])?;
    assert_eq!(verified["statement"]["totals"]["invocations"], total, "{verified}");

    // 8. destroy leaves nothing on any host.
    step("spore-drive destroy");
    let (code, _, text) = spore(&["destroy", &pb, "--yes"], Duration::from_secs(300))?;
    assert_eq!(code, Some(0), "{text}");
    for i in 0..5 {
        assert_eq!(lab.processes(i)?, Vec::<String>::new(), "node-{} still runs something", i + 1);
        assert_eq!(lab.files(i), Vec::<PathBuf>::new(), "node-{} keeps files", i + 1);
    }
    step("done");
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
