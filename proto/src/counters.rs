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
//! A record that used state or reached out (any of the figures below is not 0) is encoded as
//! version 2: the tag `"tau/counter/2\n"`, the same fields, then
//!
//! ```text
//! kv_reads                 u64 BE   (key-value calls that read)
//! kv_writes                u64 BE   (key-value calls that wrote)
//! storage_read_bytes       u64 BE
//! storage_written_bytes    u64 BE
//! outbound_requests        u64 BE
//! outbound_sent_bytes      u64 BE   (on the wire: headers, bodies and TLS)
//! outbound_received_bytes  u64 BE
//! ```
//!
//! Every other record keeps version 1 exactly, so records signed before version 2 existed
//! verify as they did, and a verifier that knows only version 1 still checks those.
//!
//! The signer is the node itself: its peer id embeds its ed25519 public key, so
//! [`SignedCounter::verify`] needs nothing but the record.

use libp2p::PeerId;
use libp2p::identity::Keypair;
use serde::{Deserialize, Serialize};

use crate::identity::public_key_of;

/// The domain tag that starts every signed counter encoding of version 1.
pub const DOMAIN_TAG: &[u8] = b"tau/counter/1\n";
/// The domain tag of version 2: a record with key-value, storage or outbound figures.
pub const DOMAIN_TAG_2: &[u8] = b"tau/counter/2\n";

/// The function name under which a `ci` node counts a project's build jobs (no function can
/// have it: `@` is not in a function name). Invocations are jobs run (to any end), errors the
/// failed ones, `wall_micros` the jobs' time from claim to end (build seconds), `cpu_micros`
/// the CPU time of their git, ssh and build processes; the other figures are 0.
pub const BUILDS: &str = "@build";

/// The services whose nodes keep signed counters: substrate (invocations) and ci (build jobs).
pub const COUNTING_SERVICES: [&str; 2] = ["substrate", "ci"];

/// Whether a node running `services` keeps signed counters.
pub fn counts(services: &[String]) -> bool {
    services.iter().any(|s| COUNTING_SERVICES.contains(&s.as_str()))
}

/// The nodes of `services` (service to nodes) that keep signed counters, each once.
pub fn counting_nodes(services: &std::collections::HashMap<String, Vec<PeerId>>) -> Vec<PeerId> {
    let mut found: Vec<PeerId> = Vec::new();
    for service in COUNTING_SERVICES {
        for peer in services.get(service).into_iter().flatten() {
            if !found.contains(peer) {
                found.push(*peer);
            }
        }
    }
    found
}

/// The most records one `Counters` answer carries.
pub const MAX_PAGE: u32 = 1000;

/// What one node counted for one function over one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterRecord {
    /// The node that ran the function and signed the record.
    pub node: PeerId,
    /// The node's sequence number for this record: 1, 2, 3, ... with no gaps.
    pub seq: u64,
    /// The project id, as in TNS.
    pub project: String,
    /// The function's name within the project.
    pub function: String,
    /// When the window started, Unix time in milliseconds.
    pub window_start_ms: u64,
    /// How long the window was, milliseconds.
    pub window_ms: u64,
    /// What the function's invocations used in the window. On the wire its fields sit beside
    /// the others, as they always have.
    #[serde(flatten)]
    pub usage: Usage,
}

/// What one function's invocations used: the figures every view of usage adds up (a signed
/// record, substrate's running totals, q's stored records, taucorder's rows). The canonical
/// encoding of a record lays them out in this order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Invocations finished.
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
    /// Key-value calls that read (get, exists, list-keys, get-many).
    #[serde(default)]
    pub kv_reads: u64,
    /// Key-value calls that wrote (set, delete, increment, set-many, delete-many).
    #[serde(default)]
    pub kv_writes: u64,
    /// Bytes read from project storage.
    #[serde(default)]
    pub storage_read_bytes: u64,
    /// Bytes written to project storage.
    #[serde(default)]
    pub storage_written_bytes: u64,
    /// Outgoing HTTP requests started.
    #[serde(default)]
    pub outbound_requests: u64,
    /// Bytes outgoing requests sent, on the wire.
    #[serde(default)]
    pub outbound_sent_bytes: u64,
    /// Bytes outgoing requests received, on the wire.
    #[serde(default)]
    pub outbound_received_bytes: u64,
}

