//! Where a blob's replicas go: rendezvous (highest random weight) hashing over the live hoarder
//! nodes. Each node scores `BLAKE3(cid hash ‖ peer id)` and the `k` highest hold the blob, so
//! every node computes the same holders from the same membership, and a member joining or
//! leaving moves only the replicas it wins or held.

use libp2p::PeerId;
use tau_proto::hoarder::BlobId;

fn score(cid: &BlobId, peer: &PeerId) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&cid.blake3());
    hasher.update(&peer.to_bytes());
    *hasher.finalize().as_bytes()
}

/// The `count` members that should hold `cid`, best first.
pub fn holders(cid: &BlobId, members: &[PeerId], count: usize) -> Vec<PeerId> {
    let mut scored: Vec<([u8; 32], PeerId)> = members.iter().map(|m| (score(cid, m), *m)).collect();
    scored.sort_by_key(|(score, _)| std::cmp::Reverse(*score));
    scored.into_iter().take(count).map(|(_, peer)| peer).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    #[test]
    fn every_node_computes_the_same_holders_in_any_order() {
        let members = peers(6);
        let mut reversed = members.clone();
        reversed.reverse();
        let cid = BlobId::of(b"x");
        assert_eq!(holders(&cid, &members, 3), holders(&cid, &reversed, 3));
        assert_eq!(holders(&cid, &members, 10).len(), 6, "capped at the members");
    }

    #[test]
    fn adding_a_member_moves_about_one_replica_in_n() {
        let mut members = peers(5);
        let pins: Vec<BlobId> = (0..2_000u32).map(|i| BlobId::of(&i.to_le_bytes())).collect();
        let before: Vec<HashSet<PeerId>> =
            pins.iter().map(|c| holders(c, &members, 3).into_iter().collect()).collect();
        members.push(PeerId::random());
        let mut moved = 0;
        for (cid, old) in pins.iter().zip(&before) {
            let new: HashSet<PeerId> = holders(cid, &members, 3).into_iter().collect();
            let lost = old.difference(&new).count();
            assert!(lost <= 1, "a pin loses at most the one replica the new member wins");
            moved += lost;
        }
        let fraction = moved as f64 / (pins.len() * 3) as f64;
        // Expected 1/6 of the replicas move to the sixth member.
        assert!((0.12..0.22).contains(&fraction), "moved {fraction:.3} of the replicas");
    }
}
