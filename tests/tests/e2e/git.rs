//! Git-operated projects (issue 24): a real git host (sshd, bare repositories, a post-receive
//! hook that posts a signed webhook), a dev cloud whose core nodes run `ci` (patrick and
//! monkey), builds in bubblewrap.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tau_tests::git_host::{GitHost, git};
use tau_tests::harness::{DevCloud, Result, Signal, http, signal, tau_node_ok, wait_for};

/// The function every version of the test project serves.
const HELLO: &str = "hello";

/// A project's config repository: `config.yaml` and one function on `GET <project>.tau/hello`
/// whose source is the `hello` crate's build output.
fn write_config(dir: &Path, project: &str) -> Result {
    std::fs::create_dir_all(dir.join("functions"))?;
    std::fs::write(dir.join("config.yaml"), format!("id: {project}\nname: {project}\n"))?;
    std::fs::write(
        dir.join(format!("functions/{HELLO}.yaml")),
        format!(
            "id: {HELLO}\ntrigger: {{type: http, method: GET, paths: [/{HELLO}]}}\n\
             domains: [{project}.tau]\nsource: {HELLO}.wasm\n\
             execution: {{timeout: 5s, memory: 32MB}}\n"
        ),
    )?;
    Ok(())
}

/// A code repository: a cargo workspace with the examples' `kit` and a `hello` crate that
/// answers `body`. `extra` is added to its source (to break the build); `build_rs`, when given,
/// is the crate's build script.
fn write_code(dir: &Path, body: &str, extra: &str, build_rs: Option<&str>) -> Result {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/functions");
    std::fs::create_dir_all(dir.join("kit/src"))?;
    std::fs::create_dir_all(dir.join(format!("{HELLO}/src")))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        "[workspace]\nresolver = \"3\"\nmembers = [\"kit\", \"hello\"]\n\n\
         [workspace.dependencies]\nwasi = \"0.14\"\nkit = { path = \"kit\" }\n\n\
         [profile.release]\nopt-level = \"s\"\nstrip = true\n",
    )?;
    std::fs::copy(examples.join("Cargo.lock"), dir.join("Cargo.lock"))?;
    std::fs::copy(examples.join("kit/Cargo.toml"), dir.join("kit/Cargo.toml"))?;
    std::fs::copy(examples.join("kit/src/lib.rs"), dir.join("kit/src/lib.rs"))?;
    std::fs::write(
        dir.join(format!("{HELLO}/Cargo.toml")),
        format!(
            "[package]\nname = \"{HELLO}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nwasi.workspace = true\n\
             kit.workspace = true\n"
        ),
    )?;
    std::fs::write(
        dir.join(format!("{HELLO}/src/lib.rs")),
        format!(
            "use wasi::http::types::{{IncomingRequest, ResponseOutparam}};\n\
             struct Hello;\nwasi::http::proxy::export!(Hello);\n\
             impl wasi::exports::http::incoming_handler::Guest for Hello {{\n\
             \x20   fn handle(_request: IncomingRequest, out: ResponseOutparam) {{\n\
             \x20       kit::respond(out, 200, &[(\"content-type\", b\"text/plain\")], b\"{body}\\n\");\n\
             \x20   }}\n}}\n{extra}\n"
        ),
    )?;
    std::fs::write(dir.join(".gitignore"), "target/\n")?;
    let script = dir.join(format!("{HELLO}/build.rs"));
    match build_rs {
        Some(code) => std::fs::write(&script, code)?,
        None => {
            let _ = std::fs::remove_file(&script);
        }
    }
    Ok(())
}

/// Commits everything in `work` and pushes it to `main`; returns the commit.
fn commit_and_push(host: &GitHost, work: &Path, message: &str) -> Result<String> {
    commit_and_push_to(host, work, message, "main")
}

