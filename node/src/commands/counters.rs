//! `tau-node counters`.

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use tau_proto::counters::{MAX_PAGE, SignedCounter};

use super::output::{self, ServiceArgs, table};

/// Show the signed counter records of the cloud's substrate and ci nodes, each checked against
/// its node's key.
///
/// Every substrate node writes one record per function per counter window (`substrate.counter_window`
/// in node.yaml, 60s by default), numbered 1, 2, 3, ... per node; a ci node counts each
/// project's build jobs under the function `@build` (jobs, failed jobs, wall and CPU time).
/// Asks every such node, or the one given with --node. Nothing is acknowledged: records stay
/// on the nodes.
#[derive(Debug, Args)]
pub(crate) struct Counters {
    #[command(flatten)]
    service: ServiceArgs,
    /// The first sequence number to show, per node.
    #[arg(long, default_value_t = 1)]
    since: u64,
}

/// One record as printed with --json.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    record: &'a tau_proto::counters::CounterRecord,
    #[serde(with = "tau_proto::bytes::vec")]
    signature: &'a Vec<u8>,
    verified: bool,
}

impl Counters {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let client = output::connect(&self.service.cloud).await?;
        let nodes = match self.service.node {
            Some(node) => {
                client.nodes().await?;
                vec![node]
            }
            None => client.counting_nodes().await?,
        };
        anyhow::ensure!(!nodes.is_empty(), "no node of this cloud runs substrate or ci");
        let mut records: Vec<SignedCounter> = Vec::new();
        for node in nodes {
            let mut since = self.since;
            loop {
                let page = client
                    .counters(node, since, MAX_PAGE)
                    .await
                    .with_context(|| format!("cannot read the counters of {node}"))?;
                let Some(last) = page.records.last() else { break };
                since = last.record.seq + 1;
                records.extend(page.records);
            }
        }
        if self.service.json {
            let lines: Vec<Line<'_>> = records
                .iter()
                .map(|r| Line {
                    record: &r.record,
                    signature: &r.signature,
                    verified: r.verify().is_ok(),
                })
                .collect();
            return output::print_json(&lines);
        }
        let rows: Vec<Vec<String>> = records
            .iter()
            .map(|r| {
                let c = &r.record;
                vec![
                    c.node.to_string(),
                    c.seq.to_string(),
                    format!("{}/{}", c.project, c.function),
                    format!("{}s", c.window_ms / 1000),
                    c.usage.invocations.to_string(),
                    c.usage.errors.to_string(),
                    format!("{:.1} ms", c.usage.wall_micros as f64 / 1000.0),
                    format!("{:.1} ms", c.usage.cpu_micros as f64 / 1000.0),
                    output::bytes(c.usage.peak_memory),
                    output::bytes(c.usage.bytes_in),
                    output::bytes(c.usage.bytes_out),
                    if r.verify().is_ok() { "ok".into() } else { "BAD SIGNATURE".into() },
                ]
            })
            .collect();
        let headers = [
            "NODE",
            "SEQ",
            "FUNCTION",
            "WINDOW",
            "CALLS",
            "ERRORS",
            "WALL",
            "CPU",
            "PEAK MEM",
            "IN",
            "OUT",
            "SIGNATURE",
        ];
        println!("{}", table(&headers, &rows));
        println!("{} records", records.len());
        Ok(())
    }
}
