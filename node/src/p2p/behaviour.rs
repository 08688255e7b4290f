//! The node's network behaviour and how it is built.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::kad::store::MemoryStore;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{StreamProtocol, Swarm, gossipsub, identify, kad, ping};
use tau_proto::SwarmKey;
use tau_proto::admin::{self, AdminRequest, AdminResponse};
use tau_proto::hoarder::{self, HoarderRequest, HoarderResponse};
use tau_proto::seer::{self, SeerRequest, SeerResponse};
use tau_proto::tns::{self, TnsRequest, TnsResponse};
use tau_proto::vault::{self, VaultRequest, VaultResponse};

use super::P2pError;

/// The kad protocol of Tau clouds (not the public IPFS DHT's).
pub(super) const KAD_PROTOCOL: &str = "/tau/kad/1";
/// The identify protocol version.
pub(super) const IDENTIFY_PROTOCOL: &str = "/tau/id/1";
/// How often peers are pinged, and how long a ping may take.
pub(super) const PING_INTERVAL: Duration = Duration::from_secs(2);
pub(super) const PING_TIMEOUT: Duration = Duration::from_secs(4);
/// Connections between nodes stay up; this only closes ones nothing uses (finished clients).
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    pub(super) identify: identify::Behaviour,
    pub(super) ping: ping::Behaviour,
    pub(super) kad: kad::Behaviour<MemoryStore>,
    pub(super) gossipsub: gossipsub::Behaviour,
    pub(super) admin: request_response::cbor::Behaviour<AdminRequest, AdminResponse>,
    pub(super) tns: request_response::cbor::Behaviour<TnsRequest, TnsResponse>,
    pub(super) hoarder: request_response::cbor::Behaviour<HoarderRequest, HoarderResponse>,
    pub(super) vault: request_response::cbor::Behaviour<VaultRequest, VaultResponse>,
    pub(super) seer: request_response::cbor::Behaviour<SeerRequest, SeerResponse>,
}

/// The largest gossip message.
pub(super) const MAX_GOSSIP: usize = 1 << 20;

pub(super) fn build(
    keypair: Keypair,
    swarm_key: &SwarmKey,
    services: &[String],
) -> Result<Swarm<Behaviour>, P2pError> {
    let runs = |name: &str| services.iter().any(|s| s == name);
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(MAX_GOSSIP)
        .build()
        .map_err(|e| P2pError::Build(format!("gossipsub: {e}")))?;
    let gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(keypair.clone()),
        gossip_config,
    )
    .map_err(|e| P2pError::Build(format!("gossipsub: {e}")))?;
    tau_proto::net::swarm(keypair, swarm_key, IDLE_TIMEOUT, |key| {
        let peer_id = key.public().to_peer_id();
        let mut kad = kad::Behaviour::with_config(
            peer_id,
            MemoryStore::new(peer_id),
            kad::Config::new(StreamProtocol::new(KAD_PROTOCOL)),
        );
        // Nodes are servers of the cloud's DHT even when their only addresses are private.
        kad.set_mode(Some(kad::Mode::Server));
        Behaviour {
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public()).with_agent_version(
                    format!("{}{}", tau_proto::NODE_AGENT_PREFIX, tau_proto::VERSION),
                ),
            ),
            ping: ping::Behaviour::new(
                ping::Config::new().with_interval(PING_INTERVAL).with_timeout(PING_TIMEOUT),
            ),
            kad,
            gossipsub,
            admin: request_response::cbor::Behaviour::new(
                [(StreamProtocol::new(admin::PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(tau_proto::client::REQUEST_TIMEOUT),
            ),
            tns: tau_proto::net::service(
                tns::PROTOCOL,
                runs("tns"),
                tau_proto::client::REQUEST_TIMEOUT,
            ),
            hoarder: tau_proto::net::service(
                hoarder::PROTOCOL,
                runs("hoarder"),
                hoarder::REQUEST_TIMEOUT,
            ),
            vault: tau_proto::net::service(vault::PROTOCOL, runs("vault"), vault::REQUEST_TIMEOUT),
            seer: tau_proto::net::service(
                seer::PROTOCOL,
                runs("seer"),
                tau_proto::client::REQUEST_TIMEOUT,
            ),
        }
    })
    .map_err(|e| P2pError::Build(e.to_string()))
}
