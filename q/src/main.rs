//! `q`: parses arguments, runs the library, prints, and maps errors to the exit code (0 done,
//! 1 failed).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use q::collect::collect_once;
use q::store::Store;
use tau_proto::{Client, CloudProfile};

/// q: collects the signed execution counters of a Tau cloud's nodes into a database (SQLite by
/// default, PostgreSQL by URL), verified, each record once.
#[derive(Debug, Parser)]
#[command(version, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reads every substrate node's new counter records into the database: signatures checked
    /// in batches, each (node, seq) stored once, gaps and bad records kept aside and reported.
    Collect {
        /// The cloud profile (`cloud.yaml`, written by Spore Drive or `tau-node dev`).
        #[arg(long, default_value = "cloud.yaml")]
        cloud: PathBuf,
        /// The database: a SQLite file, or a postgres:// URL.
        #[arg(long, default_value = "q.db", env = "Q_DB")]
        db: String,
        /// Keep collecting, every --every, until interrupted.
        #[arg(long)]
        follow: bool,
        /// How often to collect with --follow.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        every: Duration,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Collect { cloud, db, follow, every, json } => {
            let profile = CloudProfile::load(&cloud).map_err(|e| {
                anyhow::anyhow!("cannot read the cloud profile {}: {e}", cloud.display())
            })?;
            let store = Store::open(&db).await?;
            let client = Client::connect(&profile).await?;
            loop {
                let report = collect_once(&client, &store, |node, done| {
                    if !json && done.inserted > 0 {
                        eprintln!("q: {node}: {} new records", done.inserted);
                    }
                })
                .await?;
                if json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!(
                        "collected from {} nodes: {} records read, {} new, {} already held, {} kept aside, {} gaps",
                        report.nodes,
                        report.read,
                        report.ingested.inserted,
                        report.ingested.replayed,
                        report.ingested.rejected,
                        report.ingested.gaps
                    );
                    for (node, why) in &report.unreachable {
                        println!("  {node} did not answer: {why}");
                    }
                }
                if !follow {
                    return Ok(());
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                }
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("q: {e:#}");
            ExitCode::FAILURE
        }
    }
}
