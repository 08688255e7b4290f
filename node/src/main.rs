//! `tau-node`: the node binary. Parses arguments, sets up logging, runs a command, and maps its
//! error to an exit code. Everything else is in the `tau_node` library and `tau_proto`.

mod commands;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

/// Tau node: one peer of a decentralized serverless cloud, and the commands to set one up and
/// query a cloud.
#[derive(Debug, Parser)]
#[command(name = "tau-node", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // libp2p_swarm logs every swarm's peer id at info: noise for operators.
    let default_level = if cli.command.is_server() { "info,libp2p_swarm=warn" } else { "warn" };
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // A node whose log disk is full keeps serving: a line it cannot write is dropped, where
        // the default would report it with eprintln!, which panics the task that logged.
        .log_internal_errors(false);
    // A node also keeps its recent lines for `tau-node logs` (the admin protocol).
    let kept = cli.command.is_server().then(tau_node::logs::layer);
    tracing_subscriber::registry().with(filter).with(stderr).with(kept).init();
    match cli.command.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", tau_proto::text::printable_lines(&format!("{error:#}")));
            ExitCode::FAILURE
        }
    }
}
