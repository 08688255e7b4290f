//! The admin protocol, `/tau/admin/1`: what a node says about itself and its peers.
//!
//! Every node serves it, whatever its services: the p2p core answers `Info` and `Peers` itself.
//! Requests and responses are CBOR, as in every [`crate::protocol::Protocol`].

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::counters::CounterPage;

/// The admin protocol, `/tau/admin/1`: the p2p core's own, served by every node.
pub struct AdminProtocol;

impl crate::protocol::Protocol for AdminProtocol {
    const NAME: &'static str = "/tau/admin/1";
    const MAX_REQUEST: u64 = 1 << 20;
    const MAX_RESPONSE: u64 = 10 << 20;
    type Request = AdminRequest;
    type Response = AdminResponse;

    fn refusal(response: &AdminResponse) -> Option<&str> {
        match response {
            AdminResponse::Error(message) => Some(message),
            _ => None,
        }
    }
}

/// A request to a node's admin protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AdminRequest {
    /// Who the node is and how it is doing.
    Info,
    /// The nodes it is connected to (light clients are not listed).
    Peers,
    /// The node's signed execution counter records with `seq >= since`, at most `limit` of them
    /// (capped at [`crate::counters::MAX_PAGE`]). Only substrate nodes have any.
    Counters {
        /// The first sequence number wanted.
        since: u64,
        /// The most records wanted.
        limit: u32,
    },
    /// The collector has stored every record up to `through`: the node may prune them once
    /// they are older than its retention period (unacknowledged records are never pruned).
    AckCounters {
        /// The last sequence number stored.
        through: u64,
    },
    /// The nodes that run `service` as this node knows them, connected or not, with the
    /// addresses it knows for each: how a client finds nodes the entry node is not connected to.
    Directory {
        /// The service.
        service: String,
    },
    /// Lines of the node's log or of a function's output: [`AdminResponse::Logs`]. The
    /// operator's only.
    Logs(crate::logs::LogQuery),
    /// The node leaves: its heartbeats list no service from now on, so seer sends no more
    /// clients to it and hoarder moves its replicas to others, while it goes on serving what
    /// still comes until it is stopped: [`AdminResponse::Draining`]. The operator's only.
    Drain,
    /// Anti-entropy now rather than at its next turn: the node compares its registry with every
    /// tns node and its hoarder state with every hoarder node, takes what it lacks and answers
    /// when done: [`AdminResponse::AntiEntropy`]. The operator's only.
    AntiEntropy,
    /// Repair one pin now: the node fetches the blob at once if it should hold it and does not
    /// (rather than at its next reconcile): [`AdminResponse::Repair`]. The operator's only.
    Repair(crate::hoarder::BlobId),
}

/// A node's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AdminResponse {
    /// The answer to [`AdminRequest::Info`].
    Info(Box<NodeInfo>),
    /// The answer to [`AdminRequest::Peers`].
    Peers(Vec<PeerInfo>),
    /// The answer to [`AdminRequest::Counters`].
    Counters(CounterPage),
    /// The answer to [`AdminRequest::AckCounters`]: the acknowledged sequence number now held.
    Acked(u64),
    /// The answer to [`AdminRequest::Directory`]: connected nodes first, nearest first.
    Directory(Vec<DirectoryEntry>),
    /// The answer to [`AdminRequest::Logs`].
    Logs(crate::logs::LogPage),
    /// The answer to [`AdminRequest::Drain`]: whether the node was already draining.
    Draining {
        /// It had been asked before.
        already: bool,
    },
    /// The answer to [`AdminRequest::AntiEntropy`].
    AntiEntropy(AntiEntropyReport),
    /// The answer to [`AdminRequest::Repair`].
    Repair(RepairReport),
    /// The request could not be served.
    Error(String),
}

/// What one node's anti-entropy round found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AntiEntropyReport {
    /// The tns nodes compared with (none when the node does not run tns).
    pub tns_peers: u32,
    /// Registry records taken from them.
    pub tns_pulled: u64,
    /// Registry records sent to them.
    pub tns_pushed: u64,
    /// The tns nodes that could not be compared with, and why.
    pub tns_failed: Vec<String>,
    /// The hoarder nodes whose state was compared (none when the node does not run hoarder).
    pub hoarder_peers: u32,
}

/// What a hoarder node does about one pin, asked to repair it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairReport {
    /// The node knows the pin (its highest factor is above 0).
    pub pinned: bool,
    /// Its replication factor.
    pub factor: u8,
    /// The live nodes known to hold it, this one included.
    pub holders: u32,
    /// This node is among those that should hold it.
    pub wanted_here: bool,
    /// This node holds it.
    pub held: bool,
    /// This node is fetching it (now, or it was already).
    pub fetching: bool,
}

/// What a node says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's peer id.
    pub peer_id: PeerId,
    /// The node's software version.
    pub version: String,
    /// The services it runs (`tns`, `hoarder`, `vault`, `seer`, `substrate`).
    pub services: Vec<String>,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// Addresses it listens on.
    pub listen_addrs: Vec<Multiaddr>,
    /// Addresses it announces to others (empty: its listen addresses).
    pub announce_addrs: Vec<Multiaddr>,
    /// Where it is, as its operator configured.
    pub location: Option<Location>,
    /// Its host's resources, sampled every few seconds.
    pub resources: Resources,
    /// Whether it is draining: leaving the cloud, its heartbeats listing no service.
    #[serde(default)]
    pub draining: bool,
    /// Whether every service it runs has started (its gateway, DNS and admin ports listen):
    /// a node answers `Info` while it is still starting, and a node whose start fails exits.
    #[serde(default = "started_by_default")]
    pub ready: bool,
}

/// A node that does not say (an older version) answered once it had started.
fn started_by_default() -> bool {
    true
}

/// Where a node is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// A region name, such as `eu-west` or `lab`.
    pub region: String,
    /// Latitude in degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    /// Longitude in degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
}

/// A host's resources, from the operating system.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Logical CPUs.
    pub cpus: u32,
    /// CPU use over the last sample, 0 to 100 (all CPUs together).
    pub cpu_percent: f32,
    /// Load averages over 1, 5 and 15 minutes.
    pub load: [f64; 3],
    /// Total memory, bytes.
    pub memory_total: u64,
    /// Memory in use, bytes.
    pub memory_used: u64,
    /// Size of the disk that holds the node's data folder, bytes.
    pub disk_total: u64,
    /// Free space on that disk, bytes.
    pub disk_available: u64,
}

/// A node that runs a service, as another node knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    /// Its peer id.
    pub peer_id: PeerId,
    /// The addresses the answering node knows for it (possibly none: kad finds them).
    pub addrs: Vec<Multiaddr>,
    /// Whether the answering node is connected to it.
    pub connected: bool,
}

/// A connected node, as one of its peers sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Its peer id.
    pub peer_id: PeerId,
    /// The addresses it listens on (as it told us), or the address we reached it at.
    pub addrs: Vec<Multiaddr>,
    /// The latest ping round trip, microseconds.
    pub rtt_micros: Option<u64>,
    /// Milliseconds since it last answered a ping (none before its first answer): a peer cut
    /// off stays connected for a few seconds, but goes quiet at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_ms: Option<u64>,
    /// The services it runs, once known.
    pub services: Vec<String>,
    /// Seconds since the first open connection to it was established.
    pub connected_secs: u64,
    /// Its software (`tau-node/<version>`).
    pub agent: String,
}
