//! `q`: parses arguments, runs the library, prints, and maps errors to the exit code (0 done,
//! 1 failed).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use q::collect::collect_once;
use q::period::Period;
use q::report::{Format, export_records, export_totals, plot};
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
        /// Send q's own metrics (records ingested, kept aside, gaps, nodes unreachable, lag per
        /// node) to this OpenTelemetry collector, over OTLP/HTTP: http://HOST:4318.
        #[arg(long, env = "Q_OTLP")]
        otlp: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Writes a usage proof for a period: per (project, function) totals of the collected
    /// records, a Merkle sum tree over them, and the statement (period, project, root, totals)
    /// signed by q's key as EIP-712 typed data, with one inclusion proof per line item.
    Prove {
        /// The period, FROM..TO (window start times; dates, RFC 3339 times, `now` or
        /// milliseconds; an end left out is open).
        #[arg(long, default_value = "..")]
        period: Period,
        /// Only this project's functions.
        #[arg(long)]
        project: Option<String>,
        /// Where to write the proof.
        #[arg(long, default_value = "proof.json")]
        out: PathBuf,
        /// The database: a SQLite file, or a postgres:// URL.
        #[arg(long, default_value = "q.db", env = "Q_DB")]
        db: String,
        /// q's signing key (secp256k1, made on first use with mode 0600).
        #[arg(long, default_value = "q.key", env = "Q_KEY")]
        key: PathBuf,
        /// The chain id in the EIP-712 domain: the chain whose contracts may accept the proof.
        #[arg(long, default_value_t = 1)]
        chain_id: u64,
        /// Print a summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Checks a proof file offline: the signature, every line item's path to the signed root
    /// and totals, and that not one byte was changed. Exits 1 with the reason if anything fails.
    VerifyProof {
        /// The proof file.
        file: PathBuf,
        /// Check only this line item, PROJECT/FUNCTION.
        #[arg(long)]
        line: Option<String>,
        /// Require this signer (0x address); without it the file's own signer is reported.
        #[arg(long)]
        signer: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Exports a period's per-function totals (or, with --records, every raw record) for a
    /// billing system.
    Export {
        /// The period, FROM..TO.
        #[arg(long, default_value = "..")]
        period: Period,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// csv or json.
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
        /// Every record (node, seq, counters, signature, hash) instead of the totals.
        #[arg(long)]
        records: bool,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The database: a SQLite file, or a postgres:// URL.
        #[arg(long, default_value = "q.db", env = "Q_DB")]
        db: String,
    },
    /// Draws invocations and wall time per function over a period, as PNG or SVG (by the file
    /// name's extension).
    Plot {
        /// The period, FROM..TO.
        #[arg(long, default_value = "..")]
        period: Period,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// The chart: usage.png or usage.svg.
        #[arg(long, default_value = "usage.png")]
        out: PathBuf,
        /// The database: a SQLite file, or a postgres:// URL.
        #[arg(long, default_value = "q.db", env = "Q_DB")]
        db: String,
        /// Print what was drawn as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Shows the cloud's nodes (healthy or not, CPUs, load, memory, disk, requests now) and, per
    /// substrate node, how many counter records q has not collected yet.
    Status {
        /// The cloud profile.
        #[arg(long, default_value = "cloud.yaml")]
        cloud: PathBuf,
        /// The database: a SQLite file, or a postgres:// URL.
        #[arg(long, default_value = "q.db", env = "Q_DB")]
        db: String,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prints the address of q's signing key (made on first use): the signer contracts trust.
    Key {
        /// q's signing key.
        #[arg(long, default_value = "q.key", env = "Q_KEY")]
        key: PathBuf,
    },
}

fn signing_key(path: &std::path::Path) -> anyhow::Result<q::key::SigningKey> {
    let (key, created) = q::key::load_or_create(path)?;
    if created {
        eprintln!("q: made a new signing key {} (address {})", path.display(), key.address());
    }
    Ok(key)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Collect { cloud, db, follow, every, otlp, json } => {
            let store = Store::open(&db).await?;
            let client = connect(&cloud).await?;
            let metrics = match &otlp {
                Some(url) => Some(q::metrics::Metrics::otlp(url, every)?),
                None => None,
            };
            let result = collect_loop(&client, &store, follow, every, json, metrics.as_ref()).await;
            if let Some(metrics) = metrics {
                // The last export: blocking HTTP, off the async threads.
                tokio::task::spawn_blocking(move || metrics.shutdown()).await??;
            }
            result
        }
        Command::Prove { period, project, out, db, key, chain_id, json } => {
            let key = signing_key(&key)?;
            let store = Store::open(&db).await?;
            let proof = q::proof::prove(&store, period, project.as_deref(), &key, chain_id).await?;
            write_atomically(&out, proof.render().as_bytes())?;
            let totals = proof.statement.totals;
            if json {
                let summary = serde_json::json!({
                    "out": out,
                    "signer": proof.signer,
                    "root": proof.statement.root,
                    "line_items": proof.line_items.len(),
                    "totals": totals,
                });
                println!("{summary}");
            } else {
                println!(
                    "wrote {}: {period}, {} line items, {} invocations ({} errors) in {} records, root {}, signed by {}",
                    out.display(),
                    proof.line_items.len(),
                    totals.invocations,
                    totals.errors,
                    totals.records,
                    proof.statement.root,
                    proof.signer
                );
            }
            Ok(())
        }
        Command::VerifyProof { file, line, signer, json } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let verified = q::proof::verify(&text, line.as_deref(), signer.as_deref())
                .map_err(|e| anyhow::anyhow!("{} does not verify: {e}", file.display()))?;
            if json {
                println!("{}", serde_json::to_string(&verified)?);
            } else {
                let s = &verified.statement;
                println!(
                    "{} verifies: {} line items checked against root {} signed by {}; {} invocations, {} errors, {} records",
                    file.display(),
                    verified.lines.len(),
                    s.root,
                    verified.signer,
                    s.totals.invocations,
                    s.totals.errors,
                    s.totals.records
                );
                if signer.is_none() {
                    println!(
                        "  (trust it only if {} is q's address: see `q key`)",
                        verified.signer
                    );
                }
            }
            Ok(())
        }
        Command::Export { period, project, format, records, out, db } => {
            let store = Store::open(&db).await?;
            let mut sink: Box<dyn std::io::Write> = match &out {
                // Through a temporary file: a failed export leaves no half file behind.
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(temp_beside(path))
                        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let project = project.as_deref();
            let count = if records {
                export_records(&store, period, project, format, &mut sink).await?
            } else {
                export_totals(&store, period, project, format, &mut sink).await? as u64
            };
            drop(sink);
            if let Some(path) = &out {
                std::fs::rename(temp_beside(path), path)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                let what = if records { "records" } else { "line items" };
                eprintln!("q: wrote {count} {what} to {}", path.display());
            }
            Ok(())
        }
        Command::Plot { period, project, out, db, json } => {
            let store = Store::open(&db).await?;
            let chart = plot(&store, period, project.as_deref(), &out).await?;
            if json {
                println!("{}", serde_json::to_string(&chart)?);
            } else {
                println!(
                    "drew {}: {} functions from {} records, {} s per point",
                    out.display(),
                    chart.functions.len(),
                    chart.records,
                    chart.bucket_ms / 1000
                );
            }
            Ok(())
        }
        Command::Status { cloud, db, json } => {
            let client = connect(&cloud).await?;
            let store = Store::open(&db).await?;
            let status = q::status::status(&client, &store).await?;
            if json {
                println!("{}", serde_json::to_string(&status)?);
            } else {
                print_status(&status);
            }
            Ok(())
        }
        Command::Key { key } => {
            println!("{}", signing_key(&key)?.address());
            Ok(())
        }
    }
}

/// Collects once, or with `follow` every `every` until Ctrl-C.
async fn collect_loop(
    client: &Client,
    store: &Store,
    follow: bool,
    every: Duration,
    json: bool,
    metrics: Option<&q::metrics::Metrics>,
) -> anyhow::Result<()> {
    loop {
        let report = collect_once(client, store, |node, done| {
            if !json && done.inserted > 0 {
                eprintln!("q: {node}: {} new records", done.inserted);
            }
        })
        .await?;
        if let Some(metrics) = metrics {
            metrics.collected(&report);
            for node in q::status::status(client, store).await?.nodes {
                if let Some(lag) = node.lag {
                    metrics.lag(&node.node, lag);
                }
            }
        }
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

/// Connects to the cloud a profile names.
async fn connect(cloud: &std::path::Path) -> anyhow::Result<Client> {
    let profile = CloudProfile::load(cloud)
        .map_err(|e| anyhow::anyhow!("cannot read the cloud profile {}: {e}", cloud.display()))?;
    Ok(Client::connect(&profile).await?)
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

fn print_status(status: &q::status::Status) {
    println!(
        "{:<54} {:<9} {:>4} {:>6} {:>6} {:>13} {:>13} {:>5} {:>8}",
        "NODE", "HEALTH", "CPUS", "CPU%", "LOAD1", "MEM GiB", "DISK FREE", "REQS", "LAG"
    );
    for n in &status.nodes {
        let health = match (n.healthy, n.beat_age_ms) {
            (true, _) => "healthy".to_string(),
            (false, Some(age)) => format!("silent {}s", age / 1000),
            (false, None) => "unknown".to_string(),
        };
        let lag = match (&n.lag, &n.error) {
            (Some(lag), _) => lag.to_string(),
            (None, Some(_)) => "?".to_string(),
            (None, None) => "-".to_string(),
        };
        println!(
            "{:<54} {:<9} {:>4} {:>6.1} {:>6.2} {:>6.1}/{:<6.1} {:>6.1}/{:<6.1} {:>5} {:>8}",
            n.node,
            health,
            n.cpus,
            n.cpu_percent,
            n.load[0],
            gib(n.memory[0]),
            gib(n.memory[1]),
            gib(n.disk[0]),
            gib(n.disk[1]),
            n.active_requests,
            lag
        );
        if let Some(e) = &n.error {
            println!("  {} did not answer for its counters: {e}", n.node);
        }
    }
    println!(
        "{} nodes, {} healthy; {} records not collected yet",
        status.nodes.len(),
        status.healthy,
        status.lag
    );
}

/// A temporary name beside `path` (`.NAME.tmp`), renamed over it once complete.
fn temp_beside(path: &std::path::Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Writes `bytes` to `path` through a temporary file in the same folder, so a crash leaves the
/// old file or the new one, never half of one.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = temp_beside(path);
    let fail = |e: std::io::Error| anyhow::anyhow!("cannot write {}: {e}", path.display());
    std::fs::write(&tmp, bytes).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
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
