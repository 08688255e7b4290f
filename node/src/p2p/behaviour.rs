//! The node's network behaviour and how it is built.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::kad::store::MemoryStore;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{StreamProtocol, Swarm, gossipsub, identify, kad, ping};
use tau_proto::SwarmKey;
use tau_proto::net::rpc;

use super::P2pError;

/// The kad protocol of Tau clouds (not the public IPFS DHT's).
pub(super) const KAD_PROTOCOL: &str = "/tau/kad/1";
/// The identify protocol version.
pub(super) const IDENTIFY_PROTOCOL: &str = "/tau/id/1";
/// How often peers are pinged, and how long a ping may take.
pub(super) const PING_INTERVAL: Duration = Duration::from_secs(10);
pub(super) const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// How many of the nodes nearest a key a kad lookup waits for.
const KAD_LOOKUP_WIDTH: std::num::NonZeroUsize = std::num::NonZeroUsize::new(8).unwrap();
/// How long a kad lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(8);
/// A connection nothing keeps (a finished client, a kad query's, a node past the target) closes
/// after this long idle; the loop keeps those to the nodes it counts on (`rpc::Behaviour::keep`).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    pub(super) identify: identify::Behaviour,
    pub(super) ping: ping::Behaviour,
    pub(super) kad: kad::Behaviour<MemoryStore>,
    pub(super) gossipsub: gossipsub::Behaviour,
    pub(super) rpc: rpc::Behaviour,
}

/// The gossipsub application score of a connection the loop keeps, and of one it does not
/// (below 0: out of every mesh; above the gossip threshold, -10: still told of messages).
pub(super) const KEPT: f64 = 0.0;
pub(super) const NOT_KEPT: f64 = -1.0;

/// The largest gossip message.
pub(super) const MAX_GOSSIP: usize = 1 << 20;

pub(super) fn build(keypair: Keypair, swarm_key: &SwarmKey) -> Result<Swarm<Behaviour>, P2pError> {
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(MAX_GOSSIP)
        .build()
        .map_err(|e| P2pError::Build(format!("gossipsub: {e}")))?;
    let mut gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(keypair.clone()),
        gossip_config,
    )
    .map_err(|e| P2pError::Build(format!("gossipsub: {e}")))?;
    // Scores only say which connections the loop keeps (`KEPT`, `NOT_KEPT`): a mesh forms over
    // those, so that it holds no other connection open. Nodes share addresses behind NAT, so
    // colocation is not held against them.
    let scores = gossipsub::PeerScoreParams {
        app_specific_weight: 1.0,
        ip_colocation_factor_weight: 0.0,
        ..gossipsub::PeerScoreParams::default()
    };
    gossipsub
        .with_peer_score(scores, gossipsub::PeerScoreThresholds::default())
        .map_err(|e| P2pError::Build(format!("gossipsub scores: {e}")))?;
    tau_proto::net::swarm(keypair, swarm_key, IDLE_TIMEOUT, |key| {
        let peer_id = key.public().to_peer_id();
        let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
        // A lookup is how a request finds a node it is not connected to: it must end within
        // a request's time.
        kad_config.set_query_timeout(LOOKUP_TIMEOUT);
        // The event loop walks the DHT when it needs to (often while it starts, every five
        // minutes after): kad's own timer would add a walk of its own.
        kad_config.set_periodic_bootstrap_interval(None);
        // A lookup ends once this many of the nearest nodes answered. Kad's 20 makes a walk of
        // a hundred-node cloud a few hundred connections (each a handshake); nodes keep no
        // records in the DHT, only find each other, and a lookup of a node ends at it.
        kad_config.set_replication_factor(KAD_LOOKUP_WIDTH);
        // Nodes enter the routing table when identify says they speak kad (the event loop),
        // not on every connection.
        kad_config.set_kbucket_inserts(kad::BucketInserts::Manual);
        let mut kad = kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
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
            rpc: rpc::Behaviour::default(),
        }
    })
    .map_err(|e| P2pError::Build(e.to_string()))
}
