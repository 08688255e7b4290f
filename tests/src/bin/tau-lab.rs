//! `tau-lab`: SSH test hosts on this machine, to try Spore Drive by hand (`scripts/lab` runs it).
//!
//! Makes the hosts of `playbooks/lab.yaml` (10.213.250.10 and up, one network namespace, sshd
//! and `/opt` each), prints them, and keeps them until Ctrl-C or SIGTERM, then removes them and
//! everything that ran in them. Needs root.

use std::path::PathBuf;
use std::process::ExitCode;

use nix::sys::signal::{SigSet, Signal};
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
removed. Deploy to them with: spore-drive deploy playbooks/lab.yaml";

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

fn run() -> Result {
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
