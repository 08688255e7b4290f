//! Execution counter records: what a substrate node ran, per (project, function, window), signed
//! with the node's identity key so that anyone (q, a billing system, a contract) can check who
//! counted what.
//!
//! # Canonical encoding
//!
//! The signature covers [`CounterRecord::canonical_bytes`], a fixed binary layout that needs no
//! CBOR or serde to reproduce (q hashes it; a contract could too):
//!
//! ```text
//! "tau/counter/1\n"                       14 bytes, the domain tag
//! node peer id      u16 length (BE) + the peer id's bytes (its multihash)
//! seq               u64 BE
//! project           u16 length (BE) + UTF-8
//! function          u16 length (BE) + UTF-8
//! window_start_ms   u64 BE   (Unix time, milliseconds)
//! window_ms         u64 BE
//! invocations       u64 BE
//! errors            u64 BE
//! wall_micros       u64 BE
//! cpu_micros        u64 BE
//! peak_memory       u64 BE   (bytes)
//! bytes_in          u64 BE
//! bytes_out         u64 BE
//! ```
//!
//! The signer is the node itself: its peer id embeds its ed25519 public key, so
//! [`SignedCounter::verify`] needs nothing but the record.

use libp2p::PeerId;
use libp2p::identity::Keypair;
use serde::{Deserialize, Serialize};

use crate::identity::public_key_of;

/// The domain tag that starts every signed counter encoding.
pub const DOMAIN_TAG: &[u8] = b"tau/counter/1\n";

/// The most records one `Counters` answer carries.
pub const MAX_PAGE: u32 = 1000;

/// What one node counted for one function over one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterRecord {
    /// The node that ran the function and signed the record.
    pub node: PeerId,
    /// The node's sequence number for this record: 1, 2, 3, ... with no gaps.
    pub seq: u64,
    /// The project.
    pub project: String,
    /// The function.
    pub function: String,
    /// When the window started, Unix time in milliseconds.
    pub window_start_ms: u64,
    /// How long the window was, milliseconds.
    pub window_ms: u64,
    /// Invocations finished in the window.
    pub invocations: u64,
    /// Of those, how many failed (trap, timeout, out of memory, no response).
    pub errors: u64,
    /// Wall-clock time of the invocations together, microseconds.
    pub wall_micros: u64,
    /// CPU time spent running them, microseconds.
    pub cpu_micros: u64,
    /// The largest linear memory one invocation used, bytes.
    pub peak_memory: u64,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
}

/// A counter record with its node's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCounter {
    /// The record.
    pub record: CounterRecord,
    /// The node's ed25519 signature over [`CounterRecord::canonical_bytes`].
    #[serde(with = "crate::bytes::vec")]
    pub signature: Vec<u8>,
}

/// Why a signed counter does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The node's peer id does not embed an ed25519 public key.
    #[error("peer id {0} does not carry its public key")]
    NoPublicKey(PeerId),
    /// The signature does not match the record.
    #[error("bad signature on counter record {seq} of node {node}")]
    BadSignature {
        /// The node named in the record.
        node: PeerId,
        /// The record's sequence number.
        seq: u64,
    },
}

impl CounterRecord {
    /// The bytes the node signs (see the module's documentation for the layout).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let node = self.node.to_bytes();
        let mut out = Vec::with_capacity(
            DOMAIN_TAG.len() + 6 + node.len() + self.project.len() + self.function.len() + 88,
        );
        out.extend_from_slice(DOMAIN_TAG);
        put_bytes(&mut out, &node);
        out.extend_from_slice(&self.seq.to_be_bytes());
        put_bytes(&mut out, self.project.as_bytes());
        put_bytes(&mut out, self.function.as_bytes());
        for value in [
            self.window_start_ms,
            self.window_ms,
            self.invocations,
            self.errors,
            self.wall_micros,
            self.cpu_micros,
            self.peak_memory,
            self.bytes_in,
            self.bytes_out,
        ] {
            out.extend_from_slice(&value.to_be_bytes());
        }
        out
    }

    /// Signs the record with the node's identity key. Returns `None` if `keypair` is not the key
    /// of [`CounterRecord::node`].
    pub fn sign(self, keypair: &Keypair) -> Option<SignedCounter> {
        if keypair.public().to_peer_id() != self.node {
            return None;
        }
        let signature = keypair.sign(&self.canonical_bytes()).ok()?;
        Some(SignedCounter { record: self, signature })
    }
}

/// Names and project ids are short; longer ones are cut at `u16::MAX` bytes in the encoding's
/// length, which [`SignedCounter::verify`] then fails on, so they cannot collide.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

