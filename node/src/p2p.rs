//! The p2p core: the one task that owns the libp2p `Swarm`, and the handle the rest of the node
//! uses to talk to it. It knows no service by name: a service registers a handler for its
//! protocol ([`Handle::serve`]), calls any protocol ([`Handle::call`]) and uses gossip topics
//! ([`Handle::subscribe`], [`Handle::publish`]), each named by a type of `tau_proto`.
//!
//! - [`behaviour`]: identify, ping, kad, gossipsub and [`tau_proto::net::rpc`] (every
//!   request-response protocol), on the transport of [`tau_proto::net`] (TCP + pnet + noise +
//!   yamux).
//! - [`event_loop`]: the task. It keeps the peer table, keeps connections to a bounded number of
//!   the cloud's nodes (kad finds them; between `connections.target` and `.ceiling`), dials a
//!   node a request is for when not connected (looking its address up in kad when needed),
//!   redials bootstrap peers with backoff while it has no node, drops connections whose pings
//!   fail, and answers the core's own admin requests and the directory from its state.
//! - [`service`]: how a protocol is served and called; [`gossip`]: topics.
//! - [`peers`]: the peer table.
//!
//! Libp2p types do not leave this module (and `tau_proto`'s client); services get a [`Handle`].

mod behaviour;
mod event_loop;
mod gossip;
mod peers;
mod service;

use std::time::Instant;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use tau_proto::SwarmKey;
use tau_proto::admin::{AdminRequest, AdminResponse, Location, PeerInfo, Resources};
use tau_proto::membership::Admitted;
use tau_proto::net::rpc::{self, CallError};
use tau_proto::node_config::ConnectionsConfig;
use tau_proto::protocol::{Access, Protocol, Topic};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the p2p core needs to start.
pub struct P2pConfig {
    /// The node's identity.
    pub keypair: Keypair,
    /// The cloud's swarm key.
    pub swarm_key: SwarmKey,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Addresses to announce instead.
    pub announce: Vec<Multiaddr>,
    /// Peers to join through.
    pub bootstrap: Vec<Multiaddr>,
    /// What the admin protocol reports about this node.
    pub admin: AdminContext,
    /// Who is admitted until the membership says otherwise: [`Admitted::Open`] without an
    /// operator key, else nobody yet.
    pub admitted: Admitted,
    /// How many nodes to keep connections to.
    pub connections: ConnectionsConfig,
}

/// The node facts the admin protocol reports, besides the swarm's own.
pub struct AdminContext {
    /// The services this node runs.
    pub services: Vec<String>,
    /// Where it is.
    pub location: Option<Location>,
    /// When it started.
    pub started: Instant,
    /// The latest resource sample.
    pub resources: watch::Receiver<Resources>,
    /// Whether the node is draining (leaving).
    pub leaving: watch::Receiver<bool>,
    /// Whether every service has started.
    pub ready: watch::Receiver<bool>,
}

/// Why the p2p core could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum P2pError {
    /// The transport or a behaviour could not be built.
    #[error("cannot build the p2p stack: {0}")]
    Build(String),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
}

pub use gossip::{GossipError, GossipMessage, MessageRef, Verdict};
pub use service::{Inbound, RequestError};

/// A node that runs a service, as the directory knows it ([`Handle::nodes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    /// The node.
    pub peer: PeerId,
    /// Whether this node is connected to it now (a request to any other dials it first).
    pub connected: bool,
    /// Its latest ping round trip, when connected.
    pub rtt: Option<std::time::Duration>,
    /// How long since it last answered a ping, when connected (a node cut off stays connected
    /// for a few seconds, but goes quiet at once).
    pub quiet: Option<std::time::Duration>,
}

pub(crate) enum Command {
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Nodes {
        service: String,
        reply: oneshot::Sender<Vec<NodeRef>>,
    },
    Addresses {
        peer: PeerId,
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Candidates(oneshot::Sender<Vec<PeerId>>),
    Admit(Admitted),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Call {
        peer: PeerId,
        call: rpc::Call,
    },
    Serve {
        protocol: StreamProtocol,
        route: rpc::Route,
    },
    ExtendAdmin(mpsc::Sender<Inbound<AdminRequest, AdminResponse>>),
    Subscribe {
        topic: &'static str,
        access: Access,
        sender: mpsc::Sender<GossipMessage>,
        answer: oneshot::Sender<Result<(), GossipError>>,
    },
    Publish {
        topic: &'static str,
        data: Vec<u8>,
        answer: oneshot::Sender<Result<(), GossipError>>,
    },
    Validate {
        message: MessageRef,
        verdict: Verdict,
    },
}

/// A cheap, cloneable handle to the swarm task.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
}

/// The handle's task has stopped (the node is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the p2p task has stopped")]
pub struct Stopped;

impl Handle {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The nodes this node is connected to.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, Stopped> {
        self.ask(Command::Peers).await
    }

    /// The nodes that run `service`, whether connected or not: with an operator key, every node
    /// it admitted for the service (connected ones by the services they said they run);
    /// without one, the connected nodes that say they run it. Connected nodes come first,
    /// nearest first, then the others in random order. A request to one that is not connected
    /// dials it (finding its address through kad when needed).
    pub async fn nodes(&self, service: &str) -> Result<Vec<NodeRef>, Stopped> {
        let service = service.to_string();
        self.ask(|reply| Command::Nodes { service, reply }).await
    }

