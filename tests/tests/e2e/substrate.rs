//! Substrate across real processes: functions run within their limits, reach nothing outside
//! (network, files, environment), and a misbehaving one harms nothing else; 100 concurrent
//! requests all get the right answer; the signed counters count every request and keep their
//! sequence across a restart; a node whose disk is full keeps answering and loses no count; the
//! example project answers through every node, to `curl`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tau_tests::harness::{
    DevCloud, HttpAnswer, Result, Signal, create_project, example_wasm, http, push_project, run,
    signal, tau_node, tau_node_ok, wait_for,
};

/// A project `lab` with the faulty fixture (1 s, 16 MB), ping, and a component that validates
/// but exports nothing.
fn write_lab_project(dir: &Path) -> Result {
    std::fs::create_dir_all(dir.join("functions"))?;
    std::fs::write(dir.join("config.yaml"), "id: lab\nname: Lab\n")?;
    std::fs::copy(example_wasm("faulty")?, dir.join("faulty.wasm"))?;
    std::fs::copy(example_wasm("ping")?, dir.join("ping.wasm"))?;
    std::fs::write(dir.join("empty.wasm"), b"\0asm\x0d\0\x01\0")?;
    let function = |name: &str, domain: &str, path: &str, source: &str| {
        format!(
            "id: {name}\ntrigger: {{type: http, method: GET, paths: [{path}]}}\n\
             domains: [{domain}]\nsource: {source}\nexecution: {{timeout: 1s, memory: 16MB}}\n"
        )
    };
    for (name, domain, path, source) in [
        ("faulty", "faulty.lab.tau", "/", "faulty.wasm"),
        ("ping", "ping.lab.tau", "/ping", "ping.wasm"),
        ("empty", "empty.lab.tau", "/", "empty.wasm"),
    ] {
        std::fs::write(
            dir.join(format!("functions/{name}.yaml")),
            function(name, domain, path, source),
        )?;
    }
    Ok(())
}

fn push(profile: &Path, project: &Path, key: &Path) -> Result<serde_json::Value> {
    push_project(profile, project, key, None)
}

/// Checks an answer's status and that its body contains `text`.
fn expect(answer: &HttpAnswer, status: u16, text: &str, what: &str) -> Result {
    if answer.status != status || !answer.text().contains(text) {
        return Err(format!(
            "{what}: expected {status} with {text:?}, got {} {:?}",
            answer.status,
            answer.text()
        )
        .into());
    }
    Ok(())
}

