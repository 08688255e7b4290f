//! The transport every Tau peer uses, node or client: TCP, then the pnet handshake with the
//! cloud's swarm key, then noise (authentication and encryption), then yamux (streams).
//!
//! pnet runs first, on the raw socket: a peer with another key (or none) fails there, before it
//! can speak any protocol. (pnet does not work over QUIC, so there is no QUIC.)

use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::pnet::PnetConfig;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{PeerId, StreamProtocol, Swarm, Transport, noise, tcp, yamux};

use crate::SwarmKey;

/// How long dialing, the pnet handshake, noise and yamux may take together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request and response of a service protocol.
pub const MAX_REQUEST: u64 = 16 << 20;
/// See [`MAX_REQUEST`].
pub const MAX_RESPONSE: u64 = 64 << 20;

/// A request-response behaviour (CBOR) for a service protocol: answered (inbound) only where the
/// peer runs the service; every peer may ask. A request fails after `timeout` without an answer.
pub fn service<Req, Resp>(
    protocol: &'static str,
    serves: bool,
    timeout: std::time::Duration,
) -> request_response::cbor::Behaviour<Req, Resp>
where
    Req: Send + serde::Serialize + serde::de::DeserializeOwned,
    Resp: Send + serde::Serialize + serde::de::DeserializeOwned,
{
    let support = if serves { ProtocolSupport::Full } else { ProtocolSupport::Outbound };
    let codec = request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(MAX_REQUEST)
        .set_response_size_maximum(MAX_RESPONSE);
    request_response::Behaviour::with_codec(
        codec,
        [(StreamProtocol::new(protocol), support)],
        request_response::Config::default().with_request_timeout(timeout),
    )
}

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

/// The ports a node listens on (`node.yaml`'s `ports`, a playbook shape's `ports`); 0 means any
/// free port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    /// libp2p (TCP).
    pub p2p: u16,
    /// The substrate HTTP gateway.
    pub http: u16,
    /// The seer DNS server (UDP and TCP).
    pub dns: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self { p2p: 4001, http: 8080, dns: 53 }
    }
}