/// How many figures a [`Usage`] has.
pub const FIGURES: usize = 14;
/// How many of them version 1 of the encoding has.
const FIGURES_1: usize = 7;

impl Usage {
    /// Adds `other`: every figure sums (saturating), but the peak, which is the larger.
    pub fn add(&mut self, other: &Usage) {
        self.invocations = self.invocations.saturating_add(other.invocations);
        self.errors = self.errors.saturating_add(other.errors);
        self.wall_micros = self.wall_micros.saturating_add(other.wall_micros);
        self.cpu_micros = self.cpu_micros.saturating_add(other.cpu_micros);
        self.peak_memory = self.peak_memory.max(other.peak_memory);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        self.kv_reads = self.kv_reads.saturating_add(other.kv_reads);
        self.kv_writes = self.kv_writes.saturating_add(other.kv_writes);
        self.storage_read_bytes = self.storage_read_bytes.saturating_add(other.storage_read_bytes);
        self.storage_written_bytes =
            self.storage_written_bytes.saturating_add(other.storage_written_bytes);
        self.outbound_requests = self.outbound_requests.saturating_add(other.outbound_requests);
        self.outbound_sent_bytes =
            self.outbound_sent_bytes.saturating_add(other.outbound_sent_bytes);
        self.outbound_received_bytes =
            self.outbound_received_bytes.saturating_add(other.outbound_received_bytes);
    }

    /// Whether nothing was used.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The figures in the canonical encoding's order (version 2's).
    pub fn figures(&self) -> [u64; FIGURES] {
        [
            self.invocations,
            self.errors,
            self.wall_micros,
            self.cpu_micros,
            self.peak_memory,
            self.bytes_in,
            self.bytes_out,
            self.kv_reads,
            self.kv_writes,
            self.storage_read_bytes,
            self.storage_written_bytes,
            self.outbound_requests,
            self.outbound_sent_bytes,
            self.outbound_received_bytes,
        ]
    }

    /// Usage from figures in [`Usage::figures`]' order.
    pub fn from_figures(f: [u64; FIGURES]) -> Self {
        Self {
            invocations: f[0],
            errors: f[1],
            wall_micros: f[2],
            cpu_micros: f[3],
            peak_memory: f[4],
            bytes_in: f[5],
            bytes_out: f[6],
            kv_reads: f[7],
            kv_writes: f[8],
            storage_read_bytes: f[9],
            storage_written_bytes: f[10],
            outbound_requests: f[11],
            outbound_sent_bytes: f[12],
            outbound_received_bytes: f[13],
        }
    }

    /// The encoding version its record needs: 2 if any figure version 1 lacks is not 0.
    pub fn version(&self) -> u8 {
        if self.figures()[FIGURES_1..].iter().any(|f| *f != 0) { 2 } else { 1 }
    }
}

