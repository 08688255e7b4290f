//! The task that owns the swarm.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::gossipsub;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identify, kad, ping};
use tau_proto::admin::{AdminProtocol, AdminRequest, AdminResponse, NodeInfo};
use tau_proto::membership::Admitted;
use tau_proto::net::rpc;
use tau_proto::profile::peer_id_of;
use tau_proto::protocol::Protocol;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL};
use super::gossip::Topics;
use super::peers::{PeerTable, usable};
use super::{AdminContext, Command, Inbound, P2pError};

type AdminInbound = Inbound<AdminRequest, AdminResponse>;

/// How often the loop looks after its connections.
const TICK: Duration = Duration::from_millis(250);
/// First and longest wait between two dials of a bootstrap peer.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often kad looks for new nodes: often while the mesh forms, rarely after.
const KAD_FAST: Duration = Duration::from_secs(2);
const KAD_SLOW: Duration = Duration::from_secs(30);
const FAST_PERIOD: Duration = Duration::from_secs(20);
/// How often the loop dials nodes kad knows but it is not connected to.
const MESH_CHECK: Duration = Duration::from_secs(5);
/// More peers than this are not dialed by the loop (kad still routes to them).
const MAX_DIALED_PEERS: usize = 200;
/// Consecutive failed pings after which a connection is closed.
const MAX_PING_FAILURES: u32 = 2;

struct Bootstrap {
    peer: PeerId,
    addr: Multiaddr,
    next: Instant,
    backoff: Duration,
}

pub(super) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    peers: PeerTable,
    bootstrap: Vec<Bootstrap>,
    admin: AdminContext,
    /// `Info` requests this node sent to learn a peer's services: the peer and its services.
    service_requests: FuturesUnordered<BoxFuture<'static, (PeerId, Option<Vec<String>>)>>,
    next_kad_bootstrap: Option<Instant>,
    next_mesh_check: Instant,
    /// Admin requests from peers, read and decoded by the admin protocol's server.
    admin_requests: mpsc::Receiver<AdminInbound>,
    /// Where the admin requests the loop cannot answer itself go.
    admin_extension: Option<mpsc::Sender<AdminInbound>>,
    topics: Topics,
    /// Who counts as a node.
    admitted: Admitted,
}

