//! Spore Drive over real SSH: a lab of 3 hosts (network namespaces, each with Debian's sshd and
//! its own /opt), deployed, redeployed, broken in the ways hosts break, and destroyed.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use tau_tests::harness::{Result, binary, run, wait_for};
use tau_tests::ssh_lab::SshLab;

/// Everything the test printed or wrote, to look for secrets in at the end.
#[derive(Default)]
struct Transcript(Vec<u8>);

impl Transcript {
    fn spore(&mut self, args: &[&str]) -> Result<(Output, serde_json::Value, String)> {
        self.spore_env(args, &[])
    }

    fn spore_env(
        &mut self,
        args: &[&str],
        env: &[(&str, &Path)],
    ) -> Result<(Output, serde_json::Value, String)> {
        let mut command = Command::new(binary("spore-drive")?);
        command.args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        let out = run(&mut command, Duration::from_secs(300))?;
        self.0.extend_from_slice(&out.stdout);
        self.0.extend_from_slice(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let json = if args.contains(&"--json") {
            serde_json::from_str(&stdout)
                .map_err(|e| format!("spore-drive {args:?}: not JSON ({e}): {stdout}"))?
        } else {
            serde_json::Value::Null
        };
        let text = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        Ok((out, json, text))
    }
}

fn results(report: &serde_json::Value) -> Vec<(String, String)> {
    tau_tests::harness::host_results(report)
}

fn error_of<'a>(report: &'a serde_json::Value, host: &str) -> &'a str {
    report["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|h| h["host"] == host))
        .and_then(|h| h["error"].as_str())
        .unwrap_or("")
}

fn playbook(lab: &SshLab, dir: &Path, host_keys: &str, third_shape: &str) -> Result<String> {
    playbook_with_key(lab, dir, host_keys, third_shape, Some(&lab.client_key), "root")
}

/// The lab's playbook, logging in as `user`; without a key file, Spore Drive asks the ssh-agent.
fn playbook_with_key(
    lab: &SshLab,
    dir: &Path,
    host_keys: &str,
    third_shape: &str,
    key: Option<&Path>,
    user: &str,
) -> Result<String> {
    let hosts: String = (0..3)
        .map(|i| {
            let shape = if i == 2 { third_shape } else { "full" };
            format!(
                "  - {{ name: h{}, address: {}, shape: {shape}, location: {{ region: lab }} }}\n",
                i + 1,
                lab.ip(i)
            )
        })
        .collect();
    // No drain: these tests restart nodes without clients to serve (the story test drains).
    let text = format!(
        "cloud: {{ name: lab, domain: lab.tau, generated_domain: g.lab.tau, secrets: secrets }}\n\
         transport: ssh\nhost_keys: {host_keys}\nknown_hosts: known_hosts\n\
         ssh: {{ user: {user}{key} }}\ninstall_dir: /opt/tau\n\
         shapes:\n\
         \x20 full: {{ services: [tns, hoarder, vault, seer, substrate], ports: {{ p2p: 4001, http: 8080, dns: 5353 }}, drain: 0s }}\n\
         \x20 storage: {{ services: [tns, hoarder, vault, seer], ports: {{ p2p: 4001, http: 8080, dns: 5353 }}, drain: 0s }}\n\
         hosts:\n{hosts}",
        key = key.map(|k| format!(", key: {}", k.display())).unwrap_or_default()
    );
    let path = dir.join("playbook.yaml");
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}