impl SignedCounter {
    /// Checks the signature against the public key in the record's node peer id.
    pub fn verify(&self) -> Result<(), VerifyError> {
        let record = &self.record;
        let key = public_key_of(&record.node).ok_or(VerifyError::NoPublicKey(record.node))?;
        let too_long = [&record.project, &record.function].iter().any(|s| s.len() > 0xffff);
        if too_long || !key.verify(&record.canonical_bytes(), &self.signature) {
            return Err(VerifyError::BadSignature { node: record.node, seq: record.seq });
        }
        Ok(())
    }

    /// The BLAKE3 hash of the canonical encoding and the signature: the record's identity in q.
    pub fn hash(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.record.canonical_bytes());
        hasher.update(&self.signature);
        *hasher.finalize().as_bytes()
    }
}

/// A page of a node's counter records, the answer to `Counters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterPage {
    /// Records with `seq >= since`, in sequence order, at most [`MAX_PAGE`].
    pub records: Vec<SignedCounter>,
    /// The sequence number the node will give its next record (all before it exist).
    pub next_seq: u64,
    /// The lowest sequence number still on the node's disk (older ones were acknowledged and
    /// pruned).
    pub oldest_seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(keypair: &Keypair) -> CounterRecord {
        CounterRecord {
            node: keypair.public().to_peer_id(),
            seq: 7,
            project: "example".into(),
            function: "ping".into(),
            window_start_ms: 1_700_000_000_000,
            window_ms: 60_000,
            invocations: 1000,
            errors: 3,
            wall_micros: 55_000,
            cpu_micros: 40_000,
            peak_memory: 1 << 20,
            bytes_in: 0,
            bytes_out: 4000,
        }
    }

    #[test]
    fn a_signed_record_verifies() {
        let key = Keypair::generate_ed25519();
        let signed = record(&key).sign(&key).unwrap();
        assert_eq!(signed.verify(), Ok(()));
        let wire = crate::cbor::to_vec(&signed).unwrap();
        let back: SignedCounter = crate::cbor::from_slice(&wire).unwrap();
        assert_eq!(back.verify(), Ok(()));
        assert_eq!(back.hash(), signed.hash());
    }

    #[test]
    fn only_the_nodes_own_key_signs() {
        let key = Keypair::generate_ed25519();
        let other = Keypair::generate_ed25519();
        assert!(record(&key).sign(&other).is_none());
    }

    #[test]
    fn tampering_with_any_field_breaks_the_signature() {
        let key = Keypair::generate_ed25519();
        let signed = record(&key).sign(&key).unwrap();
        let other = Keypair::generate_ed25519().public().to_peer_id();
        type Edit = Box<dyn Fn(&mut CounterRecord)>;
        let edits: Vec<(&str, Edit)> = vec![
            ("node", Box::new(move |r| r.node = other)),
            ("seq", Box::new(|r| r.seq += 1)),
            ("project", Box::new(|r| r.project.push('x'))),
            ("function", Box::new(|r| r.function = "pong".into())),
            ("window_start_ms", Box::new(|r| r.window_start_ms += 1)),
            ("window_ms", Box::new(|r| r.window_ms -= 1)),
            ("invocations", Box::new(|r| r.invocations -= 1)),
            ("errors", Box::new(|r| r.errors = 0)),
            ("wall_micros", Box::new(|r| r.wall_micros += 1)),
            ("cpu_micros", Box::new(|r| r.cpu_micros += 1)),
            ("peak_memory", Box::new(|r| r.peak_memory += 1)),
            ("bytes_in", Box::new(|r| r.bytes_in += 1)),
            ("bytes_out", Box::new(|r| r.bytes_out += 1)),
        ];
        for (field, edit) in edits {
            let mut tampered = signed.clone();
            edit(&mut tampered.record);
            assert!(tampered.verify().is_err(), "changing {field} must break the signature");
        }
        let mut tampered = signed.clone();
        tampered.signature[10] ^= 1;
        assert!(tampered.verify().is_err(), "a changed signature must fail");
    }

    #[test]
    fn moving_bytes_between_project_and_function_changes_the_encoding() {
        let key = Keypair::generate_ed25519();
        let mut a = record(&key);
        a.project = "ab".into();
        a.function = "c".into();
        let mut b = record(&key);
        b.project = "a".into();
        b.function = "bc".into();
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
    }

    #[test]
    fn the_layout_is_as_documented() {
        let key = Keypair::generate_ed25519();
        let r = record(&key);
        let bytes = r.canonical_bytes();
        let node = r.node.to_bytes();
        assert!(bytes.starts_with(DOMAIN_TAG));
        let expected = DOMAIN_TAG.len() + 2 + node.len() + 8 + 2 + 7 + 2 + 4 + 9 * 8;
        assert_eq!(bytes.len(), expected);
        assert_eq!(&bytes[bytes.len() - 8..], &4000u64.to_be_bytes());
    }
}
