//! Heartbeat datagrams: every node's beat arrives in one UDP datagram on the seer's p2p port
//! (the same number as its TCP one), sealed with a key derived from the swarm key
//! ([`tau_proto::seer::BeatSeal`]). No connection per node: a seer's cost is a datagram per
//! node and second, whatever its connection ceiling.
//!
//! Cheap checks come first: the rate per address ([`PER_ADDRESS`]), the seal, then whether the
//! node is admitted and the beat newer than the one kept; only then is the signature checked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tau_proto::seer::{BeatSeal, MAX_BEAT_PACKET};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::rate::{Decision, RateLimit};

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

/// Checks one datagram from `from` and keeps its beat if it is news.
pub fn take(
    shared: &Shared,
    seal: &BeatSeal,
    limit: &mut RateLimit,
    packet: &[u8],
    from: SocketAddr,
) {
    let now = Instant::now();
    if limit.check(from.ip(), now) != Decision::Answer {
        shared.dropped_beats.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let Ok(signed) = seal.open(packet) else {
        shared.dropped_beats.fetch_add(1, Ordering::Relaxed);
        return;
    };
    // Not admitted, or not newer than the beat kept: no signature to check.
    let Some(claimed) = signed.peek() else {
        shared.dropped_beats.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if !shared.table().wants(&claimed) {
        return;
    }
    match signed.open() {
        Ok(beat) => {
            shared.table().insert(beat, now);
        }
        Err(error) => {
            shared.forged.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%from, %error, "dropped a forged heartbeat datagram");
        }
    }
}
