//! The transport every Tau peer uses, node or client: TCP, then the pnet handshake with the
//! cloud's swarm key, then noise (authentication and encryption), then yamux (streams).
//!
//! pnet runs first, on the raw socket: a peer with another key (or none) fails there, before it
//! can speak any protocol. (pnet does not work over QUIC, so there is no QUIC.)
//!
//! [`rpc`] carries every request-response protocol over it.

pub mod rpc;

use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::pnet::PnetConfig;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{PeerId, Swarm, Transport, noise, tcp, yamux};

use crate::SwarmKey;

/// How long dialing, the pnet handshake, noise and yamux may take together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a swarm could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the p2p transport: {0}")]
pub struct TransportError(String);

/// The authenticated, multiplexed transport for `keypair` in the cloud of `swarm_key`.
pub fn transport(
    keypair: &Keypair,
    swarm_key: &SwarmKey,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, TransportError> {
    let psk = swarm_key.psk();
    let noise = noise::Config::new(keypair).map_err(|e| TransportError(e.to_string()))?;
    Ok(tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
        .upgrade(Version::V1Lazy)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .timeout(CONNECT_TIMEOUT)
        .boxed())
}

/// A swarm on the Tau transport with the behaviour `behaviour` builds; connections with nothing
/// to do are closed after `idle_timeout`.
pub fn swarm<B: NetworkBehaviour>(
    keypair: Keypair,
    swarm_key: &SwarmKey,
    idle_timeout: Duration,
    behaviour: impl FnOnce(&Keypair) -> B,
) -> Result<Swarm<B>, TransportError> {
    let transport = transport(&keypair, swarm_key)?;
    Ok(libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|_| transport)
        .map_err(|e| TransportError(e.to_string()))?
        .with_behaviour(behaviour)
        .map_err(|e| TransportError(e.to_string()))?
        .with_swarm_config(|c| {
            // Lazy negotiation on streams: a request goes out with its protocol proposal instead
            // of a round trip later. Every Tau peer speaks every protocol it proposes.
            c.with_idle_connection_timeout(idle_timeout)
                .with_substream_upgrade_protocol_override(Version::V1Lazy)
        })
        .build())
}
