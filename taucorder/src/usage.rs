//! Usage: the latest counter window of each function, summed over the substrate nodes that ran
//! it, read from the nodes' signed counter records.
//!
//! A [`UsageTracker`] keeps, per node, the next sequence number it has not read yet, so that each
//! poll asks only for new records. It starts near the end of each node's log (the last
//! [`MAX_PAGE`] records): taucorder shows what is happening now; `q` is the one that reads
//! everything.

use std::collections::{BTreeMap, HashMap};

use libp2p::PeerId;
use serde::Serialize;
use tau_proto::Client;
use tau_proto::client::ClientError;
use tau_proto::counters::{CounterRecord, MAX_PAGE, Usage};

/// The most pages read from one node in one poll, so that a long backlog cannot stall a refresh.
const MAX_PAGES_PER_POLL: usize = 10;

/// One function's latest window, summed over the nodes that ran it in that window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    /// The project id, as in TNS.
    pub project: String,
    /// The function's name within the project.
    pub function: String,
    /// When the window started, Unix milliseconds.
    pub window_start_ms: u64,
    /// How long the window is, milliseconds.
    pub window_ms: u64,
    /// What the function used in the window, every node together.
    #[serde(flatten)]
    pub usage: Usage,
    /// The nodes that counted invocations in the window.
    pub nodes: usize,
    /// Invocations in every record read (all windows since `since_ms`, every node).
    pub total_invocations: u64,
    /// Errors in every record read.
    pub total_errors: u64,
    /// The start of the oldest window read, Unix milliseconds.
    pub since_ms: u64,
}

impl UsageRow {
    /// The row for `record`'s function and window, nothing counted yet.
    fn empty(record: &CounterRecord) -> Self {
        Self {
            project: record.project.clone(),
            function: record.function.clone(),
            window_start_ms: record.window_start_ms,
            window_ms: record.window_ms,
            usage: Usage::default(),
            nodes: 0,
            total_invocations: 0,
            total_errors: 0,
            since_ms: record.window_start_ms,
        }
    }
}

/// Follows the counter logs of a cloud's substrate nodes.
#[derive(Debug, Default)]
pub struct UsageTracker {
    /// Per node, the next sequence number to ask for.
    cursors: HashMap<PeerId, u64>,
    /// Per (project, function, node), the newest window read.
    latest: HashMap<(String, String, PeerId), CounterRecord>,
    /// Per (project, function): invocations, errors, oldest window start, over every record.
    totals: HashMap<(String, String), (u64, u64, u64)>,
    /// Records whose signature did not verify (never shown).
    rejected: u64,
}

