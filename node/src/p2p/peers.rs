//! The peer table: what the swarm task knows about each connected peer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tau_proto::admin::PeerInfo;
use tau_proto::membership::Admitted;
use tau_proto::protocol::Access;

/// One connected peer.
#[derive(Debug)]
pub(super) struct Peer {
    pub(super) since: Instant,
    pub(super) connections: usize,
    /// The address of the first connection, and whether it was over loopback.
    pub(super) remote: Multiaddr,
    /// The address we dialed, when we dialed it.
    pub(super) dialed: Option<Multiaddr>,
    /// What it told us in identify.
    pub(super) agent: Option<String>,
    pub(super) listen_addrs: Vec<Multiaddr>,
    pub(super) services: Option<Vec<String>>,
    pub(super) rtt: Option<Duration>,
    /// When it last answered a ping.
    pub(super) last_pong: Option<Instant>,
    pub(super) ping_failures: u32,
    /// When this node last sent it a request (or connected).
    pub(super) last_used: Instant,
    /// This node has sent it a request (a connection a kad query alone dialed has not).
    pub(super) used: bool,
    /// This node is closing the connection (to stay under its ceiling): no longer counted.
    pub(super) closing: bool,
    /// This node dialed it to keep it (to reach its target, or a node of its services).
    pub(super) kept_out: bool,
    /// It dialed this node (a connection the dialer keeps or closes).
    pub(super) inbound: bool,
}

impl Peer {
    /// Whether the peer is a Tau node (as opposed to a light client).
    pub(super) fn is_node(&self) -> bool {
        self.agent.as_deref().is_some_and(|a| a.starts_with(tau_proto::NODE_AGENT_PREFIX))
    }

    fn info(&self, peer_id: PeerId) -> PeerInfo {
        let addrs = if self.listen_addrs.is_empty() {
            self.dialed.iter().cloned().collect()
        } else {
            self.listen_addrs.clone()
        };
        PeerInfo {
            peer_id,
            addrs,
            rtt_micros: self.rtt.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            quiet_ms: self.last_pong.map(|at| at.elapsed().as_millis() as u64),
            services: self.services.clone().unwrap_or_default(),
            connected_secs: self.since.elapsed().as_secs(),
            agent: self.agent.clone().unwrap_or_default(),
        }
    }
}

/// Every connected peer, nodes and clients.
#[derive(Debug, Default)]
pub(super) struct PeerTable {
    peers: HashMap<PeerId, Peer>,
}

impl PeerTable {
    pub(super) fn connected(&mut self, peer_id: PeerId, remote: Multiaddr, dialed: bool) {
        let peer = self.peers.entry(peer_id).or_insert_with(|| Peer {
            since: Instant::now(),
            connections: 0,
            remote: remote.clone(),
            dialed: None,
            agent: None,
            listen_addrs: Vec::new(),
            services: None,
            rtt: None,
            last_pong: None,
            ping_failures: 0,
            last_used: Instant::now(),
            used: false,
            closing: false,
            kept_out: false,
            inbound: false,
        });
        peer.connections += 1;
        if dialed {
            peer.dialed = Some(remote);
        } else {
            peer.inbound = true;
        }
    }

    /// Forgets `peer_id` once its last connection has closed.
    pub(super) fn disconnected(&mut self, peer_id: &PeerId, remaining: u32) {
        if remaining == 0 {
            self.peers.remove(peer_id);
        } else if let Some(peer) = self.peers.get_mut(peer_id) {
            peer.connections = remaining as usize;
        }
    }

    pub(super) fn get_mut(&mut self, peer_id: &PeerId) -> Option<&mut Peer> {
        self.peers.get_mut(peer_id)
    }

    pub(super) fn get(&self, peer_id: &PeerId) -> Option<&Peer> {
        self.peers.get(peer_id)
    }

    /// The connected nodes `admitted` allows, not being closed: what counts against the
    /// connection target and ceiling.
    pub(super) fn counted(&self, admitted: &Admitted) -> impl Iterator<Item = (&PeerId, &Peer)> {
        self.peers.iter().filter(move |(id, peer)| {
            !peer.closing && peer.is_node() && admitted.allows(Access::Nodes, id)
        })
    }

    pub(super) fn contains(&self, peer_id: &PeerId) -> bool {
        self.peers.contains_key(peer_id)
    }

    /// The connected peers that say they are nodes, admitted or not.
    pub(super) fn candidates(&self) -> Vec<PeerId> {
        self.peers.iter().filter(|(_, peer)| peer.is_node()).map(|(id, _)| *id).collect()
    }

    /// The connected nodes `admitted` allows, for the admin `Peers` answer, sorted by peer id;
    /// each with the services it runs and is admitted for.
    pub(super) fn nodes(&self, admitted: &Admitted) -> Vec<PeerInfo> {
        let mut nodes: Vec<PeerInfo> = self
            .peers
            .iter()
            .filter(|(id, peer)| {
                !peer.closing && peer.is_node() && admitted.allows(Access::Nodes, id)
            })
            .map(|(id, peer)| {
                let mut info = peer.info(*id);
                info.services = admitted.believed(id, &info.services);
                info
            })
            .collect();
        nodes.sort_by_key(|p| p.peer_id.to_bytes());
        nodes
    }
}

/// Whether `addr` is worth dialing for a peer we reach at `remote`: a loopback or unspecified
/// address of another host is useless, so those are kept only when the peer is itself on
/// loopback.
pub(super) fn usable(addr: &Multiaddr, remote: &Multiaddr) -> bool {
    match ip_of(addr) {
        None => false,
        Some(ip) if ip.is_unspecified() => false,
        Some(ip) if ip.is_loopback() => ip_of(remote).is_some_and(|r| r.is_loopback()),
        Some(_) => true,
    }
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().expect("a valid multiaddr")
    }

    #[test]
    fn loopback_addresses_are_kept_only_for_loopback_peers() {
        let local = addr("/ip4/127.0.0.1/tcp/5000");
        let remote = addr("/ip4/10.1.0.2/tcp/5000");
        assert!(usable(&addr("/ip4/127.0.0.1/tcp/4001"), &local));
        assert!(!usable(&addr("/ip4/127.0.0.1/tcp/4001"), &remote));
        assert!(usable(&addr("/ip4/10.1.0.2/tcp/4001"), &remote));
        assert!(!usable(&addr("/ip4/0.0.0.0/tcp/4001"), &remote));
        assert!(!usable(&addr("/dns4/example.com/tcp/4001"), &remote));
    }
}
