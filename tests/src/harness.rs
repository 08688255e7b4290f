//! Helpers for the end-to-end tests.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// A test's error: anything, with a message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// A test's result.
pub type Result<T = ()> = std::result::Result<T, Error>;

/// The path of one of the workspace's binaries, built once per test run with the cargo that runs
/// the tests, in the same target folder and profile (a no-op when `scripts/test` built them just
/// before).
pub fn binary(name: &str) -> Result<PathBuf> {
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT.get_or_init(build_binaries).clone()?;
    let path = dir.join(name);
    if !path.exists() {
        return Err(format!("{} was not built", path.display()).into());
    }
    Ok(path)
}

/// What `cargo test` sets for the test binary it runs about that binary's own package and target
/// (besides `CARGO_PKG_*` and `CARGO_BIN_EXE_*`).
const CARGO_TEST_VARS: &[&str] = &[
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];

fn build_binaries() -> std::result::Result<PathBuf, String> {
    // target/<profile>/deps/<this test binary>
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile_dir =
        exe.parent().and_then(Path::parent).ok_or("cannot find the target folder")?.to_path_buf();
    let target_dir = profile_dir.parent().ok_or("cannot find the target folder")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => return Err("cannot tell the build profile".into()),
    };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cargo = Command::new(env!("CARGO"));
    // Not the variables `cargo test` sets for this test binary: build scripts that watch one
    // (ring's watches CARGO_MANIFEST_DIR) would run again and everything above them would be
    // rebuilt (5 minutes in CI), where the same build from a shell is a no-op.
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if CARGO_TEST_VARS.contains(&key_text.as_ref())
            || key_text.starts_with("CARGO_PKG_")
            || key_text.starts_with("CARGO_BIN_EXE_")
        {
            cargo.env_remove(&key);
        }
    }
    let status = cargo
        // `--tests`: the features `cargo test` builds with, so nothing is built a second time.
        .args(["build", "--quiet", "--bins", "--tests", "--workspace", "--profile", profile])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build of the binaries failed: {status}"));
    }
    Ok(profile_dir)
}

/// Runs `tau-node` with `args` to completion (at most 60 s).
pub fn tau_node(args: &[&str]) -> Result<Output> {
    run(Command::new(binary("tau-node")?).args(args), Duration::from_secs(60))
}

