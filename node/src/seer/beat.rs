//! Every node's heartbeat: signed every beat interval and sent to each seer node.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use tau_proto::admin::Resources;
use tau_proto::seer::{BEAT_INTERVAL, Heartbeat, SeerProtocol, SeerRequest, SignedHeartbeat};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::config::NodeConfig;
use crate::p2p;

/// What a node's beats are made of.
pub struct BeatParts {
    /// The node's identity, which signs each beat.
    pub keypair: Keypair,
    /// The node's config (services, addresses, location).
    pub config: NodeConfig,
    /// The gateway's port, if the node runs substrate.
    pub http_port: u16,
    /// The latest resource sample.
    pub resources: watch::Receiver<Resources>,
    /// Requests the substrate is serving.
    pub active_requests: Option<Arc<AtomicU64>>,
    /// Whether the node's hoarder store is nearly full, if it runs hoarder.
    pub hoarder_full: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// The node's own seer, which gossip does not deliver the node's beats to.
    pub seer: Option<Arc<Shared>>,
    /// Turns true when the node is leaving: from then on its beats list no service, so that
    /// seer sends no more clients here while the node finishes what it serves.
    pub leaving: watch::Receiver<bool>,
    /// Whether the node's own registry has caught up with the cloud's, if it runs tns: until it
    /// has, its beats do not list substrate, so that seer sends no client to a gateway that
    /// does not know the cloud's functions yet.
    pub caught_up: Option<watch::Receiver<bool>>,
    /// How beats go to seer nodes.
    pub udp: Udp,
}

/// The IP addresses clients reach the node at: its announced ones, else the ones it listens on
/// (an unspecified listen address, 0.0.0.0, says nothing and is left out).
pub fn addresses(config: &NodeConfig) -> Vec<IpAddr> {
    let announced: Vec<IpAddr> = config
        .announce
        .iter()
        .flat_map(|addr| addr.iter())
        .filter_map(|p| match p {
            Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
            Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
            _ => None,
        })
        .collect();
    if !announced.is_empty() {
        return announced;
    }
    config.listen.iter().copied().filter(|ip| !ip.is_unspecified()).collect()
}

/// Starts beating; stops on `shutdown`.
pub fn spawn(
    handle: p2p::Handle,
    mut parts: BeatParts,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let addrs = addresses(&parts.config);
        if addrs.is_empty() {
            tracing::warn!(
                "no address to announce in heartbeats: set `announce` in node.yaml, or listen \
                 on a specific address, so that seer can send clients here"
            );
        }
        let started_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let mut tick = tokio::time::interval(BEAT_INTERVAL);
        let mut seq = 0;
        let sending = Sending::default();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
                // Said at once, not at the next tick.
                Ok(()) = parts.leaving.changed() => {}
                Some(Ok(())) = changed(parts.caught_up.as_mut()) => {}
            }
            let leaving = *parts.leaving.borrow_and_update();
            let caught_up = parts.caught_up.as_mut().is_none_or(|c| *c.borrow_and_update());
            seq += 1;
            let beat = Heartbeat {
                peer: handle.peer_id(),
                seq,
                started_ms,
                version: tau_proto::VERSION.into(),
                services: offered(&parts.config.services, leaving, caught_up),
                addrs: addrs.clone(),
                http_port: parts.http_port,
                location: parts.config.location.clone(),
                resources: parts.resources.borrow().clone(),
                active_requests: parts
                    .active_requests
                    .as_ref()
                    .map_or(0, |n| n.load(Ordering::Relaxed)),
                full: leaving
                    || parts.hoarder_full.as_ref().is_some_and(|f| f.load(Ordering::Relaxed)),
                leaving,
            };
            let signed = match beat.sign(&parts.keypair) {
                Ok(signed) => signed,
                Err(e) => {
                    tracing::error!(error = %e, "cannot sign a heartbeat");
                    break;
                }
            };
            if let Some(seer) = &parts.seer {
                seer.table().insert(beat, Instant::now());
            }
            send(&handle, &signed, &sending, &parts.udp).await;
        }
    })
}

