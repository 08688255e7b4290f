//! `tau-day-two-bench`: day two, each figure beside a baseline measured in the same run.
//!
//! On a lab of 7 SSH hosts (network namespaces on this machine, Debian's sshd each; needs root,
//! and `spore-drive` and `tau-node` beside it: `scripts/bench day-two` builds them):
//! - joining 2 hosts to a running 5-host cloud (`deploy` with them added), beside deploying those
//!   2 hosts as a cloud of their own from scratch;
//! - removing 2 hosts (`spore-drive remove`: drain, wait until every pin is at its factor
//!   without them, stop, clean up), beside hoarder's repair of the same pins when those 2 hosts
//!   die instead (from their death until every pin is at its factor again).
//!
//! On a one-node dev cloud logging at debug: the lines per second `tau-node logs --follow`
//! delivers from the node's buffer, beside `tail -F` of the node's own log file, both reading
//! the same lines while HTTP clients drive the node.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tau_proto::bench::Figure;
use tau_tests::bench::{beside, timed};
use tau_tests::harness::Result;
use tau_tests::lab::Lab;
use tau_tests::ssh_lab::SshLab;

const HOSTS: usize = 7;
/// The tests use subnets 0 to 249, `tau-lab` 250, `tau-spore-bench` 251.
const SUBNET: u8 = 252;
/// Blobs put before the cloud changes (each 1 MB, at hoarder's default factor of 3).
const BLOBS: u64 = 20;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tau-day-two-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command to completion, failing with its output unless it succeeds.
fn ok(what: &str, command: &mut Command) -> Result<Output> {
    timed(what, command).map(|(out, _)| out)
}

