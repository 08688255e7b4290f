//! Membership: which hoarder nodes are alive (seer's change feed, [`crate::seer::follow`]),
//! and what each holds and fetches (its [`StateDelta`]s on `tau/hoarder/1`, or its whole
//! [`HolderState`] when one was missed).

use std::collections::{HashMap, HashSet};

use libp2p::PeerId;
use tau_proto::hoarder::{BlobId, HolderState, StateDelta, StateVersion};

/// What one hoarder node holds and fetches, as last heard.
#[derive(Debug, Default)]
struct Known {
    version: StateVersion,
    held: HashSet<BlobId>,
    fetching: HashSet<BlobId>,
}

/// What [`Members::apply`] did with a delta.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// It was the next change: applied.
    Applied,
    /// It was one already seen (or older): ignored.
    Old,
    /// One or more changes before it were missed: ask the node for its whole state.
    Missed,
}

/// The other hoarder nodes.
#[derive(Default)]
pub struct Members {
    known: HashMap<PeerId, Known>,
    /// The live hoarder nodes (disks full or not), sorted.
    alive: Vec<PeerId>,
    /// Those of them whose disks are full.
    full: HashSet<PeerId>,
}

impl Members {
    /// The live hoarder nodes are now `alive`, `full` of them with full disks. What is known
    /// of a node that is not alive is kept (it may come back), and no longer counts.
    pub fn set_alive(&mut self, mut alive: Vec<PeerId>, full: HashSet<PeerId>) {
        alive.sort();
        alive.dedup();
        self.alive = alive;
        self.full = full;
    }

    /// The live hoarder nodes, sorted.
    pub fn alive(&self) -> &[PeerId] {
        &self.alive
    }

    /// Whether `peer` said its disk is full (it takes no new replicas).
    pub fn is_full(&self, peer: &PeerId) -> bool {
        self.full.contains(peer)
    }

    /// The state version known of `peer`.
    pub fn version(&self, peer: &PeerId) -> Option<StateVersion> {
        self.known.get(peer).map(|k| k.version)
    }

    /// The state version known of every node.
    pub fn versions(&self) -> Vec<(PeerId, StateVersion)> {
        self.known.iter().map(|(p, k)| (*p, k.version)).collect()
    }

    /// The live nodes whose state is not known yet.
    pub fn unknown(&self) -> Vec<PeerId> {
        self.alive.iter().filter(|p| !self.known.contains_key(p)).copied().collect()
    }

    /// Applies a delta from `peer`.
    pub fn apply(&mut self, peer: PeerId, delta: &StateDelta) -> Applied {
        let Some(known) = self.known.get_mut(&peer) else { return Applied::Missed };
        if delta.version <= known.version {
            return Applied::Old;
        }
        if !delta.version.follows(&known.version) {
            return Applied::Missed;
        }
        known.version = delta.version;
        for cid in &delta.removed {
            known.held.remove(cid);
        }
        known.held.extend(delta.added.iter().copied());
        known.fetching = delta.fetching.iter().copied().collect();
        Applied::Applied
    }

    /// What is known of `peer`'s state.
    pub fn state_of(&self, peer: &PeerId) -> Option<HolderState> {
        self.known.get(peer).map(|k| HolderState {
            version: k.version,
            held: k.held.iter().copied().collect(),
            fetching: k.fetching.iter().copied().collect(),
        })
    }

    /// Every node whose state is known.
    pub fn known(&self) -> Vec<PeerId> {
        self.known.keys().copied().collect()
    }

    /// Takes `peer`'s whole state, unless an as new one is known.
    pub fn replace(&mut self, peer: PeerId, state: HolderState) {
        if self.known.get(&peer).is_some_and(|k| k.version >= state.version) {
            return;
        }
        let known = Known {
            version: state.version,
            held: state.held.into_iter().collect(),
            fetching: state.fetching.into_iter().collect(),
        };
        self.known.insert(peer, known);
    }

