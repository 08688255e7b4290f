//! `taucorder`: inspect a live Tau cloud. Parses arguments, asks the cloud through the library,
//! prints, and maps errors to the exit code (0 answered, 1 the cloud could not answer).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use libp2p::PeerId;
use serde::Serialize;
use taucorder::query::Cloud;

/// taucorder: inspect a live Tau cloud (peers, nodes, registry records, hoarder pins, vault
/// shares), as JSON for scripts or YAML for people.
#[derive(Debug, Parser)]
#[command(version, arg_required_else_help = true)]
struct Cli {
    /// The cloud profile (`cloud.yaml`, written by Spore Drive or `tau-node dev`).
    #[arg(long, global = true, default_value = "cloud.yaml")]
    cloud: PathBuf,
    /// Print JSON (for scripts) instead of YAML.
    #[arg(long, global = true)]
    json: bool,
    /// The node to ask (its peer id) instead of the first one that can answer.
    #[arg(long, global = true)]
    node: Option<PeerId>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The nodes a node is connected to: addresses, services, ping RTT, how long connected.
    Peers,
    /// Every node as seer sees it: health, services, addresses, CPU, memory, disk, load.
    Nodes,
    /// The registry (TNS).
    Tns {
        #[command(subcommand)]
        command: TnsCommand,
    },
    /// Hoarder's pins: CID, size, replication factor, holders, state.
    Hoarder,
    /// Each vault node's share (never the share itself) and whether secrets are readable now.
    Vault,
}

#[derive(Debug, Subcommand)]
enum TnsCommand {
    /// The live records under PREFIX, values decoded.
    List {
        /// The key prefix, such as /projects/example/.
        #[arg(default_value = "/")]
        prefix: String,
    },
    /// The record under KEY: value decoded, version, writer.
    Get {
        /// The key, such as /projects/example/functions/ping.
        key: String,
    },
}

fn print<T: Serialize>(value: &T, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", serde_yaml_ng::to_string(value)?);
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cloud = Cloud::connect(&cli.cloud).await?;
    match cli.command {
        Command::Peers => print(&cloud.peers(cli.node).await?, cli.json),
        Command::Nodes => print(&cloud.nodes(cli.node).await?, cli.json),
        Command::Tns { command: TnsCommand::List { prefix } } => {
            print(&cloud.tns_list(&prefix, cli.node).await?, cli.json)
        }
        Command::Tns { command: TnsCommand::Get { key } } => {
            print(&cloud.tns_get(&key, cli.node).await?, cli.json)
        }
        Command::Hoarder => print(&cloud.hoarder_pins(cli.node).await?, cli.json),
        Command::Vault => print(&cloud.vault().await?, cli.json),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("taucorder: {e:#}");
            ExitCode::FAILURE
        }
    }
}