/// The services a beat lists. A leaving node serves no client; its hoarder stays, as a full
/// one (its copies count, it takes no new ones), until others hold what it holds. A node whose
/// registry is still catching up offers no gateway yet.
fn offered(services: &[String], leaving: bool, caught_up: bool) -> Vec<String> {
    services
        .iter()
        .filter(|s| match s.as_str() {
            "hoarder" => true,
            "substrate" => !leaving && caught_up,
            _ => !leaving,
        })
        .cloned()
        .collect()
}

/// Waits for `watch` to change; `None` at once when there is none (a `select!` branch then
/// never matches).
async fn changed(
    watch: Option<&mut watch::Receiver<bool>>,
) -> Option<Result<(), watch::error::RecvError>> {
    match watch {
        Some(watch) => Some(watch.changed().await),
        None => None,
    }
}

/// The most seer nodes a node beats to (the nearest first).
pub const MAX_SEERS: usize = 16;
/// How long a beat may take to reach a seer (dialing it included): the next one is due then.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Sends `signed` to each seer node, at most [`MAX_SEERS`], skipping one whose last beat is
/// still on its way.
async fn send(handle: &p2p::Handle, signed: &SignedHeartbeat, sending: &Sending, udp: &Udp) {
    let Ok(seers) = handle.nodes("seer").await else { return };
    let packet = match (&udp.socket, udp.seal.seal(signed)) {
        (Some(_), Ok(packet)) => Some(packet),
        (None, _) => None,
        (_, Err(error)) => {
            tracing::warn!(%error, "cannot seal a heartbeat");
            None
        }
    };
    for seer in seers.into_iter().take(MAX_SEERS) {
        // One datagram to the seer's p2p port; a request when no UDP socket could be bound or
        // the seer's address is not known yet.
        // A request (which finds the seer's address) when it is not known yet.
        if let (Some(socket), Some(packet)) = (&udp.socket, &packet)
            && let Some(to) = udp_address(&handle.addresses(seer.peer).await.unwrap_or_default())
        {
            if let Err(error) = socket.send_to(packet, to).await {
                tracing::debug!(%to, %error, "heartbeat datagram not sent");
            }
            continue;
        }
        if !lock(sending).insert(seer.peer) {
            continue;
        }
        let (handle, request, sending) =
            (handle.clone(), SeerRequest::Beat(signed.clone()), sending.clone());
        tokio::spawn(async move {
            let call = handle.call::<SeerProtocol>(seer.peer, request);
            match tokio::time::timeout(SEND_TIMEOUT, call).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::debug!(%error, "heartbeat not taken"),
                Err(_) => tracing::debug!(seer = %seer.peer, "heartbeat not taken in time"),
            }
            lock(&sending).remove(&seer.peer);
        });
    }
}

/// Where heartbeat datagrams go from, and their seal.
pub struct Udp {
    /// The socket (none when it could not be bound: beats go by request then).
    pub socket: Option<tokio::net::UdpSocket>,
    /// Seals each beat.
    pub seal: Arc<tau_proto::seer::BeatSeal>,
}

/// The first UDP address a seer's p2p addresses give (its TCP port, as UDP).
fn udp_address(addrs: &[libp2p::Multiaddr]) -> Option<std::net::SocketAddr> {
    addrs.iter().filter_map(socket_addr).find(|a| !a.ip().is_unspecified())
}

/// The IP address and TCP port of a p2p address: where a seer takes heartbeat datagrams.
pub fn socket_addr(addr: &libp2p::Multiaddr) -> Option<std::net::SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for part in addr.iter() {
        match part {
            Protocol::Ip4(v4) => ip = Some(IpAddr::V4(v4)),
            Protocol::Ip6(v6) => ip = Some(IpAddr::V6(v6)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    Some(std::net::SocketAddr::new(ip?, port?))
}

/// The seer nodes a beat is on its way to.
type Sending = Arc<std::sync::Mutex<std::collections::HashSet<libp2p::PeerId>>>;

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::offered;

    #[test]
    fn a_node_offers_its_gateway_only_once_caught_up_and_only_hoarder_while_leaving() {
        let all: Vec<String> =
            ["tns", "hoarder", "seer", "substrate"].iter().map(|s| s.to_string()).collect();
        assert_eq!(offered(&all, false, true), all);
        assert_eq!(offered(&all, false, false), ["tns", "hoarder", "seer"]);
        assert_eq!(offered(&all, true, true), ["hoarder"]);
        assert_eq!(offered(&all, true, false), ["hoarder"]);
    }
}
