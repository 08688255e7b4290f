//! `taucorder`: inspect a live Tau cloud. Without a command, runs the terminal UI; with one,
//! asks the cloud through the library and prints. Maps errors to the exit code (0 answered,
//! 1 the cloud could not answer or there is no terminal).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use libp2p::PeerId;
use serde::Serialize;
use tau_proto::CloudProfile;
use taucorder::query::Cloud;

/// taucorder: inspect a live Tau cloud (peers, nodes, registry records, hoarder pins, vault
/// shares, usage, key-value stores, logs). Without a command it opens the terminal UI (press ?
/// there for its keys), where the operator can also act: drain a node, run anti-entropy, repair
/// a pin (each asks first; --readonly refuses them all). The UI connects with the profile's
/// operator key when it names one. The commands print the same data as YAML, or JSON with
/// --json, for scripts.
#[derive(Debug, Parser)]
#[command(version)]
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
    /// The UI changes nothing: drain, anti-entropy and repair are refused.
    #[arg(long)]
    readonly: bool,
    #[command(subcommand)]
    command: Option<Command>,
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
    /// Each function's latest counter window (invocations, errors, time), summed over nodes.
    Usage,
    /// Every key-value store: project, name, keys, bytes and the database nodes that hold it
    /// (never a key or a value).
    Stores,
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
    let Some(command) = cli.command else {
        let profile = CloudProfile::load(&cli.cloud).map_err(|e| {
            anyhow::anyhow!("cannot read the cloud profile {}: {e}", cli.cloud.display())
        })?;
        // The operator's key, when the profile names one: reading logs and acting are theirs.
        let identity = match &profile.operator_key {
            Some(path) => Some(tau_proto::keyfile::read(path).map_err(|e| {
                anyhow::anyhow!("cannot read the operator key {}: {e}", path.display())
            })?),
            None => None,
        };
        return Ok(taucorder::ui::run(&cli.cloud, &profile.name, identity, cli.readonly).await?);
    };
    let cloud = Cloud::connect(&cli.cloud).await?;
    match command {
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
        Command::Usage => print(&cloud.usage().await?, cli.json),
        Command::Stores => print(&cloud.stores().await?, cli.json),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("taucorder: {}", tau_proto::text::printable_lines(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
