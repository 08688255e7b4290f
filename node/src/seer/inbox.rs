//! Heartbeat datagrams: every node's beat arrives in one UDP datagram on the seer's p2p port
//! (the same number as its TCP one), sealed with a key derived from the swarm key
//! ([`tau_proto::seer::BeatSeal`]). No connection per node: a seer's cost is a datagram per
//! node and second, whatever its connection ceiling.
//!
//! Cheap checks come first: the rate per address ([`PER_ADDRESS`]), the seal, then whether the
//! node is admitted and the beat newer than the one kept; only then is the signature checked.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tau_proto::seer::{BeatSeal, MAX_BEAT_PACKET};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::rate::{Decision, RateLimit};
use super::table::Table;

/// Datagrams one address may send a second (a node sends one to each seer every second).
pub const PER_ADDRESS: u32 = 20;

/// Takes heartbeat datagrams on `socket` until `shutdown`.
pub async fn serve(
    shared: Arc<Shared>,
    socket: UdpSocket,
    seal: Arc<BeatSeal>,
    shutdown: CancellationToken,
) {
    let mut limit = RateLimit::per_address(PER_ADDRESS);
    let mut buf = vec![0u8; MAX_BEAT_PACKET + 1];
    loop {
        let (len, from) = tokio::select! {
            _ = shutdown.cancelled() => break,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(error) => {
                    tracing::debug!(%error, "heartbeat socket");
                    continue;
                }
            },
        };
        take(&shared, &seal, &mut limit, &buf[..len], from);
    }
}

/// What became of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// A new beat: in the table.
    Kept,
    /// Over its address's rate, not sealed with the cloud's key, or not a heartbeat.
    Dropped,
    /// From a node not admitted, or not newer than the beat kept: its signature not checked.
    Ignored,
    /// The signature is not the key of the node it names.
    Forged,
}

/// Checks one datagram from `from` and keeps its beat if it is news.
pub fn take(
    shared: &Shared,
    seal: &BeatSeal,
    limit: &mut RateLimit,
    packet: &[u8],
    from: SocketAddr,
) {
    match judge(&shared.table, seal, limit, packet, from) {
        Taken::Kept | Taken::Ignored => {}
        Taken::Dropped => {
            shared.dropped_beats.fetch_add(1, Ordering::Relaxed);
        }
        Taken::Forged => {
            shared.forged.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%from, "dropped a forged heartbeat datagram");
        }
    }
}

/// Checks one datagram, cheapest check first, and puts its beat in `table` if it is news.
fn judge(
    table: &Mutex<Table>,
    seal: &BeatSeal,
    limit: &mut RateLimit,
    packet: &[u8],
    from: SocketAddr,
) -> Taken {
    let now = Instant::now();
    let table = || table.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if limit.check(from.ip(), now) != Decision::Answer {
        return Taken::Dropped;
    }
    let Ok(signed) = seal.open(packet) else { return Taken::Dropped };
    let Some(claimed) = signed.peek() else { return Taken::Dropped };
    if !table().wants(&claimed) {
        return Taken::Ignored;
    }
    match signed.open() {
        Ok(beat) => {
            table().insert(beat, now);
            Taken::Kept
        }
        Err(_) => Taken::Forged,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use libp2p::identity::Keypair;
    use tau_proto::SwarmKey;
    use tau_proto::admin::Resources;
    use tau_proto::membership::Admitted;
    use tau_proto::seer::Heartbeat;

    use super::*;

    fn beat(key: &Keypair, seq: u64) -> Heartbeat {
        Heartbeat {
            peer: key.public().to_peer_id(),
            seq,
            started_ms: 1,
            version: "0".into(),
            services: vec!["hoarder".into()],
            addrs: vec!["10.0.0.1".parse().unwrap()],
            http_port: 0,
            location: None,
            resources: Resources::default(),
            active_requests: 0,
            full: false,
            leaving: false,
        }
    }

    fn table_admitting(keys: &[&Keypair]) -> Mutex<Table> {
        let nodes: HashMap<_, _> =
            keys.iter().map(|k| (k.public().to_peer_id(), vec!["hoarder".to_string()])).collect();
        let mut table = Table::default();
        table.admit(Admitted::Listed(Arc::new(nodes)));
        Mutex::new(table)
    }

    #[test]
    fn only_a_sealed_signed_new_beat_of_an_admitted_node_is_kept() {
        let (a, b, stranger) =
            (Keypair::generate_ed25519(), Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let table = table_admitting(&[&a, &b]);
        let seal = BeatSeal::new(&SwarmKey::generate());
        let other_cloud = BeatSeal::new(&SwarmKey::generate());
        let mut limit = RateLimit::per_address(PER_ADDRESS);
        let from: SocketAddr = "10.0.0.1:4001".parse().unwrap();
        let sealed = |seal: &BeatSeal, signed| seal.seal(&signed).unwrap();
        let mut judge = |packet: &[u8]| judge(&table, &seal, &mut limit, packet, from);

        assert_eq!(judge(&sealed(&seal, beat(&a, 1).sign(&a).unwrap())), Taken::Kept);
        // The same beat again, an older one: no signature checked.
        assert_eq!(judge(&sealed(&seal, beat(&a, 1).sign(&a).unwrap())), Taken::Ignored);
        // Noise, a beat sealed with another cloud's key.
        assert_eq!(judge(b"not a heartbeat"), Taken::Dropped);
        assert_eq!(judge(&sealed(&other_cloud, beat(&a, 2).sign(&a).unwrap())), Taken::Dropped);
        // A node the operator did not admit.
        assert_eq!(
            judge(&sealed(&seal, beat(&stranger, 1).sign(&stranger).unwrap())),
            Taken::Ignored
        );
        // A beat naming b, signed by a: forged.
        let mut forged = beat(&a, 5).sign(&a).unwrap();
        forged.body = tau_proto::cbor::to_vec(&beat(&b, 5)).unwrap();
        assert_eq!(judge(&sealed(&seal, forged)), Taken::Forged);
        // b's own beat is still taken.
        assert_eq!(judge(&sealed(&seal, beat(&b, 5).sign(&b).unwrap())), Taken::Kept);
    }

    #[test]
    fn a_source_over_its_rate_is_dropped_before_anything_else() {
        let a = Keypair::generate_ed25519();
        let table = table_admitting(&[&a]);
        let seal = BeatSeal::new(&SwarmKey::generate());
        let mut limit = RateLimit::per_address(PER_ADDRESS);
        let flood: SocketAddr = "10.0.0.9:4001".parse().unwrap();
        let outcomes: Vec<Taken> = (1..=PER_ADDRESS as u64 * 3)
            .map(|seq| {
                let packet = seal.seal(&beat(&a, seq).sign(&a).unwrap()).unwrap();
                judge(&table, &seal, &mut limit, &packet, flood)
            })
            .collect();
        let kept = outcomes.iter().filter(|t| **t == Taken::Kept).count();
        let dropped = outcomes.iter().filter(|t| **t == Taken::Dropped).count();
        assert!(kept <= PER_ADDRESS as usize + 1, "kept {kept} of a flood");
        assert!(dropped >= PER_ADDRESS as usize, "dropped only {dropped}");
        // Another address is not held back by the flood.
        let other: SocketAddr = "10.0.0.2:4001".parse().unwrap();
        let packet = seal.seal(&beat(&a, 1000).sign(&a).unwrap()).unwrap();
        assert_eq!(judge(&table, &seal, &mut limit, &packet, other), Taken::Kept);
    }
}
