//! `tau-lab`: SSH test hosts on this machine, to try Spore Drive by hand (`scripts/lab` runs it),
//! and a git host on loopback to try git-operated projects (`tau-lab git-host`).
//!
//! Makes the hosts of `playbooks/lab.yaml` (10.213.250.10 and up, one network namespace, sshd
//! and `/opt` each), prints them, and keeps them until Ctrl-C or SIGTERM, then removes them and
//! everything that ran in them. Needs root.

use std::path::PathBuf;
use std::process::ExitCode;

use nix::sys::signal::{SigSet, Signal};
use tau_tests::git_host::GitHost;
use tau_tests::harness::Result;
use tau_tests::lab::Lab;
use tau_tests::ssh_lab::SshLab;

const HELP: &str = "\
tau-lab: SSH test hosts on this machine (network namespaces, each with its own sshd and /opt)

usage: tau-lab [--hosts N] [--subnet S] [--dir DIR]

  --hosts N    how many hosts (default 5, as in playbooks/lab.yaml; at most 200)
  --subnet S   the hosts get 10.213.S.10, .11, ... (default 250; the tests use 0 to 249)
  --dir DIR    the lab's folder: the client key id_ed25519 and one folder per host
               (default target/spore/lab/hosts, where playbooks/lab.yaml looks; removed on exit)

The hosts stay until Ctrl-C or SIGTERM; then everything that ran in them is killed and they are
removed. Deploy to them with: spore-drive deploy playbooks/lab.yaml

A git host on loopback (sshd, git-shell, bare repositories, signed push webhooks):

usage: tau-lab git-host --dir DIR [--repos config,code]
         starts sshd on a free port of 127.0.0.1 with bare repositories DIR/repos/<name>.git
         (branch main), a developer key DIR/developer that may push, and DIR/known_hosts;
         prints each repository's ssh URL; runs until Ctrl-C (DIR is kept)
       tau-lab git-host-key --dir DIR 'ssh-ed25519 AAAA... comment'
         lets that key fetch (read-only, as a deploy key)
       tau-lab git-host-webhook --dir DIR --repo NAME --url URL --secret-file FILE
         makes every push to NAME post a push webhook to URL, signed (X-Hub-Signature-256)
         with the secret in FILE, as GitHub does
       tau-lab git-host-push --dir DIR --work FOLDER --repo NAME
         commits everything in FOLDER and pushes it to NAME's main, as the developer";

struct Args {
    hosts: usize,
    subnet: u8,
    dir: PathBuf,
}

fn parse() -> Result<Option<Args>> {
    let mut args = Args {
        hosts: 5,
        subnet: 250,
        dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/spore/lab/hosts"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--hosts" => {
                args.hosts = value("--hosts")?.parse().map_err(|e| format!("--hosts: {e}"))?
            }
            "--subnet" => {
                args.subnet = value("--subnet")?.parse().map_err(|e| format!("--subnet: {e}"))?
            }
            "--dir" => args.dir = PathBuf::from(value("--dir")?),
            other => return Err(format!("unknown argument {other:?} (see --help)").into()),
        }
    }
    if args.hosts == 0 || args.hosts > 200 {
        return Err("--hosts must be between 1 and 200".into());
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tau-lab: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The value after `name` in `args`.
fn flag(args: &[String], name: &str) -> Result<String> {
    let at = args.iter().position(|a| a == name).ok_or(format!("{name} is needed (see --help)"))?;
    Ok(args.get(at + 1).ok_or(format!("{name} needs a value"))?.clone())
}

/// `tau-lab git-host...`: `None` when the arguments are not a git host command.
fn git_host(args: &[String]) -> Option<Result> {
    let command = args.first()?.clone();
    let run = || -> Result {
        let dir = PathBuf::from(flag(args, "--dir")?);
        match command.as_str() {
            "git-host" => {
                let repos = flag(args, "--repos").unwrap_or_else(|_| "config,code".into());
                std::fs::create_dir_all(&dir)?;
                let dir = std::fs::canonicalize(&dir)?;
                let mut signals = SigSet::empty();
                for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
                    signals.add(signal);
                }
                signals.thread_block()?;
                let host = GitHost::start(&dir)?;
                std::fs::write(dir.join("known_hosts"), host.known_hosts_line()?)?;
                for name in repos.split(',').filter(|n| !n.is_empty()) {
                    println!("repository {name}: {}", host.create_repo(name)?);
                }
                println!("known_hosts: {}", dir.join("known_hosts").display());
                println!("developer key (may push): {}", host.developer_key.display());
                println!("the git host stays until Ctrl-C");
                let signal = signals.wait()?;
                eprintln!("tau-lab: {signal:?}: stopping the git host");
                drop(host);
                Ok(())
            }
            "git-host-key" => {
                let key =
                    args.last().filter(|k| k.starts_with("ssh-")).ok_or("give the key line")?;
                GitHost::open(&dir)?.add_deploy_key(key)
            }
            "git-host-webhook" => {
                let secret = std::fs::read(flag(args, "--secret-file")?)?;
                let hook = std::env::current_exe()?.with_file_name("tau-git-hook");
                if !hook.exists() {
                    return Err(format!(
                        "{} is missing: build it (scripts/lab does)",
                        hook.display()
                    )
                    .into());
                }
                let repo = flag(args, "--repo")?;
                let url = flag(args, "--url")?;
                GitHost::open(&dir)?.set_webhook(
                    &repo,
                    &url,
                    String::from_utf8_lossy(&secret).trim().as_bytes(),
                    &hook,
                )
            }
            "git-host-push" => {
                let host = GitHost::open(&dir)?;
                let work = PathBuf::from(flag(args, "--work")?);
                let repo = flag(args, "--repo")?;
                if !work.join(".git").exists() {
                    tau_tests::git_host::git(None, &["init", "-q", "-b", "main"], Some(&work))?;
                    let url = format!(
                        "ssh://root@127.0.0.1:{}{}",
                        host.port,
                        dir.join("repos").join(format!("{repo}.git")).display()
                    );
                    host.git(&work, &["remote", "add", "origin", &url])?;
                }
                host.git(&work, &["add", "-A"])?;
                let _ = host.git(&work, &["commit", "-q", "-m", "tau-lab git-host-push"]);
                print!("{}", host.git(&work, &["push", "origin", "main"])?);
                Ok(())
            }
            other => Err(format!("unknown command {other}").into()),
        }
    };
    command.starts_with("git-host").then(run)
}

fn run() -> Result {
    let all: Vec<String> = std::env::args().skip(1).collect();
    if let Some(result) = git_host(&all) {
        return result;
    }
    let Some(args) = parse()? else {
        println!("{HELP}");
        return Ok(());
    };
    // Block the signals before any thread exists, so that only sigwait below receives them.
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(signal);
    }
    signals.thread_block()?;
    eprintln!("tau-lab: making {} hosts in 10.213.{}.0/24", args.hosts, args.subnet);
    let lab = Lab::with_subnet(args.hosts, args.subnet, 90_000 + u32::from(args.subnet))?;
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let lab = SshLab::from_lab(lab, &dir, false)?;
    for i in 0..args.hosts {
        println!(
            "host {}: {} (sshd on port 22, its /opt in {})",
            i + 1,
            lab.ip(i),
            lab.host_dir(i).join("opt").display()
        );
    }
    println!("login: root with {}", lab.client_key.display());
    println!("the lab stays until Ctrl-C");
    let signal = signals.wait()?;
    eprintln!("tau-lab: {signal:?}: removing the lab");
    drop(lab);
    Ok(())
}
