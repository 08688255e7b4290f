//! Seer: signed heartbeats, node health, and the `/tau/seer/1` types.
//!
//! Every node sends a [`SignedHeartbeat`] to each seer node ([`SeerRequest::Beat`]) every
//! [`BEAT_INTERVAL`]: what it runs, where clients reach it, its resources and its load. The
//! signature is the node's identity key over a domain tag and the heartbeat's exact CBOR bytes,
//! so a receiver checks it against the key inside the claimed peer id before it decodes
//! anything else ([`SignedHeartbeat::open`]). Seer nodes keep the latest per node; a node whose
//! last beat is older than [`HEALTHY_FOR`] is unhealthy.

use std::net::IpAddr;
use std::time::Duration;

use libp2p::PeerId;
use libp2p::identity::Keypair;
use serde::{Deserialize, Serialize};

use crate::admin::{Location, Resources};
use crate::cbor;
use crate::identity::WriterKey;

/// The request-response protocol (`Beat`, `Nodes`), `/tau/seer/1`.
pub struct SeerProtocol;

impl crate::protocol::Protocol for SeerProtocol {
    const NAME: &'static str = "/tau/seer/1";
    type Request = SeerRequest;
    type Response = SeerResponse;

    fn refusal(response: &SeerResponse) -> Option<&str> {
        match response {
            SeerResponse::Error(message) => Some(message),
            _ => None,
        }
    }
}
/// How often every node beats.
pub const BEAT_INTERVAL: Duration = Duration::from_secs(1);
/// A node is healthy while its latest beat is younger than this: three beats may go missing
/// (a busy host, a lost gossip message) before a node counts as gone.
pub const HEALTHY_FOR: Duration = Duration::from_millis(4_000);
/// The largest heartbeat accepted, bytes.
pub const MAX_HEARTBEAT: usize = 16 * 1024;

const TAG: &[u8] = b"tau/seer/heartbeat/1\n";

/// What a node says of itself every beat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The node the heartbeat is from (and signed by).
    pub peer: PeerId,
    /// Counts up by one each beat since the node started.
    pub seq: u64,
    /// When the node started (Unix milliseconds): with `seq`, orders beats across restarts.
    pub started_ms: u64,
    /// The node's software version.
    pub version: String,
    /// The services it runs.
    pub services: Vec<String>,
    /// The IP addresses clients reach it at.
    pub addrs: Vec<IpAddr>,
    /// Its HTTP gateway port (0 without substrate).
    pub http_port: u16,
    /// Where it is.
    pub location: Option<Location>,
    /// Its host's resources.
    pub resources: Resources,
    /// Requests its substrate is serving right now.
    pub active_requests: u64,
}

impl Heartbeat {
    /// Signs the heartbeat with the node's identity key (which must be `peer`'s).
    pub fn sign(&self, keypair: &Keypair) -> Result<SignedHeartbeat, HeartbeatError> {
        if keypair.public().to_peer_id() != self.peer {
            return Err(HeartbeatError::WrongSigner);
        }
        let body = cbor::to_vec(self).map_err(|_| HeartbeatError::Malformed)?;
        let signature =
            keypair.sign(&signed_bytes(&body)).map_err(|_| HeartbeatError::WrongSigner)?;
        Ok(SignedHeartbeat { body, signature })
    }

    /// Whether this beat comes after `other` from the same node.
    pub fn is_newer_than(&self, other: &Heartbeat) -> bool {
        (self.started_ms, self.seq) > (other.started_ms, other.seq)
    }

    /// The load figure answers are ordered by: requests in flight, then CPU.
    pub fn load(&self) -> (u64, u32) {
        (self.active_requests, (self.resources.cpu_percent * 100.0) as u32)
    }

    /// Whether the node runs `service`.
    pub fn runs(&self, service: &str) -> bool {
        self.services.iter().any(|s| s == service)
    }
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    let mut bytes = TAG.to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// A heartbeat as it travels: its CBOR bytes and the signature over them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHeartbeat {
    /// The CBOR encoding of the [`Heartbeat`].
    #[serde(with = "crate::bytes::vec")]
    pub body: Vec<u8>,
    /// The node's ed25519 signature over the domain tag and `body`.
    #[serde(with = "crate::bytes::vec")]
    pub signature: Vec<u8>,
}

/// Why a heartbeat was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeartbeatError {
    /// The bytes do not decode, or are too large.
    #[error("the heartbeat does not decode")]
    Malformed,
    /// The signature is not the key of the peer id the heartbeat names.
    #[error("the heartbeat of {0} is not signed by that node's key")]
    BadSignature(PeerId),
    /// The key signing is not the node's.
    #[error("a heartbeat is signed by its own node's key only")]
    WrongSigner,
}