#[test]
fn spore_drive_deploys_redeploys_survives_faults_and_destroys_over_ssh() -> Result {
    let dir = tempfile::tempdir()?;
    let mut lab = SshLab::new(3, &dir.path().join("lab"))?;
    let cloud = dir.path().join("cloud");
    std::fs::create_dir_all(&cloud)?;
    let mut t = Transcript::default();

    // Strict host keys and an empty known_hosts: every host is refused, its fingerprint shown.
    let pb = playbook(&lab, &cloud, "strict", "full")?;
    let (out, report, _) = t.spore(&["deploy", &pb, "--yes", "--json"])?;
    assert_eq!(out.status.code(), Some(1), "unknown hosts fail the deploy");
    for i in 0..3 {
        let error = error_of(&report, &format!("h{}", i + 1));
        assert!(error.contains("unknown host key"), "{error}");
        let fingerprint = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(lab.host_dir(i).join("ssh_host_ed25519_key.pub"))
            .output()?;
        let fingerprint = String::from_utf8_lossy(&fingerprint.stdout);
        let sha = fingerprint.split_whitespace().nth(1).ok_or("no fingerprint")?;
        assert!(error.contains(sha), "the refusal shows the host's fingerprint {sha}: {error}");
    }

    // accept-new learns each key once; the cloud comes up and meshes.
    let pb = playbook(&lab, &cloud, "accept-new", "full")?;
    let (out, report, text) = t.spore(&["deploy", &pb, "--yes", "--json"])?;
    assert!(out.status.success(), "first deploy: {text}");
    assert_eq!(
        results(&report),
        [("h1", "changed"), ("h2", "changed"), ("h3", "changed")]
            .map(|(h, r)| (h.into(), r.into()))
    );
    let known = std::fs::read_to_string(cloud.join("known_hosts"))?;
    assert_eq!(known.lines().filter(|l| !l.trim().is_empty()).count(), 3, "{known}");
    for i in 0..3 {
        let key = lab.host_key(i)?;
        let body = key.split_whitespace().nth(1).ok_or("bad host key")?;
        assert!(known.contains(body), "host {i}'s key was learned");
    }
    let (_, status, text) = t.spore(&["status", &pb, "--json"])?;
    for host in status.as_array().ok_or("status is not a list")? {
        assert_eq!(host["healthy"], true, "{text}");
        assert_eq!(host["peers"], 2, "each node sees the other two: {text}");
    }
    let profile = cloud.join("cloud.yaml");
    assert!(profile.exists(), "deploy writes the cloud profile");
    // Each node's first heartbeat reaches seer within a beat interval of its start.
    wait_for(Duration::from_secs(30), "seer knows the 3 nodes, all healthy", || {
        let out = run(
            Command::new(binary("tau-node")?).args(["nodes", "--json", "--cloud"]).arg(&profile),
            Duration::from_secs(30),
        )?;
        let nodes: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let healthy =
            nodes.as_array().map_or(0, |n| n.iter().filter(|n| n["healthy"] == true).count());
        Ok((healthy == 3).then_some(()))
    })?;

    // Nothing changed: nothing is done, and the output says so.
    let (out, _, text) = t.spore(&["deploy", &pb, "--yes"])?;
    assert!(out.status.success(), "{text}");
    assert!(text.contains("nothing changed"), "{text}");
    assert!(text.contains("0 changed, 3 unchanged"), "{text}");
    let (_, plan, _) = t.spore(&["plan", &pb, "--json"])?;
    assert!(
        plan.as_array()
            .into_iter()
            .flatten()
            .all(|p| p["node"] == "none" && p["binary"] == "unchanged"),
        "{plan}"
    );

    // Without a key file in the playbook, the ssh-agent's keys log in.
    let agent_socket = dir.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&agent_socket)
        .stdout(std::process::Stdio::null())
        .spawn()?;
    wait_for(Duration::from_secs(10), "ssh-agent listens", || {
        Ok(agent_socket.exists().then_some(()))
    })?;
    let added = Command::new("ssh-add")
        .arg(&lab.client_key)
        .env("SSH_AUTH_SOCK", &agent_socket)
        .output()?;
    assert!(added.status.success(), "ssh-add: {}", String::from_utf8_lossy(&added.stderr));
    let pb_agent = playbook_with_key(&lab, &cloud, "accept-new", "full", None, "root")?;
    let (out, status, text) =
        t.spore_env(&["status", &pb_agent, "--json"], &[("SSH_AUTH_SOCK", &agent_socket)])?;
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(out.status.success(), "{text}");
    for host in status.as_array().ok_or("status is not a list")? {
        assert_eq!(host["reachable"], true, "logged in with the agent's key: {text}");
        assert_eq!(host["healthy"], true, "{text}");
    }
    let (out, status, _) = t.spore_env(
        &["status", &pb_agent, "--json", "--host", "h1"],
        &[("SSH_AUTH_SOCK", &dir.path().join("no-agent.sock"))],
    )?;
    assert_eq!(out.status.code(), Some(1), "no agent, no login");
    let error = status[0]["error"].as_str().unwrap_or("");
    assert!(error.contains("ssh-agent"), "the error names the missing agent: {status}");

    // A user that is not root works through sudo, its password given on stdin.
    let sudo_password = "correct-horse-4242";
    lab.add_sudo_user(0, "tau-ops", sudo_password)?;
    let pb_ops =
        playbook_with_key(&lab, &cloud, "accept-new", "full", Some(&lab.client_key), "tau-ops")?;
    let with_password = |t: &mut Transcript, password: &str, args: &[&str]| {
        let mut command = Command::new(binary("spore-drive")?);
        command.args(args).env("SPORE_DRIVE_SUDO_PASSWORD", password);
        let out = run(&mut command, Duration::from_secs(120))?;
        t.0.extend_from_slice(&out.stdout);
        t.0.extend_from_slice(&out.stderr);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))?;
        Ok::<_, tau_tests::harness::Error>((out.status.code(), report))
    };
    let deploy_h1 = ["deploy", &pb_ops, "--yes", "--json", "--host", "h1"];
    let (code, report) = with_password(&mut t, sudo_password, &deploy_h1)?;
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(results(&report), [("h1".to_string(), "unchanged".to_string())], "{report}");
    let (code, report) = with_password(&mut t, "wrong-password-17", &deploy_h1)?;
    assert_eq!(code, Some(1), "{report}");
    assert!(error_of(&report, "h1").contains("sudo"), "the error names sudo: {report}");
    let (code, report) = with_password(&mut t, "", &deploy_h1)?;
    assert_eq!(code, Some(1), "{report}");
    assert!(error_of(&report, "h1").contains("password"), "sudo wants a password: {report}");
    let haystack = String::from_utf8_lossy(&t.0);
    assert!(!haystack.contains(sudo_password), "the sudo password leaked");
    assert!(!haystack.contains("wrong-password-17"), "a sudo password leaked");

    // One host's shape changes: only that host is redeployed.
    let pb = playbook(&lab, &cloud, "accept-new", "storage")?;
    let (_, plan, _) = t.spore(&["plan", &pb, "--json"])?;
    let changing: Vec<&str> = plan
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["node"] != "none")
        .filter_map(|p| p["host"].as_str())
        .collect();
    assert_eq!(changing, ["h3"], "{plan}");
    let (out, report, text) = t.spore(&["deploy", &pb, "--yes", "--json"])?;
    assert!(out.status.success(), "{text}");
    assert_eq!(
        results(&report),
        [("h1", "unchanged"), ("h2", "unchanged"), ("h3", "changed")]
            .map(|(h, r)| (h.into(), r.into()))
    );
    assert_eq!(report["hosts"][2]["changes"], serde_json::json!(["config"]), "{report}");

    // A host whose sshd is down fails alone; --retry-failed then does only that host.
    lab.stop_sshd(1);
    let (out, report, _) =
        t.spore(&["deploy", &pb, "--yes", "--json", "--connect-timeout", "3"])?;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        results(&report),
        [("h1", "unchanged"), ("h2", "failed"), ("h3", "unchanged")]
            .map(|(h, r)| (h.into(), r.into()))
    );
    assert!(error_of(&report, "h2").contains("unreachable"), "{report}");
    lab.start_sshd(1)?;
    let (out, report, text) = t.spore(&["deploy", &pb, "--yes", "--json", "--retry-failed"])?;
    assert!(out.status.success(), "{text}");
    assert_eq!(results(&report), [("h2".to_string(), "unchanged".to_string())]);

    // A changed host key is refused (and not learned over the recorded one).
    let saved = lab.host_dir(0).join("saved-key");
    std::fs::copy(lab.host_dir(0).join("ssh_host_ed25519_key"), &saved)?;
    lab.change_host_key(0)?;
    let (out, report, _) = t.spore(&["deploy", &pb, "--yes", "--json"])?;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(results(&report)[0], ("h1".into(), "failed".into()));
    assert!(error_of(&report, "h1").contains("HOST KEY CHANGED"), "{report}");
    assert_eq!(std::fs::read_to_string(cloud.join("known_hosts"))?, known, "known_hosts kept");
    lab.stop_sshd(0);
    std::fs::copy(&saved, lab.host_dir(0).join("ssh_host_ed25519_key"))?;
    lab.start_sshd(0)?;

    // A host without room for the node fails alone, saying so, before anything is written.
    lab.small_disk(2, 40)?;
    let (out, report, _) = t.spore(&["deploy", &pb, "--yes", "--json", "--host", "h3"])?;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(results(&report), [("h3".to_string(), "failed".to_string())]);
    assert!(error_of(&report, "h3").contains("not enough disk space"), "{report}");
    assert_eq!(lab.files(2), Vec::<std::path::PathBuf>::new(), "nothing was written");
    lab.full_size_disk(2)?;

    // A node binary that never becomes healthy is rolled back; the old node keeps running.
    let installed = std::fs::read(lab.host_dir(1).join("opt/tau/bin/tau-node"))?;
    let (out, report, text) = t.spore(&[
        "deploy",
        &pb,
        "--yes",
        "--json",
        "--host",
        "h2",
        "--node-binary",
        "/bin/false",
        "--health-timeout",
        "6",
    ])?;
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(results(&report), [("h2".to_string(), "rolled-back".to_string())]);
    assert!(error_of(&report, "h2").contains("health check failed"), "{report}");
    assert!(
        std::fs::read(lab.host_dir(1).join("opt/tau/bin/tau-node"))? == installed,
        "the previous binary is back in place"
    );
    let (_, status, text) = t.spore(&["status", &pb, "--json", "--host", "h2"])?;
    assert_eq!(status[0]["healthy"], true, "the old node answers again: {text}");

    // No secret in anything Spore Drive printed or the nodes logged.
    let mut everything = t.0.clone();
    for i in 0..3 {
        for name in ["node.log", "supervisor.log"] {
            everything.extend(std::fs::read(lab.host_dir(i).join("opt/tau/logs").join(name))?);
        }
    }
    let haystack = String::from_utf8_lossy(&everything);
    let secrets = cloud.join("secrets");
    let swarm = std::fs::read_to_string(secrets.join("swarm.key"))?;
    let swarm_hex = swarm.lines().last().ok_or("empty swarm key")?;
    assert!(swarm_hex.len() >= 64 && !haystack.contains(swarm_hex), "the swarm key leaked");
    for key in ["operator.key", "hosts/h1/identity.key"] {
        let bytes = std::fs::read(secrets.join(key))?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!haystack.contains(&hex[hex.len() - 64..]), "{key} leaked");
    }
    let share = std::fs::read_to_string(secrets.join("hosts/h1/vault-share.yaml"))?;
    for line in share.lines().filter(|l| l.len() > 40) {
        let value = line.split_once(':').map(|(_, v)| v.trim()).unwrap_or(line);
        assert!(!haystack.contains(value), "the vault share leaked");
    }
    let client_key = std::fs::read_to_string(&lab.client_key)?;
    for line in client_key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!haystack.contains(line), "the SSH key leaked");
    }

    // destroy leaves no process and no file behind.
    let (out, _, text) = t.spore(&["destroy", &pb, "--yes"])?;
    assert!(out.status.success(), "{text}");
    for i in 0..3 {
        assert_eq!(lab.processes(i)?, Vec::<String>::new(), "host {i} still runs something");
        assert_eq!(lab.files(i), Vec::<std::path::PathBuf>::new(), "host {i} keeps files");
    }
    assert!(!profile.exists(), "the profile of a destroyed cloud is removed");
    Ok(())
}

