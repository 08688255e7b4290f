//! The light client: how `tau-node status`, taucorder and q talk to a cloud.
//!
//! [`Client::connect`] takes a [`CloudProfile`], makes an ephemeral identity, dials the bootstrap
//! addresses with the cloud's swarm key and returns once one node has answered the handshake.
//! One task owns the client's swarm; [`Client`] is a cheap cloneable handle that sends it
//! commands with oneshot replies. Dropping every handle stops the task and closes connections.

mod registry;
mod secrets;

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identify};
use tokio::sync::{mpsc, oneshot};

use crate::admin::{self, AdminRequest, AdminResponse, NodeInfo, PeerInfo};
use crate::counters::CounterPage;
use crate::hoarder::{self, HoarderRequest, HoarderResponse};
use crate::profile::{ProfileError, peer_id_of};
use crate::seer::{self, SeerRequest, SeerResponse};
use crate::tns::{self, TnsRequest, TnsResponse};
use crate::vault::{self, VaultRequest, VaultResponse};
use crate::{CloudProfile, net};

pub use registry::RecordView;
pub use secrets::{NodeShare, Registered, Revealed, SecretError, Stored, VaultReport, unix_now};

/// How long a request may wait for its answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Client::nodes_running`] waits for a node to answer before it lists it last.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the client could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
        /// The node asked.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The node answered with an error.
    #[error("{peer} answered with an error: {message}")]
    Remote {
        /// The node asked.
        peer: PeerId,
        /// Its message.
        message: String,
    },
    /// The node answered something that does not fit the request.
    #[error("{peer} gave an unexpected answer")]
    Unexpected {
        /// The node asked.
        peer: PeerId,
    },
    /// The client's task has stopped.
    #[error("the client has stopped")]
    Closed,
}

/// Options for [`Client::connect_with`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// How long to try the bootstrap addresses before giving up.
    pub timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(10) }
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    identify: identify::Behaviour,
    admin: request_response::cbor::Behaviour<AdminRequest, AdminResponse>,
    tns: request_response::cbor::Behaviour<TnsRequest, TnsResponse>,
    hoarder: request_response::cbor::Behaviour<HoarderRequest, HoarderResponse>,
    vault: request_response::cbor::Behaviour<VaultRequest, VaultResponse>,
    seer: request_response::cbor::Behaviour<SeerRequest, SeerResponse>,
}

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

/// A service's answer that may be its `Error` variant.
trait Answer: Sized {
    /// The answer, or the node's error message.
    fn ok(self) -> Result<Self, String>;
}

/// Every service answer has an `Error(String)` variant.
macro_rules! answer {
    ($($response:ty),*) => {$(
        impl Answer for $response {
            fn ok(self) -> Result<Self, String> {
                match self {
                    Self::Error(message) => Err(message),
                    other => Ok(other),
                }
            }
        }
    )*};
}

answer!(AdminResponse, TnsResponse, HoarderResponse, VaultResponse, SeerResponse);

enum Command {
    Admin { peer: PeerId, request: AdminRequest, reply: Reply<AdminResponse> },
    Tns { peer: PeerId, request: TnsRequest, reply: Reply<TnsResponse> },
    Hoarder { peer: PeerId, request: HoarderRequest, reply: Reply<HoarderResponse> },
    Vault { peer: PeerId, request: VaultRequest, reply: Reply<VaultResponse> },
    Seer { peer: PeerId, request: SeerRequest, reply: Reply<SeerResponse> },
    AddAddress { peer: PeerId, addr: Multiaddr },
}

