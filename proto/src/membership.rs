//! Who is a node: the operator's admission records, and the protocol and topic that spread them.
//!
//! A node is a peer the operator admitted: an operator-signed TNS record `/nodes/<peer id>` whose
//! value is an [`Admission`] (the services it may run, and labels). A tombstone at that key
//! revokes it. Holding the swarm key makes a peer a client, never a node.
//!
//! The records prove themselves (the operator's signature), so they may come from any peer:
//! every node keeps the newest record per peer it has seen ([`Members`]), answers for all of them
//! on [`MembersProtocol`], and passes new ones on over [`MembersTopic`]; a node that missed a
//! message asks a peer for the set, which costs one digest when nothing changed. A peer can
//! withhold records from a node that asks only it, but never forge or roll one back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::identity::WriterKey;
use crate::protocol::{Access, Protocol, Topic};
use crate::tns::{Record, keys};

/// The most admission records (admitted and revoked peers) a node keeps.
pub const MAX_MEMBERS: usize = 10_000;

/// Who the p2p layer lets in where a protocol or topic asks for nodes or a role.
#[derive(Debug, Clone, Default)]
pub enum Admitted {
    /// No operator key is known: every peer counts as admitted for every role (a cloud
    /// without an operator, as before admission existed).
    #[default]
    Open,
    /// The admitted peers and the services each may run.
    Listed(Arc<HashMap<PeerId, Vec<String>>>),
}

impl Admitted {
    /// Whether `peer` may do what `access` asks.
    pub fn allows(&self, access: Access, peer: &PeerId) -> bool {
        match (access, self) {
            (Access::Anyone, _) | (_, Self::Open) => true,
            (Access::Nodes, Self::Listed(nodes)) => nodes.contains_key(peer),
            (Access::Role(role), Self::Listed(nodes)) => {
                nodes.get(peer).is_some_and(|services| services.iter().any(|s| s == role))
            }
        }
    }

    /// Of the services `peer` says it runs, those it is admitted for (all of them when open).
    pub fn believed(&self, peer: &PeerId, claimed: &[String]) -> Vec<String> {
        match self {
            Self::Open => claimed.to_vec(),
            Self::Listed(nodes) => match nodes.get(peer) {
                None => Vec::new(),
                Some(admitted) => {
                    claimed.iter().filter(|s| admitted.contains(s)).cloned().collect()
                }
            },
        }
    }
}

/// The value of `/nodes/<peer id>`: what the operator admitted the node for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    /// The services (roles) the node may run; it is believed for no other.
    pub services: Vec<String>,
    /// The operator's labels, such as a region.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `/tau/members/1`: every admission record the node holds, unless the caller has them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MembersRequest {
    /// The records, unless [`Members::digest`] of the node's set equals `digest`.
    Records {
        /// The caller's digest.
        #[serde(with = "crate::bytes::fixed")]
        digest: [u8; 32],
    },
}

/// The answer to a [`MembersRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MembersResponse {
    /// The caller has the same set.
    Same,
    /// Every admission record the node holds.
    Records(Vec<Record>),
    /// The request was not understood.
    Error(String),
}

/// The protocol nodes and clients ask for admission records with.
pub struct MembersProtocol;

impl Protocol for MembersProtocol {
    const NAME: &'static str = "/tau/members/1";
    const MAX_REQUEST: u64 = 256;
    const MAX_RESPONSE: u64 = 16 << 20;
    type Request = MembersRequest;
    type Response = MembersResponse;

    fn refusal(response: &MembersResponse) -> Option<&str> {
        match response {
            MembersResponse::Error(message) => Some(message),
            _ => None,
        }
    }
}

/// The topic new admission records travel on (a CBOR list of records).
pub struct MembersTopic;

impl Topic for MembersTopic {
    const NAME: &'static str = "tau/members/1";
}

/// Why an admission record was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemberError {
    /// The key is not `/nodes/<peer id>`, or the record has a scope.
    #[error("`{0}` is not an admission record")]
    NotAdmission(String),
    /// Not signed by the operator key.
    #[error("admission record for {0} is not signed by the operator")]
    NotOperator(PeerId),
    /// The signature does not match the record.
    #[error("admission record for {0} has a forged signature")]
    Forged(PeerId),
    /// The value is not an [`Admission`].
    #[error("admission record for {peer} does not decode: {reason}")]
    Value {
        /// Whose record.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// [`MAX_MEMBERS`] records are held already.
    #[error("already {MAX_MEMBERS} admission records: {0} refused")]
    Full(PeerId),
}

impl MemberError {
    /// Whether the sender could have known better (a forged or misdirected record), as opposed
    /// to a record this node cannot take.
    pub fn is_forgery(&self) -> bool {
        !matches!(self, Self::Full(_))
    }
}

/// The peer an admission key names, if `key` is one.
pub fn admitted_peer(key: &str) -> Option<PeerId> {
    key.strip_prefix(keys::NODES)?.parse().ok()
}

/// One peer's newest admission record, decoded.
#[derive(Debug, Clone)]
struct Entry {
    record: Record,
    /// `None`: revoked.
    admission: Option<Admission>,
}

/// The admission records a node has seen: the newest per peer, checked against the operator key.
#[derive(Debug, Clone)]
pub struct Members {
    operator: WriterKey,
    entries: HashMap<PeerId, Entry>,
}