impl SignedHeartbeat {
    /// Decodes the heartbeat and checks its signature against the key in its peer id.
    pub fn open(&self) -> Result<Heartbeat, HeartbeatError> {
        if self.body.len() > MAX_HEARTBEAT {
            return Err(HeartbeatError::Malformed);
        }
        let heartbeat: Heartbeat =
            cbor::from_slice(&self.body).map_err(|_| HeartbeatError::Malformed)?;
        let key = WriterKey::of_peer(&heartbeat.peer)
            .ok_or(HeartbeatError::BadSignature(heartbeat.peer))?;
        if !key.verify(&signed_bytes(&self.body), &self.signature) {
            return Err(HeartbeatError::BadSignature(heartbeat.peer));
        }
        Ok(heartbeat)
    }
}

/// A request to a seer node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SeerRequest {
    /// Every node the seer knows, as [`SeerResponse::Nodes`].
    Nodes,
    /// The caller's heartbeat, signed by the caller: [`SeerResponse::Taken`]. A beat from
    /// another node than the caller is refused.
    Beat(SignedHeartbeat),
}

/// A seer node's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SeerResponse {
    /// Every known node with its latest heartbeat.
    Nodes(Vec<NodeStatus>),
    /// The heartbeat was checked (and kept, if it was the node's newest).
    Taken,
    /// The request was refused.
    Error(String),
}

/// A node as a seer sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Its latest heartbeat.
    pub heartbeat: Heartbeat,
    /// Milliseconds since that heartbeat arrived.
    pub age_ms: u64,
    /// Whether it beat within [`HEALTHY_FOR`].
    pub healthy: bool,
}

/// The TXT value a custom domain's owner publishes at `_tau.<fqdn>` so that the cloud serves
/// the domain for `project` (owned by `owner`): the first 16 bytes of a BLAKE3 hash, in hex.
pub fn validation_token(project: &str, owner: &WriterKey, fqdn: &str) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"tau/domain/1\n");
    for field in [project.as_bytes(), &owner.0, fqdn.to_ascii_lowercase().as_bytes()] {
        hasher.update(&(field.len() as u32).to_be_bytes());
        hasher.update(field);
    }
    format!("tau-{}", hex::encode(&hasher.finalize().as_bytes()[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(keypair: &Keypair, seq: u64) -> Heartbeat {
        Heartbeat {
            peer: keypair.public().to_peer_id(),
            seq,
            started_ms: 1_000,
            version: "0.1.0".into(),
            services: vec!["substrate".into()],
            addrs: vec!["127.0.0.1".parse().unwrap()],
            http_port: 8080,
            location: None,
            resources: Resources::default(),
            active_requests: 3,
        }
    }

    #[test]
    fn a_heartbeat_opens_only_with_its_own_nodes_signature() {
        let node = Keypair::generate_ed25519();
        let other = Keypair::generate_ed25519();
        let signed = beat(&node, 1).sign(&node).unwrap();
        assert_eq!(signed.open().unwrap(), beat(&node, 1));
        // Another key cannot sign for the node, nor can a signature be moved to another body.
        assert_eq!(beat(&node, 1).sign(&other), Err(HeartbeatError::WrongSigner));
        let mut claimed = beat(&other, 1).sign(&other).unwrap();
        claimed.body = signed.body.clone();
        assert!(matches!(claimed.open(), Err(HeartbeatError::BadSignature(_))));
        // Any changed byte breaks it.
        for i in [0, signed.body.len() / 2, signed.body.len() - 1] {
            let mut tampered = signed.clone();
            tampered.body[i] ^= 0x01;
            assert!(tampered.open().is_err(), "byte {i}");
        }
        let mut bad = signed.clone();
        bad.signature[0] ^= 0x01;
        assert!(matches!(bad.open(), Err(HeartbeatError::BadSignature(_))));
        let huge = SignedHeartbeat { body: vec![0; MAX_HEARTBEAT + 1], signature: vec![] };
        assert_eq!(huge.open(), Err(HeartbeatError::Malformed));
    }

    #[test]
    fn beats_order_by_start_then_sequence() {
        let node = Keypair::generate_ed25519();
        let (a, mut b) = (beat(&node, 5), beat(&node, 6));
        assert!(b.is_newer_than(&a) && !a.is_newer_than(&b) && !a.is_newer_than(&a));
        b.started_ms = 2_000;
        b.seq = 1;
        assert!(b.is_newer_than(&a), "a restarted node's first beat wins");
    }

    #[test]
    fn tokens_differ_per_project_owner_and_domain() {
        let owner = WriterKey([1; 32]);
        let token = validation_token("shop", &owner, "shop.example.com");
        assert!(token.starts_with("tau-") && token.len() == 36);
        assert_eq!(token, validation_token("shop", &owner, "SHOP.example.com"));
        assert_ne!(token, validation_token("shop2", &owner, "shop.example.com"));
        assert_ne!(token, validation_token("shop", &WriterKey([2; 32]), "shop.example.com"));
        assert_ne!(token, validation_token("shop", &owner, "www.example.com"));
    }
}
