//! Membership: the hoarder nodes heard from lately, and what each holds and is fetching.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tau_proto::hoarder::{BlobId, Heartbeat};

/// How often a hoarder node says it is alive.
pub const BEAT: Duration = Duration::from_secs(1);
/// A member is dead after this long without a heartbeat (three missed beats).
pub const DEAD_AFTER: Duration = Duration::from_millis(3_500);

struct Member {
    seen: Instant,
    full: bool,
    held: HashSet<BlobId>,
    fetching: HashSet<BlobId>,
}

/// The other hoarder nodes.
#[derive(Default)]
pub struct Members {
    members: HashMap<PeerId, Member>,
}

impl Members {
    /// Records a heartbeat from `peer`.
    pub fn record(&mut self, peer: PeerId, beat: &Heartbeat) {
        self.members.insert(
            peer,
            Member {
                seen: Instant::now(),
                full: beat.full,
                held: beat.held.iter().copied().collect(),
                fetching: beat.fetching.iter().copied().collect(),
            },
        );
    }

    /// The members heard from within [`DEAD_AFTER`], sorted.
    pub fn live(&self) -> Vec<PeerId> {
        let mut live: Vec<PeerId> = self
            .members
            .iter()
            .filter(|(_, m)| m.seen.elapsed() < DEAD_AFTER)
            .map(|(p, _)| *p)
            .collect();
        live.sort();
        live
    }

    /// The live members: the connected hoarder nodes that were heard from within
    /// [`DEAD_AFTER`] or have not beaten yet (a node that just started or joined). A member that
    /// beat and went quiet is dead; one that is no longer connected is too, at once (a partition
    /// or a crash shows as a closed connection before its beats are missed).
    pub fn live_with(&self, connected: &[PeerId]) -> Vec<PeerId> {
        let mut live: Vec<PeerId> = connected
            .iter()
            .filter(|p| self.members.get(p).is_none_or(|m| m.seen.elapsed() < DEAD_AFTER))
            .copied()
            .collect();
        live.sort();
        live.dedup();
        live
    }

    /// Whether `peer` said its disk is full (it takes no new replicas).
    pub fn is_full(&self, peer: &PeerId) -> bool {
        self.members.get(peer).is_some_and(|m| m.full)
    }

    /// The live members that hold `cid`.
    pub fn holders(&self, cid: &BlobId) -> Vec<PeerId> {
        let mut holders: Vec<PeerId> = self
            .members
            .iter()
            .filter(|(_, m)| m.seen.elapsed() < DEAD_AFTER && m.held.contains(cid))
            .map(|(p, _)| *p)
            .collect();
        holders.sort();
        holders
    }

    /// Whether a live member is fetching `cid`.
    pub fn fetching(&self, cid: &BlobId) -> bool {
        self.members.values().any(|m| m.seen.elapsed() < DEAD_AFTER && m.fetching.contains(cid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_live_until_they_miss_beats() {
        let mut members = Members::default();
        let (a, cid) = (PeerId::random(), BlobId::of(b"x"));
        members
            .record(a, &Heartbeat { held: vec![cid], fetching: vec![], pins: vec![], full: false });
        assert_eq!(members.live(), vec![a]);
        assert_eq!(members.holders(&cid), vec![a]);
        members.members.get_mut(&a).unwrap().seen -= DEAD_AFTER;
        assert!(members.live().is_empty());
        // Connected but silent: live until it beats (a newcomer); dead if it beat and went quiet.
        let newcomer = PeerId::random();
        assert_eq!(members.live_with(&[a, newcomer]), vec![newcomer]);
        // Beating but no longer connected (cut off): not live.
        let b = PeerId::random();
        members.record(b, &Heartbeat { held: vec![], fetching: vec![], pins: vec![], full: true });
        assert_eq!(members.live_with(&[b]), vec![b]);
        assert!(members.live_with(&[newcomer]).iter().all(|p| *p != b));
        assert!(members.holders(&cid).is_empty(), "a dead member holds nothing");
        assert!(members.is_full(&b) && !members.is_full(&a), "a full disk is remembered");
    }
}
