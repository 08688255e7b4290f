//! Seer: signed heartbeats, node health, and the `/tau/seer/1` types.
//!
//! Every node sends a [`SignedHeartbeat`] to each seer node every [`BEAT_INTERVAL`], in one UDP
//! datagram to the seer's p2p port, sealed with a key derived from the swarm key ([`BeatSeal`]):
//! no connection per node, so a seer's cost is a packet per node and second. What the beat
//! says: what the node runs, where clients reach it, its resources and its load. The
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
    /// Its hoarder store is nearly full: it takes no new replicas (what it holds still counts).
    #[serde(default)]
    pub full: bool,
    /// It is leaving (drained, or stopping): seer sends no client to it; it lists only the
    /// services that still hand over what it holds (hoarder, as a full node), until it stops.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaving: bool,
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

    /// What the heartbeat claims, its signature unchecked: only for checks that are cheaper
    /// than the signature's (is the node admitted, is the beat newer) before [`Self::open`].
    pub fn peek(&self) -> Option<Heartbeat> {
        if self.body.len() > MAX_HEARTBEAT {
            return None;
        }
        cbor::from_slice(&self.body).ok()
    }
}

/// The gossipsub topic of the seer nodes' change feeds, `tau/seer/feed/1` ([`FeedMessage`]):
/// only seer nodes publish on it.
pub struct FeedTopic;

impl crate::protocol::Topic for FeedTopic {
    const NAME: &'static str = "tau/seer/feed/1";
    const ACCESS: crate::protocol::Access = crate::protocol::Access::Role("seer");
}

/// What a seer publishes on [`FeedTopic`]: the changes of its feed since its last message
/// (within a second of them), or nothing but its cursor (every [`FEED_IDLE`] while nothing
/// changes), so that a follower that missed a message notices and asks for what it missed
/// ([`SeerRequest::Changes`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedMessage {
    /// Where the feed is after these changes.
    pub cursor: Cursor,
    /// The changes, oldest first: the last one is at `cursor`.
    pub changes: Vec<Change>,
}

/// How often a seer publishes its cursor while nothing changes.
pub const FEED_IDLE: Duration = Duration::from_secs(5);

/// The most bytes of a sealed heartbeat datagram.
pub const MAX_BEAT_PACKET: usize = MAX_HEARTBEAT + 1024;
const NONCE: usize = 24;

/// Seals and opens heartbeat datagrams: XChaCha20-Poly1305 under a key derived from the swarm
/// key, a random nonce in front. A datagram from outside the cloud opens to nothing; inside,
/// the heartbeat's own signature says which node it is from.
pub struct BeatSeal(chacha20poly1305::XChaCha20Poly1305);

/// Why a datagram is not a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeatPacketError {
    /// Too short or too long.
    #[error("not a heartbeat datagram (its size)")]
    Size,
    /// Not sealed with this cloud's key, or altered.
    #[error("not sealed with this cloud's key")]
    Seal,
    /// Sealed, but not a heartbeat.
    #[error("not a heartbeat")]
    Malformed,
}

impl BeatSeal {
    /// The seal of the cloud whose swarm key is `swarm_key`.
    pub fn new(swarm_key: &crate::SwarmKey) -> Self {
        use chacha20poly1305::KeyInit;
        let key = swarm_key.derive("tau seer heartbeat datagram v1");
        Self(chacha20poly1305::XChaCha20Poly1305::new(&key.into()))
    }

    /// The datagram carrying `beat`.
    pub fn seal(&self, beat: &SignedHeartbeat) -> Result<Vec<u8>, BeatPacketError> {
        use chacha20poly1305::aead::{Aead, AeadCore, OsRng};
        let plain = cbor::to_vec(beat).map_err(|_| BeatPacketError::Malformed)?;
        let nonce = chacha20poly1305::XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self.0.encrypt(&nonce, plain.as_slice()).map_err(|_| BeatPacketError::Seal)?;
        let mut packet = nonce.to_vec();
        packet.extend(sealed);
        if packet.len() > MAX_BEAT_PACKET {
            return Err(BeatPacketError::Size);
        }
        Ok(packet)
    }

    /// The heartbeat in `packet` (its signature not checked yet: [`SignedHeartbeat::open`]).
    pub fn open(&self, packet: &[u8]) -> Result<SignedHeartbeat, BeatPacketError> {
        use chacha20poly1305::aead::Aead;
        if packet.len() <= NONCE || packet.len() > MAX_BEAT_PACKET {
            return Err(BeatPacketError::Size);
        }
        let (nonce, sealed) = packet.split_at(NONCE);
        let plain = self
            .0
            .decrypt(chacha20poly1305::XNonce::from_slice(nonce), sealed)
            .map_err(|_| BeatPacketError::Seal)?;
        cbor::from_slice(&plain).map_err(|_| BeatPacketError::Malformed)
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
    /// What changed in the set of healthy nodes since `since` ([`SeerResponse::Changes`]):
    /// how a service follows who is alive at a cost that grows with the changes, not with the
    /// cloud. Without a cursor, or with one this seer cannot continue from, every healthy node.
    Changes {
        /// Where the caller's last answer from this seer ended.
        since: Option<Cursor>,
    },
}

/// A position in one seer's change feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Which feed (a seer's feed starts anew, with a new epoch, when the seer restarts).
    pub epoch: u64,
    /// The last change seen.
    pub version: u64,
}

/// A healthy node as the change feed says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The services it runs (and is admitted for); only hoarder while it leaves.
    pub services: Vec<String>,
    /// Its hoarder store is nearly full.
    pub full: bool,
    /// It is leaving: its replicas go to others.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaving: bool,
}

impl Member {
    /// Whether the node runs `service`.
    pub fn runs(&self, service: &str) -> bool {
        self.services.iter().any(|s| s == service)
    }
}

/// One change: a node became healthy or changed (`Some`), or is no longer healthy (`None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The node.
    pub peer: PeerId,
    /// What it is now, if healthy.
    pub member: Option<Member>,
}

/// A seer node's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SeerResponse {
    /// Every known node with its latest heartbeat.
    Nodes(Vec<NodeStatus>),
    /// The heartbeat was checked (and kept, if it was the node's newest).
    Taken,
    /// The changes after the caller's cursor, oldest first, and the cursor to ask from next.
    /// With `reset`, the changes are every healthy node: the caller starts over from them.
    Changes {
        /// Where these changes end.
        cursor: Cursor,
        /// Whether the caller must forget what it had.
        reset: bool,
        /// The changes.
        changes: Vec<Change>,
    },
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
            full: false,
            leaving: false,
        }
    }

    #[test]
    fn a_beat_datagram_opens_only_with_the_clouds_key_and_unaltered() {
        let keypair = Keypair::generate_ed25519();
        let signed = beat(&keypair, 7).sign(&keypair).unwrap();
        let key = crate::SwarmKey::generate();
        let seal = BeatSeal::new(&key);
        let packet = seal.seal(&signed).unwrap();
        assert_eq!(seal.open(&packet).unwrap(), signed);
        assert_eq!(seal.open(&packet).unwrap().peek().unwrap().seq, 7);
        let other = BeatSeal::new(&crate::SwarmKey::generate());
        assert_eq!(other.open(&packet), Err(BeatPacketError::Seal));
        let mut altered = packet.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(seal.open(&altered), Err(BeatPacketError::Seal));
        assert_eq!(seal.open(&packet[..10]), Err(BeatPacketError::Size));
        assert_ne!(seal.seal(&signed).unwrap(), packet, "a fresh nonce each time");
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