    /// The addresses this node knows for `peer` (what it said in identify, what kad holds or
    /// a lookup found); none yet starts a lookup, so that they are known next time.
    pub async fn addresses(&self, peer: PeerId) -> Result<Vec<Multiaddr>, Stopped> {
        self.ask(|reply| Command::Addresses { peer, reply }).await
    }

    /// The connected peers that say they are nodes, admitted or not: where admission records
    /// can be asked for before any is known.
    pub async fn candidates(&self) -> Result<Vec<PeerId>, Stopped> {
        self.ask(Command::Candidates).await
    }

    /// From now on only the peers `admitted` allows count as nodes: listed by `peers`,
    /// believed for the services they are admitted for, heard on topics and answered on
    /// protocols open to nodes or a role.
    pub async fn admit(&self, admitted: Admitted) -> Result<(), Stopped> {
        self.commands.send(Command::Admit(admitted)).await.map_err(|_| Stopped)
    }

    /// The addresses the swarm listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, Stopped> {
        self.ask(Command::ListenAddrs).await
    }

    /// Serves protocol `P`: from now on each request a peer sends for it arrives in `inbox`,
    /// already checked against `P`'s size limit and decoded. The answer goes back through the
    /// request's `reply`; a request left unanswered for `P::TIMEOUT`, or whose `reply` is
    /// dropped, leaves the peer with an error. A full inbox refuses the request.
    pub async fn serve<P: Protocol>(
        &self,
        inbox: mpsc::Sender<Inbound<P::Request, P::Response>>,
    ) -> Result<(), Stopped> {
        let protocol = StreamProtocol::new(P::NAME);
        let route = rpc::route::<P>(inbox);
        self.commands.send(Command::Serve { protocol, route }).await.map_err(|_| Stopped)
    }

    /// Calls protocol `P` on `peer` (dialing it if needed) and waits for the answer, within
    /// `P`'s time and size limits.
    pub async fn call<P: Protocol>(
        &self,
        peer: PeerId,
        request: P::Request,
    ) -> Result<P::Response, RequestError> {
        let failed = |e: CallError| RequestError {
            peer,
            reason: rpc::error_chain(&e),
            undelivered: e.never_delivered(),
        };
        let (call, answer) = rpc::Call::new::<P>(&request).map_err(failed)?;
        self.commands.send(Command::Call { peer, call }).await.map_err(|_| RequestError {
            peer,
            reason: Stopped.to_string(),
            undelivered: true,
        })?;
        tokio::time::timeout(P::TIMEOUT, answer.get())
            .await
            .map_err(|_| failed(CallError::Timeout(P::TIMEOUT)))?
            .map_err(failed)
    }

    /// Hands the admin requests the p2p core does not answer itself (all but `Info` and
    /// `Peers`) to `inbox`; without one, they are answered with an error.
    pub async fn extend_admin(
        &self,
        inbox: mpsc::Sender<Inbound<AdminRequest, AdminResponse>>,
    ) -> Result<(), Stopped> {
        self.commands.send(Command::ExtendAdmin(inbox)).await.map_err(|_| Stopped)
    }

    /// Subscribes to gossip topic `T`; its messages arrive on the returned channel and each
    /// needs a verdict ([`Handle::validate`]) before it is forwarded.
    pub async fn subscribe<T: Topic>(&self) -> Result<mpsc::Receiver<GossipMessage>, GossipError> {
        let (sender, receiver) = mpsc::channel(1024);
        let (topic, access) = (T::NAME, T::ACCESS);
        self.ask(|answer| Command::Subscribe { topic, access, sender, answer }).await??;
        Ok(receiver)
    }

    /// Publishes on gossip topic `T` (fails when no peer is subscribed yet).
    pub async fn publish<T: Topic>(&self, data: Vec<u8>) -> Result<(), GossipError> {
        self.ask(|answer| Command::Publish { topic: T::NAME, data, answer }).await?
    }

    /// Reports the verdict on a received gossip message.
    pub async fn validate(&self, message: MessageRef, verdict: Verdict) -> Result<(), Stopped> {
        self.commands.send(Command::Validate { message, verdict }).await.map_err(|_| Stopped)
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).await.map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }
}

/// Builds the swarm, binds the listen addresses, and starts the task that owns it. The task
/// stops when `shutdown` is cancelled; await the returned join handle to know it has.
pub async fn spawn(
    config: P2pConfig,
    shutdown: CancellationToken,
) -> Result<(Handle, JoinHandle<()>), P2pError> {
    let peer_id = config.keypair.public().to_peer_id();
    let mut swarm = behaviour::build(config.keypair, &config.swarm_key)?;
    let mut listeners = Vec::new();
    for addr in &config.listen {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| P2pError::Listen { addr: addr.clone(), reason: e.to_string() })?;
        listeners.push(id);
    }
    for addr in &config.announce {
        swarm.add_external_address(addr.clone());
    }
    let (commands, receiver) = mpsc::channel(256);
    let (admin, admin_requests) = mpsc::channel(256);
    swarm.behaviour_mut().rpc.admit(config.admitted.clone());
    let mut event_loop = event_loop::EventLoop::new(
        swarm,
        receiver,
        admin_requests,
        config.bootstrap,
        config.admin,
        config.admitted,
        &config.connections,
    );
    event_loop.wait_listening(&listeners).await?;
    let task = tokio::spawn(event_loop.run(shutdown));
    let handle = Handle { commands, peer_id };
    // The core's own protocol: the loop answers what it can from its state.
    handle
        .serve::<tau_proto::admin::AdminProtocol>(admin)
        .await
        .map_err(|e| P2pError::Build(e.to_string()))?;
    Ok((handle, task))
}
