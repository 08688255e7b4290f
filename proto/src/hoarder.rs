//! Hoarder, the cloud's blob store: content ids, manifests, the `/tau/hoarder/1` types and the
//! heartbeats of `tau/hoarder/1`.
//!
//! A blob is addressed by a CIDv1 (codec `raw`) whose multihash is BLAKE3 of the whole blob. It
//! travels and rests in chunks of [`CHUNK_SIZE`] bytes; its [`Manifest`] lists each chunk's
//! BLAKE3 so that every chunk is checked on its own as it arrives or is read.

pub mod transfer;

use std::fmt;
use std::str::FromStr;

use cid::Cid;
use libp2p::PeerId;
use multihash::Multihash;
use serde::{Deserialize, Serialize};

/// The request-response protocol, `/tau/hoarder/1`.
pub struct HoarderProtocol;

impl crate::protocol::Protocol for HoarderProtocol {
    const NAME: &'static str = "/tau/hoarder/1";
    const TIMEOUT: std::time::Duration = REQUEST_TIMEOUT;
    type Request = HoarderRequest;
    type Response = HoarderResponse;

    /// Replication, and waiting on a blob still being uploaded, are between hoarder nodes;
    /// a storage's pins are set by nodes (substrate puts, database sweeps); clients store,
    /// fetch, pin and list.
    fn request_access(request: &HoarderRequest) -> crate::protocol::Access {
        use crate::protocol::Access;
        match request {
            HoarderRequest::Replicate { .. }
            | HoarderRequest::Manifest { in_progress: true, .. }
            | HoarderRequest::Chunk { in_progress: true, .. } => Access::Role("hoarder"),
            HoarderRequest::PutFinish { storage: Some(_), .. }
            | HoarderRequest::StoragePin { .. }
            | HoarderRequest::StoragePins { .. } => Access::Nodes,
            _ => Access::Anyone,
        }
    }

    fn refusal(response: &HoarderResponse) -> Option<&str> {
        match response {
            HoarderResponse::Error(message) => Some(message),
            _ => None,
        }
    }
}

/// The gossipsub topic of hoarder state changes ([`StateDelta`]), `tau/hoarder/1`.
pub struct HoarderTopic;

impl crate::protocol::Topic for HoarderTopic {
    const NAME: &'static str = "tau/hoarder/1";
    const ACCESS: crate::protocol::Access = crate::protocol::Access::Role("hoarder");
}
/// The size of a chunk (the last one of a blob may be shorter).
pub const CHUNK_SIZE: u64 = 1 << 20;
/// How long a hoarder request may take: a `PutFinish` waits until a second node has a copy.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// The default replication factor.
pub const DEFAULT_REPLICAS: u8 = 3;

/// The multicodec of raw bytes.
const RAW: u64 = 0x55;
/// The multihash code of BLAKE3 (32 bytes).
const BLAKE3: u64 = 0x1e;

/// A blob's content id: CIDv1, raw codec, BLAKE3 multihash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobId(Cid);

impl BlobId {
    /// The id of a blob whose BLAKE3 hash is `hash`.
    pub fn from_blake3(hash: &[u8; 32]) -> Self {
        let multihash =
            Multihash::<64>::wrap(BLAKE3, hash).expect("32 bytes fit a 64-byte multihash");
        Self(Cid::new_v1(RAW, multihash))
    }

    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_blake3(blake3::hash(bytes).as_bytes())
    }

    /// The BLAKE3 hash the id commits to.
    pub fn blake3(&self) -> [u8; 32] {
        let mut out = [0; 32];
        out.copy_from_slice(self.0.hash().digest());
        out
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Why a string is not a blob id.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a hoarder blob id (a CIDv1 of raw bytes with a BLAKE3 hash)")]
pub struct BlobIdError(String);

impl FromStr for BlobId {
    type Err = BlobIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || BlobIdError(s.chars().take(100).collect());
        let cid = Cid::from_str(s.trim()).map_err(|_| err())?;
        Self::try_from(cid).map_err(|_| err())
    }
}

impl TryFrom<Cid> for BlobId {
    type Error = BlobIdError;

