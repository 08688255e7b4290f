//! The task that owns the swarm.

use std::collections::{HashMap, HashSet};

use rand::seq::SliceRandom;
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
use tau_proto::admin::{AdminProtocol, AdminRequest, AdminResponse, DirectoryEntry, NodeInfo};
use tau_proto::membership::Admitted;
use tau_proto::net::rpc;
use tau_proto::profile::peer_id_of;
use tau_proto::protocol::Protocol;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL, KEPT, NOT_KEPT};
use super::gossip::Topics;
use super::peers::{PeerTable, usable};
use super::{AdminContext, Command, Inbound, NodeRef, P2pError};
use tau_proto::node_config::ConnectionsConfig;

type AdminInbound = Inbound<AdminRequest, AdminResponse>;

/// How often the loop looks after its connections.
const TICK: Duration = Duration::from_millis(250);
/// First and longest wait between two dials of a bootstrap peer.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often kad looks for new nodes: often while the node starts, rarely after.
const KAD_FAST: Duration = Duration::from_secs(10);
const KAD_SLOW: Duration = Duration::from_secs(300);
const FAST_PERIOD: Duration = Duration::from_secs(20);
/// How often the loop dials more nodes while it has fewer than its target: often while the
/// node starts, rarely after.
const FILL_FAST: Duration = Duration::from_millis(500);
const FILL_SLOW: Duration = Duration::from_secs(5);
/// A dial to fill the target that has not connected by then is forgotten.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// A node that could not be dialed, or closed a connection, is not dialed again to fill the
/// target for this long (it may be at its ceiling, or down).
const SHUNNED_FOR: Duration = Duration::from_secs(20);
/// A connection this young, or used for a request this recently, is closed to make room only
/// when no other can be.
const GRACE: Duration = Duration::from_secs(10);
/// Peers whose addresses are being looked up in kad at once, calls waiting for one peer's
/// address, and looked-up addresses kept.
const MAX_LOOKUPS: usize = 64;
const MAX_PARKED: usize = 256;
const MAX_FOUND: usize = 4096;
const FOUND_FOR: Duration = Duration::from_secs(600);
/// A connection past the target, not kept, unused by this node's requests for this long, is
/// closed.
const IDLE_CLOSE: Duration = Duration::from_secs(10);
/// An inbound connection still open this long after it opened is one its dialer keeps (it
/// would have closed a request's or a kad query's after [`IDLE_CLOSE`]).
const KEPT_INBOUND_AFTER: Duration = Duration::from_secs(30);
/// A connection this node dialed and never sent a request on (a kad query's) closes after this
/// long.
const KAD_IDLE_CLOSE: Duration = Duration::from_secs(2);
/// Connections kept to nodes of each service this node runs.
const KEEP_PER_SERVICE: usize = 6;
/// Services whose nodes a node keeps connections to because one of its own reads from them
/// (user, used, how many): a substrate node reads routes from tns.
const USES: &[(&str, &str, usize)] = &[("substrate", "tns", 1)];
/// Entries in a kad bucket (kad's default).
const KBUCKET_SIZE: usize = 20;
/// The most nodes a `Directory` answer lists.
const MAX_DIRECTORY: usize = 1000;
/// Consecutive failed pings after which a connection is closed.
const MAX_PING_FAILURES: u32 = 2;

/// A kad lookup of a peer's address: the calls waiting for it, and whether to dial the peer
/// once found (to keep a connection to it).
#[derive(Default)]
struct Lookup {
    calls: Vec<rpc::Call>,
    dial: bool,
}

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
    /// Connections to nodes the loop dials up to, and never keeps more of.
    target: usize,
    ceiling: usize,
    next_fill: Instant,
    /// Nodes dialed to fill the target, not connected yet, and since when.
    dialing: HashMap<PeerId, Instant>,
    /// Nodes not dialed to fill the target until then.
    shunned: HashMap<PeerId, Instant>,
    /// Peers whose address is being looked up, by peer and by kad query.
    lookups: HashMap<PeerId, Lookup>,
    queries: HashMap<kad::QueryId, PeerId>,
    /// Addresses found by lookups, and when.
    found: HashMap<PeerId, (Vec<Multiaddr>, Instant)>,
    /// Admin requests from peers, read and decoded by the admin protocol's server.
    admin_requests: mpsc::Receiver<AdminInbound>,
    /// Where the admin requests the loop cannot answer itself go.
    admin_extension: Option<mpsc::Sender<AdminInbound>>,
    topics: Topics,
    /// Who counts as a node.
    admitted: Admitted,
    /// The admitted nodes of each service (rebuilt on admission): the directory's.
    by_service: HashMap<String, Vec<PeerId>>,
}