#[test]
fn functions_stay_within_their_limits_and_a_bad_one_harms_nothing_else() -> Result {
    let tmp = tempfile::tempdir()?;
    let cloud = DevCloud::start(1, &tmp.path().join("cloud"))?;
    let gateway = cloud.gateways.first().ok_or("no gateway")?.clone();
    let key = create_project(&cloud.profile, tmp.path(), "lab")?;
    let project = tmp.path().join("lab");
    write_lab_project(&project)?;

    // A file that is not a component is refused at push, naming the file and the field.
    std::fs::write(project.join("ping.wasm"), b"\0asm\x01\0\0\0 a core module")?;
    let refused = tau_node(&[
        "project",
        "push",
        &project.to_string_lossy(),
        "--cloud",
        &cloud.profile.to_string_lossy(),
        "--key",
        &key.to_string_lossy(),
    ])?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    if refused.status.success()
        || !stderr.contains("functions/ping.yaml")
        || !stderr.contains("field `source`")
        || !stderr.contains("not a component")
    {
        return Err(format!("a core module was not refused clearly: {stderr}").into());
    }
    std::fs::copy(example_wasm("ping")?, project.join("ping.wasm"))?;
    push(&cloud.profile, &project, &key)?;

    let get = |host: &str, path: &str| http(&gateway, "GET", host, path, b"");
    expect(&get("faulty.lab.tau", "/ok")?, 200, "fine", "a well-behaved call")?;
    let started = Instant::now();
    expect(&get("faulty.lab.tau", "/spin")?, 504, "timeout of 1s", "an endless loop")?;
    let spun = started.elapsed();
    if spun > Duration::from_secs(5) {
        return Err(format!("the endless loop was stopped only after {spun:?}").into());
    }
    expect(&get("faulty.lab.tau", "/sleep")?, 504, "timeout of 1s", "a sleep in the host")?;
    expect(&get("faulty.lab.tau", "/hog")?, 500, "memory limit of 16.0 MB", "a memory hog")?;
    expect(&get("faulty.lab.tau", "/crash")?, 500, "the function failed", "a panic")?;
    expect(&get("faulty.lab.tau", "/silent")?, 500, "without a response", "no response")?;
    expect(&get("empty.lab.tau", "/")?, 500, "wasi:http/incoming-handler", "an empty component")?;
    // No way out: no outgoing HTTP, no files, no sockets (even to the node's own gateway), no
    // environment.
    let port = gateway.rsplit(':').next().unwrap_or("0");
    for path in ["/fetch", "/read", &format!("/connect?port={port}"), "/env"] {
        let answer = get("faulty.lab.tau", path)?;
        expect(&answer, 200, "denied: ", &format!("{path} from a function"))?;
    }
    expect(&get("faulty.lab.tau", "/fetch")?, 200, "HttpRequestDenied", "outgoing HTTP")?;
    expect(&get("nowhere.lab.tau", "/")?, 404, "no function serves GET nowhere.lab.tau/", "404")?;
    expect(&get("ping.lab.tau", "/nothing")?, 404, "no function serves", "an unknown path")?;
    expect(&get("ping.lab.tau", "/ping")?, 200, "pong", "ping after the failures")?;

    // 100 requests at once, good and bad mixed: each gets its own right answer.
    let cases: [(&str, &str, u16, &str); 6] = [
        ("ping.lab.tau", "/ping", 200, "pong"),
        ("faulty.lab.tau", "/ok", 200, "fine"),
        ("faulty.lab.tau", "/crash", 500, "the function failed"),
        ("faulty.lab.tau", "/hog", 500, "memory limit"),
        ("faulty.lab.tau", "/spin", 504, "timeout"),
        ("nowhere.lab.tau", "/", 404, "no function serves"),
    ];
    let threads: Vec<_> = (0..100)
        .map(|i| {
            let (host, path, status, text) = cases[i % cases.len()];
            let gateway = gateway.clone();
            std::thread::spawn(move || -> Result {
                let answer = http(&gateway, "GET", host, path, b"")?;
                let what = format!("concurrent request {i} to {host}{path}");
                // On two busy cores the hog may reach its time limit before its memory limit:
                // stopped by either, it stays within its limits (alone it hits memory, above).
                if path == "/hog" && answer.status == 504 {
                    return expect(&answer, 504, "timeout", &what);
                }
                expect(&answer, status, text, &what)
            })
        })
        .collect();
    for thread in threads {
        thread.join().map_err(|_| "a request thread panicked")??;
    }

    // The node is unharmed: it still answers, over HTTP and p2p.
    expect(&get("ping.lab.tau", "/ping")?, 200, "pong", "ping after the storm")?;
    tau_node_ok(&["status", "--cloud", &cloud.profile.to_string_lossy()])?;
    Ok(())
}

/// The counter records of the cloud (`tau-node counters --json`), each checked to be verified.
fn counters(profile: &Path) -> Result<Vec<serde_json::Value>> {
    let out = tau_node_ok(&["counters", "--cloud", &profile.to_string_lossy(), "--json"])?;
    let records: Vec<serde_json::Value> = serde_json::from_str(&out)?;
    if let Some(bad) = records.iter().find(|r| r["verified"] != true) {
        return Err(format!("a record does not verify: {bad}").into());
    }
    Ok(records)
}

/// The sum of `field` over the records of `function`.
fn total(records: &[serde_json::Value], function: &str, field: &str) -> u64 {
    records.iter().filter(|r| r["function"] == function).filter_map(|r| r[field].as_u64()).sum()
}

/// Checks the records' sequence numbers are exactly 1..=n.
fn gap_free(records: &[serde_json::Value]) -> Result {
    let seqs: Vec<u64> = records.iter().filter_map(|r| r["seq"].as_u64()).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    if seqs != expected {
        return Err(format!("sequence numbers {seqs:?} are not 1..={}", seqs.len()).into());
    }
    Ok(())
}