    fn try_from(cid: Cid) -> Result<Self, Self::Error> {
        let ok = cid.version() == cid::Version::V1
            && cid.codec() == RAW
            && cid.hash().code() == BLAKE3
            && cid.hash().size() == 32;
        if ok { Ok(Self(cid)) } else { Err(BlobIdError(cid.to_string())) }
    }
}

impl Serialize for BlobId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serde_bytes::serialize(&self.0.to_bytes(), serializer)
        }
    }
}

impl<'de> Deserialize<'de> for BlobId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        if deserializer.is_human_readable() {
            String::deserialize(deserializer)?.parse().map_err(D::Error::custom)
        } else {
            let bytes: Vec<u8> = serde_bytes::deserialize(deserializer)?;
            let cid = Cid::try_from(bytes.as_slice()).map_err(D::Error::custom)?;
            Self::try_from(cid).map_err(D::Error::custom)
        }
    }
}

/// A blob's chunk list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Names the whole blob's bytes.
    pub cid: BlobId,
    /// Its size in bytes.
    pub size: u64,
    /// BLAKE3 of each chunk, in order.
    pub chunks: Vec<ChunkHash>,
}

/// The BLAKE3 hash of one chunk.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkHash(#[serde(with = "crate::bytes::fixed")] pub [u8; 32]);

impl fmt::Debug for ChunkHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex::encode(&self.0[..8]))
    }
}

/// Why a manifest or chunk does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum ManifestError {
    /// The chunk count does not fit the size.
    #[error("the manifest of {cid} lists {listed} chunks for {size} bytes, not {expected}")]
    ChunkCount {
        cid: BlobId,
        size: u64,
        /// Chunks listed.
        listed: usize,
        /// Chunks the size needs.
        expected: u64,
    },
    /// A chunk index past the end.
    #[error("{cid} has no chunk {index}")]
    NoChunk { cid: BlobId, index: u32 },
    /// A chunk's bytes do not match its hash.
    #[error("chunk {index} of {cid} does not match its hash")]
    BadChunk { cid: BlobId, index: u32 },
}

impl Manifest {
    /// How many chunks a blob of `size` bytes has (an empty blob has none).
    pub fn chunk_count(size: u64) -> u64 {
        size.div_ceil(CHUNK_SIZE)
    }

    /// Checks that the chunk list fits the size.
    pub fn check(&self) -> Result<(), ManifestError> {
        let expected = Self::chunk_count(self.size);
        if self.chunks.len() as u64 != expected {
            return Err(ManifestError::ChunkCount {
                cid: self.cid,
                size: self.size,
                listed: self.chunks.len(),
                expected,
            });
        }
        Ok(())
    }

    /// The length of chunk `index`.
    pub fn chunk_len(&self, index: u32) -> Result<u64, ManifestError> {
        let start = u64::from(index) * CHUNK_SIZE;
        if start >= self.size {
            return Err(ManifestError::NoChunk { cid: self.cid, index });
        }
        Ok((self.size - start).min(CHUNK_SIZE))
    }

    /// Checks chunk `index`'s bytes against the manifest.
    pub fn verify_chunk(&self, index: u32, bytes: &[u8]) -> Result<(), ManifestError> {
        let expected = self
            .chunks
            .get(index as usize)
            .ok_or(ManifestError::NoChunk { cid: self.cid, index })?;
        if self.chunk_len(index)? != bytes.len() as u64
            || blake3::hash(bytes).as_bytes() != &expected.0
        {
            return Err(ManifestError::BadChunk { cid: self.cid, index });
        }
        Ok(())
    }
}

/// Builds a manifest while a blob streams past, chunk by chunk.
#[derive(Debug, Default)]
pub struct ManifestBuilder {
    whole: blake3::Hasher,
    chunk: blake3::Hasher,
    in_chunk: u64,
    size: u64,
    chunks: Vec<ChunkHash>,
}