/// A handle to a connected light client.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    entry: PeerId,
}

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
        let keypair = Keypair::generate_ed25519();
        let mut swarm =
            net::swarm(keypair, &swarm_key, Duration::from_secs(60), |key| Behaviour {
                identify: identify::Behaviour::new(
                    identify::Config::new("/tau/id/1".into(), key.public()).with_agent_version(
                        format!("{}{}", crate::CLIENT_AGENT_PREFIX, crate::VERSION),
                    ),
                ),
                admin: request_response::cbor::Behaviour::new(
                    [(StreamProtocol::new(admin::PROTOCOL), ProtocolSupport::Outbound)],
                    request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT),
                ),
                tns: net::service(tns::PROTOCOL, false, REQUEST_TIMEOUT),
                hoarder: net::service(hoarder::PROTOCOL, false, hoarder::REQUEST_TIMEOUT),
                vault: net::service(vault::PROTOCOL, false, vault::REQUEST_TIMEOUT),
                seer: net::service(seer::PROTOCOL, false, REQUEST_TIMEOUT),
            })?;
        let entry = dial_bootstrap(&mut swarm, &profile.bootstrap, options.timeout).await?;
        let (commands, receiver) = mpsc::channel(64);
        tokio::spawn(run(swarm, receiver));
        let client = Self { commands, entry };
        for addr in &profile.bootstrap {
            if let Some(peer) = peer_id_of(addr) {
                client.add_address(peer, addr.clone()).await?;
            }
        }
        Ok(client)
    }

    /// The node the client reached first: the default node to ask.
    pub fn entry(&self) -> PeerId {
        self.entry
    }

    /// Tells the client where `peer` can be reached.
    pub async fn add_address(&self, peer: PeerId, addr: Multiaddr) -> Result<(), ClientError> {
        self.commands
            .send(Command::AddAddress { peer, addr })
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Sends an admin request to `peer` and waits for the answer.
    pub async fn admin(
        &self,
        peer: PeerId,
        request: AdminRequest,
    ) -> Result<AdminResponse, ClientError> {
        self.request(peer, request, |peer, request, reply| Command::Admin { peer, request, reply })
            .await
    }

    /// Sends a TNS request to `peer` and waits for the answer.
    pub async fn tns(&self, peer: PeerId, request: TnsRequest) -> Result<TnsResponse, ClientError> {
        self.request(peer, request, |peer, request, reply| Command::Tns { peer, request, reply })
            .await
    }

    /// Sends a hoarder request to `peer` and waits for the answer.
    pub async fn hoarder(
        &self,
        peer: PeerId,
        request: HoarderRequest,
    ) -> Result<HoarderResponse, ClientError> {
        self.request(peer, request, |peer, request, reply| Command::Hoarder {
            peer,
            request,
            reply,
        })
        .await
    }

    /// Sends a vault request to `peer` and waits for the answer.
    pub async fn vault(
        &self,
        peer: PeerId,
        request: VaultRequest,
    ) -> Result<VaultResponse, ClientError> {
        self.request(peer, request, |peer, request, reply| Command::Vault { peer, request, reply })
            .await
    }

    /// Sends a seer request to `peer` and waits for the answer.
    pub async fn seer(
        &self,
        peer: PeerId,
        request: SeerRequest,
    ) -> Result<SeerResponse, ClientError> {
        self.request(peer, request, |peer, request, reply| Command::Seer { peer, request, reply })
            .await
    }

    /// Every node a seer knows, with its latest heartbeat and health.
    pub async fn seer_nodes(&self, peer: PeerId) -> Result<Vec<seer::NodeStatus>, ClientError> {
        match self.seer(peer, SeerRequest::Nodes).await? {
            SeerResponse::Nodes(nodes) => Ok(nodes),
            _ => Err(ClientError::Unexpected { peer }),
        }
    }

    /// Sends a request through the client's task; an error answer becomes [`ClientError::Remote`].
    async fn request<Req, Resp: Answer>(
        &self,
        peer: PeerId,
        request: Req,
        command: fn(PeerId, Req, Reply<Resp>) -> Command,
    ) -> Result<Resp, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(peer, request, reply)).await.map_err(|_| ClientError::Closed)?;
        answer
            .await
            .map_err(|_| ClientError::Closed)??
            .ok()
            .map_err(|message| ClientError::Remote { peer, message })
    }

    /// The nodes that run `service`, the entry node first if it does; learns their addresses.
    /// The nodes that answer within [`PROBE_TIMEOUT`] come before those that do not: the entry
    /// node lists a peer for a few seconds after it was cut off.
    pub async fn nodes_running(&self, service: &str) -> Result<Vec<PeerId>, ClientError> {
        let mut found = Vec::new();
        if self.info(self.entry).await?.services.iter().any(|s| s == service) {
            found.push(self.entry);
        }
        for peer in self.peers(self.entry).await? {
            for addr in &peer.addrs {
                self.add_address(peer.peer_id, addr.clone()).await?;
            }
            if peer.services.iter().any(|s| s == service) {
                found.push(peer.peer_id);
            }
        }
        let answering = self.answering(&found).await;
        found.sort_by_key(|peer| !answering.contains(peer));
        Ok(found)
    }

    /// Which of `peers` answer an `Info` within [`PROBE_TIMEOUT`] (all asked at once; the
    /// entry node is known to).
    pub(crate) async fn answering(&self, peers: &[PeerId]) -> std::collections::HashSet<PeerId> {
        let answers = futures::future::join_all(peers.iter().map(|peer| async move {
            let answered = *peer == self.entry
                || matches!(tokio::time::timeout(PROBE_TIMEOUT, self.info(*peer)).await, Ok(Ok(_)));
            answered.then_some(*peer)
        }))
        .await;
        answers.into_iter().flatten().collect()
    }

    /// `peer`'s [`NodeInfo`].
    pub async fn info(&self, peer: PeerId) -> Result<NodeInfo, ClientError> {
        match self.admin(peer, AdminRequest::Info).await? {
            AdminResponse::Info(info) => Ok(*info),
            _ => Err(ClientError::Unexpected { peer }),
        }
    }

    /// The nodes `peer` is connected to.
    pub async fn peers(&self, peer: PeerId) -> Result<Vec<PeerInfo>, ClientError> {
        match self.admin(peer, AdminRequest::Peers).await? {
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
        match self.admin(peer, AdminRequest::Counters { since, limit }).await? {
            AdminResponse::Counters(page) => Ok(page),
            _ => Err(ClientError::Unexpected { peer }),
        }
    }

    /// Every node the entry node knows, itself first, with the addresses it gave for each; the
    /// client learns those addresses, so that it can then ask any of them directly.
    pub async fn nodes(&self) -> Result<Vec<PeerId>, ClientError> {
        let peers = self.peers(self.entry).await?;
        let mut nodes = vec![self.entry];
        for peer in peers {
            for addr in peer.addrs {
                self.add_address(peer.peer_id, addr).await?;
            }
            nodes.push(peer.peer_id);
        }
        Ok(nodes)
    }
}

