//! `tau-spore-bench`: Spore Drive beside Ansible, in one run, on a lab of 10 SSH hosts
//! (network namespaces on this machine, each with Debian's sshd and its own `/opt`).
//!
//! `tau-spore-bench --ansible PATH/ansible-playbook` (`scripts/bench spore` installs ansible-core
//! from PyPI and runs it; it needs root and `spore-drive` and `tau-node` beside it).
//!
//! Both tools do the same job on the same hosts from the same release `tau-node`: copy the
//! binary, write the config and secrets, start the node and wait for its port; then again with
//! nothing to change. Ansible gets its fastest honest set-up: 10 forks, pipelining, no fact
//! gathering, SSH connection reuse. Spore Drive does more than that (facts, a sha256-checked
//! upload, health through the node's admin protocol and its peers), which it pays for in its
//! own column. Last, a 3-host cloud from scratch, as a newcomer's first deploy would be.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use tau_proto::bench::Figure;
use tau_tests::bench::timed;
use tau_tests::harness::Result;
use tau_tests::lab::Lab;
use tau_tests::ssh_lab::SshLab;

const HOSTS: usize = 10;
/// The tests use subnets 0 to 249, `tau-lab` 250 by default.
const SUBNET: u8 = 251;

/// As few tasks as do the job: Ansible pays a module run per task per host.
const ANSIBLE_PLAYBOOK: &str = r#"# The same job as spore-drive deploy: copy the binary, write the config, start, wait for the port.
- hosts: tau
  gather_facts: false
  tasks:
    - name: the binary's folder
      ansible.builtin.file: { path: /opt/tau/bin, state: directory, mode: "0700" }
    - name: node binary
      ansible.builtin.copy: { src: "{{ node_binary }}", dest: /opt/tau/bin/tau-node, mode: "0755" }
    - name: config and secrets
      ansible.builtin.copy: { src: "{{ files }}/{{ inventory_hostname }}/", dest: /opt/tau/, mode: preserve }
    - name: start the node unless it runs
      ansible.builtin.shell: |
        cd /opt/tau
        if [ -f run/node.pid ] && kill -0 "$(cat run/node.pid)" 2>/dev/null; then echo running; exit 0; fi
        mkdir -p data logs run
        setsid ./bin/tau-node run --config node.yaml >>logs/node.log 2>&1 </dev/null &
        echo $! > run/node.pid
        echo started
      register: start
      changed_when: "'started' in start.stdout"
    - name: wait for the p2p port
      ansible.builtin.wait_for: { host: "{{ ansible_host }}", port: 4001, timeout: 60 }