impl Members {
    /// An empty set that takes records signed by `operator`.
    pub fn new(operator: WriterKey) -> Self {
        Self { operator, entries: HashMap::new() }
    }

    /// Checks `record` and keeps it if it is newer than the one held for its peer: `Ok(true)`
    /// when it changed the set, `Ok(false)` when it was not news.
    pub fn apply(&mut self, record: Record) -> Result<bool, MemberError> {
        let Some(peer) = admitted_peer(&record.key).filter(|_| record.scope.is_empty()) else {
            return Err(MemberError::NotAdmission(record.key.chars().take(100).collect()));
        };
        if record.writer != self.operator {
            return Err(MemberError::NotOperator(peer));
        }
        if !record.verify() {
            return Err(MemberError::Forged(peer));
        }
        if let Some(held) = self.entries.get(&peer)
            && record.summary().order(&held.record.summary()).is_le()
        {
            return Ok(false);
        }
        let admission = match &record.value {
            None => None,
            Some(value) => Some(
                crate::cbor::from_slice::<Admission>(value)
                    .map_err(|e| MemberError::Value { peer, reason: e.to_string() })?,
            ),
        };
        if !self.entries.contains_key(&peer) && self.entries.len() >= MAX_MEMBERS {
            return Err(MemberError::Full(peer));
        }
        self.entries.insert(peer, Entry { record, admission });
        Ok(true)
    }

    /// What `peer` is admitted for, unless it is not (never admitted, or revoked).
    pub fn admission(&self, peer: &PeerId) -> Option<&Admission> {
        self.entries.get(peer)?.admission.as_ref()
    }

    /// Every admitted peer and the services it may run.
    pub fn admitted(&self) -> HashMap<PeerId, Vec<String>> {
        self.entries
            .iter()
            .filter_map(|(peer, e)| Some((*peer, e.admission.as_ref()?.services.clone())))
            .collect()
    }

    /// Every record held, revocations included, in key order.
    pub fn records(&self) -> Vec<Record> {
        let mut records: Vec<Record> = self.entries.values().map(|e| e.record.clone()).collect();
        records.sort_by(|a, b| a.key.cmp(&b.key));
        records
    }

    /// A digest of the set: equal digests, equal sets.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        for record in self.records() {
            hasher.update(&record.hash());
        }
        *hasher.finalize().as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;

    use super::*;
    use crate::tns::Draft;

    fn admission(services: &[&str]) -> Vec<u8> {
        let value = Admission {
            services: services.iter().map(|s| s.to_string()).collect(),
            labels: BTreeMap::new(),
        };
        crate::cbor::to_vec(&value).unwrap()
    }

    fn record(peer: &PeerId, value: Option<Vec<u8>>, version: u64, signer: &Keypair) -> Record {
        let draft = Draft { key: keys::node(&peer.to_string()), scope: String::new(), value };
        draft.sign(version, signer).unwrap()
    }

    #[test]
    fn the_newest_operator_record_decides_and_a_tombstone_revokes() {
        let operator = Keypair::generate_ed25519();
        let mut members = Members::new(WriterKey::of(&operator).unwrap());
        let peer = PeerId::random();
        let empty = members.digest();
        assert_eq!(members.apply(record(&peer, Some(admission(&["tns"])), 5, &operator)), Ok(true));
        assert_eq!(members.admission(&peer).unwrap().services, ["tns"]);
        assert_ne!(members.digest(), empty);
        // The same record again, or an older one, is no news.
        assert_eq!(
            members.apply(record(&peer, Some(admission(&["tns"])), 5, &operator)),
            Ok(false)
        );
        assert_eq!(members.apply(record(&peer, None, 4, &operator)), Ok(false));
        assert!(members.admission(&peer).is_some());
        // A newer tombstone revokes, and an older admission cannot bring it back.
        assert_eq!(members.apply(record(&peer, None, 6, &operator)), Ok(true));
        assert!(members.admission(&peer).is_none());
        assert!(members.admitted().is_empty());
        assert_eq!(
            members.apply(record(&peer, Some(admission(&["tns"])), 5, &operator)),
            Ok(false)
        );
        assert_eq!(members.records().len(), 1, "the revocation is kept");
    }

    #[test]
    fn only_the_operator_admits_and_forgeries_are_named() {
        let operator = Keypair::generate_ed25519();
        let tenant = Keypair::generate_ed25519();
        let mut members = Members::new(WriterKey::of(&operator).unwrap());
        let peer = PeerId::random();
        let by_tenant = record(&peer, Some(admission(&["substrate"])), 1, &tenant);
        assert_eq!(members.apply(by_tenant), Err(MemberError::NotOperator(peer)));
        let mut forged = record(&peer, Some(admission(&["vault"])), 1, &operator);
        forged.value = Some(admission(&["vault", "tns"]));
        assert_eq!(members.apply(forged), Err(MemberError::Forged(peer)));
        let garbage = record(&peer, Some(b"not cbor".to_vec()), 1, &operator);
        assert!(matches!(members.apply(garbage), Err(MemberError::Value { .. })));
        let other_key = Draft { key: "/vault/keyset".into(), scope: String::new(), value: None }
            .sign(1, &operator)
            .unwrap();
        assert!(matches!(members.apply(other_key), Err(MemberError::NotAdmission(_))));
        assert!(members.admitted().is_empty());
    }
}
