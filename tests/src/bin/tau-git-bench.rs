//! `tau-git-bench`: a `git push` until every substrate node serves the new version, beside doing
//! the same by hand in the same run (`cargo build` of the changed function, then `tau-node
//! project push`), on a 3-node `tau-node dev` cloud whose nodes run `ci`, with a git host on
//! loopback (`tau_tests::git_host`). Also how long a job waits between patrick queueing it and
//! a monkey starting it.
//!
//! The project is the example project (`examples/project`'s YAML in the config repository,
//! `examples/functions`' workspace in the code repository). One push warms the monkey's target
//! folder and the manual workspace is built once first, so both paths build with a warm cache.
//! Then [`ROUNDS`] rounds, each a git push and a manual push of a one-line change to `ping`,
//! alternating. Needs root (sshd), `tau-node` and `tau-git-hook` beside it (`scripts/bench git`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use tau_proto::bench::Figure;
use tau_tests::bench::beside;
use tau_tests::git_host::{GitHost, git};
use tau_tests::harness::{Result, http};

/// Measured rounds of each path.
const ROUNDS: usize = 3;
/// How long one version may take to be served everywhere.
const SERVED_WITHIN: Duration = Duration::from_secs(600);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tau-git-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A `tau-node dev` cloud; stopped on drop.
struct Cloud {
    child: Child,
    profile: PathBuf,
    gateways: Vec<String>,
    webhooks: Vec<String>,
}