    /// Forgets what is known of nodes that are not alive, beyond the `keep` most recent: a
    /// bound on memory when many nodes come and go.
    pub fn forget_dead(&mut self, keep: usize) {
        let alive: HashSet<&PeerId> = self.alive.iter().collect();
        let mut dead: Vec<(StateVersion, PeerId)> = self
            .known
            .iter()
            .filter(|(p, _)| !alive.contains(p))
            .map(|(p, k)| (k.version, *p))
            .collect();
        if dead.len() <= keep {
            return;
        }
        dead.sort();
        for (_, peer) in &dead[..dead.len() - keep] {
            self.known.remove(peer);
        }
    }

    /// The live nodes that hold `cid`, sorted.
    pub fn holders(&self, cid: &BlobId) -> Vec<PeerId> {
        self.alive
            .iter()
            .filter(|p| self.known.get(p).is_some_and(|k| k.held.contains(cid)))
            .copied()
            .collect()
    }

    /// Whether a live node is fetching `cid`.
    pub fn fetching(&self, cid: &BlobId) -> bool {
        self.alive.iter().any(|p| self.known.get(p).is_some_and(|k| k.fetching.contains(cid)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(started_ms: u64, seq: u64) -> StateVersion {
        StateVersion { started_ms, seq }
    }

    fn delta(v: StateVersion, added: &[BlobId], removed: &[BlobId]) -> StateDelta {
        StateDelta {
            version: v,
            added: added.to_vec(),
            removed: removed.to_vec(),
            fetching: vec![],
            pins: vec![],
        }
    }

    #[test]
    fn deltas_apply_in_order_and_a_gap_asks_for_the_whole_state() {
        let mut members = Members::default();
        let (a, x, y) = (PeerId::random(), BlobId::of(b"x"), BlobId::of(b"y"));
        members.set_alive(vec![a], HashSet::new());
        assert_eq!(members.unknown(), vec![a]);
        assert_eq!(members.apply(a, &delta(version(1, 1), &[x], &[])), Applied::Missed);
        members.replace(a, HolderState { version: version(1, 1), held: vec![x], fetching: vec![] });
        assert_eq!(members.holders(&x), vec![a]);
        assert_eq!(members.apply(a, &delta(version(1, 1), &[y], &[])), Applied::Old);
        assert_eq!(members.apply(a, &delta(version(1, 2), &[y], &[x])), Applied::Applied);
        assert_eq!((members.holders(&x), members.holders(&y)), (vec![], vec![a]));
        assert_eq!(members.apply(a, &delta(version(1, 4), &[x], &[])), Applied::Missed);
        // A restart starts a new run: the next delta of it needs the whole state first.
        assert_eq!(members.apply(a, &delta(version(2, 1), &[], &[])), Applied::Missed);
        members.replace(a, HolderState { version: version(2, 1), held: vec![], fetching: vec![y] });
        assert!(members.holders(&y).is_empty() && members.fetching(&y));
        // An older state does not replace a newer one.
        members.replace(a, HolderState { version: version(1, 9), held: vec![x], fetching: vec![] });
        assert!(members.holders(&x).is_empty());
    }

    #[test]
    fn only_live_nodes_hold_and_dead_ones_are_forgotten_past_the_bound() {
        let mut members = Members::default();
        let x = BlobId::of(b"x");
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        for (i, peer) in peers.iter().enumerate() {
            let state =
                HolderState { version: version(i as u64, 0), held: vec![x], fetching: vec![] };
            members.replace(*peer, state);
        }
        members.set_alive(vec![peers[0]], [peers[0]].into());
        assert_eq!(members.holders(&x), vec![peers[0]], "a full node's copies still count");
        assert!(members.is_full(&peers[0]));
        members.forget_dead(1);
        assert_eq!(members.versions().len(), 2, "the live node and the newest dead one");
        assert!(members.version(&peers[3]).is_some());
    }
}
