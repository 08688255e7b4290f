//! `tau-node logs`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use libp2p::PeerId;
use serde::Serialize;
use tau_proto::Client;
use tau_proto::logs::{Level, LogLine, LogPage, LogQuery, LogSource, MAX_PAGE_LINES, MAX_WAIT_MS};
use tau_proto::text::printable;

use super::output;

/// Show a node's recent log lines, or a function's output (its stdout and stderr, each line
/// tagged with the request that printed it: the `x-tau-request` header of the answer).
///
/// Nodes keep their recent lines in bounded buffers (20,000 lines of their own, 10,000 per
/// function); this reads them over the admin protocol, as the operator (the profile's operator
/// key, or --operator-key). With --follow it goes on printing new lines as they come. When a
/// buffer let lines go before they were read, a line says how many were lost there: a gap is
/// shown as a gap, never skipped silently.
///
/// Examples:
///   tau-node logs --node 12D3KooW... --since 10m --level warn
///   tau-node logs --function example/ping --follow
#[derive(Debug, Args)]
pub(crate) struct Logs {
    /// The cloud profile (`cloud.yaml`).
    #[arg(long, default_value = "cloud.yaml")]
    cloud: PathBuf,
    /// The node to read (its peer id): required for a node's own log; for --function, every
    /// substrate node when not given.
    #[arg(long)]
    node: Option<PeerId>,
    /// A function's output instead of the node's log: PROJECT/FUNCTION.
    #[arg(long, value_parser = LogSource::function)]
    function: Option<LogSource>,
    /// Keep printing lines as they come (Ctrl-C stops).
    #[arg(long, short)]
    follow: bool,
    /// Only lines from this long ago on (such as 90s, 10m, 2h).
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Only lines of this level or worse: error, warn, info, debug, trace.
    #[arg(long)]
    level: Option<Level>,
    /// How many of the newest lines to show first (without --since).
    #[arg(long, short = 'n', default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=MAX_PAGE_LINES as i64))]
    lines: u32,
    /// The operator key file [default: the profile's operator_key].
    #[arg(long)]
    operator_key: Option<PathBuf>,
    /// Print one JSON object per line (and per gap) instead of text.
    #[arg(long)]
    json: bool,
}

/// A line as printed with --json.
#[derive(Serialize)]
struct JsonLine<'a> {
    node: String,
    source: String,
    #[serde(flatten)]
    line: &'a LogLine,
}

/// A gap as printed with --json.
#[derive(Serialize)]
struct JsonGap {
    node: String,
    source: String,
    lost: u64,
}

impl Logs {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let operator = output::operator_key(&self.cloud, self.operator_key.clone())?;
        let client = output::connect_as(&self.cloud, Some(operator)).await?;
        let source = self.function.clone().unwrap_or(LogSource::Node);
        let nodes = match (self.node, &source) {
            (Some(node), _) => {
                client.nodes().await?;
                vec![node]
            }
            (None, LogSource::Node) => anyhow::bail!(
                "name the node whose log to read: --node PEER_ID (`tau-node nodes` lists them)"
            ),
            (None, _) => {
                let nodes = client.nodes_running("substrate").await?;
                anyhow::ensure!(!nodes.is_empty(), "no node of this cloud runs substrate");
                nodes
            }
        };
        let since_ms = self.since.map(|d| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |t| t.as_millis() as u64);
            now.saturating_sub(d.as_millis() as u64)
        });
        let first = LogQuery {
            source: source.clone(),
            after: None,
            since_ms,
            level: self.level,
            limit: if since_ms.is_some() { MAX_PAGE_LINES } else { self.lines },
            wait_ms: 0,
        };
        let named = nodes.len() > 1;
        let readers: Vec<Reader<'_>> = nodes
            .into_iter()
            .map(|node| Reader { client: &client, node, named, json: self.json, source: &source })
            .collect();
        let readers = readers.iter().map(|reader| reader.read(first.clone(), self.follow));
        let results = futures::future::join_all(readers).await;
        results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        Ok(())
    }
}

/// Reads one node's buffer and prints what it gets.
struct Reader<'a> {
    client: &'a Client,
    node: PeerId,
    /// Prefix lines with the node (several nodes are read).
    named: bool,
    json: bool,
    source: &'a LogSource,
}

impl Reader<'_> {
    async fn read(&self, first: LogQuery, follow: bool) -> anyhow::Result<()> {
        let mut query = first;
        let mut failures = 0u32;
        loop {
            let page = match self.client.logs(self.node, query.clone()).await {
                Ok(page) => page,
                Err(e) if follow && failures < 30 => {
                    // A node restarting comes back; its buffers start anew.
                    failures += 1;
                    eprintln!("{}: {e} (trying again)", self.node);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot read the logs of {}", self.node));
                }
            };
            failures = 0;
            let caught_up = page.lines.len() < query.limit as usize && page.dropped == 0;
            self.print(&page)?;
            query.after = Some(page.next);
            if !follow && (caught_up || query.since_ms.is_none()) {
                return Ok(());
            }
            if follow {
                query.limit = MAX_PAGE_LINES;
                query.wait_ms = MAX_WAIT_MS;
            }
        }
    }

    fn print(&self, page: &LogPage) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        let node = self.node.to_string();
        let short = &node[node.len().saturating_sub(6)..];
        let prefix = if self.named { format!("{short} ") } else { String::new() };
        if page.restarted {
            if self.json {
                let gap = serde_json::json!({"node": node, "source": self.source.to_string(), "restarted": true});
                writeln!(out, "{gap}")?;
            } else {
                writeln!(out, "{prefix}--- the node restarted: its lines from then on ---")?;
            }
        }
        if page.dropped > 0 {
            if self.json {
                let gap = JsonGap {
                    node: node.clone(),
                    source: self.source.to_string(),
                    lost: page.dropped,
                };
                writeln!(out, "{}", serde_json::to_string(&gap)?)?;
            } else {
                writeln!(
                    out,
                    "{prefix}--- {} lines lost here: the node's buffer let them go before they were read ---",
                    page.dropped
                )?;
            }
        }
        for line in &page.lines {
            if self.json {
                let json = JsonLine { node: node.clone(), source: self.source.to_string(), line };
                writeln!(out, "{}", serde_json::to_string(&json)?)?;
                continue;
            }
            let time = humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + Duration::from_millis(line.time_ms),
            );
            // What a function printed, or a node logged, cannot drive the terminal.
            let text = printable(&line.text);
            match &line.request {
                Some(request) => writeln!(
                    out,
                    "{prefix}{time} {:<6} {} {text}",
                    line.origin,
                    printable(request)
                )?,
                None => writeln!(
                    out,
                    "{prefix}{time} {:<5} {} {text}",
                    line.level.as_str().to_uppercase(),
                    printable(&line.origin)
                )?,
            }
        }
        out.flush()?;
        Ok(())
    }
}
