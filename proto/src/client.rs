//! The light client: how `tau-node status`, taucorder and q talk to a cloud.
//!
//! [`Client::connect`] takes a [`CloudProfile`], makes an ephemeral identity, dials the bootstrap
//! addresses with the cloud's swarm key and returns once one node has answered the handshake.
//! One task owns the client's swarm; [`Client`] is a cheap cloneable handle that sends it
//! commands with oneshot replies. Dropping every handle stops the task and closes connections.

pub mod members;
pub mod registry;
pub mod secrets;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify};
use tokio::sync::mpsc;

use crate::admin::{AdminProtocol, AdminRequest, AdminResponse, NodeInfo, PeerInfo};
use crate::counters::CounterPage;
use crate::net::rpc::{self, CallError};
use crate::profile::{ProfileError, peer_id_of};
use crate::protocol::Protocol;
use crate::{CloudProfile, net};

/// How long [`Client::nodes_running`] waits for a node to answer before it lists it last.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the client could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum ClientError {
    /// The profile or its swarm key could not be loaded.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The transport could not be set up.
    #[error(transparent)]
    Transport(#[from] net::TransportError),
    /// No bootstrap node could be reached.
    #[error("no node of the cloud could be reached: {}", .attempts.join("; "))]
    Unreachable {
        /// One line per bootstrap address: the address and why it failed.
        attempts: Vec<String>,
    },
    /// A request failed on the way.
    #[error("request to {peer} failed: {reason}")]
    Request {
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The node answered with an error.
    #[error("{peer} answered with an error: {message}")]
    Remote { peer: PeerId, message: String },
    /// The node answered something that does not fit the request.
    #[error("{peer} gave an unexpected answer")]
    Unexpected { peer: PeerId },
    /// The client's task has stopped.
    #[error("the client has stopped")]
    Closed,
}

/// Options for [`Client::connect_with`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// How long to try the bootstrap addresses before giving up.
    pub timeout: Duration,
    /// The client's peer identity; a new one for each connection when `None`. A tool the
    /// operator admits for a role (q acknowledging counters) keeps one.
    pub identity: Option<Keypair>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(10), identity: None }
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    identify: identify::Behaviour,
    rpc: rpc::Behaviour,
}

enum Command {
    Call { peer: PeerId, call: rpc::Call },
    AddAddress { peer: PeerId, addr: Multiaddr },
}

/// A handle to a connected light client.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    /// The node asked first; another bootstrap node takes its place when it goes away.
    entry: Arc<std::sync::Mutex<PeerId>>,
    /// The nodes that may take the entry node's place: the profile's bootstrap nodes, then
    /// those the entry node listed (at most [`MAX_KNOWN`]).
    known: Arc<std::sync::Mutex<Vec<PeerId>>>,
}

/// The most nodes a client remembers as places to enter the cloud by.
const MAX_KNOWN: usize = 64;

impl Client {
    /// Connects to the cloud a profile describes, with default options.
    pub async fn connect(profile: &CloudProfile) -> Result<Self, ClientError> {
        Self::connect_with(profile, ConnectOptions::default()).await
    }

    /// Connects to the cloud a profile describes.
    pub async fn connect_with(
        profile: &CloudProfile,
        options: ConnectOptions,
    ) -> Result<Self, ClientError> {
        let swarm_key = profile.load_swarm_key().map_err(ProfileError::from)?;
        let keypair = options.identity.clone().unwrap_or_else(Keypair::generate_ed25519);
        let mut swarm =
            net::swarm(keypair, &swarm_key, Duration::from_secs(60), |key| Behaviour {
                identify: identify::Behaviour::new(
                    identify::Config::new("/tau/id/1".into(), key.public()).with_agent_version(
                        format!("{}{}", crate::CLIENT_AGENT_PREFIX, crate::VERSION),
                    ),
                ),
                rpc: rpc::Behaviour::default(),
            })?;
        let entry = dial_bootstrap(&mut swarm, &profile.bootstrap, options.timeout).await?;
        let (commands, receiver) = mpsc::channel(64);
        tokio::spawn(run(swarm, receiver));
        let known = profile.bootstrap.iter().filter_map(peer_id_of).take(MAX_KNOWN).collect();
        let client = Self {
            commands,
            entry: Arc::new(std::sync::Mutex::new(entry)),
            known: Arc::new(std::sync::Mutex::new(known)),
        };
        for addr in &profile.bootstrap {
            if let Some(peer) = peer_id_of(addr) {
                client.add_address(peer, addr.clone()).await?;
            }
        }
        Ok(client)
    }

