//! `q status`: the cloud's nodes as seer sees them (online, capacity, load) and, for each node
//! that runs substrate, how many of its counter records q has not collected yet; and the proven
//! periods that records reached late.

use std::collections::HashMap;

use serde::Serialize;
use tau_proto::Client;

use crate::collect::{CollectError, nodes};
use crate::store::Store;

/// One node's line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodeLine {
    /// Its peer id.
    pub node: String,
    /// Whether seer heard its heartbeat recently.
    pub healthy: bool,
    /// Milliseconds since its last heartbeat reached seer (None: seer never heard it).
    pub beat_age_ms: Option<u64>,
    /// The services it runs.
    pub services: Vec<String>,
    /// Its software version.
    pub version: String,
    /// Logical CPUs.
    pub cpus: u32,
    /// CPU use, percent of all CPUs.
    pub cpu_percent: f32,
    /// Load averages over 1, 5 and 15 minutes.
    pub load: [f64; 3],
    /// Memory in use and in all, bytes.
    pub memory: [u64; 2],
    /// Free and total disk under its data folder, bytes.
    pub disk: [u64; 2],
    /// Requests its substrate serves right now.
    pub active_requests: u64,
    /// The next sequence number q will ask it for (substrate nodes).
    pub q_cursor: Option<u64>,
    /// The sequence number it will give its next record.
    pub node_next_seq: Option<u64>,
    /// Records it holds that q has not collected.
    pub lag: Option<u64>,
    /// Why the lag is unknown, if it is.
    pub error: Option<String>,
}

/// What `q status` prints: every node, and what q has collected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// Every node, by peer id.
    pub nodes: Vec<NodeLine>,
    /// Nodes seer calls healthy.
    pub healthy: usize,
    /// Records not collected, over all nodes that answered.
    pub lag: u64,
    /// Proven periods that records reached after they were proven.
    pub late: Vec<crate::store::Late>,
}

/// Asks seer for every node and each substrate node for its next sequence number.
pub async fn status(client: &Client, store: &Store) -> Result<Status, CollectError> {
    let (known, substrate) = nodes(client).await?;
    let services = client.services().await?;
    let seer = services.get("seer").and_then(|s| s.first()).copied().ok_or(CollectError::NoSeer)?;
    let beats: HashMap<_, _> =
        client.seer_nodes(seer).await?.into_iter().map(|s| (s.heartbeat.peer, s)).collect();
    let mut lines = Vec::new();
    for node in known {
        let mut line = NodeLine { node: node.to_string(), ..NodeLine::default() };
        if let Some(s) = beats.get(&node) {
            let (b, r) = (&s.heartbeat, &s.heartbeat.resources);
            line.healthy = s.healthy;
            line.beat_age_ms = Some(s.age_ms);
            line.services = b.services.clone();
            line.version = b.version.clone();
            line.cpus = r.cpus;
            line.cpu_percent = r.cpu_percent;
            line.load = r.load;
            line.memory = [r.memory_used, r.memory_total];
            line.disk = [r.disk_available, r.disk_total];
            line.active_requests = b.active_requests;
        }
        if substrate.contains(&node) {
            let cursor = store.cursor(&node).await?;
            line.q_cursor = Some(cursor);
            match client.counters(node, cursor, 1).await {
                Ok(page) => {
                    line.node_next_seq = Some(page.next_seq);
                    line.lag = Some(page.next_seq.saturating_sub(cursor));
                }
                Err(e) => line.error = Some(e.to_string()),
            }
        }
        lines.push(line);
    }
    lines.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(Status {
        healthy: lines.iter().filter(|l| l.healthy).count(),
        lag: lines.iter().filter_map(|l| l.lag).sum(),
        nodes: lines,
        late: store.late().await?,
    })
}