"#;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tau-spore-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A playbook for the first `count` hosts of the lab: 3 with every service, the rest with
/// hoarder and substrate (as `playbooks/lab.yaml`).
fn playbook(lab: &SshLab, dir: &Path, count: usize) -> Result<PathBuf> {
    let mut text = format!(
        "cloud: {{ name: bench, domain: bench.tau, generated_domain: g.bench.tau, secrets: secrets }}\n\
         transport: ssh\nhost_keys: accept-new\nknown_hosts: known_hosts\n\
         ssh: {{ user: root, key: {} }}\ninstall_dir: /opt/tau\n\
         shapes:\n\
         \x20 full: {{ services: [tns, hoarder, vault, seer, substrate] }}\n\
         \x20 edge: {{ services: [hoarder, substrate] }}\nhosts:\n",
        lab.client_key.display()
    );
    for i in 0..count {
        let shape = if i < 3 { "full" } else { "edge" };
        let _ = writeln!(text, "  - {{ name: h{i}, address: {}, shape: {shape} }}", lab.ip(i));
    }
    std::fs::create_dir_all(dir)?;
    let path = dir.join("playbook.yaml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Deploys with Spore Drive and checks that every host ended as `expect`.
fn spore_deploy(spore: &Path, playbook: &Path, expect: &str) -> Result<Duration> {
    let (out, took) = timed(
        "spore-drive deploy",
        Command::new(spore).arg("deploy").arg(playbook).args([
            "--yes",
            "--json",
            "--concurrency",
            "10",
        ]),
    )?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let hosts = report["hosts"].as_array().ok_or("spore-drive printed no hosts")?;
    if let Some(host) = hosts.iter().find(|h| h["result"] != expect) {
        return Err(
            format!("spore-drive: {} is {}, not {expect}", host["host"], host["result"]).into()
        );
    }
    Ok(took)
}

fn spore_destroy(spore: &Path, playbook: &Path) -> Result {
    timed("spore-drive destroy", Command::new(spore).arg("destroy").arg(playbook).arg("--yes"))?;
    Ok(())
}

/// Copies the tree at `from` into `to`, keeping file modes.
fn copy_tree(from: &Path, to: &Path) -> Result {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Runs the Ansible playbook once; returns how long it took and how many tasks changed.
fn ansible(ansible_playbook: &Path, dir: &Path) -> Result<(Duration, u64)> {
    let (out, took) = timed(
        "ansible-playbook",
        Command::new(ansible_playbook)
            .current_dir(dir)
            .env("ANSIBLE_CONFIG", dir.join("ansible.cfg"))
            .args(["-i", "inventory.ini", "deploy.yml"]),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let changed = text
        .lines()
        .filter_map(|l| l.split("changed=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Ok((took, changed))
}

fn run() -> Result {
    let mut args = std::env::args().skip(1);
    let ansible_playbook = match (args.next().as_deref(), args.next()) {
        // Absolute: Ansible runs in its own folder.
        (Some("--ansible"), Some(path)) => std::fs::canonicalize(&path)
            .map_err(|e| format!("--ansible {path}: {e} (scripts/bench spore installs it)"))?,
        _ => return Err("usage: tau-spore-bench --ansible PATH/ansible-playbook".into()),
    };
    let bin_dir =
        std::env::current_exe()?.parent().ok_or("no folder for this binary")?.to_path_buf();
    let spore = bin_dir.join("spore-drive");
    let node = bin_dir.join("tau-node");
    for path in [&spore, &node] {
        if !path.exists() {
            return Err(format!(
                "{} is missing (scripts/bench builds and installs it)",
                path.display()
            )
            .into());
        }
    }
    let ansible_version = Command::new(&ansible_playbook).arg("--version").output()?;
    let ansible_version = String::from_utf8_lossy(&ansible_version.stdout);
    let ansible_version = ansible_version.lines().next().unwrap_or("?").trim().to_string();

    let work = std::env::temp_dir().join(format!("tau-spore-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let result = bench(&work, &spore, &node, &ansible_playbook, &ansible_version);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn bench(work: &Path, spore: &Path, node: &Path, ansible_playbook: &Path, version: &str) -> Result {
    let size = std::fs::metadata(node)?.len();
    println!(
        "Spore Drive beside Ansible: {HOSTS} SSH hosts (network namespaces, sshd each), \
         tau-node {:.0} MB, {} CPUs",
        size as f64 / 1e6,
        std::thread::available_parallelism()?.get()
    );
    eprintln!("spore bench: making {HOSTS} SSH hosts");
    let lab = SshLab::from_lab(
        Lab::with_subnet(HOSTS, SUBNET, 90_000 + u32::from(SUBNET))?,
        &work.join("lab"),
        false,
    )?;

    // Spore Drive: from scratch, then with nothing to change.
    eprintln!("spore bench: Spore Drive, from scratch");
    let pb = playbook(&lab, &work.join("spore"), HOSTS)?;
    let spore_scratch = spore_deploy(spore, &pb, "changed")?;
    eprintln!("spore bench: Spore Drive, nothing changed");
    let spore_again = spore_deploy(spore, &pb, "unchanged")?;
    // Ansible installs exactly the files Spore Drive wrote.
    let files = work.join("ansible/files");
    for i in 0..HOSTS {
        let base = lab.host_dir(i).join("opt/tau");
        let to = files.join(format!("h{i}"));
        std::fs::create_dir_all(&to)?;
        std::fs::copy(base.join("node.yaml"), to.join("node.yaml"))?;
        copy_tree(&base.join("secrets"), &to.join("secrets"))?;
    }
    spore_destroy(spore, &pb)?;
    for i in 0..HOSTS {
        lab.wipe(i)?;
    }

    // Ansible: the same, with its fastest honest set-up.
    let dir = work.join("ansible");
    let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("no python3 for Ansible's modules on the hosts")?;
    let mut inventory = String::from("[tau]\n");
    for i in 0..HOSTS {
        let _ = writeln!(inventory, "h{i} ansible_host={}", lab.ip(i));
    }
    let _ = write!(
        inventory,
        "[tau:vars]\nansible_user=root\nansible_ssh_private_key_file={key}\n\
         ansible_python_interpreter={python}\nnode_binary={node}\nfiles={files}\n",
        key = lab.client_key.display(),
        node = node.display(),
        files = files.display()
    );
    std::fs::write(dir.join("inventory.ini"), inventory)?;
    std::fs::write(
        dir.join("ansible.cfg"),
        format!(
            "[defaults]\nforks = {HOSTS}\nhost_key_checking = True\nretry_files_enabled = False\n\
             deprecation_warnings = False\n\
             [ssh_connection]\npipelining = True\n\
             ssh_args = -o ControlMaster=auto -o ControlPersist=60s \
             -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={}\n",
            dir.join("known_hosts").display()
        ),
    )?;
    std::fs::write(dir.join("deploy.yml"), ANSIBLE_PLAYBOOK)?;
    eprintln!("spore bench: Ansible, from scratch");
    let (ansible_scratch, changed) = ansible(ansible_playbook, &dir)?;
    if changed == 0 {
        return Err("Ansible's first run changed nothing".into());
    }
    eprintln!("spore bench: Ansible, nothing changed");
    let (ansible_again, changed) = ansible(ansible_playbook, &dir)?;
    if changed != 0 {
        return Err(format!("Ansible's second run changed {changed} tasks").into());
    }
    for i in 0..HOSTS {
        lab.wipe(i)?;
    }

    // A newcomer's first cloud: 3 hosts from scratch.
    eprintln!("spore bench: Spore Drive, 3 hosts from scratch");
    let pb3 = playbook(&lab, &work.join("spore3"), 3)?;
    let three = spore_deploy(spore, &pb3, "changed")?;
    spore_destroy(spore, &pb3)?;

    println!("  ({version}: {HOSTS} forks, pipelining, no fact gathering, SSH connection reuse)");
    println!("{:>32} {:>12} {:>12} {:>10}", "", "Spore Drive", "Ansible", "ratio");
    for (name, ours, theirs, target, times) in [
        ("10 hosts, from scratch", spore_scratch, ansible_scratch, "target >= 3x", 3.0),
        ("10 hosts, nothing changed", spore_again, ansible_again, "target >= 5x", 5.0),
    ] {
        let faster = theirs.as_secs_f64() / ours.as_secs_f64();
        println!(
            "  {name:<30} {:>10.2} s {:>10.2} s {:>8.1}x   ({target})",
            ours.as_secs_f64(),
            theirs.as_secs_f64(),
            faster
        );
        Figure::new("spore", &format!("deploy, {name}"), ours.as_secs_f64(), "s")
            .beside(version, theirs.as_secs_f64())
            .target(&format!("Ansible's time / ours >= {times}"), faster >= times)
            .record();
    }
    println!("  {:<30} {:>10.2} s   (target < 20 s)", "3 hosts, from scratch", three.as_secs_f64());
    Figure::new("spore", "deploy, 3 hosts, from scratch", three.as_secs_f64(), "s")
        .target("< 20 s", three < Duration::from_secs(20))
        .record();
    Ok(())
}
