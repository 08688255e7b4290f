use std::path::PathBuf;
use std::time::Duration;

use q::events::{Customers, Shape};
use q::push::{Options, Target};
use q::store::Store;
use reqwest::header::HeaderMap;

/// Sends every collected record's usage events to a billing system's ingest endpoint, in
/// batches, in the order q stored the records; with --follow, keeps sending new ones.
///
/// Each target (format and URL) has its own cursor in q's database, which moves only after the
/// receiver acknowledged a batch (a 2xx answer): a push stopped at any moment, even by kill -9,
/// resends at most the batch in flight, with the same event ids, and skips nothing. Refusals
/// that may pass (no answer, 408, 429, 5xx) are retried with backoff; others stop the push.
///
/// API keys go in --header from the environment or a file, never on the command line:
/// `--header 'Authorization: Bearer {env:LAGO_API_KEY}'`.
#[derive(Debug, clap::Args)]
pub(crate) struct Push {
    /// The ingest endpoint, e.g. https://openmeter.example/api/v1/events.
    #[arg(long)]
    to: reqwest::Url,
    /// The events' shape: cloudevents (batch mode), stripe or lago.
    #[arg(long, value_enum)]
    format: Shape,
    /// Each project's customer (the CloudEvents subject, the Stripe customer) or subscription
    /// (Lago) id, as `projects: {<project>: <id>}`.
    #[arg(long)]
    customers: PathBuf,
    /// A header for every batch, NAME: VALUE; VALUE may hold {env:VAR} or {file:PATH}, read
    /// when q starts and never printed. Repeat for several.
    #[arg(long, value_name = "NAME: VALUE")]
    header: Vec<String>,
    /// The most events in one batch (whole records; 1-10000).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    batch: u64,
    /// Keep running: send new records as q collects them.
    #[arg(long)]
    follow: bool,
    /// Following, how often to look for new records.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    poll: Duration,
    /// How long the receiver may take to answer a batch.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// The database: a SQLite file, or a postgres:// URL.
    #[arg(long, default_value = "q.db", env = "Q_DB")]
    db: String,
    /// Print a summary as JSON when done.
    #[arg(long)]
    json: bool,
}

impl Push {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let Self { to, format, customers, header, batch, follow, poll, timeout, db, json } = self;
        if !matches!(to.scheme(), "http" | "https") {
            anyhow::bail!("--to: `{}` is not an http(s) URL", to.scheme());
        }
        let mut headers = HeaderMap::new();
        for spec in &header {
            let (name, value) =
                q::push::header(spec).map_err(|e| anyhow::anyhow!("--header: {e}"))?;
            headers.append(name, value);
        }
        let customers = Customers::load(&customers)?;
        let target = Target { url: to, shape: format, headers };
        let options =
            Options { batch: batch as usize, follow, poll, timeout, ..Options::default() };
        let store = Store::open(&db).await?;
        let shown = target.shown();
        let push = q::push::push(&store, &target, &customers, &options, |line| {
            eprintln!("q push: {line}")
        });
        let progress = tokio::select! {
            done = push => done?,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("q push: stopped; the next run resends at most the batch in flight");
                return Ok(());
            }
        };
        if json {
            println!(
                "{}",
                serde_json::json!({ "to": shown, "format": format, "pushed": progress })
            );
        } else {
            println!(
                "q push: {} events in {} batches acknowledged by {shown} ({} retries); {} in all for this target",
                progress.events, progress.batches, progress.retries, progress.total_events
            );
        }
        Ok(())
    }
}
