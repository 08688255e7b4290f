//! The `seer` service: who is alive and how busy, and a DNS server that sends clients to
//! healthy nodes.
//!
//! - [`beat`]: every node (whatever its services) signs a heartbeat every
//!   [`tau_proto::seer::BEAT_INTERVAL`] and sends it to each seer node (`Beat` on
//!   `/tau/seer/1`), dialing it when not connected: a node's cost is the number of seer nodes,
//!   not the size of the cloud.
//! - [`table`]: a seer node's latest beat per node; a node is unhealthy once its latest beat is
//!   older than [`tau_proto::seer::HEALTHY_FOR`]. A beat with a bad signature, or sent by
//!   another node than the one it names, is refused.
//! - [`dns`]: the DNS server (UDP and TCP on `ports.dns`), its UDP answers rate-limited per
//!   source by [`rate`].
//! - [`domains`]: which registered domains are served (generated ones at once, custom ones
//!   after their TXT validation record is seen).
//! - `Nodes` on `/tau/seer/1`: every known node with its latest beat and health; `Changes`:
//!   the change feed of who is healthy, which [`follow`] keeps a copy of on any node.

pub mod beat;
pub mod dns;
pub mod domains;
pub mod follow;
pub mod inbox;
pub mod rate;
pub mod table;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use libp2p::PeerId;
use tau_proto::membership::Admitted;
use tau_proto::seer::{SeerProtocol, SeerRequest, SeerResponse, SignedHeartbeat};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::SeerConfig;
use crate::p2p;
use crate::tns::Registry;
use domains::{Domains, TxtLookup};
use table::Table;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum SeerError {
    /// A DNS socket could not be bound.
    #[error("cannot listen for DNS on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TXT resolver could not be set up.
    #[error("seer: {0}")]
    Resolver(#[from] domains::ResolverError),
    /// The node's config names no domains for seer.
    #[error("seer: a seer node needs `seer: {{ domain, generated_domain }}`")]
    NoDomain,
    /// The p2p task stopped, or a gossip topic could not be joined.
    #[error("cannot start seer: {0}")]
    P2p(#[from] crate::p2p::GossipError),
}

/// What the seer's tasks share.
pub struct Shared {
    table: Mutex<Table>,
    config: SeerConfig,
    domains: Domains,
    /// Heartbeats dropped for a bad signature or a wrong author.
    pub forged: AtomicU64,
    /// DNS packets dropped unanswered.
    pub dropped: AtomicU64,
    /// UDP queries over their source's rate (answered truncated, or not at all).
    pub limited: AtomicU64,
    /// Heartbeat datagrams dropped: over their address's rate, not sealed with the cloud's
    /// key, or not a heartbeat.
    pub dropped_beats: AtomicU64,
    rate: Mutex<rate::RateLimit>,
}

impl Shared {
    /// A seer's state, deciding on domains with `domains`.
    pub fn new(config: SeerConfig, domains: Domains) -> Self {
        Self {
            table: Mutex::default(),
            rate: Mutex::new(rate::RateLimit::new(config.rate, config.slip)),
            config,
            domains,
            forged: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            limited: AtomicU64::new(0),
            dropped_beats: AtomicU64::new(0),
        }
    }

    /// The heartbeats heard, locked: keep the guard short.
    pub fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The DNS rate limiter, locked: keep the guard short.
    pub fn rate(&self) -> MutexGuard<'_, rate::RateLimit> {
        self.rate.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks a heartbeat `sender` sent and keeps it if it is the node's newest.
    pub fn receive(&self, sender: PeerId, signed: &SignedHeartbeat) -> SeerResponse {
        match signed.open() {
            Ok(beat) if beat.peer == sender => {
                self.table().insert(beat, Instant::now());
                SeerResponse::Taken
            }
            Ok(beat) => {
                self.forged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(%sender, named = %beat.peer, "refused a heartbeat sent for another node");
                SeerResponse::Error("a heartbeat is taken only from the node it names".into())
            }
            Err(error) => {
                self.forged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(%sender, %error, "refused a forged heartbeat");
                SeerResponse::Error(format!("heartbeat refused: {error}"))
            }
        }
    }
}

/// Where heartbeat datagrams arrive, and the seal they come in.
pub struct Beats {
    /// The UDP addresses (the node's p2p addresses, UDP on the TCP port).
    pub addrs: Vec<SocketAddr>,
    /// Opens them.
    pub seal: Arc<tau_proto::seer::BeatSeal>,
}

/// What the seer last published of its change feed.
#[derive(Default)]
struct Feed {
    cursor: Option<tau_proto::seer::Cursor>,
    at: Option<Instant>,
}

impl Feed {
    /// Publishes the feed's changes since the last message, or, every
    /// [`tau_proto::seer::FEED_IDLE`] while nothing changes, its cursor alone.
    async fn publish(&mut self, handle: &p2p::Handle, state: &Shared) {
        let (cursor, reset, changes) = state.table().changes(self.cursor);
        // After a reset (the first message), or past a message's worth, followers ask for
        // what they miss themselves.
        let changes = if reset || changes.len() > MAX_FEED_CHANGES { Vec::new() } else { changes };
        let idle = self.at.is_none_or(|at| at.elapsed() >= tau_proto::seer::FEED_IDLE);
        if changes.is_empty() && !idle && Some(cursor) == self.cursor {
            return;
        }
        let message = tau_proto::seer::FeedMessage { cursor, changes };
        match tau_proto::cbor::to_vec(&message) {
            Ok(data) => {
                if let Err(error) = handle.publish::<tau_proto::seer::FeedTopic>(data).await {
                    tracing::trace!(%error, "seer feed not published");
                }
            }
            Err(error) => tracing::error!(%error, "cannot encode the seer feed"),
        }
        self.cursor = Some(cursor);
        self.at = Some(Instant::now());
    }
}

/// The most changes one feed message carries.
const MAX_FEED_CHANGES: usize = 5_000;

/// How often the change feed looks for nodes whose beats stopped.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// A started seer: its tasks, where its DNS server listens, and its state.
pub struct Started {
    /// Its tasks.
    pub tasks: Vec<JoinHandle<()>>,
    /// The DNS server's UDP addresses (TCP on the same).
    pub dns_addrs: Vec<SocketAddr>,
    /// Its state, for the node's own heartbeats.
    pub shared: Arc<Shared>,
}

/// Starts the seer: binds DNS on `dns` (UDP and TCP) and serves `/tau/seer/1` (heartbeats
/// and the node list). The tasks stop on `shutdown`.
pub async fn start(
    handle: p2p::Handle,
    config: &SeerConfig,
    registry: Registry,
    dns: Vec<SocketAddr>,
    beats: Beats,
    mut admitted: watch::Receiver<Admitted>,
    shutdown: CancellationToken,
) -> Result<Started, SeerError> {
    let txt = TxtLookup::resolver(config.txt_resolver).map_err(SeerError::Resolver)?;
    let domains = Domains::new(registry, &config.generated_domain, txt);
    let shared = Arc::new(Shared::new(config.clone(), domains));
    shared.table().admit(admitted.borrow_and_update().clone());
    let mut tasks = Vec::new();
    let mut dns_addrs = Vec::new();
    for addr in dns {
        let listen = |source| SeerError::Listen { addr, source };
        let udp = UdpSocket::bind(addr).await.map_err(listen)?;
        let bound = udp.local_addr().map_err(listen)?;
        // TCP on the port UDP got (they differ only when the configured port is 0).
        let tcp = TcpListener::bind(bound).await.map_err(listen)?;
        tracing::info!(address = %bound, "dns listening (udp and tcp)");
        dns_addrs.push(bound);
        tasks.push(tokio::spawn(dns::serve_udp(shared.clone(), Arc::new(udp), shutdown.clone())));
        tasks.push(tokio::spawn(dns::serve_tcp(shared.clone(), tcp, shutdown.clone())));
    }
    for addr in beats.addrs {
        let socket =
            UdpSocket::bind(addr).await.map_err(|source| SeerError::Listen { addr, source })?;
        tracing::info!(address = %addr, "heartbeats listening (udp)");
        tasks.push(tokio::spawn(inbox::serve(
            shared.clone(),
            socket,
            beats.seal.clone(),
            shutdown.clone(),
        )));
    }
    let (inbox, mut requests) = tokio::sync::mpsc::channel(1024);
    handle.serve::<SeerProtocol>(inbox).await.map_err(|e| SeerError::P2p(e.into()))?;
    let state = shared.clone();
    tasks.push(tokio::spawn(async move {
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut feed = Feed::default();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = sweep.tick() => {
                    state.table().sweep(Instant::now());
                    feed.publish(&handle, &state).await;
                }
                Ok(()) = admitted.changed() => {
                    let now = admitted.borrow_and_update().clone();
                    state.table().admit(now);
                }
                Some(inbound) = requests.recv() => {
                    let p2p::Inbound { request, reply, peer, .. } = inbound;
                    let response = match request {
                        SeerRequest::Nodes => SeerResponse::Nodes(state.table().nodes(Instant::now())),
                        SeerRequest::Beat(signed) => state.receive(peer, &signed),
                        SeerRequest::Changes { since } => {
                            let (cursor, reset, changes) = state.table().changes(since);
                            SeerResponse::Changes { cursor, reset, changes }
                        }
                        _ => SeerResponse::Error("unsupported seer request".into()),
                    };
                    let _ = reply.send(response);
                }
                else => break,
            }
        }
        tracing::debug!("seer stopped");
    }));
    Ok(Started { tasks, dns_addrs, shared })
}