impl ManifestBuilder {
    /// Adds the next bytes of the blob.
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.whole.update(bytes);
        self.size += bytes.len() as u64;
        while !bytes.is_empty() {
            let take = ((CHUNK_SIZE - self.in_chunk) as usize).min(bytes.len());
            self.chunk.update(&bytes[..take]);
            self.in_chunk += take as u64;
            bytes = &bytes[take..];
            if self.in_chunk == CHUNK_SIZE {
                self.chunks.push(ChunkHash(*self.chunk.finalize().as_bytes()));
                self.chunk.reset();
                self.in_chunk = 0;
            }
        }
    }

    /// The manifest of everything added.
    pub fn finish(mut self) -> Manifest {
        if self.in_chunk > 0 {
            self.chunks.push(ChunkHash(*self.chunk.finalize().as_bytes()));
        }
        Manifest {
            cid: BlobId::from_blake3(self.whole.finalize().as_bytes()),
            size: self.size,
            chunks: self.chunks,
        }
    }
}

/// A request to a hoarder node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[allow(missing_docs, reason = "`cid` is always the blob the request is about")]
pub enum HoarderRequest {
    /// Starts an upload: [`HoarderResponse::Ready`], or [`HoarderResponse::Exists`] if the node
    /// already holds the blob. The node starts replicating at once: its peers fetch each chunk as
    /// it arrives.
    PutStart {
        /// The blob's manifest.
        manifest: Manifest,
        /// How many nodes keep a copy (capped at the live hoarder nodes).
        replicas: u8,
    },
    /// One chunk of an upload, checked against the manifest: [`HoarderResponse::Done`].
    PutChunk {
        cid: BlobId,
        /// The chunk's index.
        index: u32,
        /// Its bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Completes an upload: the node checks the whole blob, stores it, pins it and answers
    /// [`HoarderResponse::Stored`] once it is on at least two nodes (or all, where fewer are
    /// live).
    PutFinish {
        cid: BlobId,
        /// How many nodes keep a copy (capped at the live hoarder nodes).
        replicas: u8,
        /// Pin it for this storage's index (see [`crate::storage`]) instead of the caller:
        /// only nodes may.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        storage: Option<crate::database::StoreId>,
    },
    /// The blob's manifest: [`HoarderResponse::Manifest`] or [`HoarderResponse::NotFound`].
    Manifest {
        cid: BlobId,
        /// Also answer for a blob still being uploaded to the node (replication does).
        in_progress: bool,
    },
    /// One chunk: [`HoarderResponse::Chunk`]. A node that does not hold the blob fetches the
    /// chunk from a holder.
    Chunk {
        cid: BlobId,
        /// The chunk's index.
        index: u32,
        /// For a blob still being uploaded to the node, wait for the chunk (replication does).
        in_progress: bool,
    },
    /// Sets the caller's pin of a blob (the operator's: every pin of it). The blob keeps the
    /// highest factor of its pins: [`HoarderResponse::Done`].
    Pin {
        cid: BlobId,
        /// The factor (capped at the live hoarder nodes).
        replicas: u8,
    },
    /// Drops the caller's pin of a blob (the operator's: every pin of it), an error when the
    /// caller holds none; the cloud drops the blob once no pin is left:
    /// [`HoarderResponse::Done`].
    Unpin { cid: BlobId },
    /// Whether this node holds the blob: [`HoarderResponse::Has`].
    Has { cid: BlobId },
    /// Every pin the node knows of: [`HoarderResponse::Pins`].
    List,
    /// Node to node: fetch `cid` from `from` now, and answer [`HoarderResponse::Done`] once it is
    /// stored.
    Replicate {
        cid: BlobId,
        /// A node that holds it.
        from: PeerId,
    },
    /// What the node knows of the states of `peers` (every node it knows of, itself included,
    /// when empty): [`HoarderResponse::States`]. How a node learns what others hold from a
    /// peer it is connected to, or from a node whose [`StateDelta`] it missed.
    States {
        /// The nodes whose states are wanted.
        peers: Vec<PeerId>,
    },
    /// The state versions the node knows of every hoarder node, and its pins' digest:
    /// [`HoarderResponse::Digest`]. Asked now and then of a random hoarder node, to find
    /// what gossip missed.
    Digest,
    /// Every pin record the node knows of, unpinned ones included:
    /// [`HoarderResponse::PinRecords`].
    PinRecords,
    /// Sets a storage's pin of a blob (0 unpins), from a node: [`HoarderResponse::Done`].
    StoragePin {
        cid: BlobId,
        /// The blob's size, if no node is known to hold it.
        size: u64,
        /// The storage's index store.
        storage: crate::database::StoreId,
        /// The factor; 0 unpins.
        replicas: u8,
    },
    /// A storage's pin records (unpinned ones included), by CID after `after`, at most
    /// [`MAX_PIN_RECORDS`]: [`HoarderResponse::PinRecords`].
    StoragePins {
        /// The storage's index store.
        storage: crate::database::StoreId,
        /// Start past this blob; none from the first.
        after: Option<BlobId>,
    },
}

/// The most records one [`HoarderRequest::StoragePins`] answer carries.
pub const MAX_PIN_RECORDS: usize = 1000;

/// A hoarder node's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[allow(missing_docs, reason = "`holders` are always the nodes that hold the blob")]
pub enum HoarderResponse {
    /// Send the chunks.
    Ready,
    /// The node has the blob already.
    Exists,
    /// Done.
    Done,
    /// The blob is stored and pinned; these nodes hold it.
    Stored { holders: Vec<PeerId> },
    /// The blob's chunk list.
    Manifest(Manifest),
    /// The node does not hold the blob; these nodes do (as far as it knows).
    NotFound { holders: Vec<PeerId> },
    /// The chunk's bytes (checked by the caller against the manifest).
    Chunk(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Whether the node holds the blob.
    Has(bool),
    /// Every pin.
    Pins(Vec<PinInfo>),
    /// The states it knows of the nodes asked for (those it does not know are left out).
    States(Vec<(PeerId, HolderState)>),
    /// The state versions it knows, and its pins' digest.
    Digest(HoarderDigest),
    /// Every pin record.
    PinRecords(Vec<PinRecord>),
    /// The request failed; the message says why.
    Error(String),
}

/// A pin as `List` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinInfo {
    /// Names the whole blob's bytes.
    pub cid: BlobId,
    /// Its size.
    pub size: u64,
    /// The factor asked for.
    pub factor: u8,
    /// The factor in force: the one asked for, capped at the live hoarder nodes.
    pub target: u8,
    /// The live nodes that hold it.
    pub holders: Vec<PeerId>,
    /// How it is doing.
    pub state: PinState,
}

/// How a pin is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PinState {
    /// At its target.
    Ok,
    /// Below its target, and no node is fetching it.
    UnderReplicated,
    /// Below its target, and a node is fetching it.
    Repairing,
}