/// The README's main command, on a playbook of its kind: the `local` transport runs the same
/// phases on this machine, one folder and one supervised node per host.
#[test]
fn spore_drive_local_transport_deploys_a_supervised_cloud_and_destroys_it() -> Result {
    let dir = tempfile::tempdir()?;
    // Loopback addresses of its own, so that other tests' clouds on 127.0.0.x never clash.
    let net = 20 + std::process::id() % 200;
    let hosts: String = (1..=3)
        .map(|i| format!("  - {{ name: n{i}, address: 127.0.{net}.{i}, shape: full }}\n"))
        .collect();
    let pb = dir.path().join("local.yaml");
    std::fs::write(
        &pb,
        format!(
            "cloud: {{ name: local, domain: local.tau, generated_domain: tau, secrets: secrets }}\n\
             transport: local\ninstall_dir: hosts\n\
             shapes:\n\
             \x20 full: {{ services: [tns, hoarder, vault, seer, substrate], ports: {{ p2p: 4101, http: 8180, dns: 5354 }}, drain: 0s }}\n\
             hosts:\n{hosts}"
        ),
    )?;
    let pb = pb.display().to_string();
    let mut t = Transcript::default();

    // A node built for another machine is refused before anything is written.
    let mut foreign = std::fs::read("/bin/true")?;
    let machine = if std::env::consts::ARCH == "aarch64" { 0x3eu16 } else { 0xb7 };
    foreign[18..20].copy_from_slice(&machine.to_le_bytes());
    let foreign_path = dir.path().join("tau-node-foreign");
    std::fs::write(&foreign_path, foreign)?;
    let (out, report, text) = t.spore(&[
        "deploy",
        &pb,
        "--json",
        "--host",
        "n1",
        "--node-binary",
        &foreign_path.display().to_string(),
    ])?;
    assert_eq!(out.status.code(), Some(1), "{text}");
    let error = error_of(&report, "n1");
    assert!(error.contains("is built for") && error.contains("but the host is"), "{error}");
    assert!(!dir.path().join("hosts/n1/bin").exists(), "nothing was written");

    let (out, report, text) = t.spore(&["deploy", &pb, "--json"])?;
    assert!(out.status.success(), "{text}");
    assert_eq!(
        results(&report),
        [("n1", "changed"), ("n2", "changed"), ("n3", "changed")]
            .map(|(h, r)| (h.into(), r.into()))
    );
    let healthy = |t: &mut Transcript| -> Result<bool> {
        let (_, status, _) = t.spore(&["status", &pb, "--json"])?;
        let hosts = status.as_array().ok_or("status is not a list")?;
        Ok(hosts.len() == 3 && hosts.iter().all(|h| h["healthy"] == true && h["peers"] == 2))
    };
    assert!(healthy(&mut t)?, "every node answers and sees the other two");

    // The supervisor starts a killed node again.
    let pid_file = dir.path().join("hosts/n2/run/node.pid");
    let pid: u32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
    tau_tests::harness::signal(pid, tau_tests::harness::Signal::SIGKILL);
    wait_for(Duration::from_secs(30), "the supervisor restarts n2's node", || {
        let now: u32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
        Ok((now != pid && healthy(&mut Transcript::default())?).then_some(()))
    })?;

    let (out, _, text) = t.spore(&["deploy", &pb])?;
    assert!(out.status.success() && text.contains("0 changed, 3 unchanged"), "{text}");

    let (out, _, text) = t.spore(&["destroy", &pb])?;
    assert!(out.status.success(), "{text}");
    let base = dir.path().join("hosts");
    let left: Vec<_> = std::fs::read_dir(&base)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "destroy leaves {left:?}");
    // The supervisor and the node run in their host's folder: nothing may be left there.
    let running: Vec<String> = std::fs::read_dir("/proc")?
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(&base))
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .collect();
    assert!(running.is_empty(), "processes left: {running:?}");
    assert!(dir.path().join("secrets/swarm.key").exists(), "destroy keeps the cloud's secrets");
    Ok(())
}