/// Runs `tau-node` with `args`, fails unless it succeeds, and returns its stdout.
pub fn tau_node_ok(args: &[&str]) -> Result<String> {
    let output = tau_node(args)?;
    if !output.status.success() {
        return Err(format!(
            "tau-node {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// The pins node `node` lists (`tau-node hoarder list --json`).
pub fn hoarder_pins(profile: &Path, node: &str) -> Result<Vec<serde_json::Value>> {
    let profile = profile.to_string_lossy();
    let out = tau_node_ok(&["hoarder", "list", "--cloud", &profile, "--node", node, "--json"])?;
    match serde_json::from_str(&out)? {
        serde_json::Value::Array(pins) => Ok(pins),
        _ => Err(format!("hoarder list through {node}: not a list").into()),
    }
}

/// The peer ids a pin (one of [`hoarder_pins`]) says hold its blob.
pub fn pin_holders(pin: &serde_json::Value) -> BTreeSet<String> {
    pin["holders"]
        .as_array()
        .map(|h| h.iter().filter_map(|p| p.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Runs a command to completion, killing it after `timeout`.
pub fn run(command: &mut Command, timeout: Duration) -> Result<Output> {
    let child =
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id();
    let (done, wait) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match wait.recv_timeout(timeout) {
        Ok(output) => Ok(output?),
        Err(_) => {
            signal(pid, Signal::SIGKILL);
            Err(format!("{command:?} did not finish within {timeout:?}").into())
        }
    }
}

/// Sends a signal to a process (one that may already have exited).
pub fn signal(pid: u32, signal: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), signal);
}

/// Whether a process is still alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.split(") ").nth(1).is_some_and(|rest| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Polls `check` every 50 ms until it returns `Ok(Some(_))` or `timeout` passes; returns the
/// value and how long it took. The last error or `None` is reported on timeout.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<(T, Duration)> {
    let start = Instant::now();
    let mut last = String::from("condition not met");
    loop {
        match check() {
            Ok(Some(value)) => return Ok((value, start.elapsed())),
            Ok(None) => {}
            Err(e) => last = e.to_string(),
        }
        if start.elapsed() > timeout {
            return Err(format!("{what}: not within {timeout:?} ({last})").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `tau-node dev` cloud; stopped (SIGKILL) when dropped, if still running.
pub struct DevCloud {
    /// The `tau-node dev` process; dropping the cloud kills it.
    pub child: Child,
    /// The cloud's folder.
    pub dir: PathBuf,
    /// Its `cloud.yaml`.
    pub profile: PathBuf,
    /// Each substrate node's HTTP gateway (`127.0.0.1:<port>`), in node order.
    pub gateways: Vec<String>,
    /// Each seer node's DNS server (`127.0.0.1:<port>`), in node order.
    pub dns: Vec<String>,
    /// Each ci node's webhook endpoint (`127.0.0.1:<port>`, patrick), in node order.
    pub webhooks: Vec<String>,
    /// Each node's metrics URL (`http://127.0.0.<i>:<port>/metrics`), in node order.
    pub metrics: Vec<String>,
    stderr: mpsc::Receiver<String>,
}

impl DevCloud {
    /// Starts `tau-node dev --nodes N --dir DIR` and waits (at most 120 s) for its `ready` line.
    pub fn start(nodes: usize, dir: &Path) -> Result<Self> {
        Self::start_with(nodes, dir, &[])
    }

    /// [`DevCloud::start`] with more `tau-node dev` options.
    pub fn start_with(nodes: usize, dir: &Path, options: &[&str]) -> Result<Self> {
        let mut child = Command::new(binary("tau-node")?)
            .args(["dev", "--nodes", &nodes.to_string(), "--dir"])
            .arg(dir)
            .args(options)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let (lines, ready) = mpsc::channel();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                let _ = lines.send(line);
            }
        });
        let (errs, stderr) = mpsc::channel();
        let err_pipe = child.stderr.take().ok_or("no stderr")?;
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(|l| l.ok()) {
                let _ = errs.send(line);
            }
        });
        let mut cloud = Self {
            child,
            dir: dir.to_path_buf(),
            profile: PathBuf::new(),
            gateways: Vec::new(),
            dns: Vec::new(),
            webhooks: Vec::new(),
            metrics: Vec::new(),
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = ready.recv_timeout(wait) else {
                return Err(format!(
                    "tau-node dev never got ready: {}{}",
                    cloud.stderr_text(),
                    cloud.log_warnings(nodes)
                )
                .into());
            };
            if let Some(path) = line.strip_prefix("ready ") {
                cloud.profile = PathBuf::from(path);
                return Ok(cloud);
            }
            if let Some(addr) =
                line.strip_prefix("gateway ").and_then(|r| r.split("http://").nth(1))
            {
                cloud.gateways.push(addr.trim().to_string());
            } else if let Some(addr) = line.strip_prefix("dns ").and_then(|r| r.split(' ').nth(1)) {
                cloud.dns.push(addr.trim().to_string());
            } else if let Some(addr) =
                line.strip_prefix("webhook ").and_then(|r| r.split("http://").nth(1))
            {
                cloud.webhooks.push(addr.trim().to_string());
            } else if let Some(url) =
                line.strip_prefix("metrics ").and_then(|r| r.split(' ').nth(1))
            {
                cloud.metrics.push(url.trim().to_string());
            } else {
                return Err(format!("unexpected line from tau-node dev: {line}").into());
            }
        }
    }

    /// What the dev process has written to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }

    /// The last warnings and errors of each node's log, one section per node (for a failure's
    /// message).
    fn log_warnings(&self, nodes: usize) -> String {
        let mut text = String::new();
        for i in 0..nodes {
            let log = self.node_log(i).unwrap_or_default();
            let lines: Vec<&str> =
                log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
            let last = &lines[lines.len().saturating_sub(8)..];
            text.push_str(&format!("\nnode-{i}'s last warnings ({} in all):", lines.len()));
            for line in last {
                text.push_str("\n  ");
                text.push_str(line);
            }
        }
        text
    }

    /// The pid of node `i`'s process.
    pub fn node_pid(&self, i: usize) -> Result<u32> {
        let path = self.dir.join(format!("node-{i}/node.pid"));
        Ok(std::fs::read_to_string(&path)?.trim().parse()?)
    }

    /// The log of node `i` so far.
    pub fn node_log(&self, i: usize) -> Result<String> {
        Ok(std::fs::read_to_string(self.dir.join(format!("node-{i}/node.log")))?)
    }

    /// The nodes' peer ids in node order (`tau-node dev` lists them so in the profile).
    pub fn peer_ids(&self) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(&self.profile)?;
        Ok(text
            .lines()
            .filter_map(|l| l.split("/p2p/").nth(1))
            .map(|id| id.trim().to_string())
            .collect())
    }
}

impl Drop for DevCloud {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Writes a project folder `dir` with id `id` and one function per name in `functions` (each on
/// `GET /<name>` at `<id>.tau`, with a stand-in `.wasm`: an empty component, valid but
/// with nothing to run).
pub fn write_project(dir: &Path, id: &str, functions: &[&str]) -> Result {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("functions"))?;
    std::fs::write(dir.join("config.yaml"), format!("id: {id}\nname: {id}\n"))?;
    std::fs::write(dir.join("f.wasm"), b"\0asm\x0d\0\x01\0")?;
    for name in functions {
        std::fs::write(
            dir.join(format!("functions/{name}.yaml")),
            format!(
                "id: {name}\ntrigger: {{type: http, method: GET, paths: [/{name}]}}\n\
                 domains: [{id}.tau]\nsource: f.wasm\n"
            ),
        )?;
    }
    Ok(())
}

/// Makes an owner key in `dir`, has the operator create project `id` for it; returns the key's
/// path.
pub fn create_project(profile: &Path, dir: &Path, id: &str) -> Result<PathBuf> {
    let key = dir.join(format!("{id}-owner.key"));
    let owner = tau_node_ok(&["key", "generate", "--out", &key.to_string_lossy()])?;
    tau_node_ok(&[
        "project",
        "create",
        "--id",
        id,
        "--owner",
        owner.trim(),
        "--cloud",
        &profile.to_string_lossy(),
    ])?;
    Ok(key)
}

/// Creates project `id` (owner key in `dir`), with one function, the example `ping` on
/// `GET /ping` at `ping.<id>.tau`, pushes it, and waits until the first gateway answers it once
/// (that call counts).
pub fn push_ping_project(cloud: &DevCloud, dir: &Path, id: &str) -> Result {
    push_ping_functions(cloud, dir, id, &["ping"])
}

/// Project `lab` with the faulty fixture on `GET /print` at `faulty.lab.tau` (5 s, 64 MB).
pub fn push_faulty(cloud: &DevCloud, dir: &Path) -> Result {
    let key = create_project(&cloud.profile, dir, "lab")?;
    let project = dir.join("lab");
    std::fs::create_dir_all(project.join("functions"))?;
    std::fs::write(project.join("config.yaml"), "id: lab\nname: Lab\n")?;
    std::fs::copy(example_wasm("faulty")?, project.join("faulty.wasm"))?;
    std::fs::write(
        project.join("functions/faulty.yaml"),
        "id: faulty\ntrigger: {type: http, method: GET, paths: [/print]}\n\
         domains: [faulty.lab.tau]\nsource: faulty.wasm\nexecution: {timeout: 5s, memory: 64MB}\n",
    )?;
    push_project(&cloud.profile, &project, &key, None)?;
    Ok(())
}

/// Like [`push_ping_project`] with one function per name, each the example `ping` on
/// `GET /<name>` at `ping.<id>.tau`; waits until the first gateway answers the first one once
/// (that call counts).
pub fn push_ping_functions(cloud: &DevCloud, dir: &Path, id: &str, names: &[&str]) -> Result {
    let key = create_project(&cloud.profile, dir, id)?;
    let project = dir.join(id);
    std::fs::create_dir_all(project.join("functions"))?;
    std::fs::write(project.join("config.yaml"), format!("id: {id}\nname: {id}\n"))?;
    std::fs::copy(example_wasm("ping")?, project.join("ping.wasm"))?;
    for name in names {
        std::fs::write(
            project.join(format!("functions/{name}.yaml")),
            format!(
                "id: {name}\ntrigger: {{type: http, method: GET, paths: [/{name}]}}\n\
                 domains: [ping.{id}.tau]\nsource: ping.wasm\n"
            ),
        )?;
    }
    push_project(&cloud.profile, &project, &key, None)?;
    let gateway = cloud.gateways.first().ok_or("no gateway")?;
    let host = format!("ping.{id}.tau");
    let path = format!("/{}", names.first().ok_or("no function")?);
    wait_for(Duration::from_secs(30), "the function answers", || {
        Ok((http(gateway, "GET", &host, &path, b"")?.status == 200).then_some(()))
    })?;
    Ok(())
}

/// `tau-node project push DIR --json` as the owner `key`, through `node` (or any node); the
/// push report.
pub fn push_project(
    profile: &Path,
    project: &Path,
    key: &Path,
    node: Option<&str>,
) -> Result<serde_json::Value> {
    let (profile, project, key) =
        (profile.to_string_lossy(), project.to_string_lossy(), key.to_string_lossy());
    let mut args = vec!["project", "push", &project, "--cloud", &profile, "--key", &key, "--json"];
    if let Some(node) = node {
        args.extend(["--node", node]);
    }
    Ok(serde_json::from_str(&tau_node_ok(&args)?)?)
}

/// `spore-drive ARGS --json` (10 minutes at most): its output and its report.
pub fn spore_json(args: &[&str]) -> Result<(Output, serde_json::Value)> {
    let mut command = Command::new(binary("spore-drive")?);
    command.args(args).arg("--json");
    let out = run(&mut command, Duration::from_secs(600))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&stdout).map_err(|e| {
        format!(
            "spore-drive {args:?}: not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out, report))
}

/// Each host's result in a Spore Drive `--json` report, as (host, result).
pub fn host_results(report: &serde_json::Value) -> Vec<(String, String)> {
    let hosts = report["hosts"].as_array().map(Vec::as_slice).unwrap_or_default();
    hosts
        .iter()
        .map(|h| {
            let field = |name: &str| h[name].as_str().unwrap_or("?").to_string();
            (field("host"), field("result"))
        })
        .collect()
}

/// Each tns node's status (`tau-node tns status --json`): peer id, then the status object.
pub fn tns_status(profile: &Path) -> Result<Vec<serde_json::Value>> {
    let out = tau_node_ok(&["tns", "status", "--cloud", &profile.to_string_lossy(), "--json"])?;
    let value: serde_json::Value = serde_json::from_str(&out)?;
    Ok(value.as_array().cloned().unwrap_or_default())
}

/// Whether every node in `status` answered and has the same registry digest.
pub fn converged(status: &[serde_json::Value], nodes: usize) -> bool {
    let digests: Vec<Option<&str>> = status.iter().map(|s| s["digest"].as_str()).collect();
    digests.len() == nodes && digests.iter().all(|d| d.is_some() && *d == digests[0])
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tau-node run --config CONFIG`, logging to `log`.
pub fn run_node(config: &Path, log: &Path) -> Result<KillOnDrop> {
    let child = Command::new(binary("tau-node")?)
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()?;
    Ok(KillOnDrop(child))
}

/// `len` pseudo-random bytes (xorshift), the same for the same seed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The built example function `name` (`scripts/build-examples` builds them; `scripts/test` runs
/// it first).
pub fn example_wasm(name: &str) -> Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/functions/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    if !path.exists() {
        return Err(format!("{} is missing: run scripts/build-examples", path.display()).into());
    }
    Ok(path)
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// The HTTP status code.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (chunked encoding undone).
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request to `addr` with `Host: host`, on a fresh connection (5 s to connect, at
/// most 30 s to answer).
pub fn http(addr: &str, method: &str, host: &str, path: &str, body: &[u8]) -> Result<HttpAnswer> {
    use std::net::ToSocketAddrs;
    let target = addr.to_socket_addrs()?.next().ok_or_else(|| format!("no address in {addr}"))?;
    let stream = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
    http_on(stream, method, host, path, body)
}

/// One HTTP/1.1 request on a connection made by the caller (at most 30 s to answer).
pub fn http_on(
    mut stream: std::net::TcpStream,
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
) -> Result<HttpAnswer> {
    use std::io::{Read, Write};
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_http(&raw)
}

fn parse_http(raw: &[u8]) -> Result<HttpAnswer> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end])?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("no status line")?;
    let status: u16 = status_line.split(' ').nth(1).ok_or("no status code")?.parse()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if !chunked {
        return Ok(HttpAnswer { status, headers, body: rest.to_vec() });
    }
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
        let size_text = std::str::from_utf8(&rest[..line_end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(HttpAnswer { status, headers, body });
        }
        if rest.len() < size + 2 {
            return Err("a chunk is cut short".into());
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// `dig @ip -p port name [+tcp] +short`: the addresses, sorted.
pub fn dig(server: &str, name: &str, tcp: bool) -> Result<BTreeSet<IpAddr>> {
    let (ip, port) = server.rsplit_once(':').ok_or("no port")?;
    let mut command = Command::new("dig");
    command.args([&format!("@{ip}"), "-p", port, name, "+short", "+time=2", "+tries=1"]);
    if tcp {
        command.arg("+tcp");
    }
    let out = run(&mut command, Duration::from_secs(10))?;
    if !out.status.success() {
        return Err(format!("dig {name}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// Every file under `dir` that contains `needle` (for secrets that must be nowhere on disk).
pub fn files_containing(dir: &Path, needle: &[u8]) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_symlink() {
            continue;
        }
        if path.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        } else if std::fs::read(&path)?.windows(needle.len()).any(|w| w == needle) {
            found.push(path.display().to_string());
        }
    }
    Ok(found)
}