/// A counter record with its node's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCounter {
    /// What was signed.
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
        let version = self.usage.version();
        let figures = self.usage.figures();
        let figures = if version == 1 { &figures[..FIGURES_1] } else { &figures[..] };
        let mut out = Vec::with_capacity(
            DOMAIN_TAG.len() + 6 + node.len() + self.project.len() + self.function.len() + 128,
        );
        out.extend_from_slice(if version == 1 { DOMAIN_TAG } else { DOMAIN_TAG_2 });
        put_bytes(&mut out, &node);
        out.extend_from_slice(&self.seq.to_be_bytes());
        put_bytes(&mut out, self.project.as_bytes());
        put_bytes(&mut out, self.function.as_bytes());
        for value in [self.window_start_ms, self.window_ms].iter().chain(figures) {
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
            usage: Usage {
                invocations: 1000,
                errors: 3,
                wall_micros: 55_000,
                cpu_micros: 40_000,
                peak_memory: 1 << 20,
                bytes_in: 0,
                bytes_out: 4000,
                ..Usage::default()
            },
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
            ("invocations", Box::new(|r| r.usage.invocations -= 1)),
            ("errors", Box::new(|r| r.usage.errors = 0)),
            ("wall_micros", Box::new(|r| r.usage.wall_micros += 1)),
            ("cpu_micros", Box::new(|r| r.usage.cpu_micros += 1)),
            ("peak_memory", Box::new(|r| r.usage.peak_memory += 1)),
            ("bytes_in", Box::new(|r| r.usage.bytes_in += 1)),
            ("bytes_out", Box::new(|r| r.usage.bytes_out += 1)),
            ("kv_reads", Box::new(|r| r.usage.kv_reads += 1)),
            ("kv_writes", Box::new(|r| r.usage.kv_writes += 1)),
            ("storage_read_bytes", Box::new(|r| r.usage.storage_read_bytes += 1)),
            ("storage_written_bytes", Box::new(|r| r.usage.storage_written_bytes += 1)),
            ("outbound_requests", Box::new(|r| r.usage.outbound_requests += 1)),
            ("outbound_sent_bytes", Box::new(|r| r.usage.outbound_sent_bytes += 1)),
            ("outbound_received_bytes", Box::new(|r| r.usage.outbound_received_bytes += 1)),
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
        // Version 2: its own tag, and the seven figures more after the same fields.
        let mut v2 = r.clone();
        v2.usage.kv_writes = 3;
        v2.usage.outbound_received_bytes = 99;
        let bytes2 = v2.canonical_bytes();
        assert!(bytes2.starts_with(DOMAIN_TAG_2));
        assert_eq!(bytes2.len(), expected + 7 * 8);
        assert_eq!(&bytes2[DOMAIN_TAG_2.len()..expected], &bytes[DOMAIN_TAG.len()..]);
        assert_eq!(&bytes2[bytes2.len() - 8..], &99u64.to_be_bytes());
        assert_eq!(&bytes2[expected + 8..expected + 16], &3u64.to_be_bytes());
        let signed = v2.sign(&key).unwrap();
        assert_eq!(signed.verify(), Ok(()));
        let mut zeroed = signed.clone();
        zeroed.record.usage.kv_writes = 0;
        zeroed.record.usage.outbound_received_bytes = 0;
        assert!(zeroed.verify().is_err(), "a v2 record read as v1 fails");
    }

    /// A record signed before `Usage` existed: its canonical bytes, its signature and its wire
    /// bytes, pinned. Every later version must encode it to the same bytes and read it back.
    const GOLDEN_CANONICAL: &str = "7461752f636f756e7465722f310a0026002408011220ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c000000000000002a000473686f700008636865636b6f75740000019ad7358400000000000000ea6000000000000004d2000000000000000500000000000f1206000000000006f855000000000030000000000000000028000000000000010000";
    const GOLDEN_SIGNATURE: &str = "e665b7dd40055c6e509e1d2d442f2511a69a9bb6392fd9fc4180a94c631764c8df50c97a1001d15c867f4a677696740f4b6e143542ddb2e2a0746555d9c1930f";
    const GOLDEN_WIRE: &str = "a2667265636f7264ad646e6f64655826002408011220ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c63736571182a6770726f6a6563746473686f706866756e6374696f6e68636865636b6f75746f77696e646f775f73746172745f6d731b0000019ad73584006977696e646f775f6d7319ea606b696e766f636174696f6e731904d2666572726f7273056b77616c6c5f6d6963726f731a000f12066a6370755f6d6963726f731a0006f8556b7065616b5f6d656d6f72791a003000006862797465735f696e1928006962797465735f6f75741a00010000697369676e61747572655840e665b7dd40055c6e509e1d2d442f2511a69a9bb6392fd9fc4180a94c631764c8df50c97a1001d15c867f4a677696740f4b6e143542ddb2e2a0746555d9c1930f";

    fn golden() -> Result<(Keypair, CounterRecord), Box<dyn std::error::Error>> {
        let mut seed = [7u8; 32];
        let keypair = Keypair::ed25519_from_bytes(&mut seed)?;
        let record = CounterRecord {
            node: keypair.public().to_peer_id(),
            seq: 42,
            project: "shop".into(),
            function: "checkout".into(),
            window_start_ms: 1_764_547_200_000,
            window_ms: 60_000,
            usage: Usage {
                invocations: 1234,
                errors: 5,
                wall_micros: 987_654,
                cpu_micros: 456_789,
                peak_memory: 3 << 20,
                bytes_in: 10_240,
                bytes_out: 65_536,
                ..Usage::default()
            },
        };
        Ok((keypair, record))
    }

    #[test]
    fn the_canonical_bytes_and_signature_are_pinned() -> Result<(), Box<dyn std::error::Error>> {
        let (keypair, record) = golden()?;
        assert_eq!(hex::encode(record.canonical_bytes()), GOLDEN_CANONICAL);
        let signed = record.clone().sign(&keypair).ok_or("the key signs")?;
        assert_eq!(hex::encode(&signed.signature), GOLDEN_SIGNATURE);
        let old = SignedCounter { record, signature: hex::decode(GOLDEN_SIGNATURE)? };
        assert_eq!(old.verify(), Ok(()), "a record signed before still verifies");
        Ok(())
    }

    /// The golden record with version 2's figures: canonical bytes and signature pinned.
    const GOLDEN_V2_CANONICAL: &str = "7461752f636f756e7465722f320a0026002408011220ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c000000000000002a000473686f700008636865636b6f75740000019ad7358400000000000000ea6000000000000004d2000000000000000500000000000f1206000000000006f85500000000003000000000000000002800000000000001000000000000000007d000000000000003e800000000032000000000000000100000000000000000001100000000000010e1000000000001e240";
    const GOLDEN_V2_SIGNATURE: &str = "3a2b2a1487a9d6c6c1c81d735abdeff90670247baea8f187f5a18a8b0daf4cb58d45456465ed766d2d9a8b619b431961580042f0d6ef965aa65ef7438fe6500a";

    #[test]
    fn version_two_is_pinned_too() -> Result<(), Box<dyn std::error::Error>> {
        let (keypair, mut record) = golden()?;
        record.usage.kv_reads = 2_000;
        record.usage.kv_writes = 1_000;
        record.usage.storage_read_bytes = 50 << 20;
        record.usage.storage_written_bytes = 1 << 20;
        record.usage.outbound_requests = 17;
        record.usage.outbound_sent_bytes = 4_321;
        record.usage.outbound_received_bytes = 123_456;
        let canonical = hex::encode(record.canonical_bytes());
        let signed = record.clone().sign(&keypair).ok_or("the key signs")?;
        assert_eq!(canonical, GOLDEN_V2_CANONICAL);
        assert_eq!(hex::encode(&signed.signature), GOLDEN_V2_SIGNATURE);
        // The wire form carries the new figures, and reads back to the same record.
        let back: SignedCounter = crate::cbor::from_slice(&crate::cbor::to_vec(&signed)?)?;
        assert_eq!(back, signed);
        assert_eq!(back.verify(), Ok(()));
        Ok(())
    }

    #[test]
    fn the_wire_encoding_reads_both_ways() -> Result<(), Box<dyn std::error::Error>> {
        let (_, record) = golden()?;
        // What nodes sent before: read as the same record, and it verifies.
        let old: SignedCounter = crate::cbor::from_slice(&hex::decode(GOLDEN_WIRE)?)?;
        assert_eq!(old.record, record);
        assert_eq!(old.verify(), Ok(()));
        // What nodes send now: a reader that knows the figures as plain fields (q and taucorder
        // before `Usage`) reads it too.
        #[derive(Deserialize)]
        struct Flat {
            seq: u64,
            window_ms: u64,
            invocations: u64,
            peak_memory: u64,
            bytes_out: u64,
        }
        #[derive(Deserialize)]
        struct FlatSigned {
            record: Flat,
        }
        let now: FlatSigned = crate::cbor::from_slice(&crate::cbor::to_vec(&old)?)?;
        let flat = now.record;
        assert_eq!((flat.seq, flat.window_ms), (42, 60_000));
        assert_eq!((flat.invocations, flat.peak_memory, flat.bytes_out), (1234, 3 << 20, 65_536));
        Ok(())
    }

    #[test]
    fn usage_adds_up_and_keeps_the_largest_peak() {
        let mut total = Usage { invocations: 2, peak_memory: 10, ..Usage::default() };
        total.add(&Usage {
            invocations: 3,
            errors: 1,
            peak_memory: 4,
            bytes_out: 7,
            ..Usage::default()
        });
        assert_eq!(total.invocations, 5);
        assert_eq!(total.errors, 1);
        assert_eq!(total.peak_memory, 10);
        assert_eq!(total.bytes_out, 7);
        assert!(!total.is_empty() && Usage::default().is_empty());
    }
}
