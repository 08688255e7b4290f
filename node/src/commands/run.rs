//! `tau-node run`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tau_node::{Node, NodeConfig};

/// Run a node until SIGINT or SIGTERM, then shut it down cleanly.
#[derive(Debug, Args)]
pub(crate) struct Run {
    /// The node's configuration file (`node.yaml`, as `tau-node init` writes it).
    #[arg(long, short)]
    config: PathBuf,
    /// Stop when the parent process exits (used by `tau-node dev` for its nodes).
    #[arg(long, hide = true)]
    exit_with_parent: bool,
}

impl Run {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let config = NodeConfig::load(&self.config)?;
        // Listening first: a SIGTERM during the start waits for it, then stops the node.
        let mut signals = super::ShutdownSignals::listen()?;
        let node = Node::start(&config)
            .await
            .with_context(|| format!("cannot start the node of {}", self.config.display()))?;
        let reason = tokio::select! {
            signal = signals.recv() => signal,
            _ = parent_exit(self.exit_with_parent) => "parent exited",
        };
        let drain = config.drain();
        if !drain.is_zero() && reason != "parent exited" {
            node.leave();
            tracing::info!(
                reason,
                drain = %humantime::format_duration(drain),
                "leaving: seer sends no more clients here; serving what comes meanwhile \
                 (signal again to stop at once)"
            );
            tokio::select! {
                _ = tokio::time::sleep(drain) => {}
                signal = signals.recv() => tracing::info!(signal, "stopping at once"),
            }
        }
        tracing::info!(reason, "shutting down");
        node.stop().await;
        Ok(())
    }
}

/// Resolves when the parent process has gone (we were re-parented); never, when not asked to.
async fn parent_exit(enabled: bool) {
    if !enabled {
        return std::future::pending().await;
    }
    let parent = nix::unistd::getppid();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if nix::unistd::getppid() != parent {
            return;
        }
    }
}
