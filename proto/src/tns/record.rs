//! A TNS record: a key path, a CBOR value (or a tombstone), a Lamport version, the writer's
//! ed25519 public key, and the writer's signature over the record's canonical encoding.

use libp2p::identity::Keypair;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

use crate::identity::WriterKey;

/// A signed TNS record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The key path, such as `/projects/shop/functions/ping`.
    pub key: String,
    /// The project the record belongs to (its owner must sign it); empty for operator records.
    pub scope: String,
    /// The CBOR value; `None` is a tombstone (the key was deleted).
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
    /// The Lamport version: the writer's clock when it wrote.
    pub version: u64,
    /// Who wrote it.
    pub writer: WriterKey,
    /// The writer's signature over [`Record::signed_bytes`].
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl Record {
    /// About the record's size as CBOR, for cutting batches: its fields' bytes and 200 more.
    pub fn size(&self) -> usize {
        self.key.len() + self.scope.len() + self.value.as_ref().map_or(0, Vec::len) + 200
    }
}

/// What a record says, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// Such as `/projects/example/functions/ping`.
    pub key: String,
    /// The project it belongs to, or empty.
    pub scope: String,
    /// The CBOR value, or `None` to delete the key.
    pub value: Option<Vec<u8>>,
}

const DOMAIN: &[u8] = b"tau/tns/record/1\n";

fn canonical(
    key: &str,
    scope: &str,
    value: Option<&[u8]>,
    version: u64,
    writer: &WriterKey,
) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    let mut out = Vec::with_capacity(
        DOMAIN.len() + key.len() + scope.len() + 64 + value.map_or(0, <[u8]>::len),
    );
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(&len(key.len()));
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&len(scope.len()));
    out.extend_from_slice(scope.as_bytes());
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            out.extend_from_slice(&len(value.len()));
            out.extend_from_slice(value);
        }
    }
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&writer.0);
    out
}

impl Draft {
    /// Signs the draft at `version` with `keypair` (an ed25519 key).
    pub fn sign(self, version: u64, keypair: &Keypair) -> Option<Record> {
        let writer = WriterKey::of(keypair)?;
        let bytes = canonical(&self.key, &self.scope, self.value.as_deref(), version, &writer);
        let signature = keypair.sign(&bytes).ok()?;
        Some(Record {
            key: self.key,
            scope: self.scope,
            value: self.value,
            version,
            writer,
            signature,
        })
    }
}

impl Record {
    /// The canonical encoding the signature covers: a domain tag, then each field
    /// length-prefixed, in a fixed order. Two records with equal fields have equal bytes.
    pub fn signed_bytes(&self) -> Vec<u8> {
        canonical(&self.key, &self.scope, self.value.as_deref(), self.version, &self.writer)
    }

    /// Whether the signature is the writer's, over exactly these fields.
    pub fn verify(&self) -> bool {
        self.writer.verify(&self.signed_bytes(), &self.signature)
    }

    /// Whether this is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// The record's identity: BLAKE3 of its canonical encoding.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.signed_bytes()).as_bytes()
    }

    /// The summary anti-entropy compares.
    pub fn summary(&self) -> Summary {
        Summary {
            key: self.key.clone(),
            version: self.version,
            writer: self.writer,
            hash: self.hash(),
        }
    }
}

/// What identifies a record's state for last-writer-wins and anti-entropy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The record's key, which the rest describe.
    pub key: String,
    /// The Lamport version (higher wins).
    pub version: u64,
    /// The key that signed it (ties on version go to the higher key).
    pub writer: WriterKey,
    /// The record's hash.
    #[serde(with = "crate::bytes::fixed")]
    pub hash: [u8; 32],
}

impl Summary {
    /// Last writer wins: the higher version; on a tie the higher writer key; on a tie (one
    /// writer signing two values at one version) the higher hash, so every node picks the same.
    pub fn order(&self, other: &Summary) -> Ordering {
        (self.version, self.writer, self.hash).cmp(&(other.version, other.writer, other.hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(value: &[u8]) -> Draft {
        Draft {
            key: "/projects/p/functions/f".into(),
            scope: "p".into(),
            value: Some(value.to_vec()),
        }
    }

    #[test]
    fn canonical_encoding_round_trips_through_cbor_and_verifies() {
        let key = Keypair::generate_ed25519();
        let record = draft(b"\xa1\x61a\x01").sign(7, &key).unwrap();
        assert!(record.verify());
        let wire = crate::cbor::to_vec(&record).unwrap();
        let back: Record = crate::cbor::from_slice(&wire).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.signed_bytes(), record.signed_bytes());
        assert!(back.verify());
        // The same fields always give the same bytes and hash.
        assert_eq!(draft(b"\xa1\x61a\x01").sign(7, &key).unwrap().hash(), record.hash());
    }

    #[test]
    fn the_encoding_is_unambiguous() {
        let w = WriterKey([1; 32]);
        // Moving bytes between fields changes the encoding.
        assert_ne!(canonical("/ab", "c", None, 1, &w), canonical("/a", "bc", None, 1, &w));
        assert_ne!(canonical("/a", "", Some(b""), 1, &w), canonical("/a", "", None, 1, &w));
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let key = Keypair::generate_ed25519();
        let record = draft(b"v").sign(3, &key).unwrap();
        let mut tampered = record.clone();
        tampered.value = Some(b"w".to_vec());
        assert!(!tampered.verify());
        let mut tampered = record.clone();
        tampered.version = 4;
        assert!(!tampered.verify());
        let mut tampered = record.clone();
        tampered.scope = "q".into();
        assert!(!tampered.verify());
        let mut tampered = record.clone();
        tampered.writer = WriterKey::of(&Keypair::generate_ed25519()).unwrap();
        assert!(!tampered.verify());
        let mut tampered = record;
        tampered.value = None;
        assert!(!tampered.verify());
    }

    #[test]
    fn last_writer_wins_by_version_then_writer_then_hash() {
        let a = Summary { key: "k".into(), version: 2, writer: WriterKey([1; 32]), hash: [0; 32] };
        let newer = Summary { version: 3, ..a.clone() };
        let higher_writer = Summary { writer: WriterKey([2; 32]), ..a.clone() };
        let higher_hash = Summary { hash: [9; 32], ..a.clone() };
        assert_eq!(newer.order(&a), Ordering::Greater);
        assert_eq!(a.order(&newer), Ordering::Less);
        assert_eq!(higher_writer.order(&a), Ordering::Greater);
        assert_eq!(higher_hash.order(&a), Ordering::Greater);
        assert_eq!(a.order(&a.clone()), Ordering::Equal);
        // A higher version wins even against a higher writer key.
        let old_high_writer = Summary { version: 1, writer: WriterKey([9; 32]), ..a.clone() };
        assert_eq!(a.order(&old_high_writer), Ordering::Greater);
    }

    #[test]
    fn writer_keys_parse_and_print() {
        let key = WriterKey::of(&Keypair::generate_ed25519()).unwrap();
        assert_eq!(key.to_string().parse::<WriterKey>().unwrap(), key);
        assert!("ed25519:zz".parse::<WriterKey>().is_err());
        assert!("12D3KooW".parse::<WriterKey>().is_err());
    }
}
