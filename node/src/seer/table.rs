//! The latest heartbeat of every node, and who is healthy.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tau_proto::membership::Admitted;
use tau_proto::protocol::Access;
use tau_proto::seer::{HEALTHY_FOR, Heartbeat, NodeStatus};

/// Nodes silent for this long are forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// The latest beat per admitted node, with when it arrived.
#[derive(Default)]
pub struct Table {
    latest: HashMap<PeerId, (Heartbeat, Instant)>,
    /// Who is a node, and for which services.
    admitted: Admitted,
}

impl Table {
    /// From now on only nodes `admitted` allows are kept, each for the services it is admitted
    /// for; the beats of the others are dropped now.
    pub fn admit(&mut self, admitted: Admitted) {
        self.latest.retain(|peer, _| admitted.allows(Access::Nodes, peer));
        for (peer, (beat, _)) in &mut self.latest {
            beat.services = admitted.believed(peer, &beat.services);
        }
        self.admitted = admitted;
    }

    /// Keeps `beat` if it is from an admitted node and newer than what the table has of it;
    /// says whether it was kept. The beat's services are cut to those the node is admitted for.
    pub fn insert(&mut self, mut beat: Heartbeat, now: Instant) -> bool {
        if !self.admitted.allows(Access::Nodes, &beat.peer) {
            return false;
        }
        beat.services = self.admitted.believed(&beat.peer, &beat.services);
        match self.latest.get(&beat.peer) {
            Some((known, _)) if !beat.is_newer_than(known) => false,
            _ => {
                self.latest.insert(beat.peer, (beat, now));
                true
            }
        }
    }

    /// Every known node with its health at `now`, and drops nodes silent for [`FORGET_AFTER`].
    pub fn nodes(&mut self, now: Instant) -> Vec<NodeStatus> {
        self.latest.retain(|_, (_, at)| now.saturating_duration_since(*at) < FORGET_AFTER);
        let mut nodes: Vec<NodeStatus> = self
            .latest
            .values()
            .map(|(beat, at)| {
                let age = now.saturating_duration_since(*at);
                NodeStatus {
                    heartbeat: beat.clone(),
                    age_ms: age.as_millis() as u64,
                    healthy: age < HEALTHY_FOR,
                }
            })
            .collect();
        nodes.sort_by_key(|n| n.heartbeat.peer);
        nodes
    }

    /// The addresses of the healthy nodes that run `service`, least loaded first, IPv4 or IPv6.
    pub fn addresses(&self, service: &str, now: Instant, v6: bool) -> Vec<IpAddr> {
        let mut healthy: Vec<&Heartbeat> = self
            .latest
            .values()
            .filter(|(beat, at)| {
                now.saturating_duration_since(*at) < HEALTHY_FOR && beat.runs(service)
            })
            .map(|(beat, _)| beat)
            .collect();
        healthy.sort_by_key(|beat| (beat.load(), beat.peer));
        let mut addrs = Vec::new();
        for beat in healthy {
            for addr in &beat.addrs {
                if addr.is_ipv6() == v6 && !addrs.contains(addr) {
                    addrs.push(*addr);
                }
            }
        }
        addrs
    }
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;
    use tau_proto::admin::Resources;

    use super::*;

    fn beat(seq: u64, services: &[&str], addr: &str, active: u64, cpu: f32) -> Heartbeat {
        Heartbeat {
            peer: Keypair::generate_ed25519().public().to_peer_id(),
            seq,
            started_ms: 1,
            version: "0".into(),
            services: services.iter().map(|s| s.to_string()).collect(),
            addrs: vec![addr.parse().unwrap()],
            http_port: 80,
            location: None,
            resources: Resources { cpu_percent: cpu, ..Resources::default() },
            active_requests: active,
        }
    }

    #[test]
    fn a_node_is_healthy_until_its_beats_stop_and_old_beats_change_nothing() {
        let mut table = Table::default();
        let start = Instant::now();
        let first = beat(2, &["substrate"], "10.0.0.1", 0, 0.0);
        assert!(table.insert(first.clone(), start));
        let mut replay = first.clone();
        replay.seq = 1;
        replay.addrs = vec!["10.9.9.9".parse().unwrap()];
        assert!(!table.insert(replay, start), "an older beat is ignored");
        assert!(!table.insert(first.clone(), start), "so is the same one");
        let addrs = |t: &Table, at| t.addresses("substrate", at, false);
        assert_eq!(
            addrs(&table, start + Duration::from_secs(3)),
            ["10.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert!(addrs(&table, start + HEALTHY_FOR).is_empty(), "unhealthy once silent");
        let nodes = table.nodes(start + HEALTHY_FOR);
        assert!(nodes.len() == 1 && !nodes[0].healthy);
        // A new beat brings it back.
        let mut next = first;
        next.seq = 3;
        assert!(table.insert(next, start + HEALTHY_FOR));
        assert_eq!(addrs(&table, start + HEALTHY_FOR).len(), 1);
        assert!(table.nodes(start + HEALTHY_FOR + FORGET_AFTER).is_empty(), "forgotten at last");
    }

    #[test]
    fn answers_list_healthy_nodes_of_the_service_least_loaded_first() {
        let mut table = Table::default();
        let now = Instant::now();
        for (addr, active, cpu) in
            [("10.0.0.3", 5, 1.0), ("10.0.0.1", 0, 90.0), ("10.0.0.2", 0, 10.0)]
        {
            table.insert(beat(1, &["substrate", "hoarder"], addr, active, cpu), now);
        }
        table.insert(beat(1, &["tns"], "10.0.0.4", 0, 0.0), now);
        table.insert(beat(1, &["substrate"], "fd00::1", 0, 0.0), now);
        let v4: Vec<String> =
            table.addresses("substrate", now, false).iter().map(|a| a.to_string()).collect();
        assert_eq!(v4, ["10.0.0.2", "10.0.0.1", "10.0.0.3"]);
        assert_eq!(table.addresses("substrate", now, true), ["fd00::1".parse::<IpAddr>().unwrap()]);
        assert_eq!(table.addresses("tns", now, false), ["10.0.0.4".parse::<IpAddr>().unwrap()]);
        assert!(table.addresses("vault", now, false).is_empty());
    }
}