#[test]
fn counters_count_every_request_and_keep_their_sequence_across_a_restart() -> Result {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cloud");
    let options = ["--counter-window", "1s"];
    let mut cloud = DevCloud::start_with(1, &dir, &options)?;
    let key = create_project(&cloud.profile, tmp.path(), "lab")?;
    let project = tmp.path().join("lab");
    write_lab_project(&project)?;
    push(&cloud.profile, &project, &key)?;

    let gateway = cloud.gateways.first().ok_or("no gateway")?.clone();
    for _ in 0..25 {
        expect(&http(&gateway, "GET", "ping.lab.tau", "/ping", b"")?, 200, "pong", "ping")?;
    }
    for _ in 0..3 {
        http(&gateway, "GET", "faulty.lab.tau", "/crash", b"")?;
    }
    let (records, _) = wait_for(Duration::from_secs(20), "25 pings counted", || {
        let records = counters(&cloud.profile)?;
        Ok((total(&records, "ping", "invocations") == 25
            && total(&records, "faulty", "invocations") == 3)
            .then_some(records))
    })?;
    gap_free(&records)?;
    if total(&records, "ping", "errors") != 0 || total(&records, "faulty", "errors") != 3 {
        return Err(format!("errors miscounted: {records:?}").into());
    }
    if total(&records, "ping", "bytes_out") != 25 * 5 {
        return Err(format!("25 pongs are 125 bytes out: {records:?}").into());
    }
    let peak = records.iter().filter_map(|r| r["peak_memory"].as_u64()).max().unwrap_or(0);
    if peak == 0 || peak > 16_000_000 {
        return Err(format!("peak memory {peak} is not within (0, 16 MB]").into());
    }

    // A clean stop and a start on the same folder: the sequence goes on, nothing repeats.
    signal(cloud.child.id(), Signal::SIGTERM);
    wait_for(Duration::from_secs(30), "the dev cloud to stop", || {
        Ok(cloud.child.try_wait()?.map(|_| ()))
    })?;
    drop(cloud);
    cloud = DevCloud::start_with(1, &dir, &options)?;
    let gateway = cloud.gateways.first().ok_or("no gateway")?.clone();
    for _ in 0..7 {
        expect(&http(&gateway, "GET", "ping.lab.tau", "/ping", b"")?, 200, "pong", "ping")?;
    }
    let (records, _) = wait_for(Duration::from_secs(20), "32 pings counted", || {
        let records = counters(&cloud.profile)?;
        Ok((total(&records, "ping", "invocations") == 32).then_some(records))
    })?;
    gap_free(&records)?;
    Ok(())
}

/// A tmpfs mounted at a folder, for a disk that fills; unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, mib: u32) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let out = run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tau-test-disk"])
                .arg(dir),
            Duration::from_secs(10),
        )?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            return Err(format!("mount a tmpfs at {} (needs root): {why}", dir.display()).into());
        }
        Ok(Self(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until its file system is full; the bytes written.
fn fill(path: &Path) -> Result<u64> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path)?;
    let mut block = vec![0x5a_u8; 1 << 20];
    let mut written = 0;
    while !block.is_empty() {
        match file.write(&block) {
            Ok(n) if n > 0 => written += n as u64,
            Ok(_) => break,
            Err(e) if e.raw_os_error() == Some(28) => block.truncate(block.len() / 2), // ENOSPC
            Err(e) => return Err(e.into()),
        }
    }
    Ok(written)
}

#[test]
fn a_node_whose_disk_is_full_keeps_answering_and_loses_no_count() -> Result {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cloud");
    // The node's data and its log on one small disk, as on a host.
    let disk = SmallDisk::mount(&dir, 64)?;
    let cloud = DevCloud::start_with(1, &dir, &["--counter-window", "1s"])?;
    let key = create_project(&cloud.profile, tmp.path(), "lab")?;
    let project = tmp.path().join("lab");
    write_lab_project(&project)?;
    push(&cloud.profile, &project, &key)?;
    let gateway = cloud.gateways.first().ok_or("no gateway")?.clone();

    // Full: the first call loads ping (and logs it, to the full disk), and every call answers.
    let filled = fill(&dir.join("filler"))?;
    // A call to the empty component logs a warning: 40 of them are more than the log file's last
    // page holds, so the node's log lines soon cannot be written. Each is answered all the same.
    for i in 0..40 {
        let answer = http(&gateway, "GET", "empty.lab.tau", "/", b"")
            .map_err(|e| format!("call {i} on a full disk ({filled} bytes filled it): {e}"))?;
        expect(&answer, 500, "wasi:http/incoming-handler", "the empty component, disk full")?;
    }
    for i in 0..20 {
        let answer = http(&gateway, "GET", "ping.lab.tau", "/ping", b"")
            .map_err(|e| format!("call {i} on a full disk ({filled} bytes filled it): {e}"))?;
        expect(&answer, 200, "pong", "ping on a full disk")?;
    }
    // Room again: every call is counted, whatever window could not be written meanwhile.
    std::fs::remove_file(dir.join("filler"))?;
    let (records, _) = wait_for(Duration::from_secs(20), "the 60 calls counted", || {
        let records = counters(&cloud.profile)?;
        let (pings, empty) =
            (total(&records, "ping", "invocations"), total(&records, "empty", "errors"));
        Ok((pings == 20 && empty == 40).then_some(records))
    })
    .map_err(|e| format!("{e}; node log:\n{}", cloud.node_log(0).unwrap_or_default()))?;
    gap_free(&records)?;
    drop(cloud);
    drop(disk);
    Ok(())
}