/// One owner's pin of a blob, replicated: last writer (by `updated_ms`, then factor) wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinRecord {
    /// Names the whole blob's bytes.
    pub cid: BlobId,
    /// Its size.
    pub size: u64,
    /// The factor; 0 once unpinned.
    pub factor: u8,
    /// When the pin was last changed, milliseconds since the epoch.
    pub updated_ms: u64,
    /// Whose pin it is: the client whose request set it (`None`: a pin from before pins had
    /// owners, which only the operator changes). A blob's factor is the highest of its pins.
    #[serde(default)]
    pub owner: Option<PeerId>,
}

impl PinRecord {
    /// Whether `self` supersedes `other`.
    pub fn newer_than(&self, other: &PinRecord) -> bool {
        (self.updated_ms, self.factor) > (other.updated_ms, other.factor)
    }
}

/// Where a hoarder node's state is: its start (Unix milliseconds), then one more for each
/// change since. A newer start is a newer state.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct StateVersion {
    /// When the node started.
    pub started_ms: u64,
    /// Changes since.
    pub seq: u64,
}

impl StateVersion {
    /// Whether `self` directly follows `before` (the next change of the same run).
    pub fn follows(&self, before: &StateVersion) -> bool {
        self.started_ms == before.started_ms && self.seq == before.seq.wrapping_add(1)
    }
}