/// Commits everything in `work` (on `branch`) and pushes it to `branch`; returns the commit.
fn commit_and_push_to(host: &GitHost, work: &Path, message: &str, branch: &str) -> Result<String> {
    host.git(work, &["add", "-A"])?;
    host.git(work, &["commit", "-q", "-m", message])?;
    let pushed = host.git(work, &["push", "-q", "origin", branch])?;
    // The hook's line, as git relays it: the webhook's status and patrick's answer.
    if pushed.contains("tau-git-hook") || (pushed.contains("webhook") && !pushed.contains(": 202"))
    {
        return Err(format!("patrick did not queue the push: {pushed}").into());
    }
    Ok(host.git(work, &["rev-parse", "HEAD"])?.trim().to_string())
}

/// What every substrate node answers on `GET <project>.tau/hello`.
fn answers(cloud: &DevCloud, project: &str) -> Vec<String> {
    cloud
        .gateways
        .iter()
        .map(|gateway| match http(gateway, "GET", &format!("{project}.tau"), "/hello", b"") {
            Ok(answer) if answer.status == 200 => answer.text().trim().to_string(),
            Ok(answer) => format!("{} {}", answer.status, answer.text().trim()),
            Err(e) => format!("error: {e}"),
        })
        .collect()
}

/// The project's jobs, as `tau-node jobs --json` lists them.
fn jobs(profile: &Path, project: &str) -> Result<Vec<serde_json::Value>> {
    let profile = profile.to_string_lossy();
    let text = tau_node_ok(&["jobs", "--project", project, "--cloud", &profile, "--json"])?;
    Ok(serde_json::from_str::<Vec<serde_json::Value>>(&text)?)
}

/// `tau-node project status ID --json`.
fn project_status(profile: &Path, id: &str) -> Result<serde_json::Value> {
    let profile = profile.to_string_lossy();
    let text = tau_node_ok(&["project", "status", id, "--cloud", &profile, "--json"])?;
    Ok(serde_json::from_str(&text)?)
}

/// A git-operated project registered on `cloud`, its repositories on `host`, hooks set.
struct Project {
    owner: PathBuf,
    config: PathBuf,
    code: PathBuf,
    secrets: Vec<(String, String)>,
}

fn register(cloud: &DevCloud, host: &GitHost, tmp: &Path, id: &str) -> Result<Project> {
    let config_url = host.create_repo(&format!("{id}-config"))?;
    let code_url = host.create_repo(&format!("{id}-code"))?;
    let config = tmp.join(format!("{id}-config"));
    let code = tmp.join(format!("{id}-code"));
    write_config(&config, id)?;
    write_code(&code, "v1", "", None)?;
    for (work, url) in [(&config, &config_url), (&code, &code_url)] {
        git(None, &["init", "-q", "-b", "main"], Some(work))?;
        host.git(work, &["remote", "add", "origin", url])?;
        commit_and_push(host, work, "first")?;
    }
    let known_hosts = tmp.join("known_hosts");
    std::fs::write(&known_hosts, host.known_hosts_line()?)?;
    let owner = tmp.join(format!("{id}-owner.key"));
    tau_node_ok(&["key", "generate", "--out", &owner.to_string_lossy()])?;
    let profile = cloud.profile.to_string_lossy().into_owned();
    let registered: serde_json::Value = serde_json::from_str(&tau_node_ok(&[
        "project",
        "register",
        &config.to_string_lossy(),
        "--cloud",
        &profile,
        "--key",
        &owner.to_string_lossy(),
        "--config-repo",
        &config_url,
        "--code-repo",
        &code_url,
        "--known-hosts",
        &known_hosts.to_string_lossy(),
        "--json",
    ])?)?;
    let repos = registered["repositories"].as_array().ok_or("no repositories")?;
    assert_eq!(repos.len(), 2, "{registered}");
    let mut secrets = Vec::new();
    for repo in repos {
        let kind = repo["kind"].as_str().ok_or("no kind")?;
        host.add_deploy_key(repo["deploy_key"].as_str().ok_or("no deploy key")?)?;
        let url = repo["webhook_url"].as_str().ok_or_else(|| format!("no webhook url: {repo}"))?;
        // patrick.tau.dev names the ci nodes; the hook posts to the first one's address.
        let port = url.rsplit_once(':').ok_or("no port")?.1.split('/').next().ok_or("no port")?;
        let webhook = format!("http://{}/{id}/{kind}", swap_port(&cloud.webhooks[0], port));
        let name = repo["webhook_secret_name"].as_str().ok_or("no secret name")?;
        let secret = tau_node_ok(&[
            "secret",
            "get",
            id,
            name,
            "--cloud",
            &profile,
            "--key",
            &owner.to_string_lossy(),
        ])?;
        let hook = tau_tests::harness::binary("tau-git-hook")?;
        host.set_webhook(&format!("{id}-{kind}"), &webhook, secret.trim().as_bytes(), &hook)?;
        secrets.push((kind.to_string(), secret.trim().to_string()));
    }
    Ok(Project { owner, config, code, secrets })
}