impl Cloud {
    fn start(tau_node: &Path, dir: &Path) -> Result<Self> {
        let mut child = Command::new(tau_node)
            .args(["dev", "--nodes", "3", "--dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (mut gateways, mut webhooks) = (Vec::new(), Vec::new());
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            if let Some(profile) = line.strip_prefix("ready ") {
                return Ok(Self { child, profile: PathBuf::from(profile), gateways, webhooks });
            }
            let addr = line.split("http://").nth(1).map(|a| a.trim().to_string());
            match (line.split(' ').next(), addr) {
                (Some("gateway"), Some(addr)) => gateways.push(addr),
                (Some("webhook"), Some(addr)) => webhooks.push(addr),
                _ => {}
            }
        }
        Err("tau-node dev exited before it was ready".into())
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tau-node` to completion; its stdout, or an error with its stderr.
fn tau_node(bin: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin).args(args).output()?;
    if !out.status.success() {
        return Err(format!("tau-node {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Waits until every gateway answers `expected` on `ping.example.tau/ping`.
fn wait_served(cloud: &Cloud, expected: &str) -> Result {
    let deadline = Instant::now() + SERVED_WITHIN;
    loop {
        let served = cloud.gateways.iter().all(|gateway| {
            http(gateway, "GET", "ping.example.tau", "/ping", b"")
                .is_ok_and(|a| a.status == 200 && a.text().trim() == expected)
        });
        if served {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(
                format!("`{expected}` not served everywhere within {SERVED_WITHIN:?}").into()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Makes `ping` in the workspace `code` answer `text`.
fn set_ping(code: &Path, text: &str) -> Result {
    let path = code.join("ping/src/lib.rs");
    let source = std::fs::read_to_string(&path)?;
    // The response body is the last byte string (the first is a header's value).
    let start = source.rfind("b\"").ok_or("no byte string in ping")? + 2;
    let end = start + source[start..].find("\\n\"").ok_or("no end of the byte string")?;
    let changed = format!("{}{text}{}", &source[..start], &source[end..]);
    std::fs::write(&path, changed)?;
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn run() -> Result {
    let tau_node_bin = beside("tau-node")?;
    let hook = beside("tau-git-hook")?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    println!("git-operated projects: 3-node dev cloud (ci on every node), git host on loopback");
    let cloud = Cloud::start(&tau_node_bin, &dir.join("cloud"))?;
    let profile = cloud.profile.to_string_lossy().into_owned();
    let host = GitHost::start(&dir.join("git"))?;

    // The repositories: the example project's YAML, and the example functions' workspace.
    let config = dir.join("config");
    let code = dir.join("code");
    copy_tree(&root.join("examples/project"), &config, &|p| {
        p.extension().is_none_or(|e| e != "wasm")
    })?;
    copy_tree(&root.join("examples/functions"), &code, &|p| !p.ends_with("target"))?;
    let mut urls = Vec::new();
    for (work, name) in [(&config, "config"), (&code, "code")] {
        let url = host.create_repo(name)?;
        git(None, &["init", "-q", "-b", "main"], Some(work))?;
        host.git(work, &["remote", "add", "origin", &url])?;
        host.git(work, &["add", "-A"])?;
        host.git(work, &["commit", "-q", "-m", "first"])?;
        host.git(work, &["push", "-q", "origin", "main"])?;
        urls.push(url);
    }
    let known_hosts = dir.join("known_hosts");
    std::fs::write(&known_hosts, host.known_hosts_line()?)?;
    let owner = dir.join("owner.key");
    tau_node(&tau_node_bin, &["key", "generate", "--out", &owner.to_string_lossy()])?;
    let registered: serde_json::Value = serde_json::from_str(&tau_node(
        &tau_node_bin,
        &[
            "project",
            "register",
            &config.to_string_lossy(),
            "--cloud",
            &profile,
            "--key",
            &owner.to_string_lossy(),
            "--config-repo",
            &urls[0],
            "--code-repo",
            &urls[1],
            "--known-hosts",
            &known_hosts.to_string_lossy(),
            "--json",
        ],
    )?)?;
    for repo in registered["repositories"].as_array().ok_or("no repositories")? {
        let kind = repo["kind"].as_str().ok_or("no kind")?;
        host.add_deploy_key(repo["deploy_key"].as_str().ok_or("no deploy key")?)?;
        let name = repo["webhook_secret_name"].as_str().ok_or("no secret name")?;
        let secret = tau_node(
            &tau_node_bin,
            &[
                "secret",
                "get",
                "example",
                name,
                "--cloud",
                &profile,
                "--key",
                &owner.to_string_lossy(),
            ],
        )?;
        let url = format!("http://{}/example/{kind}", cloud.webhooks[0]);
        host.set_webhook(kind, &url, secret.trim().as_bytes(), &hook)?;
    }

    // Warm-up: the monkey's first build of the project fills its target folder.
    let started = Instant::now();
    set_ping(&code, "pong warm")?;
    host.git(&code, &["commit", "-qam", "warm"])?;
    host.git(&code, &["push", "-q", "origin", "main"])?;
    wait_served(&cloud, "pong warm")?;
    let cold = started.elapsed();
    println!("first push, cold target folder: {:.1} s", cold.as_secs_f64());

    // The manual path's workspace, built once, and its project folder.
    let manual = dir.join("manual-code");
    copy_tree(&code, &manual, &|p| !p.ends_with(".git"))?;
    let folder = dir.join("manual-project");
    copy_tree(&config, &folder, &|p| !p.ends_with(".git"))?;
    cargo_build(&manual)?;
    for wasm in ["ping", "echo", "avatar", "json", "markdown", "fetch"] {
        std::fs::copy(
            manual.join(format!("target/wasm32-wasip2/release/{wasm}.wasm")),
            folder.join(format!("{wasm}.wasm")),
        )?;
    }

    let (mut by_git, mut by_hand, mut waits) = (Vec::new(), Vec::new(), Vec::new());
    let mut last_commit = String::new();
    for round in 0..ROUNDS {
        // By git: commit, push; the cloud builds and deploys.
        let text = format!("pong git {round}");
        set_ping(&code, &text)?;
        host.git(&code, &["commit", "-qam", &text])?;
        let started = Instant::now();
        host.git(&code, &["push", "-q", "origin", "main"])?;
        wait_served(&cloud, &text)?;
        by_git.push(started.elapsed().as_secs_f64());
        let commit = host.git(&code, &["rev-parse", "HEAD"])?.trim().to_string();
        waits.push(job_wait(&tau_node_bin, &profile, &commit)?);
        last_commit = commit;

        // By hand: build the changed function, push the project folder.
        let text = format!("pong hand {round}");
        set_ping(&manual, &text)?;
        let started = Instant::now();
        cargo_build(&manual)?;
        std::fs::copy(
            manual.join("target/wasm32-wasip2/release/ping.wasm"),
            folder.join("ping.wasm"),
        )?;
        tau_node(
            &tau_node_bin,
            &[
                "project",
                "push",
                &folder.to_string_lossy(),
                "--cloud",
                &profile,
                "--key",
                &owner.to_string_lossy(),
            ],
        )?;
        wait_served(&cloud, &text)?;
        by_hand.push(started.elapsed().as_secs_f64());
        println!(
            "round {}: git push -> served {:.2} s; cargo build + project push -> served {:.2} s",
            round + 1,
            by_git[round],
            by_hand[round]
        );
    }
    // Where a job's time goes: the monkey's own lines of the last job's log, timed.
    let log = tau_node(&tau_node_bin, &["jobs", "logs", &last_commit, "--cloud", &profile])?;
    println!("the last job's steps:");
    for line in log.lines().filter(|l| l.starts_with("monkey:")) {
        println!("  {line}");
    }
    let (git_s, hand_s, wait_ms) = (median(by_git), median(by_hand), median(waits));
    let ratio = git_s / hand_s;
    println!();
    println!("| path | median of {ROUNDS} | vs by hand |");
    println!("|---|---|---|");
    println!("| git push -> every node serves it | {git_s:.2} s | {ratio:.2}x |");
    println!(
        "| cargo build + project push -> every node serves it (baseline) | {hand_s:.2} s | 1.00x |"
    );
    println!("| webhook queued -> monkey started | {wait_ms:.0} ms | |");
    println!("targets: under 1.5x the baseline, under 30 s; a job waits under 1 s");
    Figure::new("git", "git push until every node serves it", git_s, "s")
        .beside("cargo build + project push", hand_s)
        .target("< 1.5x and < 30 s", ratio < 1.5 && git_s < 30.0)
        .record();
    Figure::new("git", "webhook queued until a monkey starts", wait_ms, "ms")
        .target("< 1000 ms", wait_ms < 1000.0)
        .record();
    Figure::new("git", "first push, cold target folder", cold.as_secs_f64(), "s").record();
    Ok(())
}

/// `cargo build --release --target wasm32-wasip2` in `dir`, as a developer runs it.
fn cargo_build(dir: &Path) -> Result {
    let out = Command::new("cargo")
        .args(["build", "--quiet", "--offline", "--release", "--target", "wasm32-wasip2"])
        .current_dir(dir)
        .output()?;
    if !out.status.success() {
        return Err(format!("cargo build: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

/// How long the job of `commit` waited between queued and started, ms.
fn job_wait(tau_node_bin: &Path, profile: &str, commit: &str) -> Result<f64> {
    let listed: Vec<serde_json::Value> = serde_json::from_str(&tau_node(
        tau_node_bin,
        &["jobs", "--project", "example", "--cloud", profile, "--json"],
    )?)?;
    let job = listed.iter().find(|j| j["commit"] == commit).ok_or("no job for the commit")?;
    let queued = job["queued_at"].as_f64().ok_or("no queued_at")?;
    let started =
        job["detail"]["done"]["started_at"].as_f64().ok_or_else(|| format!("not done: {job}"))?;
    Ok(started - queued)
}

/// Copies `from` into `to` (created), the entries `keep` allows, recursively.
fn copy_tree(from: &Path, to: &Path, keep: &dyn Fn(&Path) -> bool) -> Result {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        if !keep(&path) {
            continue;
        }
        let target = to.join(path.file_name().ok_or("no name")?);
        if path.is_dir() {
            copy_tree(&path, &target, keep)?;
        } else {
            std::fs::copy(&path, &target)?;
        }
    }
    Ok(())
}
