use std::path::PathBuf;
use std::time::Duration;

use q::collect::collect_once;
use q::store::Store;
use tau_proto::Client;

use super::connect;

/// Reads every substrate node's new counter records into the database: signatures checked in
/// batches, each (node, seq) stored once, gaps and bad records kept aside and reported.
#[derive(Debug, clap::Args)]
pub(crate) struct Collect {
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
    /// q's peer identity (made on first use, mode 0600). Nodes prune the records q acknowledges
    /// only when the operator admitted this identity for the `q` role (`q identity` prints its
    /// peer id); else they keep them until their retention, and the report says so.
    #[arg(long, default_value = "q-identity.key", env = "Q_IDENTITY")]
    identity: PathBuf,
    /// An alert rule, checked after each collection: project=NAME FIGURE>THRESHOLD/WINDOW
    /// (`project=example invocations>100000/1h`): the figure summed over the project's records
    /// of the last WINDOW. It is posted to --webhook once when the sum goes above the
    /// threshold and once when it is back under. Repeat for several.
    #[arg(long, requires = "webhook")]
    alert: Vec<q::alerts::Rule>,
    /// Where alerts are posted, as JSON (with a `text` line chat webhooks show).
    #[arg(long, requires = "alert")]
    webhook: Option<reqwest::Url>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl Collect {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let store = Store::open(&self.db).await?;
        let client = connect(&self.cloud, Some(&self.identity)).await?;
        let metrics = match &self.otlp {
            Some(url) => Some(q::metrics::Metrics::otlp(url, self.every)?),
            None => None,
        };
        let alerts = match &self.webhook {
            Some(url) => Some(q::alerts::Alerts::new(self.alert.clone(), url.clone())?),
            None => None,
        };
        let result = self.collect_loop(&client, &store, metrics.as_ref(), alerts.as_ref()).await;
        if let Some(metrics) = metrics {
            // The last export: blocking HTTP, off the async threads.
            tokio::task::spawn_blocking(move || metrics.shutdown()).await??;
        }
        result
    }

    /// Collects once, or with `follow` every `every` until Ctrl-C.
    async fn collect_loop(
        &self,
        client: &Client,
        store: &Store,
        metrics: Option<&q::metrics::Metrics>,
        alerts: Option<&q::alerts::Alerts>,
    ) -> anyhow::Result<()> {
        let json = self.json;
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
                    println!("  {node} did not answer: {}", tau_proto::text::printable(why));
                }
                for (node, why) in &report.unacknowledged {
                    println!("  {node} keeps its records: {}", tau_proto::text::printable(why));
                }
            }
            if let Some(alerts) = alerts {
                alerts.check(store, |line| eprintln!("q: {line}")).await?;
            }
            if !self.follow {
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }
}