/// The ci lines of every node's log, for a failure's message.
fn ci_log(cloud: &DevCloud) -> String {
    let mut out = String::new();
    for i in 0..cloud.webhooks.len() {
        let log = cloud.node_log(i).unwrap_or_default();
        for line in log.lines().filter(|l| {
            ["job", "monkey", "patrick", "webhook", "sandbox"].iter().any(|w| l.contains(w))
        }) {
            out.push_str(&format!("node-{i}: {line}\n"));
        }
    }
    out
}

fn swap_port(addr: &str, port: &str) -> String {
    let ip = addr.rsplit_once(':').map_or(addr, |(ip, _)| ip);
    format!("{ip}:{port}")
}

/// Posts a webhook body to patrick with the given headers; the status.
fn post(addr: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Result<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: patrick.tau.dev\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes())?;
    // A peer that refuses early may close before the whole body is sent.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    Ok(text.split(' ').nth(1).ok_or_else(|| format!("no answer: {text}"))?.parse()?)
}

fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn a_push_is_built_in_the_sandbox_and_served_everywhere_and_webhooks_are_checked() -> Result {
    let tmp = tempfile::tempdir()?;
    // node-1 is in region `edge`, which the project later maps its `staging` branch to; counter
    // windows of 1 s show the build jobs' counters soon.
    let options = ["--regions", "dev,edge", "--counter-window", "1s"];
    let cloud = DevCloud::start_with(3, &tmp.path().join("cloud"), &options)?;
    assert_eq!(cloud.webhooks.len(), 3, "every core node runs ci");
    let host = GitHost::start(&tmp.path().join("git"))?;
    let project = register(&cloud, &host, tmp.path(), "shop")?;
    let profile = cloud.profile.clone();
    // Nothing is served before the first job, and `project status` says why.
    assert!(answers(&cloud, "shop").iter().all(|a| a.starts_with("404")));
    let status = project_status(&profile, "shop")?;
    assert_eq!(status["operated"], "git", "{status}");
    let why = status["why"].as_str().unwrap_or_default();
    assert!(why.contains("no push has reached the cloud"), "{status}");
    assert_eq!(status["webhooks"].as_array().map(Vec::len), Some(2), "{status}");

    // A push to the code repository: built, stored, deployed, served by every substrate node.
    write_code(&project.code, "v2", "", None)?;
    let commit = commit_and_push(&host, &project.code, "v2")?;
    let served = wait_for(Duration::from_secs(180), "v2 served by every node", || {
        let seen = answers(&cloud, "shop");
        match seen.iter().all(|a| a == "v2") {
            true => Ok(Some(())),
            false => Err(format!("{seen:?}").into()),
        }
    });
    if let Err(e) = served {
        return Err(format!("{e}; jobs: {:?}\n{}", jobs(&profile, "shop"), ci_log(&cloud)).into());
    }
    let listed = jobs(&profile, "shop")?;
    let job = listed.iter().find(|j| j["commit"] == commit.as_str()).ok_or("no job")?;
    assert_eq!(job["state"], "done", "{job}");
    let status = project_status(&profile, "shop")?;
    assert_eq!(status["serving"]["main"]["code_commit"], commit.as_str(), "{status}");
    assert!(status["why"].is_null(), "{status}");

    // The function's record was written by a ci node, not the owner.
    let record: serde_json::Value = serde_json::from_str(&tau_node_ok(&[
        "tns",
        "get",
        &format!("/projects/shop/functions/{HELLO}"),
        "--cloud",
        &profile.to_string_lossy(),
        "--json",
    ])?)?;
    let writer = record["writer"].as_str().ok_or(format!("no writer: {record}"))?.to_string();
    let ci_keys: Vec<String> = cloud
        .peer_ids()?
        .iter()
        .map(|peer| {
            let peer: libp2p::PeerId = peer.parse().expect("a peer id");
            tau_proto::identity::WriterKey::of_peer(&peer).expect("ed25519").to_string()
        })
        .collect();
    assert!(ci_keys.contains(&writer), "{writer} is not a ci node's key");

    // The job's log holds the build's own output.
    let log = tau_node_ok(&["jobs", "logs", &commit, "--cloud", &profile.to_string_lossy()])?;
    assert!(log.contains("Compiling hello"), "{log}");

    // Webhooks that do not check out queue nothing.
    let addr = &cloud.webhooks[1];
    let secret = &project.secrets.iter().find(|(k, _)| k == "code").ok_or("no secret")?.1;
    let body = serde_json::json!({"ref": "refs/heads/main", "before": "0".repeat(40),
        "after": "ab".repeat(20)})
    .to_string();
    let push = ("X-GitHub-Event", "push".to_string());
    let wrong = ("X-Hub-Signature-256", sign("not the secret", body.as_bytes()));
    assert_eq!(post(addr, "/shop/code", &[push.clone(), wrong], body.as_bytes())?, 401);
    assert_eq!(post(addr, "/shop/code", std::slice::from_ref(&push), body.as_bytes())?, 401);
    let signed = ("X-Hub-Signature-256", sign(secret, body.as_bytes()));
    assert_eq!(post(addr, "/nosuch/code", &[push.clone(), signed.clone()], body.as_bytes())?, 404);
    let big = vec![b' '; (1 << 20) + 1];
    let big_signed = ("X-Hub-Signature-256", sign(secret, &big));
    assert_eq!(post(addr, "/shop/code", &[push.clone(), big_signed], &big)?, 413);
    // A replay of the webhook of the deployed commit: the job exists, nothing is queued.
    let replay = serde_json::json!({"ref": "refs/heads/main", "before": "0".repeat(40),
        "after": commit})
    .to_string();
    let replay_signed = ("X-Hub-Signature-256", sign(secret, replay.as_bytes()));
    assert_eq!(post(addr, "/shop/code", &[push, replay_signed], replay.as_bytes())?, 200);
    assert_eq!(jobs(&profile, "shop")?.len(), listed.len(), "no job was added");
    assert!(answers(&cloud, "shop").iter().all(|a| a == "v2"));

    // patrick.tau.dev resolves to the ci nodes.
    let ips = tau_tests::harness::dig(&cloud.dns[0], "patrick.tau.dev", false)?;
    assert_eq!(ips.len(), 3, "{ips:?}");

    // Before the config maps `staging`, a push to it queues nothing.
    host.git(&project.code, &["checkout", "-q", "-b", "staging"])?;
    write_code(&project.code, "staging-1", "", None)?;
    host.git(&project.code, &["add", "-A"])?;
    host.git(&project.code, &["commit", "-q", "-m", "staging before it is mapped"])?;
    let early = host.git(&project.code, &["push", "-q", "origin", "staging"])?;
    assert!(
        early.contains(": 202 ") && early.contains("branch `staging` is not deployed"),
        "{early}"
    );
    let before = jobs(&profile, "shop")?.len();

    // The config maps `staging` to region `edge` (node-1): a push to it is served there only,
    // and node-0 and node-2 keep serving main's version, even after main moves on.
    let config_yaml = project.config.join("config.yaml");
    let mapped = format!(
        "{}branches:\n  staging: {{regions: [edge]}}\n",
        std::fs::read_to_string(&config_yaml)?
    );
    std::fs::write(&config_yaml, mapped)?;
    let mapping = commit_and_push(&host, &project.config, "map staging to edge")?;
    let job = wait_ended(&cloud, &mapping)?;
    assert_eq!(job["state"], "done", "{job}");
    write_code(&project.code, "staging-2", "", None)?;
    let staged = commit_and_push_to(&host, &project.code, "staging", "staging")?;
    wait_served(&cloud, &[1], "staging-2")?;
    let seen = answers(&cloud, "shop");
    assert_eq!([seen[0].as_str(), seen[2].as_str()], ["v2", "v2"], "{seen:?}");
    let listed = jobs(&profile, "shop")?;
    assert_eq!(listed.len(), before + 2, "{listed:?}");
    let job = listed.iter().find(|j| j["commit"] == staged.as_str()).ok_or("no staging job")?;
    assert_eq!((&job["branch"], &job["state"]), (&"staging".into(), &"done".into()), "{job}");
    let staging_record = tau_node_ok(&[
        "tns",
        "get",
        &format!("/projects/shop/branches/staging/functions/{HELLO}"),
        "--cloud",
        &profile.to_string_lossy(),
        "--json",
    ])?;
    assert!(staging_record.contains(HELLO), "{staging_record}");

    host.git(&project.code, &["checkout", "-q", "main"])?;
    write_code(&project.code, "v3", "", None)?;
    commit_and_push(&host, &project.code, "v3")?;
    wait_served(&cloud, &[0, 2], "v3")?;
    assert_eq!(answers(&cloud, "shop")[1], "staging-2");
    let status = project_status(&profile, "shop")?;
    assert_eq!(status["serving"]["staging"]["code_commit"], staged.as_str(), "{status}");

    // Every job that ran is counted, signed by the ci node that ran it: build seconds to bill.
    let ran = jobs(&profile, "shop")?
        .iter()
        .filter(|j| j["state"] == "done" || j["state"] == "failed")
        .count() as u64;
    let (counted, _) = wait_for(Duration::from_secs(30), "the build jobs counted", || {
        let out = tau_node_ok(&["counters", "--cloud", &profile.to_string_lossy(), "--json"])?;
        let records: Vec<serde_json::Value> = serde_json::from_str(&out)?;
        let builds: Vec<&serde_json::Value> = records
            .iter()
            .filter(|r| r["project"] == "shop" && r["function"] == "@build")
            .collect();
        let sum = |field: &str| builds.iter().filter_map(|r| r[field].as_u64()).sum::<u64>();
        let totals = (sum("invocations"), sum("wall_micros"), sum("cpu_micros"));
        let verified = builds.iter().all(|r| r["verified"] == true);
        match totals.0 >= ran && verified {
            true => Ok(Some(totals)),
            false => Err(format!("{ran} jobs ran; counted {totals:?}, verified {verified}").into()),
        }
    })?;
    assert!(counted.1 > 1_000_000 && counted.2 > 0, "{counted:?}");

    // taucorder's jobs view, in a real terminal: the staging job, and its log from hoarder.
    let tmux = tau_tests::tmux::Tmux::start(160, 45)?;
    let taucorder = tau_tests::harness::binary("taucorder")?;
    tmux.text(&format!("{} --cloud {}", taucorder.display(), profile.display()))?;
    tmux.keys(&["Enter"])?;
    tmux.wait("taucorder connected", |s| s.contains("connected"))?;
    tmux.keys(&["7", "/"])?;
    tmux.text(&staged[..12])?;
    tmux.keys(&["Enter"])?;
    tmux.wait("the staging job", |s| {
        s.lines().any(|l| l.contains(&staged[..12]) && l.contains("staging") && l.contains("done"))
    })?;
    tmux.keys(&["Enter"])?;
    tmux.wait("its log", |s| s.contains("branch: staging") && s.contains("Compiling hello"))?;
    tmux.keys(&["C-c"])?;
    Ok(())
}