    /// The node the client reached first (or the one that took its place when it went away):
    /// the default node to ask.
    pub fn entry(&self) -> PeerId {
        *self.entry.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// After `gone` (the entry node) failed to answer: the first other known node (a bootstrap
    /// node, or one the entry node listed) that answers `Info` becomes the entry node. Whether
    /// one did.
    async fn reenter(&self, gone: PeerId) -> bool {
        if self.entry() != gone {
            return true;
        }
        let known: Vec<PeerId> =
            self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        for peer in known.iter().filter(|p| **p != gone) {
            if let Ok(Ok(_)) = tokio::time::timeout(PROBE_TIMEOUT, self.info(*peer)).await {
                let mut entry =
                    self.entry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if *entry == gone {
                    *entry = *peer;
                }
                return true;
            }
        }
        false
    }

    /// Tells the client where `peer` can be reached.
    pub async fn add_address(&self, peer: PeerId, addr: Multiaddr) -> Result<(), ClientError> {
        self.commands
            .send(Command::AddAddress { peer, addr })
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Calls protocol `P` on `peer` and waits for the answer, within `P`'s time and size
    /// limits; an answer that says the request failed becomes [`ClientError::Remote`].
    pub async fn call<P: Protocol>(
        &self,
        peer: PeerId,
        request: P::Request,
    ) -> Result<P::Response, ClientError> {
        let failed = |e: CallError| ClientError::Request { peer, reason: rpc::error_chain(&e) };
        let (call, answer) = rpc::Call::new::<P>(&request).map_err(failed)?;
        self.commands.send(Command::Call { peer, call }).await.map_err(|_| ClientError::Closed)?;
        let response = tokio::time::timeout(P::TIMEOUT, answer.get())
            .await
            .map_err(|_| failed(CallError::Timeout(P::TIMEOUT)))?
            .map_err(failed)?;
        match P::refusal(&response) {
            Some(message) => Err(ClientError::Remote { peer, message: message.to_string() }),
            None => Ok(response),
        }
    }

    /// The nodes that run `service`, the entry node first if it does; learns their addresses.
    /// They come from the entry node's directory (every node admitted for the service, whether
    /// the entry node is connected to it or not), or its connected peers from a node that
    /// keeps no directory. The nodes that answer within [`PROBE_TIMEOUT`] come before those
    /// that do not: the entry node lists a peer for a few seconds after it was cut off.
    pub async fn nodes_running(&self, service: &str) -> Result<Vec<PeerId>, ClientError> {
        let mut found = self.nodes_running_unprobed(service).await?;
        let answering = self.answering(&found).await;
        found.sort_by_key(|peer| !answering.contains(peer));
        Ok(found)
    }

    /// The nodes that keep signed counters ([`crate::counters::COUNTING_SERVICES`]), each once,
    /// those that answer first.
    pub async fn counting_nodes(&self) -> Result<Vec<PeerId>, ClientError> {
        let mut found: Vec<PeerId> = Vec::new();
        for service in crate::counters::COUNTING_SERVICES {
            for peer in self.nodes_running_unprobed(service).await? {
                if !found.contains(&peer) {
                    found.push(peer);
                }
            }
        }
        let answering = self.answering(&found).await;
        found.sort_by_key(|peer| !answering.contains(peer));
        Ok(found)
    }

    /// [`Client::nodes_running`] without asking which answer.
    /// An entry node that does not answer (it left the cloud while asked) is replaced by another
    /// bootstrap node, and the question asked again.
    pub(crate) async fn nodes_running_unprobed(
        &self,
        service: &str,
    ) -> Result<Vec<PeerId>, ClientError> {
        let entry = self.entry();
        match self.nodes_running_at(entry, service).await {
            Err(e @ ClientError::Request { .. }) => match self.reenter(entry).await {
                true => self.nodes_running_at(self.entry(), service).await,
                false => Err(e),
            },
            found => found,
        }
    }

    /// [`Client::nodes_running_unprobed`] as `entry` knows them.
    async fn nodes_running_at(
        &self,
        entry: PeerId,
        service: &str,
    ) -> Result<Vec<PeerId>, ClientError> {
        let mut found = Vec::new();
        if self.info(entry).await?.services.iter().any(|s| s == service) {
            found.push(entry);
        }
        let request = AdminRequest::Directory { service: service.to_string() };
        match self.call::<AdminProtocol>(entry, request).await {
            Ok(AdminResponse::Directory(entries)) => {
                for listed in entries.into_iter().filter(|e| e.peer_id != entry) {
                    for addr in listed.addrs {
                        self.add_address(listed.peer_id, addr).await?;
                    }
                    found.push(listed.peer_id);
                }
            }
            // A node from before directories.
            Ok(_) | Err(ClientError::Remote { .. }) => {
                for peer in self.peers(entry).await? {
                    for addr in &peer.addrs {
                        self.add_address(peer.peer_id, addr.clone()).await?;
                    }
                    if peer.services.iter().any(|s| s == service) {
                        found.push(peer.peer_id);
                    }
                }
            }
            Err(e) => return Err(e),
        }
        let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for peer in &found {
            if known.len() < MAX_KNOWN && !known.contains(peer) {
                known.push(*peer);
            }
        }
        Ok(found)
    }

    /// Which of the first [`MAX_PROBED`] of `peers` answer an `Info` within [`PROBE_TIMEOUT`]
    /// (all asked at once; the entry node is known to).
    pub(crate) async fn answering(&self, peers: &[PeerId]) -> std::collections::HashSet<PeerId> {
        let entry = self.entry();
        let answers =
            futures::future::join_all(peers.iter().take(MAX_PROBED).map(|peer| async move {
                let answered = *peer == entry
                    || matches!(
                        tokio::time::timeout(PROBE_TIMEOUT, self.info(*peer)).await,
                        Ok(Ok(_))
                    );
                answered.then_some(*peer)
            }))
            .await;
        answers.into_iter().flatten().collect()
    }

    /// `peer`'s [`NodeInfo`].
    pub async fn info(&self, peer: PeerId) -> Result<NodeInfo, ClientError> {
        match self.call::<AdminProtocol>(peer, AdminRequest::Info).await? {
            AdminResponse::Info(info) => Ok(*info),
            _ => Err(ClientError::Unexpected { peer }),
        }
    }

    /// The nodes `peer` is connected to.
    pub async fn peers(&self, peer: PeerId) -> Result<Vec<PeerInfo>, ClientError> {
        match self.call::<AdminProtocol>(peer, AdminRequest::Peers).await? {
            AdminResponse::Peers(peers) => Ok(peers),
            _ => Err(ClientError::Unexpected { peer }),
        }
    }

    /// `peer`'s signed counter records from sequence number `since` on (one page).
    pub async fn counters(
        &self,
        peer: PeerId,
        since: u64,
        limit: u32,
    ) -> Result<CounterPage, ClientError> {
        match self.call::<AdminProtocol>(peer, AdminRequest::Counters { since, limit }).await? {
            AdminResponse::Counters(page) => Ok(page),
            _ => Err(ClientError::Unexpected { peer }),
        }
    }

    /// A page of `peer`'s log or of a function's output there (the operator's only; see
    /// [`crate::logs`]).
    pub async fn logs(
        &self,
        peer: PeerId,
        query: crate::logs::LogQuery,
    ) -> Result<crate::logs::LogPage, ClientError> {
        match self.call::<AdminProtocol>(peer, AdminRequest::Logs(query)).await? {
            AdminResponse::Logs(page) => Ok(page),
            _ => Err(ClientError::Unexpected { peer }),
        }
    }

    /// Drains `peer` (the operator's only): its heartbeats list no service from then on.
    /// Returns whether it was draining already.
    pub async fn drain(&self, peer: PeerId) -> Result<bool, ClientError> {
        match self.call::<AdminProtocol>(peer, AdminRequest::Drain).await? {
            AdminResponse::Draining { already } => Ok(already),
            _ => Err(ClientError::Unexpected { peer }),
        }
    }

    /// Runs anti-entropy on `peer` now (the operator's only) and says what it found.
    pub async fn anti_entropy(
        &self,
        peer: PeerId,
    ) -> Result<crate::admin::AntiEntropyReport, ClientError> {
        match self.call::<AdminProtocol>(peer, AdminRequest::AntiEntropy).await? {
            AdminResponse::AntiEntropy(report) => Ok(report),
            _ => Err(ClientError::Unexpected { peer }),
        }
    }

    /// Asks hoarder node `peer` to repair the pin of `cid` now (the operator's only).
    pub async fn repair(
        &self,
        peer: PeerId,
        cid: crate::hoarder::BlobId,
    ) -> Result<crate::admin::RepairReport, ClientError> {
        match self.call::<AdminProtocol>(peer, AdminRequest::Repair(cid)).await? {
            AdminResponse::Repair(report) => Ok(report),
            _ => Err(ClientError::Unexpected { peer }),
        }
    }

    /// Every node the entry node knows, itself first, with the addresses it gave for each; the
    /// client learns those addresses, so that it can then ask any of them directly.
    pub async fn nodes(&self) -> Result<Vec<PeerId>, ClientError> {
        let entry = self.entry();
        let peers = self.peers(entry).await?;
        let mut nodes = vec![entry];
        for peer in peers {
            for addr in peer.addrs {
                self.add_address(peer.peer_id, addr).await?;
            }
            nodes.push(peer.peer_id);
        }
        Ok(nodes)
    }
}

/// Nodes asked at once whether they answer.
const MAX_PROBED: usize = 8;

/// Bootstrap addresses dialed at once: a cloud's profile may list hundreds of nodes.
const BOOTSTRAP_BATCH: usize = 8;

/// Dials the bootstrap addresses in random order, [`BOOTSTRAP_BATCH`] at a time (the next one
/// as each fails), and waits for the first connection.
async fn dial_bootstrap(
    swarm: &mut Swarm<Behaviour>,
    bootstrap: &[Multiaddr],
    timeout: Duration,
) -> Result<PeerId, ClientError> {
    use rand::seq::SliceRandom;
    let mut attempts = Vec::new();
    let mut outstanding = 0usize;
    for addr in bootstrap {
        if let Some(peer) = peer_id_of(addr) {
            swarm.add_peer_address(peer, addr.clone());
        }
    }
    let mut order: Vec<&Multiaddr> = bootstrap.iter().collect();
    order.shuffle(&mut rand::rng());
    let mut order = order.into_iter();
    let dial_more = |swarm: &mut Swarm<Behaviour>,
                     order: &mut std::vec::IntoIter<&Multiaddr>,
                     outstanding: &mut usize,
                     attempts: &mut Vec<String>| {
        while *outstanding < BOOTSTRAP_BATCH {
            let Some(addr) = order.next() else { break };
            match swarm.dial(addr.clone()) {
                Ok(()) => *outstanding += 1,
                Err(e) => attempts.push(format!("{addr}: {e}")),
            }
        }
    };
    dial_more(swarm, &mut order, &mut outstanding, &mut attempts);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    while outstanding > 0 {
        tokio::select! {
            _ = &mut deadline => {
                attempts.push(format!("timed out after {timeout:?}"));
                break;
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => return Ok(peer_id),
                SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                    outstanding -= 1;
                    let who = peer_id.map(|p| p.to_string()).unwrap_or_default();
                    attempts.push(format!("{who}: {}", rpc::error_chain(&error)));
                    dial_more(swarm, &mut order, &mut outstanding, &mut attempts);
                }
                _ => {}
            }
        }
    }
    Err(ClientError::Unreachable { attempts })
}

/// The task that owns the client's swarm.
async fn run(mut swarm: Swarm<Behaviour>, mut commands: mpsc::Receiver<Command>) {
    // The client's own address book: the swarm forgets an address after one failed dial, but a
    // node that was not up yet may well be up at the next request.
    let mut addresses: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => break,
                Some(Command::AddAddress { peer, addr }) => {
                    let known = addresses.entry(peer).or_default();
                    if !known.contains(&addr) {
                        known.push(addr);
                    }
                }
                Some(Command::Call { peer, call }) => {
                    let addrs = addresses.get(&peer).cloned().unwrap_or_default();
                    swarm.behaviour_mut().rpc.call(peer, call, addrs);
                }
            },
            event = swarm.select_next_some() => tracing::trace!(?event, "client swarm event"),
        }
    }
}
