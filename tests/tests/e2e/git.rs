//! Git-operated projects (issue 24): a real git host (sshd, bare repositories, a post-receive
//! hook that posts a signed webhook), a dev cloud whose core nodes run `ci` (patrick and
//! monkey), builds in bubblewrap.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tau_tests::git_host::{GitHost, git};
use tau_tests::harness::{DevCloud, Result, http, tau_node_ok, wait_for};

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
/// answers `body`. `extra` is added to its source (to break the build).
fn write_code(dir: &Path, body: &str, extra: &str) -> Result {
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
    Ok(())
}

/// Commits everything in `work` and pushes it to `main`; returns the commit.
fn commit_and_push(host: &GitHost, work: &Path, message: &str) -> Result<String> {
    host.git(work, &["add", "-A"])?;
    host.git(work, &["commit", "-q", "-m", message])?;
    let pushed = host.git(work, &["push", "-q", "origin", "main"])?;
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

/// A git-operated project registered on `cloud`, its repositories on `host`, hooks set.
struct Project {
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
    write_code(&code, "v1", "")?;
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
        host.set_webhook(&format!("{id}-{kind}"), &webhook, secret.trim().as_bytes())?;
        secrets.push((kind.to_string(), secret.trim().to_string()));
    }
    Ok(Project { config, code, secrets })
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
    let cloud = DevCloud::start(3, &tmp.path().join("cloud"))?;
    assert_eq!(cloud.webhooks.len(), 3, "every core node runs ci");
    let host = GitHost::start(&tmp.path().join("git"))?;
    let project = register(&cloud, &host, tmp.path(), "shop")?;
    let profile = cloud.profile.clone();
    // Nothing is served before the first job.
    assert!(answers(&cloud, "shop").iter().all(|a| a.starts_with("404")));

    // A push to the code repository: built, stored, deployed, served by every substrate node.
    write_code(&project.code, "v2", "")?;
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
    assert!(project.config.join("config.yaml").exists());
    Ok(())
}
