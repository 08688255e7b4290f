//! `spore-drive`: provision hosts and install the bundled Tau node.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use spore_drive::Playbook;
use spore_drive::deploy::{self, Bundle, HostReport, Options, Result_, Run};
use spore_drive::playbook::Transport;
use spore_drive::progress::Progress;

/// Spore Drive: provision hosts and install the bundled Tau node, a cloud in minutes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options of every command that works on hosts.
#[derive(Debug, clap::Args)]
struct Common {
    /// The node binary to install [default: the `tau-node` beside `spore-drive`].
    #[arg(long)]
    node_binary: Option<PathBuf>,
    /// Hosts worked on at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
    concurrency: u16,
    /// Only these hosts (repeat, or separate with commas).
    #[arg(long, value_delimiter = ',')]
    host: Vec<String>,
    /// Seconds to connect to a host (TCP, key exchange and login).
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
    /// Seconds each command on a host may take (the binary's upload gets ten times as long).
    #[arg(long, default_value_t = 60)]
    command_timeout: u64,
    /// Print JSON on stdout (no progress lines).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Scaffold DIR/playbook.yaml and generate the cloud's secrets in DIR/secrets (swarm key,
    /// operator key, one identity per host, the vault key set and shares), each file mode 0600.
    ///
    /// Never overwrites a playbook or a secret.
    Init {
        /// The folder.
        dir: PathBuf,
        /// The cloud's name.
        #[arg(long, default_value = "my-cloud")]
        name: String,
        /// How many hosts to start from.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=250))]
        hosts: u16,
        /// How hosts are reached.
        #[arg(long, value_enum, default_value_t = TransportArg::Ssh)]
        transport: TransportArg,
        /// Print JSON (the files written, never their contents).
        #[arg(long)]
        json: bool,
    },
    /// Show, per host, what a deploy would change (binary, config, secrets, service); changes
    /// nothing on any host.
    Plan {
        /// The playbook.
        playbook: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Install or update the node on every host: upload the binary when it differs, write
    /// config and secrets, (re)start the node, wait until it answers and sees its peers, roll a
    /// host back when it does not. Then publish the vault key set and write the cloud profile
    /// (`cloud.yaml`, beside the secrets folder).
    ///
    /// Exit status: 0 when every host succeeded, 1 when any failed, 2 when nothing could start.
    ///
    /// When the SSH user is not root, commands run with sudo: without a password (`sudo -n`),
    /// or with the one in the environment variable SPORE_DRIVE_SUDO_PASSWORD, given to sudo on
    /// stdin and never on a command line.
    Deploy {
        /// The playbook.
        playbook: PathBuf,
        /// Do not ask before changing hosts over SSH.
        #[arg(long)]
        yes: bool,
        /// Only the hosts that failed (or were rolled back) in the last deploy.
        #[arg(long, conflicts_with = "host")]
        retry_failed: bool,
        /// Seconds a started node has to answer and see its peers before it is rolled back.
        #[arg(long, default_value_t = 30)]
        health_timeout: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Each host: reachable, node version, running, answering, peers seen.
    Status {
        /// The playbook.
        playbook: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Stop the node on every host and remove everything Spore Drive put there (the secrets
    /// folder here is kept).
    Destroy {
        /// The playbook.
        playbook: PathBuf,
        /// Do not ask first.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Check a playbook and print it as Spore Drive reads it (defaults filled in).
    Check {
        /// The playbook.
        playbook: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TransportArg {
    Ssh,
    Local,
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spore-drive: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Plan { playbook, common } => runtime()?.block_on(plan(&playbook, common)),
        Command::Deploy { playbook, yes, retry_failed, health_timeout, common } => {
            runtime()?.block_on(deploy(&playbook, yes, retry_failed, health_timeout, common))
        }
        Command::Status { playbook, common } => runtime()?.block_on(status(&playbook, common)),
        Command::Destroy { playbook, yes, common } => {
            runtime()?.block_on(destroy(&playbook, yes, common))
        }
        Command::Init { dir, name, hosts, transport, json } => {
            if !tau_proto::tns::keys::is_name(&name) {
                bail!("cloud name `{name}`: 1-63 of a-z, 0-9 and -");
            }
            let transport = match transport {
                TransportArg::Ssh => Transport::Ssh,
                TransportArg::Local => Transport::Local,
            };
            let (playbook, made) =
                spore_drive::init::init(&dir, &name, usize::from(hosts), transport)?;
            if json {
                let report = serde_json::json!({
                    "playbook": playbook,
                    "created": made.created,
                    "kept": made.kept,
                });
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("wrote {}", playbook.display());
            for path in &made.created {
                println!("created {} (mode 0600)", path.display());
            }
            println!("next: edit the hosts, then `spore-drive deploy {}`", playbook.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { playbook, json } => {
            let loaded = Playbook::load(&playbook)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&loaded)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{}: cloud {}, {} hosts over {:?}",
                playbook.display(),
                loaded.cloud.name,
                loaded.hosts.len(),
                loaded.transport
            );
            for host in &loaded.hosts {
                let services =
                    loaded.shape_of(host).map(|s| s.services.join(",")).unwrap_or_default();
                println!("  {:<16} {:<16} {services}", host.name, host.address.to_string());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")
}

/// The `tau-node` beside this program.
fn default_node_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find spore-drive's own path")?;
    let beside = exe.with_file_name("tau-node");
    if !beside.exists() {
        bail!(
            "no tau-node beside {} to install: build it (cargo build --release -p tau-node) or \
             pass --node-binary PATH",
            exe.display()
        );
    }
    Ok(beside)
}

/// The run over a playbook's hosts (no node binary needed: status, destroy).
fn prepare_run(
    path: &Path,
    common: &Common,
    only: Option<BTreeSet<String>>,
) -> anyhow::Result<Run> {
    let playbook = Playbook::load(path)?;
    for name in only.iter().flatten() {
        if !playbook.hosts.iter().any(|h| &h.name == name) {
            bail!("{}: no host named `{name}`", path.display());
        }
    }
    let options = Options {
        concurrency: usize::from(common.concurrency),
        connect_timeout: Duration::from_secs(common.connect_timeout),
        command_timeout: Duration::from_secs(common.command_timeout),
        only,
        sudo_password: std::env::var("SPORE_DRIVE_SUDO_PASSWORD").ok().filter(|p| !p.is_empty()),
        ..Options::default()
    };
    Run::new(playbook, options)
}

/// The run and the node binary it installs.
fn prepare(
    path: &Path,
    common: &Common,
    only: Option<BTreeSet<String>>,
) -> anyhow::Result<(Run, Bundle)> {
    let run = prepare_run(path, common, only)?;
    let node_binary = match &common.node_binary {
        Some(path) => path.clone(),
        None => default_node_binary()?,
    };
    Ok((run, Bundle::load(&node_binary)?))
}

fn selection(common: &Common) -> Option<BTreeSet<String>> {
    (!common.host.is_empty()).then(|| common.host.iter().cloned().collect())
}

async fn plan(path: &Path, common: Common) -> anyhow::Result<ExitCode> {
    let (run, bundle) = prepare(path, &common, selection(&common))?;
    let plans = run.each(|d| run.plan_host(d, &bundle)).await;
    let failed = plans.iter().any(|p| p.error.is_some());
    if common.json {
        println!("{}", serde_json::to_string_pretty(&plans)?);
    } else {
        println!(
            "plan for cloud {} ({} hosts, node binary sha256 {}…, {} MiB, {}):",
            run.playbook().cloud.name,
            plans.len(),
            &bundle.sha256[..12],
            bundle.size() >> 20,
            bundle.arch
        );
        for plan in &plans {
            if let Some(e) = &plan.error {
                println!("  {}: cannot plan: {e}", plan.host);
                continue;
            }
            if !plan.changes_anything() {
                println!("  {}: no change", plan.host);
                continue;
            }
            println!("  {} ({}, {:?}):", plan.host, plan.arch, plan.service);
            println!("    binary   {}", plan.binary);
            for (file, action) in &plan.files {
                if *action != "unchanged" {
                    println!("    {file:<24} {action}");
                }
            }
            println!("    node     {}", plan.node);
        }
        let changing = plans.iter().filter(|p| p.changes_anything() && p.error.is_none()).count();
        println!("{changing} of {} hosts would change; nothing was changed", plans.len());
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, Write};
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

async fn deploy(
    path: &Path,
    yes: bool,
    retry_failed: bool,
    health_timeout: u64,
    common: Common,
) -> anyhow::Result<ExitCode> {
    let playbook = Playbook::load(path)?;
    let only = if retry_failed {
        let cloud_dir = playbook.secrets_dir().parent().map(Path::to_path_buf).unwrap_or_default();
        let failed = deploy::failed_last_time(&cloud_dir.join("last-deploy.json"))?;
        if failed.is_empty() {
            println!("no host failed in the last deploy: nothing to retry");
            return Ok(ExitCode::SUCCESS);
        }
        Some(failed)
    } else {
        selection(&common)
    };
    if playbook.transport == Transport::Ssh && !yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "deploying changes hosts over SSH: pass --yes (no terminal to ask on); \
                 `spore-drive plan {}` shows what would change",
                path.display()
            );
        }
        let question = format!(
            "deploy cloud {} to {} hosts over SSH? (`spore-drive plan` shows what changes)",
            playbook.cloud.name,
            only.as_ref().map(BTreeSet::len).unwrap_or(playbook.hosts.len())
        );
        if !confirm(&question)? {
            eprintln!("nothing was changed");
            return Ok(ExitCode::from(1));
        }
    }
    let (mut run, bundle) = prepare(path, &common, only)?;
    run.set_health_timeout(Duration::from_secs(health_timeout));
    let started = std::time::Instant::now();
    let names: Vec<String> = run.selected().iter().map(|d| d.host.name.clone()).collect();
    let progress =
        Progress::new(common.json, &names.iter().map(String::as_str).collect::<Vec<_>>());
    let reports: Vec<HostReport> = run
        .each(|d| {
            let line = progress.host(&d.host.name);
            let run = &run;
            let bundle = &bundle;
            async move { run.deploy_host(d, bundle, &line).await }
        })
        .await;
    deploy::record(&run.state_path(), &reports)?;
    let ok = |r: &HostReport| matches!(r.result, Result_::Changed | Result_::Unchanged);
    let mut problems = Vec::new();
    let published = if reports.iter().any(ok) {
        match run.publish_vault().await {
            Ok(n) => n,
            Err(e) => {
                problems.push(format!("the vault key set was not published: {e:#}"));
                0
            }
        }
    } else {
        0
    };
    let profile = run.write_profile()?;
    let seconds = started.elapsed().as_secs_f64();
    let all_ok = reports.iter().all(ok) && problems.is_empty();
    if common.json {
        let report = serde_json::json!({
            "cloud": run.playbook().cloud.name,
            "ok": all_ok,
            "seconds": seconds,
            "hosts": reports,
            "vault_records_published": published,
            "problems": problems,
            "profile": profile,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("\n{}", deploy::recap(&reports));
        let count = |r: Result_| reports.iter().filter(|x| x.result == r).count();
        println!(
            "{} changed, {} unchanged, {} failed, {} rolled back in {seconds:.1}s",
            count(Result_::Changed),
            count(Result_::Unchanged),
            count(Result_::Failed),
            count(Result_::RolledBack)
        );
        if reports.iter().all(|r| r.result == Result_::Unchanged) {
            println!("nothing changed: every host already runs this node and config");
        }
        if published > 0 {
            println!("published the vault key set and registrars ({published} TNS records)");
        }
        for problem in &problems {
            println!("problem: {problem}");
        }
        if !reports.iter().all(ok) {
            println!(
                "retry the failed hosts with `spore-drive deploy {} --retry-failed`",
                path.display()
            );
        }
        println!("cloud profile: {}", profile.display());
        println!("inspect it with:");
        // The very binaries used here, so that the commands work as printed.
        let node = bundle.path.display();
        let spore = std::env::args().next().unwrap_or_else(|| "spore-drive".into());
        println!("  {node} status --cloud {}", profile.display());
        println!("  {node} nodes  --cloud {}", profile.display());
        println!("  {spore} status {}", path.display());
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn status(path: &Path, common: Common) -> anyhow::Result<ExitCode> {
    let run = prepare_run(path, &common, selection(&common))?;
    let statuses = run.each(|d| run.status_host(d)).await;
    if common.json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
    } else {
        let width = statuses.iter().map(|s| s.host.len()).max().unwrap_or(4).max(4);
        println!(
            "{:<width$}  {:<15}  {:<9}  {:<16}  {:<7}  {:<8}  {:>5}",
            "host", "address", "reachable", "version", "running", "answers", "peers"
        );
        for s in &statuses {
            let yes_no = |b: bool| if b { "yes" } else { "no" };
            println!(
                "{:<width$}  {:<15}  {:<9}  {:<16}  {:<7}  {:<8}  {:>5}{}",
                s.host,
                s.address,
                yes_no(s.reachable),
                s.version.as_deref().unwrap_or("-"),
                yes_no(s.running),
                yes_no(s.healthy),
                s.peers.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                s.error.as_deref().map(|e| format!("  {e}")).unwrap_or_default()
            );
        }
    }
    let healthy = statuses.iter().all(|s| s.healthy);
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn destroy(path: &Path, yes: bool, common: Common) -> anyhow::Result<ExitCode> {
    let run = prepare_run(path, &common, selection(&common))?;
    if !yes && run.playbook().transport == Transport::Ssh {
        if !std::io::stdin().is_terminal() {
            bail!(
                "destroy stops and removes the node on every host: pass --yes (no terminal to ask on)"
            );
        }
        if !confirm(&format!(
            "stop and remove the node on {} hosts of cloud {}?",
            run.selected().len(),
            run.playbook().cloud.name
        ))? {
            eprintln!("nothing was changed");
            return Ok(ExitCode::from(1));
        }
    }
    let names: Vec<String> = run.selected().iter().map(|d| d.host.name.clone()).collect();
    let progress =
        Progress::new(common.json, &names.iter().map(String::as_str).collect::<Vec<_>>());
    let reports = run
        .each(|d| {
            let line = progress.host(&d.host.name);
            let run = &run;
            async move { run.destroy_host(d, &line).await }
        })
        .await;
    let all_ok = reports.iter().all(|r| r.error.is_none());
    if all_ok && run.selected().len() == run.playbook().hosts.len() {
        for file in [run.state_path(), run.cloud_dir().join("cloud.yaml")] {
            let _ = std::fs::remove_file(file);
        }
        if run.playbook().transport == Transport::Local {
            // The hosts' folders are gone; their parent goes too when nothing else is in it.
            let _ = std::fs::remove_dir(run.playbook().resolve(&run.playbook().install_dir));
        }
    }
    if common.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"ok": all_ok, "hosts": reports}))?
        );
    } else {
        for r in &reports {
            match &r.error {
                None => println!("{}: node stopped and removed", r.host),
                Some(e) => println!("{}: FAILED: {e}", r.host),
            }
        }
        if all_ok {
            println!("the secrets in {} are kept", run.playbook().secrets_dir().display());
        }
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