/// What a hoarder node gossips on `tau/hoarder/1` when what it holds, what it fetches or a pin
/// it set changes (signed by gossipsub). A receiver that missed the one before asks the node
/// for its whole [`HolderState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateDelta {
    /// The state this delta leads to.
    pub version: StateVersion,
    /// Blobs it now holds.
    pub added: Vec<BlobId>,
    /// Blobs it no longer holds.
    pub removed: Vec<BlobId>,
    /// Every blob it is fetching now.
    pub fetching: Vec<BlobId>,
    /// Pins that changed (how pins spread; anti-entropy heals what gossip misses).
    pub pins: Vec<PinRecord>,
}

/// What a hoarder node holds and fetches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderState {
    /// Where its state is.
    pub version: StateVersion,
    /// The blobs it holds.
    pub held: Vec<BlobId>,
    /// The blobs it is fetching.
    pub fetching: Vec<BlobId>,
}

/// A hoarder node's summary of what it knows, to compare with another's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoarderDigest {
    /// The state version it knows of each hoarder node (itself included).
    pub versions: Vec<(PeerId, StateVersion)>,
    /// BLAKE3 over its pin records in order.
    #[serde(with = "crate::bytes::fixed")]
    pub pins: [u8; 32],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cids_are_v1_raw_blake3_and_round_trip() {
        let id = BlobId::of(b"hello");
        let text = id.to_string();
        assert!(text.starts_with("bafk"), "{text}");
        assert_eq!(text.parse::<BlobId>().unwrap(), id);
        assert_eq!(id.blake3(), *blake3::hash(b"hello").as_bytes());
        let cbor = crate::cbor::to_vec(&id).unwrap();
        assert_eq!(crate::cbor::from_slice::<BlobId>(&cbor).unwrap(), id);
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{text}\""));
        // A sha2-256 CID is not a hoarder id.
        assert!(
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
                .parse::<BlobId>()
                .is_err()
        );
        assert!("nonsense".parse::<BlobId>().is_err());
    }

    #[test]
    fn the_manifest_builder_chunks_and_hashes_whatever_the_write_sizes() {
        let blob: Vec<u8> = (0..(2 * CHUNK_SIZE + 12_345)).map(|i| (i * 31 % 251) as u8).collect();
        let mut one = ManifestBuilder::default();
        one.update(&blob);
        let one = one.finish();
        let mut many = ManifestBuilder::default();
        for piece in blob.chunks(77_777) {
            many.update(piece);
        }
        let many = many.finish();
        assert_eq!(one, many);
        assert_eq!(one.cid, BlobId::of(&blob));
        assert_eq!(one.chunks.len(), 3);
        one.check().unwrap();
        assert_eq!(one.chunk_len(2).unwrap(), 12_345);
        let chunk = |i: usize| {
            &blob[i * CHUNK_SIZE as usize..((i + 1) * CHUNK_SIZE as usize).min(blob.len())]
        };
        for i in 0..3 {
            one.verify_chunk(i as u32, chunk(i)).unwrap();
        }
        assert!(matches!(one.verify_chunk(3, b""), Err(ManifestError::NoChunk { .. })));
    }

    #[test]
    fn a_corrupt_chunk_is_detected() {
        let blob = vec![7u8; (CHUNK_SIZE + 10) as usize];
        let mut builder = ManifestBuilder::default();
        builder.update(&blob);
        let manifest = builder.finish();
        let mut bad = blob[..CHUNK_SIZE as usize].to_vec();
        bad[1000] ^= 1;
        assert_eq!(
            manifest.verify_chunk(0, &bad),
            Err(ManifestError::BadChunk { cid: manifest.cid, index: 0 })
        );
        assert!(manifest.verify_chunk(1, &blob[..9]).is_err(), "a short chunk fails");
        let mut wrong = manifest.clone();
        wrong.chunks.pop();
        assert!(matches!(wrong.check(), Err(ManifestError::ChunkCount { .. })));
        // An empty blob has no chunks.
        let empty = ManifestBuilder::default().finish();
        empty.check().unwrap();
        assert_eq!(empty.cid, BlobId::of(b""));
    }
}
