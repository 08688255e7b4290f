//! One module per subcommand; each is a clap `Args` struct with `async fn run(self)`.

mod counters;
mod dev;
mod hoarder;
mod init;
mod jobs;
mod key;
mod logs;
mod nodes;
mod output;
mod peers;
mod project;
mod run;
mod secret;
mod status;
mod swarm_key;
mod tns;
mod vault;

use clap::Subcommand;

/// One variant per subcommand; each variant's doc comment is its help text.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    Init(init::Init),
    Run(run::Run),
    SwarmKey(swarm_key::SwarmKeyCmd),
    Dev(dev::Dev),
    Status(status::Status),
    Peers(peers::Peers),
    Nodes(nodes::Nodes),
    Key(key::Key),
    Project(project::Project),
    Tns(tns::Tns),
    Hoarder(hoarder::Hoarder),
    Counters(counters::Counters),
    Logs(logs::Logs),
    Vault(vault::Vault),
    Secret(secret::Secret),
    Jobs(jobs::Jobs),
}

impl Command {
    /// Whether the command runs a long-lived server (and so logs at `info` by default).
    pub(crate) fn is_server(&self) -> bool {
        matches!(self, Self::Run(_) | Self::Dev(_))
    }

    pub(crate) async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Init(cmd) => cmd.run(),
            Self::Run(cmd) => cmd.run().await,
            Self::SwarmKey(cmd) => cmd.run(),
            Self::Dev(cmd) => cmd.run().await,
            Self::Status(cmd) => cmd.run().await,
            Self::Peers(cmd) => cmd.run().await,
            Self::Nodes(cmd) => cmd.run().await,
            Self::Key(cmd) => cmd.run(),
            Self::Project(cmd) => cmd.run().await,
            Self::Tns(cmd) => cmd.run().await,
            Self::Hoarder(cmd) => cmd.run().await,
            Self::Counters(cmd) => cmd.run().await,
            Self::Logs(cmd) => cmd.run().await,
            Self::Vault(cmd) => cmd.run().await,
            Self::Secret(cmd) => cmd.run().await,
            Self::Jobs(cmd) => cmd.run().await,
        }
    }
}

/// Waits for SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() -> anyhow::Result<&'static str> {
    Ok(ShutdownSignals::listen()?.recv().await)
}

/// SIGINT and SIGTERM, caught from the moment they are listened for: one that arrives while a
/// node is still starting is kept until [`ShutdownSignals::recv`] asks.
pub(crate) struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    pub(crate) fn listen() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    pub(crate) async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