fn run() -> Result {
    let spore = beside("spore-drive")?;
    let node = beside("tau-node")?;
    let work = std::env::temp_dir().join(format!("tau-day-two-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    println!(
        "Day two: {HOSTS} SSH hosts (network namespaces, sshd each), {BLOBS} blobs of 1 MB at \
         factor 3, {} CPUs",
        std::thread::available_parallelism()?.get()
    );
    let result = lab_bench(&work, &spore, &node).and_then(|()| logs_bench(&work, &node));
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// A playbook of lab hosts `hosts` (index, shape) for the cloud `name`, in `dir`.
fn playbook(lab: &SshLab, dir: &Path, name: &str, hosts: &[(usize, &str)]) -> Result<PathBuf> {
    let lines: String = hosts
        .iter()
        .map(|(i, shape)| {
            format!("  - {{ name: h{}, address: {}, shape: {shape} }}\n", i + 1, lab.ip(*i))
        })
        .collect();
    let ports = "ports: { p2p: 4001, http: 8080, dns: 5353 }, drain: 2s";
    let text = format!(
        "cloud: {{ name: {name}, domain: {name}.tau, generated_domain: g.{name}.tau, secrets: secrets }}\n\
         transport: ssh\nhost_keys: accept-new\nknown_hosts: known_hosts\n\
         ssh: {{ user: root, key: {key} }}\ninstall_dir: /opt/tau\n\
         shapes:\n\
         \x20 full: {{ services: [tns, hoarder, vault, seer, substrate], {ports} }}\n\
         \x20 worker: {{ services: [tns, hoarder, seer, substrate], {ports} }}\n\
         hosts:\n{lines}",
        key = lab.client_key.display()
    );
    std::fs::create_dir_all(dir)?;
    let path = dir.join("playbook.yaml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// `spore-drive ARGS --yes --json`: how long it took; fails unless every host ended `expect`.
fn spore_drive(spore: &Path, args: &[&str], expect: &[(&str, &str)]) -> Result<Duration> {
    let started = Instant::now();
    let out = ok("spore-drive", Command::new(spore).args(args).args(["--yes", "--json"]))?;
    let took = started.elapsed();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    for (host, result) in expect {
        let got = tau_tests::harness::host_results(&report)
            .into_iter()
            .find(|(h, _)| h == host)
            .map(|(_, r)| r);
        if got.as_deref() != Some(*result) {
            return Err(format!("spore-drive {args:?}: {host} is {got:?}, not {result}").into());
        }
    }
    Ok(took)
}

/// Every pin as the node `peer` lists it.
fn pins(node: &Path, profile: &Path, peer: &str) -> Result<Vec<serde_json::Value>> {
    let out = ok(
        "tau-node hoarder list",
        Command::new(node)
            .args(["hoarder", "list", "--json", "--node", peer, "--cloud"])
            .arg(profile),
    )?;
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Whether every one of `count` pins has at least `factor` holders, none of them in `without`.
fn at_factor(pins: &[serde_json::Value], count: usize, factor: usize, without: &[String]) -> bool {
    let fewest = pins
        .iter()
        .map(|p| {
            let holders = p["holders"].as_array().map(Vec::as_slice).unwrap_or_default();
            holders.iter().filter(|h| !without.iter().any(|w| *h == w.as_str())).count()
        })
        .min();
    let met = pins.len() >= count && fewest.is_some_and(|f| f >= factor);
    if let Ok(mut last) = LAST.lock() {
        *last = format!("{} pins, the fewest holders {fewest:?}", pins.len());
    }
    met
}

/// What the last [`at_factor`] saw, for an error.
static LAST: Mutex<String> = Mutex::new(String::new());

/// Whether some pin has a holder among `peers`.
/// Whether no pin has more holders than `factor`: the extra copies a placement change left
/// (kept a few seconds after the cloud's members change) are gone.
fn settled(pins: &[serde_json::Value], factor: usize) -> bool {
    pins.iter().all(|p| p["holders"].as_array().is_some_and(|h| h.len() <= factor))
}

fn on_any(pins: &[serde_json::Value], peers: &[String]) -> bool {
    pins.iter().any(|p| {
        let holders = p["holders"].as_array().map(Vec::as_slice).unwrap_or_default();
        holders.iter().any(|h| peers.iter().any(|peer| h == peer.as_str()))
    })
}

/// Polls `check` every 100 ms for at most `limit`; how long it took.
fn until(what: &str, limit: Duration, mut check: impl FnMut() -> Result<bool>) -> Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check()? {
            return Ok(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let last = LAST.lock().map(|l| l.clone()).unwrap_or_default();
    Err(format!("{what}: not within {}s (last seen: {last})", limit.as_secs()).into())
}

fn peer_of(cloud: &Path, host: &str) -> Result<String> {
    let key = cloud.join("secrets/hosts").join(host).join("identity.key");
    Ok(tau_proto::keyfile::read(&key)?.public().to_peer_id().to_string())
}

fn lab_bench(work: &Path, spore: &Path, node: &Path) -> Result {
    eprintln!("day-two bench: making {HOSTS} SSH hosts");
    let lab = SshLab::from_lab(
        Lab::with_subnet(HOSTS, SUBNET, 90_000 + u32::from(SUBNET))?,
        &work.join("lab"),
        false,
    )?;
    let five = [(0, "full"), (1, "full"), (2, "full"), (3, "worker"), (4, "worker")];
    let seven = [five.as_slice(), &[(5, "worker"), (6, "worker")]].concat();
    let joiners = [("h6", "changed"), ("h7", "changed")];

    // A running cloud of 5 holding the blobs; then 2 hosts join it.
    eprintln!("day-two bench: a 5-host cloud with {BLOBS} blobs");
    let dir = work.join("cloud");
    let pb = playbook(&lab, &dir, "day", &five)?;
    let pb_arg = pb.to_string_lossy().into_owned();
    spore_drive(spore, &["deploy", &pb_arg], &[("h1", "changed")])?;
    let profile = dir.join("cloud.yaml");
    for i in 0..BLOBS {
        let file = work.join(format!("blob-{i}"));
        std::fs::write(&file, tau_tests::harness::random_bytes(1 << 20, 1001 + 2 * i))?;
        ok(
            "tau-node hoarder put",
            Command::new(node).args(["hoarder", "put"]).arg(&file).arg("--cloud").arg(&profile),
        )?;
    }
    let h1 = peer_of(&dir, "h1")?;
    let count = BLOBS as usize;
    until("the blobs at factor on 5", Duration::from_secs(120), || {
        Ok(at_factor(&pins(node, &profile, &h1)?, count, 3, &[]))
    })?;
    // Baseline: the 2 hosts as a cloud of their own, from scratch, while the 5 run (the same
    // load on this machine as when they join).
    eprintln!("day-two bench: 2 hosts from scratch, a cloud of their own");
    let alone = playbook(&lab, &work.join("alone"), "alone", &[(5, "worker"), (6, "worker")])?;
    let alone_arg = alone.to_string_lossy().into_owned();
    let scratch = spore_drive(spore, &["deploy", &alone_arg], &joiners)?;
    spore_drive(spore, &["destroy", &alone_arg], &[])?;
    lab.wipe(5)?;
    lab.wipe(6)?;
    eprintln!("day-two bench: 2 hosts join");
    playbook(&lab, &dir, "day", &seven)?;
    let join = spore_drive(spore, &["deploy", &pb_arg], &joiners)?;
    let leaving = [peer_of(&dir, "h6")?, peer_of(&dir, "h7")?];
    // Both measurements start from a settled cloud: every pin at its factor and no extra copy,
    // so that the copies on the 2 hosts are the only ones of their blobs beyond the others.
    until("some pins on the new hosts, settled", Duration::from_secs(120), || {
        let pins = pins(node, &profile, &h1)?;
        Ok(on_any(&pins, &leaving) && at_factor(&pins, count, 3, &[]) && settled(&pins, 3))
    })?;

    // Removing them: drain, wait for the pins, stop, clean up.
    eprintln!("day-two bench: 2 hosts removed");
    let remove = spore_drive(
        spore,
        &["remove", &pb_arg, "h6", "h7"],
        &[("h6", "removed"), ("h7", "removed")],
    )?;
    let after = pins(node, &profile, &h1)?;
    if !at_factor(&after, count, 3, &leaving) {
        return Err("after the removal, a pin is below its factor".into());
    }

    // Baseline: the same 2 hosts join again, take their share, and die; hoarder repairs.
    eprintln!("day-two bench: 2 hosts join again and die");
    for i in [5, 6] {
        lab.wipe(i)?;
    }
    spore_drive(spore, &["deploy", &pb_arg], &joiners)?;
    let dead = [peer_of(&dir, "h6")?, peer_of(&dir, "h7")?];
    until("pins on the new hosts again, settled", Duration::from_secs(120), || {
        let pins = pins(node, &profile, &h1)?;
        Ok(on_any(&pins, &dead) && at_factor(&pins, count, 3, &[]) && settled(&pins, 3))
    })?;
    let killed = Instant::now();
    for i in [5, 6] {
        lab.wipe(i)?;
    }
    until("hoarder's repair", Duration::from_secs(300), || {
        Ok(at_factor(&pins(node, &profile, &h1)?, count, 3, &dead))
    })?;
    let repair = killed.elapsed();
    spore_drive(spore, &["destroy", &pb_arg], &[])?;

    println!(
        "  join 2 hosts to a running 5-host cloud beside deploying them alone from scratch (a \
         cloud of their own, while the 5 run)"
    );
    let ratio = join.as_secs_f64() / scratch.as_secs_f64();
    println!(
        "    join {:.2} s   from scratch {:.2} s   {ratio:.2}x   (target < 1.5x)",
        join.as_secs_f64(),
        scratch.as_secs_f64()
    );
    Figure::new("day two", "join 2 hosts to a running 5", join.as_secs_f64(), "s")
        .beside("the 2 deployed alone from scratch", scratch.as_secs_f64())
        .target("< 1.5x", ratio < 1.5)
        .record();
    println!(
        "  remove 2 hosts (every pin back at factor first) beside hoarder repairing their death"
    );
    println!(
        "    remove {:.2} s   repair {:.2} s   {:.2}x",
        remove.as_secs_f64(),
        repair.as_secs_f64(),
        remove.as_secs_f64() / repair.as_secs_f64()
    );
    Figure::new("day two", "remove 2 hosts of 7", remove.as_secs_f64(), "s")
        .beside("hoarder's repair when they die", repair.as_secs_f64())
        .record();
    Ok(())
}

/// Reads `child`'s stdout lines on a thread: counts them once `counting` is set, and notes when
/// the first line containing `marker` arrived, with the count then.
struct Reader {
    child: Child,
    gaps: Arc<AtomicU64>,
    seen: Arc<Mutex<Option<(Instant, u64)>>>,
}

impl Reader {
    fn start(mut command: Command, counting: Arc<AtomicBool>, marker: String) -> Result<Self> {
        let mut child =
            command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let gaps = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(None));
        let (g, s) = (gaps.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if !counting.load(Ordering::Relaxed) {
                    continue;
                }
                if let Some(lost) = lost_in(&line) {
                    g.fetch_add(lost, Ordering::Relaxed);
                    continue;
                }
                n += 1;
                if line.contains(&marker)
                    && let Ok(mut seen) = s.lock()
                    && seen.is_none()
                {
                    *seen = Some((Instant::now(), n));
                }
            }
        });
        Ok(Self { child, gaps, seen })
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many lines a gap line of `tau-node logs` (`--- N lines lost here: ...`) says were lost.
fn lost_in(line: &str) -> Option<u64> {
    let (n, rest) = line.strip_prefix("--- ")?.split_once(' ')?;
    rest.starts_with("lines lost here").then(|| n.parse().ok()).flatten()
}

fn logs_bench(work: &Path, node: &Path) -> Result {
    eprintln!("day-two bench: logs, a dev cloud of 1 node at debug");
    let dir = work.join("dev");
    let mut dev = Command::new(node)
        .args(["dev", "--nodes", "1", "--dir"])
        .arg(&dir)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = dev.stdout.take().ok_or("no stdout")?;
    let (mut profile, mut gateway) = (None, None);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(path) = line.strip_prefix("ready ") {
            profile = Some(PathBuf::from(path));
            break;
        }
        if line.starts_with("gateway ") {
            gateway = line.split("http://").nth(1).map(|a| a.trim().to_string());
        }
    }
    let result = (|| {
        let profile = profile.ok_or("tau-node dev exited before it was ready")?;
        let gateway = gateway.ok_or("tau-node dev named no gateway")?;
        follow_beside_tail(work, node, &dir, &profile, &gateway)
    })();
    let _ = dev.kill();
    let _ = dev.wait();
    result
}

fn follow_beside_tail(
    work: &Path,
    node: &Path,
    dir: &Path,
    profile: &Path,
    gateway: &str,
) -> Result {
    let log = dir.join("node-0/node.log");
    if !log.exists() {
        return Err(format!("{} is missing", log.display()).into());
    }
    let peer = tau_proto::CloudProfile::load(profile)?
        .bootstrap
        .first()
        .and_then(|a| a.to_string().rsplit("/p2p/").next().map(str::to_string))
        .ok_or("the profile names no node")?;
    // The end of the load: a refused admin request from a key of its own logs one line naming it.
    let stranger = work.join("stranger.key");
    ok(
        "tau-node key generate",
        Command::new(node).args(["key", "generate", "--out"]).arg(&stranger),
    )?;
    let marker = tau_proto::keyfile::read(&stranger)?.public().to_peer_id().to_string();
    let counting = Arc::new(AtomicBool::new(false));
    let mut tail = Command::new("tail");
    tail.args(["-n", "0", "-F"]).arg(&log);
    let tail = Reader::start(tail, counting.clone(), marker.clone())?;
    let mut follow = Command::new(node);
    follow.args(["logs", "--follow", "-n", "1", "--node", &peer, "--cloud"]).arg(profile);
    let follow = Reader::start(follow, counting.clone(), marker.clone())?;
    std::thread::sleep(Duration::from_secs(3));

    // Load: 4 clients asking the gateway for a name it does not serve, for 10 s.
    counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, requests, gateway) = (stop.clone(), requests.clone(), gateway.to_string());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(mut stream) = TcpStream::connect(&gateway) {
                        use std::io::{Read, Write};
                        let _ = stream.write_all(
                            b"GET / HTTP/1.1\r\nHost: nothing.bench.tau\r\nConnection: close\r\n\r\n",
                        );
                        let _ = stream.read_to_end(&mut Vec::new());
                        requests.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.join();
    }
    let _ = Command::new(node)
        .args(["logs", "--node", &peer, "--operator-key"])
        .arg(&stranger)
        .arg("--cloud")
        .arg(profile)
        .output();
    let wait = Instant::now();
    while wait.elapsed() < Duration::from_secs(60) {
        let done =
            [&tail, &follow].iter().all(|r| r.seen.lock().map(|s| s.is_some()).unwrap_or(false));
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let rate = |reader: &Reader, name: &str| -> Result<(f64, u64)> {
        let seen = *reader.seen.lock().map_err(|_| "poisoned")?;
        let (at, lines) = seen.ok_or(format!("{name} never showed the end marker"))?;
        Ok((lines as f64 / at.duration_since(started).as_secs_f64(), lines))
    };
    let (tail_rate, tail_lines) = rate(&tail, "tail -F")?;
    let (follow_rate, follow_lines) = rate(&follow, "tau-node logs --follow")?;
    let lost = follow.gaps.load(Ordering::Relaxed);
    let ratio = follow_rate / tail_rate;
    println!(
        "  log lines followed while 4 clients made {} requests in 10 s (the node at RUST_LOG=debug)",
        requests.load(Ordering::Relaxed)
    );
    println!(
        "    tau-node logs --follow {follow_rate:>9.0} lines/s ({follow_lines} lines, {lost} reported lost)"
    );
    println!("    tail -F node.log       {tail_rate:>9.0} lines/s ({tail_lines} lines)");
    println!("    ratio                  {ratio:>9.2}x   (target >= 0.5x)");
    Figure::new("day two", "tau-node logs --follow", follow_rate, "lines/s")
        .beside("tail -F of the node's log file", tail_rate)
        .target(">= 0.5x", ratio >= 0.5)
        .record();
    Ok(())
}