impl UsageTracker {
    /// Reads the records `nodes` wrote since the last poll. Returns the first error, after
    /// reading what the other nodes answered.
    pub async fn poll(&mut self, client: &Client, nodes: &[PeerId]) -> Result<(), ClientError> {
        let mut first_error = None;
        for &node in nodes {
            if let Err(e) = self.poll_node(client, node).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn poll_node(&mut self, client: &Client, node: PeerId) -> Result<(), ClientError> {
        let mut since = match self.cursors.get(&node) {
            Some(&since) => since,
            None => {
                // Learn where the log ends without reading it.
                let end = client.counters(node, u64::MAX, 0).await?.next_seq;
                end.saturating_sub(u64::from(MAX_PAGE))
            }
        };
        for _ in 0..MAX_PAGES_PER_POLL {
            let page = client.counters(node, since, MAX_PAGE).await?;
            let read = page.records.len();
            for signed in page.records {
                since = since.max(signed.record.seq + 1);
                self.add(node, signed.verify().map(|()| signed.record).ok());
            }
            since = since.max(page.oldest_seq);
            if read < MAX_PAGE as usize || since >= page.next_seq {
                break;
            }
        }
        self.cursors.insert(node, since);
        Ok(())
    }

    /// Takes one record in (`None`: its signature failed, or `node` did not sign it).
    pub fn add(&mut self, node: PeerId, record: Option<CounterRecord>) {
        let Some(record) = record.filter(|r| r.node == node) else {
            self.rejected += 1;
            return;
        };
        let total = self
            .totals
            .entry((record.project.clone(), record.function.clone()))
            .or_insert((0, 0, record.window_start_ms));
        total.0 += record.usage.invocations;
        total.1 += record.usage.errors;
        total.2 = total.2.min(record.window_start_ms);
        let key = (record.project.clone(), record.function.clone(), node);
        match self.latest.get(&key) {
            Some(old) if old.window_start_ms > record.window_start_ms => {}
            Some(old) if old.window_start_ms == record.window_start_ms => {
                // Two records for one window (a restart): they count different invocations.
                let merged = merge(old, &record);
                self.latest.insert(key, merged);
            }
            _ => {
                self.latest.insert(key, record);
            }
        }
    }

    /// Records dropped because their signature did not verify.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Each function's latest window, summed over nodes, sorted by project and function.
    pub fn rows(&self) -> Vec<UsageRow> {
        let mut rows: BTreeMap<(&str, &str), UsageRow> = BTreeMap::new();
        for ((project, function, _), r) in &self.latest {
            let row = rows.entry((project, function)).or_insert_with(|| UsageRow::empty(r));
            if r.window_start_ms > row.window_start_ms {
                // A newer window than the nodes seen so far: start again from it.
                *row = UsageRow::empty(r);
            }
            if r.window_start_ms == row.window_start_ms {
                row.usage.add(&r.usage);
                row.nodes += 1;
            }
        }
        let mut rows: Vec<UsageRow> = rows.into_values().collect();
        for row in &mut rows {
            let key = (row.project.clone(), row.function.clone());
            if let Some(&(invocations, errors, since)) = self.totals.get(&key) {
                (row.total_invocations, row.total_errors, row.since_ms) =
                    (invocations, errors, since);
            }
        }
        rows
    }
}

fn merge(a: &CounterRecord, b: &CounterRecord) -> CounterRecord {
    let mut usage = a.usage;
    usage.add(&b.usage);
    CounterRecord { seq: a.seq.max(b.seq), usage, ..a.clone() }
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;

    use super::*;

    fn record(node: PeerId, function: &str, start: u64, invocations: u64) -> CounterRecord {
        CounterRecord {
            node,
            seq: start,
            project: "example".into(),
            function: function.into(),
            window_start_ms: start,
            window_ms: 10_000,
            usage: Usage {
                invocations,
                errors: 1,
                wall_micros: 1_000 * invocations,
                cpu_micros: 500 * invocations,
                ..Usage::default()
            },
        }
    }

    #[test]
    fn the_latest_window_is_summed_over_nodes() {
        let a = Keypair::generate_ed25519().public().to_peer_id();
        let b = Keypair::generate_ed25519().public().to_peer_id();
        let mut usage = UsageTracker::default();
        usage.add(a, Some(record(a, "ping", 10_000, 5)));
        usage.add(a, Some(record(a, "ping", 20_000, 3)));
        usage.add(b, Some(record(b, "ping", 20_000, 4)));
        usage.add(b, Some(record(b, "echo", 10_000, 2)));
        // An older window arriving late changes nothing.
        usage.add(b, Some(record(b, "ping", 10_000, 100)));
        // A record that names another node is not counted.
        usage.add(b, Some(record(a, "ping", 20_000, 1000)));
        usage.add(a, None);
        let rows = usage.rows();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(
            (rows[0].function.as_str(), rows[0].usage.invocations, rows[0].nodes),
            ("echo", 2, 1)
        );
        let ping = &rows[1];
        assert_eq!(
            (ping.window_start_ms, ping.usage.invocations, ping.usage.errors, ping.nodes),
            (20_000, 7, 2, 2)
        );
        assert_eq!(ping.usage.wall_micros, 7_000);
        // The totals count every record read, the late one too.
        assert_eq!((ping.total_invocations, ping.total_errors, ping.since_ms), (112, 4, 10_000));
        assert_eq!(usage.rejected(), 2);
    }

    #[test]
    fn two_records_for_one_window_add_up() {
        let a = Keypair::generate_ed25519().public().to_peer_id();
        let mut usage = UsageTracker::default();
        usage.add(a, Some(record(a, "ping", 10_000, 5)));
        usage.add(a, Some(record(a, "ping", 10_000, 2)));
        assert_eq!(usage.rows()[0].usage.invocations, 7);
    }
}