impl EventLoop {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        admin_requests: mpsc::Receiver<AdminInbound>,
        bootstrap: Vec<Multiaddr>,
        admin: AdminContext,
        admitted: Admitted,
    ) -> Self {
        let now = Instant::now();
        let local = *swarm.local_peer_id();
        let bootstrap = bootstrap
            .into_iter()
            .filter_map(|addr| Some((peer_id_of(&addr)?, addr)))
            .filter(|(peer, _)| *peer != local)
            .map(|(peer, addr)| Bootstrap { peer, addr, next: now, backoff: BACKOFF_MIN })
            .collect();
        Self {
            swarm,
            commands,
            peers: PeerTable::default(),
            bootstrap,
            admin,
            service_requests: FuturesUnordered::new(),
            next_kad_bootstrap: None,
            next_mesh_check: now + MESH_CHECK,
            admin_requests,
            admin_extension: None,
            topics: Topics::default(),
            admitted,
        }
    }

    /// Drives the swarm until every listener has reported an address.
    pub(super) async fn wait_listening(
        &mut self,
        listeners: &[ListenerId],
    ) -> Result<(), P2pError> {
        let mut waiting: HashSet<ListenerId> = listeners.iter().copied().collect();
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        while !waiting.is_empty() {
            tokio::select! {
                _ = &mut deadline => {
                    return Err(P2pError::Build("listeners did not start within 10 s".into()));
                }
                event = self.swarm.select_next_some() => match event {
                    SwarmEvent::NewListenAddr { listener_id, address } => {
                        tracing::info!(%address, "listening");
                        waiting.remove(&listener_id);
                    }
                    SwarmEvent::ListenerClosed { addresses, reason, .. } => {
                        let reason = reason.err().map(|e| e.to_string()).unwrap_or_default();
                        return Err(P2pError::Build(format!("listener {addresses:?} closed: {reason}")));
                    }
                    other => self.handle(other),
                }
            }
        }
        Ok(())
    }

    pub(super) async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                command = self.commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.handle(event),
                Some(inbound) = self.admin_requests.recv() => self.admin_request(inbound),
                Some((peer, services)) = self.service_requests.next() => {
                    if let (Some(services), Some(state)) = (services, self.peers.get_mut(&peer)) {
                        state.services = Some(services);
                    }
                }
                _ = tick.tick() => self.maintain(),
            }
        }
        tracing::info!("p2p stopped");
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Peers(reply) => {
                let _ = reply.send(self.peers.nodes(&self.admitted));
            }
            Command::Candidates(reply) => {
                let _ = reply.send(self.peers.candidates());
            }
            Command::Admit(admitted) => {
                self.swarm.behaviour_mut().rpc.admit(admitted.clone());
                self.admitted = admitted;
            }
            Command::ListenAddrs(reply) => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::Call { peer, call } => {
                self.swarm.behaviour_mut().rpc.call(peer, call, Vec::new());
            }
            Command::Serve { protocol, route } => {
                self.swarm.behaviour_mut().rpc.serve(protocol, route);
            }
            Command::ExtendAdmin(inbox) => self.admin_extension = Some(inbox),
            Command::Subscribe { topic, access, sender, answer } => {
                let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
                let _ = answer.send(self.topics.subscribe(gossipsub, topic, access, sender));
            }
            Command::Publish { topic, data, answer } => {
                let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
                let _ = answer.send(Topics::publish(gossipsub, topic, data));
            }
            Command::Validate { message, verdict } => {
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                    &message.id,
                    &message.source,
                    verdict.into(),
                );
            }
        }
    }

    /// Redials bootstrap peers, asks kad for more nodes, and dials the ones it found.
    fn maintain(&mut self) {
        let now = Instant::now();
        for b in &mut self.bootstrap {
            if self.peers.contains(&b.peer) || now < b.next {
                continue;
            }
            let opts = DialOpts::peer_id(b.peer)
                .addresses(vec![b.addr.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::trace!(addr = %b.addr, error = %e, "bootstrap dial not started");
            }
            b.next = now + b.backoff;
            b.backoff = (b.backoff * 2).min(BACKOFF_MAX);
        }
        if self.next_kad_bootstrap.is_some_and(|at| now >= at) {
            if let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
                tracing::debug!(error = %e, "kad bootstrap not started");
            }
            let fast = self.admin.started.elapsed() < FAST_PERIOD;
            self.next_kad_bootstrap = Some(now + if fast { KAD_FAST } else { KAD_SLOW });
        }
        if now >= self.next_mesh_check {
            self.next_mesh_check = now + MESH_CHECK;
            let known: Vec<PeerId> = self
                .swarm
                .behaviour_mut()
                .kad
                .kbuckets()
                .flat_map(|bucket| {
                    bucket.iter().map(|e| *e.node.key.preimage()).collect::<Vec<_>>()
                })
                .collect();
            for peer in known.into_iter().take(MAX_DIALED_PEERS) {
                self.dial_node(peer);
            }
        }
    }

    /// Dials a node kad knows, unless connected or already dialing.
    fn dial_node(&mut self, peer: PeerId) {
        if self.peers.contains(&peer) || peer == *self.swarm.local_peer_id() {
            return;
        }
        let opts =
            DialOpts::peer_id(peer).condition(PeerCondition::DisconnectedAndNotDialing).build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::trace!(%peer, error = %e, "dial not started");
        }
    }

    fn handle(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                let (remote, dialed) = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => (address.clone(), true),
                    ConnectedPoint::Listener { send_back_addr, .. } => {
                        (send_back_addr.clone(), false)
                    }
                };
                tracing::debug!(%peer_id, %remote, "connected");
                self.peers.connected(peer_id, remote, dialed);
                if let Some(b) = self.bootstrap.iter_mut().find(|b| b.peer == peer_id) {
                    b.backoff = BACKOFF_MIN;
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, cause, .. } => {
                tracing::debug!(%peer_id, ?cause, "connection closed");
                self.peers.disconnected(&peer_id, num_established);
                if num_established == 0
                    && let Some(b) = self.bootstrap.iter_mut().find(|b| b.peer == peer_id)
                {
                    b.next = Instant::now() + BACKOFF_MIN;
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "dial failed");
            }
            SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                // A peer without the swarm key ends here: its pnet handshake fails.
                tracing::info!(%send_back_addr, %error, "refused an incoming connection");
            }
            SwarmEvent::NewListenAddr { address, .. } => tracing::info!(%address, "listening"),
            SwarmEvent::Behaviour(event) => self.behaviour(event),
            other => tracing::trace!(?other, "swarm event"),
        }
    }

    fn behaviour(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                self.identified(peer_id, info);
            }
            BehaviourEvent::Ping(ping::Event { peer, connection, result }) => {
                let Some(state) = self.peers.get_mut(&peer) else { return };
                match result {
                    Ok(rtt) => {
                        state.rtt = Some(rtt);
                        state.last_pong = Some(std::time::Instant::now());
                        state.ping_failures = 0;
                    }
                    Err(ping::Failure::Unsupported) => {}
                    // Only nodes are held to ping: a light client need not speak it.
                    Err(_) if !state.is_node() => {}
                    Err(error) => {
                        state.ping_failures += 1;
                        tracing::debug!(%peer, %error, failures = state.ping_failures, "ping failed");
                        if state.ping_failures >= MAX_PING_FAILURES {
                            self.swarm.close_connection(connection);
                        }
                    }
                }
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, is_new_peer: true, .. }) => {
                self.dial_node(peer);
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
                let admitted = &self.admitted;
                self.topics.deliver(gossipsub, admitted, propagation_source, message_id, message);
            }
            other => tracing::trace!(?other, "behaviour event"),
        }
    }

    fn identified(&mut self, peer_id: PeerId, info: identify::Info) {
        let Some(peer) = self.peers.get_mut(&peer_id) else { return };
        let remote = peer.remote.clone();
        peer.agent = Some(info.agent_version);
        peer.listen_addrs = info.listen_addrs.into_iter().filter(|a| usable(a, &remote)).collect();
        if !peer.is_node() {
            return;
        }
        let addrs = peer.listen_addrs.clone();
        let ask_services = peer.services.is_none();
        if info.protocols.contains(&StreamProtocol::new(KAD_PROTOCOL)) {
            for addr in addrs {
                self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
            }
            if self.next_kad_bootstrap.is_none() {
                self.next_kad_bootstrap = Some(Instant::now());
            }
        }
        if ask_services {
            self.ask_services(peer_id);
        }
    }

    /// Asks a node for its `Info`, to learn the services it runs.
    fn ask_services(&mut self, peer: PeerId) {
        let answer = match rpc::Call::new::<AdminProtocol>(&AdminRequest::Info) {
            Ok((call, answer)) => {
                self.swarm.behaviour_mut().rpc.call(peer, call, Vec::new());
                answer
            }
            Err(error) => {
                tracing::debug!(%peer, %error, "admin request failed");
                return;
            }
        };
        self.service_requests.push(Box::pin(async move {
            let services = match tokio::time::timeout(AdminProtocol::TIMEOUT, answer.get()).await {
                Ok(Ok(AdminResponse::Info(info))) => Some(info.services),
                Ok(Ok(_)) => None,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "admin request failed");
                    None
                }
                Err(_) => None,
            };
            (peer, services)
        }));
    }

    /// An admin request from a peer: answered from the loop's own state, or handed on.
    fn admin_request(&mut self, inbound: AdminInbound) {
        match inbound.request {
            AdminRequest::Info | AdminRequest::Peers => {
                let _ = inbound.reply.send(self.answer(inbound.request));
            }
            _ => match &self.admin_extension {
                Some(extension) => {
                    if extension.try_send(inbound).is_err() {
                        tracing::warn!("admin extension busy: request dropped");
                    }
                }
                None => {
                    let message = "this node keeps no counters".to_string();
                    let _ = inbound.reply.send(AdminResponse::Error(message));
                }
            },
        }
    }

    /// Answers an admin request from the loop's own state.
    fn answer(&self, request: AdminRequest) -> AdminResponse {
        match request {
            AdminRequest::Info => AdminResponse::Info(Box::new(NodeInfo {
                peer_id: *self.swarm.local_peer_id(),
                version: tau_proto::VERSION.to_string(),
                services: self.admin.services.clone(),
                uptime_secs: self.admin.started.elapsed().as_secs(),
                listen_addrs: self.swarm.listeners().cloned().collect(),
                announce_addrs: self.swarm.external_addresses().cloned().collect(),
                location: self.admin.location.clone(),
                resources: self.admin.resources.borrow().clone(),
            })),
            AdminRequest::Peers => AdminResponse::Peers(self.peers.nodes(&self.admitted)),
            _ => AdminResponse::Error("unsupported admin request".into()),
        }
    }
}