/// Waits until every gateway in `live` answers `expected`.
fn wait_served(cloud: &DevCloud, live: &[usize], expected: &str) -> Result {
    let served = wait_for(Duration::from_secs(180), "the new version served", || {
        let seen = answers(cloud, "shop");
        match live.iter().all(|&i| seen[i] == expected) {
            true => Ok(Some(())),
            false => Err(format!("{seen:?}").into()),
        }
    });
    if let Err(e) = served {
        let listed = jobs(&cloud.profile, "shop");
        return Err(format!("{expected}: {e}; jobs: {listed:?}\n{}", ci_log(cloud)).into());
    }
    Ok(())
}

/// Waits until the job of `commit` has ended; returns it.
fn wait_ended(cloud: &DevCloud, commit: &str) -> Result<serde_json::Value> {
    let (job, _) = wait_for(Duration::from_secs(180), "the job ends", || {
        let listed = jobs(&cloud.profile, "shop")?;
        let job = listed.into_iter().find(|j| j["commit"] == commit);
        Ok(job
            .filter(|j| ["done", "failed", "skipped"].contains(&j["state"].as_str().unwrap_or(""))))
    })?;
    Ok(job)
}

/// Every process's command line, while `running` holds.
fn sample_command_lines(running: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    while running.load(std::sync::atomic::Ordering::Relaxed) {
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                if let Ok(line) = std::fs::read(entry.path().join("cmdline")) {
                    seen.insert(String::from_utf8_lossy(&line).replace('\0', " "));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    seen.into_iter().collect()
}

#[test]
fn a_broken_build_changes_nothing_the_sandbox_holds_and_no_secret_is_left_anywhere() -> Result {
    let tmp = tempfile::tempdir()?;
    let cloud_dir = tmp.path().join("cloud");
    let cloud = DevCloud::start(3, &cloud_dir)?;
    let host = GitHost::start(&tmp.path().join("git"))?;
    let project = register(&cloud, &host, tmp.path(), "shop")?;
    let all = [0, 1, 2];

    // A build script that tries to reach the network, read the node's identity key and vault
    // share, and write outside its folder. Each attempt must fail; if one succeeds it fails
    // the build, and the test sees it.
    let outside = tmp.path().join("escaped");
    let probe = format!(
        "fn main() {{\n\
         \x20   let mut held = Vec::new();\n\
         \x20   let addr: std::net::SocketAddr = \"{gateway}\".parse().unwrap();\n\
         \x20   match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)) {{\n\
         \x20       Ok(_) => panic!(\"escaped: connected to {gateway}\"),\n\
         \x20       Err(e) => held.push(format!(\"network refused ({{e}})\")),\n\
         \x20   }}\n\
         \x20   for path in [\"{key}\", \"{share}\"] {{\n\
         \x20       match std::fs::read(path) {{\n\
         \x20           Ok(_) => panic!(\"escaped: read {{path}}\"),\n\
         \x20           Err(e) => held.push(format!(\"{{path}} unreadable ({{e}})\")),\n\
         \x20       }}\n\
         \x20   }}\n\
         \x20   match std::fs::write(\"{outside}\", b\"x\") {{\n\
         \x20       Ok(_) => panic!(\"escaped: wrote {outside}\"),\n\
         \x20       Err(e) => held.push(format!(\"write refused ({{e}})\")),\n\
         \x20   }}\n\
         \x20   println!(\"cargo:warning=sandbox held: {{}}\", held.join(\"; \"));\n\
         }}\n",
        gateway = cloud.gateways[0],
        key = cloud_dir.join("node-0/identity.key").display(),
        share = cloud_dir.join("node-0/vault-share.yaml").display(),
        outside = outside.display(),
    );
    assert!(
        cloud_dir.join("node-0/identity.key").exists()
            && cloud_dir.join("node-0/vault-share.yaml").exists()
    );
    write_code(&project.code, "v2", "", Some(&probe))?;
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let running = running.clone();
        std::thread::spawn(move || sample_command_lines(running))
    };
    let probed = commit_and_push(&host, &project.code, "probe the sandbox")?;
    let job = wait_ended(&cloud, &probed)?;
    assert_eq!(job["state"], "done", "{job}");
    wait_served(&cloud, &all, "v2")?;
    let log = tau_node_ok(&["jobs", "logs", &probed, "--cloud", &cloud.profile.to_string_lossy()])?;
    assert!(log.contains("sandbox held: network refused"), "{log}");
    assert!(log.contains("identity.key unreadable") && log.contains("write refused"), "{log}");
    assert!(!outside.exists(), "the build wrote outside its folder");

    // A committed symlink to a component elsewhere on the node's host serves nothing: it is
    // checked out as a file holding the link's target (without that, the job deployed it).
    let host_component = tau_tests::harness::example_wasm("ping")?;
    write_code(&project.code, "v2", "", None)?;
    std::os::unix::fs::symlink(&host_component, project.code.join("hello.wasm"))?;
    let linked = commit_and_push(&host, &project.code, "a symlink out of the tree")?;
    let job = wait_ended(&cloud, &linked)?;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(answers(&cloud, "shop").iter().all(|a| a == "v2"), "{:?}", answers(&cloud, "shop"));
    std::fs::remove_file(project.code.join("hello.wasm"))?;

    // A commit that does not compile: the job fails with the compiler's error, and the old
    // version answers every request during and after.
    write_code(&project.code, "v3", "fn broken( {", None)?;
    let broken = commit_and_push(&host, &project.code, "broken")?;
    let mut during = Vec::new();
    let job = wait_for(Duration::from_secs(180), "the broken job ends", || {
        during.extend(answers(&cloud, "shop"));
        let listed = jobs(&cloud.profile, "shop")?;
        Ok(listed.into_iter().find(|j| {
            j["commit"] == broken.as_str() && j["state"] != "queued" && j["state"] != "building"
        }))
    })?
    .0;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(during.iter().all(|a| a == "v2"), "{during:?}");
    let log = tau_node_ok(&["jobs", "logs", &broken, "--cloud", &cloud.profile.to_string_lossy()])?;
    assert!(log.contains("error: ") && log.contains("hello/src/lib.rs"), "{log}");
    assert!(answers(&cloud, "shop").iter().all(|a| a == "v2"));

    // Two pushes in quick succession: the project ends on the later one.
    write_code(&project.code, "v4", "", None)?;
    commit_and_push(&host, &project.code, "v4")?;
    write_code(&project.code, "v5", "", None)?;
    let last = commit_and_push(&host, &project.code, "v5")?;
    wait_ended(&cloud, &last)?;
    wait_served(&cloud, &all, "v5")?;
    std::thread::sleep(Duration::from_secs(3));
    assert!(answers(&cloud, "shop").iter().all(|a| a == "v5"), "{:?}", answers(&cloud, "shop"));
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    let command_lines = sampler.join().map_err(|_| "the sampler panicked")?;
    assert!(command_lines.iter().any(|c| c.contains("bwrap")), "a build was sampled");

    // No deploy key or webhook secret in any node's data folder or log, or on a command line.
    let mut needles = Vec::new();
    for kind in ["config", "code"] {
        for what in ["deploy-key", "webhook-secret"] {
            let name = format!("{kind}-{what}");
            let secret = tau_node_ok(&[
                "secret",
                "get",
                "shop",
                &name,
                "--cloud",
                &cloud.profile.to_string_lossy(),
                "--key",
                &project.owner.to_string_lossy(),
            ])?;
            // For a key, a PEM line of its private half (the first lines are the same in every
            // OpenSSH key, and hold the public half); else the whole secret.
            let body: Vec<&str> = secret.lines().filter(|l| !l.starts_with("-----")).collect();
            let needle = match body.len() {
                0 | 1 => secret.trim().to_string(),
                n => body[n - 2].to_string(),
            };
            assert!(needle.len() >= 40, "{name} is too short to look for");
            needles.push((name, needle));
        }
    }
    drop(cloud);
    for (name, needle) in &needles {
        let found = tau_tests::harness::files_containing(&cloud_dir, needle.as_bytes())?;
        assert!(found.is_empty(), "{name} is in {found:?}");
        assert!(
            !command_lines.iter().any(|c| c.contains(needle.as_str())),
            "{name} on a command line"
        );
    }
    Ok(())
}

#[test]
fn the_job_of_a_monkey_killed_mid_build_is_taken_over_and_deployed_once() -> Result {
    let tmp = tempfile::tempdir()?;
    let cloud = DevCloud::start(3, &tmp.path().join("cloud"))?;
    let host = GitHost::start(&tmp.path().join("git"))?;
    let project = register(&cloud, &host, tmp.path(), "shop")?;

    // A build that takes a while, so that its monkey can be killed in the middle of it.
    let slow = "fn main() { std::thread::sleep(std::time::Duration::from_secs(8)); }\n";
    write_code(&project.code, "v2", "", Some(slow))?;
    let commit = commit_and_push(&host, &project.code, "slow")?;
    let (first, _) = wait_for(Duration::from_secs(60), "a monkey builds the job", || {
        let listed = jobs(&cloud.profile, "shop")?;
        let job = listed.into_iter().find(|j| j["commit"] == commit.as_str());
        Ok(job.and_then(|j| j["detail"]["building"]["monkey"].as_str().map(str::to_string)))
    })?;
    std::thread::sleep(Duration::from_secs(2));
    let peers = cloud.peer_ids()?;
    let victim = peers.iter().position(|p| *p == first).ok_or("the monkey is not a node")?;
    signal(cloud.node_pid(victim)?, Signal::SIGKILL);

    // Another monkey takes the job over once the lease has run out, and deploys it.
    let live: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    wait_served(&cloud, &live, "v2")?;
    let listed = jobs(&cloud.profile, "shop")?;
    let ours: Vec<&serde_json::Value> =
        listed.iter().filter(|j| j["commit"] == commit.as_str()).collect();
    assert_eq!(ours.len(), 1, "one job for the commit: {listed:?}");
    let done = &ours[0]["detail"]["done"];
    assert!(done.is_object(), "{listed:?}");
    assert_ne!(done["monkey"].as_str(), Some(first.as_str()), "another monkey finished it");
    let log = tau_node_ok(&["jobs", "logs", &commit, "--cloud", &cloud.profile.to_string_lossy()])?;
    assert!(log.contains("(attempt 2)"), "{log}");
    // What is deployed is that commit, once.
    let deployed: serde_json::Value = serde_json::from_str(&tau_node_ok(&[
        "tns",
        "get",
        "/projects/shop/deployed",
        "--cloud",
        &cloud.profile.to_string_lossy(),
        "--json",
    ])?)?;
    assert_eq!(deployed["value"]["branches"]["main"]["code_commit"], commit.as_str(), "{deployed}");
    Ok(())
}
