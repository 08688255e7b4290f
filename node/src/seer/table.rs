//! The latest heartbeat of every node, and who is healthy.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tau_proto::membership::Admitted;
use tau_proto::protocol::Access;
use tau_proto::seer::{Change, Cursor, HEALTHY_FOR, Heartbeat, Member, NodeStatus};

/// Nodes silent for this long are forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Changes the feed keeps for callers to continue from; one further behind starts over.
pub const FEED_KEPT: usize = 10_000;

/// The latest beat per admitted node, with when it arrived, and the change feed of who is
/// healthy.
pub struct Table {
    latest: HashMap<PeerId, (Heartbeat, Instant)>,
    /// Who is a node, and for which services.
    admitted: Admitted,
    feed: Feed,
}

/// The change feed: each node's health as last said, and the latest changes.
struct Feed {
    epoch: u64,
    version: u64,
    said: HashMap<PeerId, Member>,
    changes: VecDeque<(u64, Change)>,
}

impl Default for Table {
    fn default() -> Self {
        let feed = Feed {
            epoch: rand::random(),
            version: 0,
            said: HashMap::new(),
            changes: VecDeque::new(),
        };
        Self { latest: HashMap::new(), admitted: Admitted::default(), feed }
    }
}

impl Feed {
    /// Records `peer`'s health, if it changed.
    fn note(&mut self, peer: PeerId, member: Option<Member>) {
        if self.said.get(&peer) == member.as_ref() {
            return;
        }
        match &member {
            Some(m) => self.said.insert(peer, m.clone()),
            None => self.said.remove(&peer),
        };
        self.version += 1;
        self.changes.push_back((self.version, Change { peer, member }));
        if self.changes.len() > FEED_KEPT {
            self.changes.pop_front();
        }
    }
}

fn member_of(beat: &Heartbeat) -> Member {
    Member { services: beat.services.clone(), full: beat.full, leaving: beat.leaving }
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
        self.sweep(Instant::now());
    }

    /// Brings the change feed up to date with who is healthy at `now` (nodes whose beats
    /// stopped go out of it); seer calls it twice a second.
    pub fn sweep(&mut self, now: Instant) {
        let mut gone: Vec<PeerId> =
            self.feed.said.keys().filter(|p| !self.latest.contains_key(p)).copied().collect();
        for (peer, (beat, at)) in &self.latest {
            if now.saturating_duration_since(*at) >= HEALTHY_FOR
                && self.feed.said.contains_key(peer)
            {
                gone.push(*peer);
            } else if now.saturating_duration_since(*at) < HEALTHY_FOR {
                self.feed.note(*peer, Some(member_of(beat)));
            }
        }
        for peer in gone {
            self.feed.note(peer, None);
        }
    }

    /// The changes after `since`, and the cursor they end at; with `true`, the caller starts
    /// over from every healthy node (no cursor, another epoch, or one too far behind).
    pub fn changes(&self, since: Option<Cursor>) -> (Cursor, bool, Vec<Change>) {
        let feed = &self.feed;
        let cursor = Cursor { epoch: feed.epoch, version: feed.version };
        let oldest = feed.changes.front().map_or(feed.version, |(v, _)| v - 1);
        match since {
            Some(since)
                if since.epoch == feed.epoch
                    && since.version >= oldest
                    && since.version <= feed.version =>
            {
                let skip = (since.version - oldest) as usize;
                let changes = feed.changes.iter().skip(skip).map(|(_, c)| c.clone()).collect();
                (cursor, false, changes)
            }
            _ => {
                let mut all: Vec<Change> = feed
                    .said
                    .iter()
                    .map(|(peer, m)| Change { peer: *peer, member: Some(m.clone()) })
                    .collect();
                all.sort_by_key(|c| c.peer);
                (cursor, true, all)
            }
        }
    }

    /// Whether `beat` would be kept: from an admitted node, and newer than the one kept.
    pub fn wants(&self, beat: &Heartbeat) -> bool {
        self.admitted.allows(Access::Nodes, &beat.peer)
            && self.latest.get(&beat.peer).is_none_or(|(known, _)| beat.is_newer_than(known))
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
                self.feed.note(beat.peer, Some(member_of(&beat)));
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
                now.saturating_duration_since(*at) < HEALTHY_FOR
                    && beat.runs(service)
                    && !beat.leaving
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
            full: false,
            leaving: false,
        }
    }

    #[test]
    fn the_feed_carries_each_change_once_and_starts_over_when_it_cannot_continue() {
        let mut table = Table::default();
        let start = Instant::now();
        let (a, b) =
            (beat(1, &["hoarder"], "10.0.0.1", 0, 0.0), beat(1, &["tns"], "10.0.0.2", 0, 0.0));
        table.insert(a.clone(), start);
        table.insert(b.clone(), start);
        let (first, reset, all) = table.changes(None);
        assert!(reset && all.len() == 2);
        // Nothing new: nothing said; a repeated beat changes nothing.
        let mut again = a.clone();
        again.seq = 2;
        table.insert(again.clone(), start);
        assert_eq!(table.changes(Some(first)), (first, false, vec![]));
        // A full disk, then silence: two changes, in order.
        again.seq = 3;
        again.full = true;
        table.insert(again, start + Duration::from_secs(1));
        table.sweep(start + HEALTHY_FOR + Duration::from_millis(500));
        let (next, reset, changes) = table.changes(Some(first));
        assert!(!reset);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes[0].peer == a.peer && changes[0].member.as_ref().is_some_and(|m| m.full));
        assert_eq!(changes[1], Change { peer: b.peer, member: None });
        assert_eq!(next.version, first.version + 2);
        table.sweep(start + HEALTHY_FOR + Duration::from_secs(2));
        let (_, _, last) = table.changes(Some(next));
        assert_eq!(last, vec![Change { peer: a.peer, member: None }]);
        // Another seer's cursor, or one from the future, starts over.
        let foreign = Cursor { epoch: first.epoch.wrapping_add(1), version: 1 };
        assert!(table.changes(Some(foreign)).1);
        assert!(table.changes(Some(Cursor { version: 99, ..first })).1);
    }

    #[test]
    fn a_caller_too_far_behind_starts_over() {
        let mut table = Table::default();
        let now = Instant::now();
        let node = beat(1, &["hoarder"], "10.0.0.1", 0, 0.0);
        table.insert(node.clone(), now);
        let (old, _, _) = table.changes(None);
        for seq in 2..(FEED_KEPT as u64 + 10) {
            let mut next = node.clone();
            next.seq = seq;
            next.full = seq % 2 == 0;
            table.insert(next, now);
        }
        let (_, reset, changes) = table.changes(Some(old));
        assert!(reset && changes.len() == 1);
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
