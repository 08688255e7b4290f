//! One module per subcommand; each is a clap `Args` struct with `run(self)`, returning the exit
//! code. What several share (the options of commands that work on hosts, preparing a run,
//! asking before a change) is here.

mod check;
mod deploy;
mod destroy;
mod init;
mod plan;
mod remove;
mod status;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use spore_drive::Playbook;
use spore_drive::deploy::{Bundle, Options, Run};

/// One variant per subcommand; each variant's doc comment is its help text.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    Init(init::Init),
    Plan(plan::Plan),
    Deploy(deploy::Deploy),
    Status(status::Status),
    Destroy(destroy::Destroy),
    Remove(remove::Remove),
    Check(check::Check),
}

/// Runs a subcommand; the ones that work on hosts get a tokio runtime.
pub(crate) fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Init(cmd) => cmd.run(),
        Command::Check(cmd) => cmd.run(),
        Command::Plan(cmd) => runtime()?.block_on(cmd.run()),
        Command::Deploy(cmd) => runtime()?.block_on(cmd.run()),
        Command::Status(cmd) => runtime()?.block_on(cmd.run()),
        Command::Destroy(cmd) => runtime()?.block_on(cmd.run()),
        Command::Remove(cmd) => runtime()?.block_on(cmd.run()),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")
}

/// Options of every command that works on hosts.
#[derive(Debug, clap::Args)]
pub(crate) struct Common {
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
    pub(crate) json: bool,
}

impl Common {
    /// The hosts named with `--host`, if any.
    fn selection(&self) -> Option<BTreeSet<String>> {
        (!self.host.is_empty()).then(|| self.host.iter().cloned().collect())
    }

    /// The run over a playbook's hosts (no node binary needed: status, destroy).
    fn prepare_run(&self, path: &Path, only: Option<BTreeSet<String>>) -> anyhow::Result<Run> {
        self.prepare_run_leaving(path, only, &[])
    }

    /// [`Common::prepare_run`], removing `leaving` too.
    fn prepare_run_leaving(
        &self,
        path: &Path,
        only: Option<BTreeSet<String>>,
        leaving: &[spore_drive::playbook::Host],
    ) -> anyhow::Result<Run> {
        let playbook = Playbook::load(path)?;
        self.run_of(path, playbook, only, leaving)
    }

    /// The run over `playbook` (loaded from `path`), removing `leaving` too.
    fn run_of(
        &self,
        path: &Path,
        playbook: Playbook,
        only: Option<BTreeSet<String>>,
        leaving: &[spore_drive::playbook::Host],
    ) -> anyhow::Result<Run> {
        for name in only.iter().flatten() {
            if !playbook.hosts.iter().any(|h| &h.name == name) {
                bail!("{}: no host named `{name}`", path.display());
            }
        }
        let options = Options {
            concurrency: usize::from(self.concurrency),
            connect_timeout: Duration::from_secs(self.connect_timeout),
            command_timeout: Duration::from_secs(self.command_timeout),
            only,
            sudo_password: std::env::var("SPORE_DRIVE_SUDO_PASSWORD")
                .ok()
                .filter(|p| !p.is_empty()),
            ..Options::default()
        };
        Ok(Run::with_leaving(playbook, leaving, options)?)
    }

    /// The run and the node binary it installs.
    fn prepare(
        &self,
        path: &Path,
        only: Option<BTreeSet<String>>,
    ) -> anyhow::Result<(Run, Bundle)> {
        self.prepare_leaving(path, only, &[])
    }

    /// [`Common::prepare`], for a run that also removes `leaving` (hosts no longer in the
    /// playbook).
    fn prepare_leaving(
        &self,
        path: &Path,
        only: Option<BTreeSet<String>>,
        leaving: &[spore_drive::playbook::Host],
    ) -> anyhow::Result<(Run, Bundle)> {
        let run = self.prepare_run_leaving(path, only, leaving)?;
        let node_binary = match &self.node_binary {
            Some(path) => path.clone(),
            None => default_node_binary()?,
        };
        Ok((run, Bundle::load(&node_binary)?))
    }
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

/// Asks `question` on the terminal; only `y` or `yes` is a yes.
fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, Write};
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
