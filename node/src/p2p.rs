//! The p2p core: the one task that owns the libp2p `Swarm`, and the handle the rest of the node
//! uses to talk to it.
//!
//! - [`behaviour`]: identify, ping, kad, gossipsub and request-response (CBOR) for `/tau/admin/1`,
//!   on the transport of [`tau_proto::net`] (TCP + pnet + noise + yamux).
//! - [`event_loop`]: the task. It keeps the peer table, keeps a full mesh with the cloud's nodes
//!   (kad finds them, the loop dials them), redials bootstrap peers with backoff, drops
//!   connections whose pings fail, and answers admin requests from its own state.
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
use libp2p::{Multiaddr, PeerId};
use tau_proto::SwarmKey;
use tau_proto::admin::{AdminRequest, AdminResponse, Location, PeerInfo, Resources};
use tau_proto::hoarder::{HoarderRequest, HoarderResponse};
use tau_proto::seer::{SeerRequest, SeerResponse};
use tau_proto::tns::{TnsRequest, TnsResponse};
use tau_proto::vault::{VaultRequest, VaultResponse};
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
}

/// Why the p2p core could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum P2pError {
    /// The transport or a behaviour could not be built.
    #[error("cannot build the p2p stack: {0}")]
    Build(String),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
}

pub use gossip::{GossipMessage, MessageRef, Verdict};
pub(crate) use service::ServiceCommand;
pub use service::{Inbound, RequestError};

pub(crate) enum Command {
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Tns(ServiceCommand<TnsRequest, TnsResponse>),
    Hoarder(ServiceCommand<HoarderRequest, HoarderResponse>),
    Vault(ServiceCommand<VaultRequest, VaultResponse>),
    Seer(ServiceCommand<SeerRequest, SeerResponse>),
    Admin(ServiceCommand<AdminRequest, AdminResponse>),
    Subscribe {
        topic: String,
        sender: mpsc::Sender<GossipMessage>,
        answer: oneshot::Sender<Result<(), String>>,
    },
    Publish {
        topic: String,
        data: Vec<u8>,
        answer: oneshot::Sender<Result<(), String>>,
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

    /// The addresses the swarm listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, Stopped> {
        self.ask(Command::ListenAddrs).await
    }

    /// Routes inbound `/tau/tns/1` requests to `inbox` (only nodes running tns serve it).
    pub async fn serve_tns(
        &self,
        inbox: mpsc::Sender<Inbound<TnsRequest, TnsResponse>>,
    ) -> Result<(), Stopped> {
        self.commands.send(Command::Tns(ServiceCommand::Serve(inbox))).await.map_err(|_| Stopped)
    }

    /// Sends a TNS request to `peer` and waits for the answer.
    pub async fn tns(
        &self,
        peer: PeerId,
        request: TnsRequest,
    ) -> Result<TnsResponse, RequestError> {
        self.request(peer, request, Command::Tns).await
    }

    /// Routes inbound `/tau/hoarder/1` requests to `inbox`.
    pub async fn serve_hoarder(
        &self,
        inbox: mpsc::Sender<Inbound<HoarderRequest, HoarderResponse>>,
    ) -> Result<(), Stopped> {
        self.commands
            .send(Command::Hoarder(ServiceCommand::Serve(inbox)))
            .await
            .map_err(|_| Stopped)
    }

    /// Routes inbound `/tau/vault/1` requests to `inbox` (only vault nodes serve it).
    pub async fn serve_vault(
        &self,
        inbox: mpsc::Sender<Inbound<VaultRequest, VaultResponse>>,
    ) -> Result<(), Stopped> {
        self.commands.send(Command::Vault(ServiceCommand::Serve(inbox))).await.map_err(|_| Stopped)
    }

    /// Routes inbound `/tau/seer/1` requests to `inbox` (only seer nodes serve it).
    pub async fn serve_seer(
        &self,
        inbox: mpsc::Sender<Inbound<SeerRequest, SeerResponse>>,
    ) -> Result<(), Stopped> {
        self.commands.send(Command::Seer(ServiceCommand::Serve(inbox))).await.map_err(|_| Stopped)
    }

    /// Sends a hoarder request to `peer` and waits for the answer.
    pub async fn hoarder(
        &self,
        peer: PeerId,
        request: HoarderRequest,
    ) -> Result<HoarderResponse, RequestError> {
        self.request(peer, request, Command::Hoarder).await
    }

    /// Routes the admin requests the p2p task does not answer itself (`Counters`,
    /// `AckCounters`) to `inbox`.
    pub async fn serve_admin(
        &self,
        inbox: mpsc::Sender<Inbound<AdminRequest, AdminResponse>>,
    ) -> Result<(), Stopped> {
        self.commands.send(Command::Admin(ServiceCommand::Serve(inbox))).await.map_err(|_| Stopped)
    }

    async fn request<Req, Resp>(
        &self,
        peer: PeerId,
        request: Req,
        wrap: fn(ServiceCommand<Req, Resp>) -> Command,
    ) -> Result<Resp, RequestError> {
        let stopped = || RequestError { peer, reason: Stopped.to_string() };
        self.ask(|answer| wrap(ServiceCommand::Request { peer, request, answer }))
            .await
            .map_err(|_| stopped())?
    }

    /// Subscribes to a gossip topic; its messages arrive on the returned channel and each needs a
    /// verdict ([`Handle::validate`]) before it is forwarded.
    pub async fn subscribe(&self, topic: &str) -> Result<mpsc::Receiver<GossipMessage>, String> {
        let (sender, receiver) = mpsc::channel(1024);
        let topic = topic.to_string();
        self.ask(|answer| Command::Subscribe { topic, sender, answer })
            .await
            .map_err(|e| e.to_string())??;
        Ok(receiver)
    }

    /// Publishes on a gossip topic (fails when no peer is subscribed yet).
    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<(), String> {
        let topic = topic.to_string();
        self.ask(|answer| Command::Publish { topic, data, answer })
            .await
            .map_err(|e| e.to_string())?
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
    let mut swarm = behaviour::build(config.keypair, &config.swarm_key, &config.admin.services)?;
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
    let mut event_loop =
        event_loop::EventLoop::new(swarm, receiver, config.bootstrap, config.admin);
    event_loop.wait_listening(&listeners).await?;
    let task = tokio::spawn(event_loop.run(shutdown));
    Ok((Handle { commands, peer_id }, task))
}