/// Dials every bootstrap address and waits for the first connection.
async fn dial_bootstrap(
    swarm: &mut Swarm<Behaviour>,
    bootstrap: &[Multiaddr],
    timeout: Duration,
) -> Result<PeerId, ClientError> {
    let mut attempts = Vec::new();
    let mut outstanding = 0usize;
    for addr in bootstrap {
        if let Some(peer) = peer_id_of(addr) {
            swarm.add_peer_address(peer, addr.clone());
        }
        match swarm.dial(addr.clone()) {
            Ok(()) => outstanding += 1,
            Err(e) => attempts.push(format!("{addr}: {e}")),
        }
    }
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
                    attempts.push(format!("{who}: {}", error_chain(&error)));
                }
                _ => {}
            }
        }
    }
    Err(ClientError::Unreachable { attempts })
}

/// An error and its sources on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}

/// The task that owns the client's swarm.
async fn run(mut swarm: Swarm<Behaviour>, mut commands: mpsc::Receiver<Command>) {
    let mut pending: HashMap<OutboundRequestId, Reply<AdminResponse>> = HashMap::new();
    let mut pending_tns: HashMap<OutboundRequestId, Reply<TnsResponse>> = HashMap::new();
    let mut pending_hoarder: HashMap<OutboundRequestId, Reply<HoarderResponse>> = HashMap::new();
    let mut pending_vault: HashMap<OutboundRequestId, Reply<VaultResponse>> = HashMap::new();
    let mut pending_seer: HashMap<OutboundRequestId, Reply<SeerResponse>> = HashMap::new();
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
                Some(Command::Admin { peer, request, reply }) => {
                    let addrs = addresses.get(&peer).cloned().unwrap_or_default();
                    let admin = &mut swarm.behaviour_mut().admin;
                    let id = admin.send_request_with_addresses(&peer, request, addrs);
                    pending.insert(id, reply);
                }
                Some(Command::Tns { peer, request, reply }) => {
                    let addrs = addresses.get(&peer).cloned().unwrap_or_default();
                    let id = swarm.behaviour_mut().tns.send_request_with_addresses(&peer, request, addrs);
                    pending_tns.insert(id, reply);
                }
                Some(Command::Hoarder { peer, request, reply }) => {
                    let addrs = addresses.get(&peer).cloned().unwrap_or_default();
                    let id = swarm.behaviour_mut().hoarder.send_request_with_addresses(&peer, request, addrs);
                    pending_hoarder.insert(id, reply);
                }
                Some(Command::Vault { peer, request, reply }) => {
                    let addrs = addresses.get(&peer).cloned().unwrap_or_default();
                    let id = swarm.behaviour_mut().vault.send_request_with_addresses(&peer, request, addrs);
                    pending_vault.insert(id, reply);
                }
                Some(Command::Seer { peer, request, reply }) => {
                    let addrs = addresses.get(&peer).cloned().unwrap_or_default();
                    let id = swarm.behaviour_mut().seer.send_request_with_addresses(&peer, request, addrs);
                    pending_seer.insert(id, reply);
                }
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(BehaviourEvent::Admin(event)) => answer(&mut pending, event),
                SwarmEvent::Behaviour(BehaviourEvent::Tns(event)) => answer(&mut pending_tns, event),
                SwarmEvent::Behaviour(BehaviourEvent::Hoarder(event)) => answer(&mut pending_hoarder, event),
                SwarmEvent::Behaviour(BehaviourEvent::Vault(event)) => answer(&mut pending_vault, event),
                SwarmEvent::Behaviour(BehaviourEvent::Seer(event)) => answer(&mut pending_seer, event),
                other => tracing::trace!(?other, "client swarm event"),
            }
        }
    }
}

/// Hands a response (or the failure) to whoever is waiting for it.
fn answer<Req, Resp>(
    pending: &mut HashMap<OutboundRequestId, Reply<Resp>>,
    event: request_response::Event<Req, Resp>,
) {
    match event {
        request_response::Event::Message {
            message: request_response::Message::Response { request_id, response },
            ..
        } => {
            if let Some(reply) = pending.remove(&request_id) {
                let _ = reply.send(Ok(response));
            }
        }
        request_response::Event::OutboundFailure { request_id, error, peer, .. } => {
            if let Some(reply) = pending.remove(&request_id) {
                let reason = error_chain(&error);
                let _ = reply.send(Err(ClientError::Request { peer, reason }));
            }
        }
        _ => {}
    }
}

impl hoarder::transfer::Asker for Client {
    async fn ask(&self, peer: PeerId, request: HoarderRequest) -> Result<HoarderResponse, String> {
        self.hoarder(peer, request).await.map_err(|e| e.to_string())
    }
}
