//! TNS, the cloud's replicated registry: wire types, records, keys and values.
//!
//! - [`record`]: [`Record`], its canonical encoding, signature and last-writer-wins order.
//! - [`keys`]: the key paths and who may write each.
//! - [`values`]: the typed values (projects, functions, domains, routes).
//!
//! The protocol is `/tau/tns/1` (request-response, CBOR) and writes also travel on the gossipsub
//! topic `tau/tns/1` as CBOR lists of records.

pub mod keys;
pub mod record;
pub mod values;

use libp2p::PeerId;
pub use record::{Draft, Record, Summary};
use serde::{Deserialize, Serialize};

/// The request-response protocol, `/tau/tns/1`.
pub struct TnsProtocol;

impl crate::protocol::Protocol for TnsProtocol {
    const NAME: &'static str = "/tau/tns/1";
    type Request = TnsRequest;
    type Response = TnsResponse;

    /// Anti-entropy is between tns nodes; clients read and write.
    fn request_access(request: &TnsRequest) -> crate::protocol::Access {
        match request {
            TnsRequest::Sync { .. } => crate::protocol::Access::Role("tns"),
            _ => crate::protocol::Access::Anyone,
        }
    }

    fn refusal(response: &TnsResponse) -> Option<&str> {
        match response {
            TnsResponse::Error(message) => Some(message),
            _ => None,
        }
    }
}

/// The gossipsub topic writes travel on, `tau/tns/1`.
pub struct TnsTopic;

impl crate::protocol::Topic for TnsTopic {
    const NAME: &'static str = "tau/tns/1";
    const ACCESS: crate::protocol::Access = crate::protocol::Access::Role("tns");
}
/// Anti-entropy compares this many buckets of the key space.
pub const BUCKETS: usize = 256;
/// The most records a `List` page or a `Get` answer holds.
pub const MAX_PAGE: u32 = 1_000;
/// The most bytes of records a `List` page, a `Get` answer or a batch of records sent at once
/// holds (a single record larger than this goes alone): 1,000 records of 256 KB each would pass
/// every message limit.
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// `records` in order, cut into batches of at most [`MAX_PAGE`] records and `max_bytes` bytes
/// ([`Record::size`]; a larger record goes alone).
pub fn batches(records: Vec<Record>, max_bytes: usize) -> Vec<Vec<Record>> {
    let mut batches = Vec::new();
    let mut batch: Vec<Record> = Vec::new();
    let mut size = 0;
    for record in records {
        let record_size = record.size();
        let full = batch.len() >= MAX_PAGE as usize || size + record_size > max_bytes;
        if full && !batch.is_empty() {
            batches.push(std::mem::take(&mut batch));
            size = 0;
        }
        size += record_size;
        batch.push(record);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// The bucket of a key: the first byte of its BLAKE3 hash.
pub fn bucket(key: &str) -> usize {
    usize::from(blake3::hash(key.as_bytes()).as_bytes()[0])
}

/// A request to a TNS node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TnsRequest {
    /// The records under these keys (tombstones included), as [`TnsResponse::Records`].
    Get {
        /// The keys, at most [`MAX_PAGE`].
        keys: Vec<String>,
    },
    /// One page of the records whose keys start with `prefix`, in key order, as
    /// [`TnsResponse::Page`].
    List {
        /// Keys starting with it (`/` for all).
        prefix: String,
        /// Start after this key (the previous page's `next`).
        after: Option<String>,
        /// At most this many records (capped at [`MAX_PAGE`]).
        limit: u32,
        /// Include tombstones.
        tombstones: bool,
    },
    /// Store signed records, as [`TnsResponse::Put`].
    Put {
        /// At most 10,000, in any order (the node applies registrars and project roots first).
        records: Vec<Record>,
    },
    /// The node's registry status, as [`TnsResponse::Status`].
    Status,
    /// Anti-entropy: the asker's bucket digests; the answer lists the summaries of the
    /// responder's records in every bucket whose digest differs, as [`TnsResponse::Diff`].
    Sync {
        /// [`BUCKETS`] digests.
        digests: Vec<Digest>,
    },
}

/// How far beyond a node's clock a record's version may be. Writers take the clock plus one, so
/// an honest record is ahead of a node's clock only by the writes that node has not seen; a
/// record further ahead is refused (and counted in [`TnsStatus::ahead`]). Without the bound, one
/// record at `u64::MAX` would leave no version for any later write; with it, pushing the clock
/// to the end takes 2^32 accepted writes.
pub const MAX_CLOCK_AHEAD: u64 = 1 << 32;

/// A bucket digest: the XOR of the hashes of the bucket's records.
pub type Digest = [u8; 32];

/// A TNS node's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TnsResponse {
    /// The records asked for, in key order.
    Records(Vec<Record>),
    /// A page of a listing.
    Page {
        /// In key order, at most the limit asked for.
        records: Vec<Record>,
        /// The key to continue after, if there is more.
        next: Option<String>,
    },
    /// What happened to each record of a `Put`.
    Put(PutOutcome),
    /// The node's status.
    Status(TnsStatus),
    /// The answer to `Sync`.
    Diff {
        /// The buckets that differ.
        buckets: Vec<u16>,
        /// The responder's summaries in those buckets.
        summaries: Vec<Summary>,
    },
    /// The request was refused.
    Error(String),
}

/// What a `Put` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutOutcome {
    /// Records stored (newer than what the node had).
    pub stored: u32,
    /// Records the node already had, or had something newer than.
    pub unchanged: u32,
    /// Records refused, each with its key and the reason.
    pub rejected: Vec<(String, String)>,
}

/// A TNS node's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TnsStatus {
    /// Live records.
    pub records: u64,
    /// Tombstones.
    pub tombstones: u64,
    /// XOR of all record hashes, hex: nodes with equal digests hold equal registries.
    pub digest: String,
    /// The highest version seen (the Lamport clock); a writer uses one more.
    pub clock: u64,
    /// Records dropped for a bad signature.
    pub forged: u64,
    /// Records dropped because their writer may not write them.
    pub unauthorized: u64,
    /// Records dropped because their version was more than [`MAX_CLOCK_AHEAD`] beyond the
    /// node's clock.
    #[serde(default)]
    pub ahead: u64,
    /// Records dropped because they would take their project over this node's quota (records
    /// or bytes, `node.yaml`'s `tns` section).
    #[serde(default)]
    pub over_quota: u64,
    /// When anti-entropy last completed with each peer, seconds ago.
    pub last_sync: Vec<(PeerId, u64)>,
}