/// The admitted nodes of each service.
fn by_service(admitted: &Admitted) -> HashMap<String, Vec<PeerId>> {
    let mut by_service: HashMap<String, Vec<PeerId>> = HashMap::new();
    if let Admitted::Listed(nodes) = admitted {
        for (peer, services) in nodes.iter() {
            for service in services {
                by_service.entry(service.clone()).or_default().push(*peer);
            }
        }
    }
    by_service
}

impl EventLoop {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        admin_requests: mpsc::Receiver<AdminInbound>,
        bootstrap: Vec<Multiaddr>,
        admin: AdminContext,
        admitted: Admitted,
        connections: &ConnectionsConfig,
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
            target: connections.target as usize,
            ceiling: connections.ceiling as usize,
            next_fill: now,
            dialing: HashMap::new(),
            shunned: HashMap::new(),
            lookups: HashMap::new(),
            queries: HashMap::new(),
            found: HashMap::new(),
            admin_requests,
            admin_extension: None,
            topics: Topics::default(),
            by_service: by_service(&admitted),
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
            Command::Nodes { service, reply } => {
                let _ = reply.send(self.directory(&service));
            }
            Command::Addresses { peer, reply } => {
                let addrs = self.addresses(&peer);
                if addrs.is_empty() {
                    self.look_up(peer, false);
                }
                let _ = reply.send(addrs);
            }
            Command::Candidates(reply) => {
                let _ = reply.send(self.peers.candidates());
            }
            Command::Admit(admitted) => {
                self.swarm.behaviour_mut().rpc.admit(admitted.clone());
                self.by_service = by_service(&admitted);
                self.admitted = admitted;
                self.trim();
            }
            Command::ListenAddrs(reply) => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::Call { peer, call } => self.call(peer, call),
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