/// `curl` with arguments; its stdout.
fn curl(args: &[&str]) -> Result<String> {
    let out = run(
        Command::new("curl").args(["-sS", "--max-time", "30"]).args(args),
        Duration::from_secs(40),
    )?;
    if !out.status.success() {
        return Err(format!("curl {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn the_example_project_answers_through_every_node() -> Result {
    let tmp = tempfile::tempdir()?;
    let cloud = DevCloud::start(3, &tmp.path().join("cloud"))?;
    let key = create_project(&cloud.profile, tmp.path(), "example")?;
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/project");
    push(&cloud.profile, &project, &key)?;
    let mut avatars = Vec::new();
    for gateway in &cloud.gateways {
        let url = |path: &str| format!("http://{gateway}{path}");
        let pong = curl(&["-H", "Host: ping.example.tau", &url("/ping")])?;
        if pong != "pong\n" {
            return Err(format!("ping through {gateway} said {pong:?}").into());
        }
        let echoed = curl(&[
            "-i",
            "-H",
            "Host: echo.example.tau",
            "-H",
            "X-Tenant: blue",
            "--data-binary",
            "hello from curl",
            &url("/echo"),
        ])?;
        let lower = echoed.to_ascii_lowercase();
        if !echoed.ends_with("\r\n\r\nhello from curl")
            || !lower.contains("x-echo-method: post")
            || !lower.contains("x-echo-x-tenant: blue")
        {
            return Err(format!("echo through {gateway} said {echoed:?}").into());
        }
        let html = curl(&[
            "-H",
            "Host: markdown.example.tau",
            "--data-binary",
            "# Tau\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
            &url("/markdown"),
        ])?;
        if !html.contains("<h1>Tau</h1>") || !html.contains("<td>2</td>") {
            return Err(format!("markdown through {gateway} said {html:?}").into());
        }
        let pretty = curl(&[
            "-H",
            "Host: json.example.tau",
            "--data-binary",
            "{\"a\":[1,2]}",
            &url("/json"),
        ])?;
        if pretty != "{\n  \"a\": [\n    1,\n    2\n  ]\n}\n" {
            return Err(format!("json through {gateway} said {pretty:?}").into());
        }
        let avatar = curl(&["-H", "Host: avatar.example.tau", &url("/avatar/alice")])?;
        if !avatar.starts_with("<svg") || !avatar.contains("<rect") {
            return Err(format!("avatar through {gateway} said {avatar:?}").into());
        }
        avatars.push(avatar);
    }
    if avatars.windows(2).any(|w| w[0] != w[1]) {
        return Err("the avatar of alice differs between nodes".into());
    }
    let bob = curl(&[
        "-H",
        "Host: avatar.example.tau",
        &format!("http://{}/avatar/bob", cloud.gateways[0]),
    ])?;
    if bob == avatars[0] {
        return Err("alice and bob got the same avatar".into());
    }
    // The example storage `files`, as the README shows it: put through one node, read and
    // listed through another.
    let (a, b) = (&cloud.gateways[0], &cloud.gateways[1]);
    let host = "Host: gateway.example.tau";
    let cid = curl(&[
        "-X",
        "PUT",
        "-H",
        host,
        "--data-binary",
        "hi",
        &format!("http://{a}/files/hi.txt"),
    ])?;
    if !cid.starts_with("bafkr4i") {
        return Err(format!("a put of the example storage said {cid:?}").into());
    }
    let (read, _) = wait_for(Duration::from_secs(5), "another node reads the file", || {
        let read = curl(&["-H", host, &format!("http://{b}/files/hi.txt")])?;
        Ok((read == "hi").then_some(read))
    })?;
    let listed = curl(&["-H", host, &format!("http://{b}/files")])?;
    if read != "hi" || listed.trim() != "hi.txt" {
        return Err(format!("the example storage read {read:?} and listed {listed:?}").into());
    }
    Ok(())
}