    /// Redials bootstrap peers while no node is connected, asks kad for more nodes, and dials
    /// some of the ones it found while there are fewer than the target.
    fn maintain(&mut self) {
        let now = Instant::now();
        self.dialing.retain(|_, since| now.duration_since(*since) < DIAL_TIMEOUT);
        self.shunned.retain(|_, until| now < *until);
        self.found.retain(|_, (_, at)| now.duration_since(*at) < FOUND_FOR);
        let connected = self.peers.counted(&self.admitted).count();
        for b in &mut self.bootstrap {
            if connected > 0 || self.peers.contains(&b.peer) || now < b.next {
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
        // Often only while the node starts and kad knows fewer nodes than it would keep: a
        // walk dials a few dozen nodes, and a cloud of a hundred starting at once would
        // spend its first minute on handshakes.
        let reachable = match &self.admitted {
            Admitted::Listed(nodes) => nodes.len().saturating_sub(1).min(self.target),
            Admitted::Open => self.target,
        };
        let fast = self.admin.started.elapsed() < FAST_PERIOD && {
            let kad = &mut self.swarm.behaviour_mut().kad;
            let known: usize = kad.kbuckets().map(|bucket| bucket.num_entries()).sum();
            known < reachable
        };
        if self.next_kad_bootstrap.is_some_and(|at| now >= at) {
            // While starting, a lookup of itself: the nodes nearest it learn of it and it of
            // them (tens of requests). A full walk refreshes every bucket (a few hundred in a
            // cloud of a hundred): rarely.
            let local = *self.swarm.local_peer_id();
            let kad = &mut self.swarm.behaviour_mut().kad;
            if fast {
                kad.get_closest_peers(local);
            } else if let Err(e) = kad.bootstrap() {
                tracing::debug!(error = %e, "kad walk not started");
            }
            self.next_kad_bootstrap = Some(now + if fast { KAD_FAST } else { KAD_SLOW });
        }
        if now >= self.next_fill {
            self.next_fill = now + if fast { FILL_FAST } else { FILL_SLOW };
            self.fill();
            self.keep_services();
            self.update_kept();
        }
        self.close_idle();
    }

    /// Dials nodes kad knows, picked at random, until connected and dialing ones reach the
    /// target.
    fn fill(&mut self) {
        let outbound = self.peers.counted(&self.admitted).filter(|(_, p)| p.kept_out).count();
        let have = outbound + self.dialing.len();
        let Some(wanted) = self.outbound_target().checked_sub(have).filter(|n| *n > 0) else {
            return;
        };
        let local = *self.swarm.local_peer_id();
        let mut known: Vec<PeerId> = self
            .swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .flat_map(|bucket| bucket.iter().map(|e| *e.node.key.preimage()).collect::<Vec<_>>())
            // Nodes whose addresses identify or a lookup gave: kad's buckets keep 20 each.
            .chain(self.found.keys().copied())
            .collect::<HashSet<PeerId>>()
            .into_iter()
            .filter(|peer| {
                *peer != local
                    && !self.peers.contains(peer)
                    && !self.dialing.contains_key(peer)
                    && !self.shunned.contains_key(peer)
                    && self.admitted.allows(tau_proto::protocol::Access::Nodes, peer)
            })
            .collect();
        known.shuffle(&mut rand::rng());
        for peer in known.into_iter().take(wanted) {
            self.dial_node(peer);
        }
    }

    /// Dials nodes of each service this node runs until it is connected to
    /// [`KEEP_PER_SERVICE`] of them (or all): each service's gossip mesh then forms among its
    /// own nodes, however few they are among the cloud's.
    fn keep_services(&mut self) {
        let Admitted::Listed(nodes) = &self.admitted else { return };
        let local = *self.swarm.local_peer_id();
        let mut wanted = Vec::new();
        // Nodes of each service this node runs, and of each service its own read from.
        let mut keep: Vec<(&str, usize)> = self
            .admin
            .services
            .iter()
            .filter(|s| *s != "substrate")
            .map(|s| (s.as_str(), KEEP_PER_SERVICE))
            .collect();
        for (user, used, count) in USES {
            let runs = |s: &str| self.admin.services.iter().any(|own| own == s);
            if runs(user) && !runs(used) {
                keep.push((used, *count));
            }
        }
        for (service, count) in keep {
            let of_service: Vec<PeerId> = nodes
                .iter()
                .filter(|(peer, services)| **peer != local && services.iter().any(|s| s == service))
                .map(|(peer, _)| *peer)
                .collect();
            let have = of_service
                .iter()
                .filter(|p| self.peers.contains(p) || self.dialing.contains_key(p))
                .count();
            let Some(missing) = count.checked_sub(have).filter(|n| *n > 0) else {
                continue;
            };
            let mut candidates: Vec<PeerId> = of_service
                .into_iter()
                .filter(|p| {
                    !self.peers.contains(p)
                        && !self.dialing.contains_key(p)
                        && !self.shunned.contains_key(p)
                        && !wanted.contains(p)
                })
                .collect();
            candidates.shuffle(&mut rand::rng());
            wanted.extend(candidates.into_iter().take(missing));
        }
        for peer in wanted {
            if self.knows_address(&peer) {
                self.dial_node(peer);
            } else {
                // Dialed once kad has found it.
                self.look_up(peer, true);
            }
        }
    }

    /// Chooses the connections that stay open while idle: up to the target, those to nodes of
    /// this node's services first, then those in a gossip mesh, then the oldest. The others
    /// close once idle (a kad query's, a request's, a node's past the target).
    fn update_kept(&mut self) {
        let kept: HashSet<PeerId> = self
            .peers
            .counted(&self.admitted)
            .filter(|(_, peer)| peer.kept_out || peer.inbound)
            .map(|(id, _)| *id)
            .collect();
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        for (peer, _) in self.peers.counted(&self.admitted) {
            let score = if kept.contains(peer) { KEPT } else { NOT_KEPT };
            gossipsub.set_application_score(peer, score);
        }
        self.swarm.behaviour_mut().rpc.keep(kept);
    }

    /// Closes the connections this node dialed for a request or a kad query (not to keep) once
    /// idle: a request's after [`IDLE_CLOSE`] without one, a kad query's (never used by a
    /// request) after [`KAD_IDLE_CLOSE`] (a walk dials a few dozen nodes, and the nodes it
    /// dials would otherwise reach their ceiling). Gossip streams alone would hold them open
    /// for ever. Inbound connections are the dialer's to close.
    fn close_idle(&mut self) {
        let idle: Vec<PeerId> = self
            .peers
            .counted(&self.admitted)
            .filter(|(_, peer)| {
                // From the peer's own flags: `kept` is recomputed only every fill tick.
                let after = if peer.used { IDLE_CLOSE } else { KAD_IDLE_CLOSE };
                !peer.kept_out
                    && !peer.inbound
                    && peer.since.elapsed() >= after
                    && peer.last_used.elapsed() >= after
            })
            .map(|(id, _)| *id)
            .collect();
        for peer in idle {
            tracing::debug!(%peer, "closing an idle connection");
            if let Some(state) = self.peers.get_mut(&peer) {
                state.closing = true;
            }
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Connections this node dials to keep: half the target, the other half comes from the
    /// nodes that dial it.
    fn outbound_target(&self) -> usize {
        self.target.div_ceil(2)
    }

    /// Whether `peer` runs one of the services this node runs (substrate aside): a connection
    /// [`Self::keep_services`] keeps.
    fn shares_a_service(&self, peer: &PeerId) -> bool {
        let Admitted::Listed(nodes) = &self.admitted else { return false };
        nodes.get(peer).is_some_and(|services| {
            services.iter().any(|s| s != "substrate" && self.admin.services.contains(s))
        })
    }

    /// Dials a node kad knows, unless connected or already dialing.
    fn dial_node(&mut self, peer: PeerId) {
        if self.peers.contains(&peer) || peer == *self.swarm.local_peer_id() {
            return;
        }
        let addrs = self.found.get(&peer).map(|(addrs, _)| addrs.clone()).unwrap_or_default();
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .extend_addresses_through_behaviour()
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        match self.swarm.dial(opts) {
            Ok(()) => {
                tracing::debug!(%peer, "dialing to keep");
                self.dialing.insert(peer, Instant::now());
            }
            Err(e) => tracing::trace!(%peer, error = %e, "dial not started"),
        }
    }

    /// Sends a call: on the connection to `peer`, else dialing it at the addresses this node
    /// knows, else once kad has found them.
    fn call(&mut self, peer: PeerId, call: rpc::Call) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.last_used = Instant::now();
            state.used = true;
        }
        if !self.peers.contains(&peer) {
            tracing::debug!(%peer, protocol = call.protocol(), "dialing for a call");
        }
        if self.peers.contains(&peer) || self.knows_address(&peer) {
            let addrs = self.found.get(&peer).map(|(a, _)| a.clone()).unwrap_or_default();
            self.swarm.behaviour_mut().rpc.call(peer, call, addrs);
            return;
        }
        if let Some(lookup) = self.lookups.get_mut(&peer) {
            match lookup.calls.len() < MAX_PARKED {
                true => lookup.calls.push(call),
                false => call.unreachable("too many requests wait for its address".into()),
            }
            return;
        }
        if !self.look_up(peer, false) {
            call.unreachable("too many peers are being looked up at once".into());
            return;
        }
        if let Some(lookup) = self.lookups.get_mut(&peer) {
            lookup.calls.push(call);
        }
    }

    /// Starts a kad lookup of `peer`'s address (unless one runs), to dial it once found with
    /// `dial`; false when too many run already.
    fn look_up(&mut self, peer: PeerId, dial: bool) -> bool {
        if let Some(lookup) = self.lookups.get_mut(&peer) {
            lookup.dial |= dial;
            return true;
        }
        if self.lookups.len() >= MAX_LOOKUPS {
            return false;
        }
        tracing::debug!(%peer, "looking up a peer's address");
        let query = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
        self.queries.insert(query, peer);
        self.lookups.insert(peer, Lookup { calls: Vec::new(), dial });
        true
    }

    /// The addresses this node knows for `peer`: what it said in identify when connected, else
    /// what a lookup found or kad's routing table holds.
    fn addresses(&mut self, peer: &PeerId) -> Vec<Multiaddr> {
        if let Some(state) = self.peers.get(peer)
            && !state.listen_addrs.is_empty()
        {
            return state.listen_addrs.clone();
        }
        if let Some((addrs, _)) = self.found.get(peer) {
            return addrs.clone();
        }
        let kad = &mut self.swarm.behaviour_mut().kad;
        kad.kbucket(*peer)
            .and_then(|bucket| {
                bucket
                    .iter()
                    .find(|e| e.node.key.preimage() == peer)
                    .map(|e| e.node.value.iter().cloned().collect())
            })
            .unwrap_or_default()
    }

    /// Whether a dial to `peer` has an address to go to: one kad's routing table holds or a
    /// lookup found.
    fn knows_address(&mut self, peer: &PeerId) -> bool {
        if self.found.contains_key(peer) {
            return true;
        }
        let kad = &mut self.swarm.behaviour_mut().kad;
        kad.kbucket(*peer)
            .is_some_and(|bucket| bucket.iter().any(|e| e.node.key.preimage() == peer))
    }

    /// A kad lookup of a peer's address made progress: its calls go out once the peer is
    /// among the peers found with an address, and fail when the lookup ends without it.
    fn looked_up(&mut self, query: kad::QueryId, result: kad::GetClosestPeersResult, last: bool) {
        let Some(&peer) = self.queries.get(&query) else { return };
        let peers = match result {
            Ok(ok) => ok.peers,
            Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
        };
        let found = peers.into_iter().find(|p| p.peer_id == peer && !p.addrs.is_empty());
        if found.is_none() && !last {
            return;
        }
        self.queries.remove(&query);
        if let Some(mut running) = self.swarm.behaviour_mut().kad.query_mut(&query) {
            running.finish();
        }
        let Lookup { calls, dial } = self.lookups.remove(&peer).unwrap_or_default();
        match found {
            Some(info) => {
                if self.found.len() >= MAX_FOUND {
                    self.found.clear();
                }
                self.found.insert(peer, (info.addrs.clone(), Instant::now()));
                if dial {
                    // Looked up to be kept connected.
                    let opts = DialOpts::peer_id(peer)
                        .addresses(info.addrs.clone())
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    if self.swarm.dial(opts).is_ok() {
                        self.dialing.insert(peer, Instant::now());
                    }
                }
                for call in calls {
                    self.swarm.behaviour_mut().rpc.call(peer, call, info.addrs.clone());
                }
            }
            None => {
                tracing::debug!(%peer, "no address found for a peer");
                for call in calls {
                    call.unreachable("no node knows its address".into());
                }
            }
        }
    }

    /// Closes connections to nodes past the ceiling. Those this node keeps (dialed to keep, or
    /// dialed by a node that kept them past a request's idle time) close last; then those in a
    /// gossip mesh or of a shared service; young ones (a request or kad query just dialed them)
    /// after old ones; least recently used first.
    fn trim(&mut self) {
        let mesh: HashSet<PeerId> =
            self.swarm.behaviour().gossipsub.all_mesh_peers().copied().collect();
        let mut order: Vec<_> = self
            .peers
            .counted(&self.admitted)
            .map(|(id, peer)| {
                let young = peer.since.elapsed() < GRACE || peer.last_used.elapsed() < GRACE;
                let kept =
                    peer.kept_out || (peer.inbound && peer.since.elapsed() >= KEPT_INBOUND_AFTER);
                let shared = mesh.contains(id) || self.shares_a_service(id);
                ((kept, shared, young, peer.last_used), *id)
            })
            .collect();
        let Some(excess) = order.len().checked_sub(self.ceiling).filter(|n| *n > 0) else {
            return;
        };
        order.sort();
        for (_, peer) in order.into_iter().take(excess) {
            tracing::debug!(%peer, ceiling = self.ceiling, "closing a connection to stay under the ceiling");
            if let Some(state) = self.peers.get_mut(&peer) {
                state.closing = true;
            }
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// The nodes that run `service`: connected ones first, nearest first, then the others.
    fn directory(&self, service: &str) -> Vec<NodeRef> {
        let local = self.swarm.local_peer_id();
        let runs = |services: &[String]| services.iter().any(|s| s == service);
        let mut connected = Vec::new();
        let mut others = Vec::new();
        for (peer, state) in self.peers.counted(&self.admitted) {
            let services = self.admitted.believed(peer, state.services.as_deref().unwrap_or(&[]));
            let admitted = match &self.admitted {
                Admitted::Listed(nodes) => nodes.get(peer).is_some_and(|s| runs(s)),
                Admitted::Open => false,
            };
            let says = match &state.services {
                Some(_) => runs(&services),
                None => admitted,
            };
            if says {
                let quiet = state.last_pong.map(|at| at.elapsed());
                connected.push(NodeRef { peer: *peer, connected: true, rtt: state.rtt, quiet });
            }
        }
        for peer in self.by_service.get(service).into_iter().flatten() {
            let live = self.peers.get(peer).is_some_and(|p| !p.closing && p.is_node());
            if peer != local && !live {
                others.push(NodeRef { peer: *peer, connected: false, rtt: None, quiet: None });
            }
        }
        connected.sort_by_key(|n| (n.rtt.unwrap_or(Duration::MAX), n.peer));
        others.shuffle(&mut rand::rng());
        connected.extend(others);
        connected
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
                if self.dialing.remove(&peer_id).is_some()
                    && let Some(state) = self.peers.get_mut(&peer_id)
                {
                    state.kept_out = true;
                }
                for call in self.lookups.remove(&peer_id).unwrap_or_default().calls {
                    self.swarm.behaviour_mut().rpc.call(peer_id, call, Vec::new());
                }
                if let Some(b) = self.bootstrap.iter_mut().find(|b| b.peer == peer_id) {
                    b.backoff = BACKOFF_MIN;
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, cause, .. } => {
                tracing::debug!(%peer_id, ?cause, "connection closed");
                // A node that closed on this one may be at its ceiling: fill from others.
                if num_established == 0
                    && self.peers.get(&peer_id).is_some_and(|p| p.is_node() && !p.closing)
                {
                    self.shunned.insert(peer_id, Instant::now() + SHUNNED_FOR);
                }
                self.peers.disconnected(&peer_id, num_established);
                if num_established == 0
                    && let Some(b) = self.bootstrap.iter_mut().find(|b| b.peer == peer_id)
                {
                    b.next = Instant::now() + BACKOFF_MIN;
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "dial failed");
                if let Some(peer) = peer_id
                    && self.dialing.remove(&peer).is_some()
                {
                    self.shunned.insert(peer, Instant::now() + SHUNNED_FOR);
                }
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
                let outbound =
                    self.peers.counted(&self.admitted).filter(|(_, p)| p.kept_out).count();
                if outbound + self.dialing.len() < self.outbound_target()
                    && !self.shunned.contains_key(&peer)
                    && self.admitted.allows(tau_proto::protocol::Access::Nodes, &peer)
                {
                    self.dial_node(peer);
                }
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetClosestPeers(result),
                step,
                ..
            }) => self.looked_up(id, result, step.last),
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::Bootstrap(result),
                stats,
                step,
                ..
            }) => {
                tracing::debug!(
                    requests = stats.num_requests(),
                    step = step.count,
                    ok = result.is_ok(),
                    "kad walk step"
                );
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
        // Remembered after the connection closes (kad's routing table may have no room).
        if !addrs.is_empty() {
            if self.found.len() >= MAX_FOUND {
                self.found.clear();
            }
            self.found.insert(peer_id, (addrs.clone(), Instant::now()));
        }
        if info.protocols.contains(&StreamProtocol::new(KAD_PROTOCOL)) {
            // Into the routing table only where its bucket has room (or it is there): kad
            // would otherwise dial the bucket's least recently seen node to see whether it
            // is still up, and connections close soon after their last use here, so every
            // new connection would make another.
            let kad = &mut self.swarm.behaviour_mut().kad;
            let room = kad.kbucket(peer_id).is_some_and(|bucket| {
                bucket.num_entries() < KBUCKET_SIZE
                    || bucket.iter().any(|e| *e.node.key.preimage() == peer_id)
            });
            if room {
                for addr in addrs {
                    kad.add_address(&peer_id, addr);
                }
            }
            if self.next_kad_bootstrap.is_none() {
                self.next_kad_bootstrap = Some(Instant::now());
            }
        }
        if ask_services {
            self.ask_services(peer_id);
        }
        self.trim();
        self.update_kept();
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
            AdminRequest::Info | AdminRequest::Peers | AdminRequest::Directory { .. } => {
                let answer = self.answer(inbound.request);
                let _ = inbound.reply.send(answer);
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
    fn answer(&mut self, request: AdminRequest) -> AdminResponse {
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
                draining: *self.admin.leaving.borrow(),
                ready: *self.admin.ready.borrow(),
            })),
            AdminRequest::Peers => AdminResponse::Peers(self.peers.nodes(&self.admitted)),
            AdminRequest::Directory { service } => {
                let nodes: Vec<NodeRef> =
                    self.directory(&service).into_iter().take(MAX_DIRECTORY).collect();
                let entries = nodes
                    .into_iter()
                    .map(|node| DirectoryEntry {
                        peer_id: node.peer,
                        addrs: self.addresses(&node.peer),
                        connected: node.connected,
                    })
                    .collect();
                AdminResponse::Directory(entries)
            }
            _ => AdminResponse::Error("unsupported admin request".into()),
        }
    }
}
