//! The `database` service: a project's key-value stores (`databases/<name>.yaml`), kept on the
//! `database` nodes and replicated among them (`/tau/database/1`).
//!
//! A store lives on `replicas` database nodes, the top ones by rendezvous hashing of the store's
//! name ([`holders`]). A substrate node running a function reads and writes through one of them
//! (itself when it is one); the node that takes a write makes it durable, answers, and sends the
//! changed keys' states ([`crate::kv::KeyState`]) to the other holders, which merge them.
//! Anti-entropy compares [`BUCKETS`] digests per store with another holder and exchanges the
//! buckets that differ, so a holder that was down or cut off catches up by itself.

use serde::{Deserialize, Serialize};

use crate::kv::KeyState;
use crate::protocol::Access;

/// The request-response protocol, `/tau/database/1`.
pub struct DatabaseProtocol;

impl crate::protocol::Protocol for DatabaseProtocol {
    const NAME: &'static str = "/tau/database/1";
    const MAX_REQUEST: u64 = MAX_BATCH_BYTES as u64 + (1 << 20);
    const MAX_RESPONSE: u64 = MAX_BATCH_BYTES as u64 + (1 << 20);
    type Request = DatabaseRequest;
    type Response = DatabaseResponse;

    /// A function's reads and writes come from substrate nodes; replication and anti-entropy
    /// from database nodes; what stores there are (names, sizes, no keys) anyone may ask.
    fn request_access(request: &DatabaseRequest) -> Access {
        match request {
            DatabaseRequest::Get { .. }
            | DatabaseRequest::Write { .. }
            | DatabaseRequest::List { .. } => Access::Role("substrate"),
            DatabaseRequest::Merge { .. }
            | DatabaseRequest::Digest { .. }
            | DatabaseRequest::Bucket { .. } => Access::Role(SERVICE),
            DatabaseRequest::Stores => Access::Anyone,
        }
    }

    fn refusal(response: &DatabaseResponse) -> Option<&str> {
        match response {
            DatabaseResponse::Refused(message) => Some(message),
            _ => None,
        }
    }
}

/// The service's (and role's) name.
pub const SERVICE: &str = "database";
/// How many nodes hold a store unless its YAML says otherwise.
pub const DEFAULT_REPLICAS: u8 = 3;
/// The most nodes a store may ask for.
pub const MAX_REPLICAS: u8 = 16;
/// The longest key, bytes.
pub const MAX_KEY: usize = 1024;
/// The largest value, bytes.
pub const MAX_VALUE: usize = 1 << 20;
/// The most keys in one request (`get-many`, `set-many`, a page of `list-keys`).
pub const MAX_KEYS: usize = 1000;
/// The most bytes of keys and states a replication or anti-entropy message carries (one key's
/// state may go alone past it).
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// How many digests a store's anti-entropy compares.
pub const BUCKETS: usize = 256;

/// A store: its project and its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StoreId {
    /// The project's id.
    pub project: String,
    /// The store's name in the project.
    pub name: String,
}

impl std::fmt::Display for StoreId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.project, self.name)
    }
}

/// One write of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `set`.
    Set {
        /// The key.
        key: String,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// `delete`.
    Delete {
        /// The key.
        key: String,
    },
    /// `atomics.increment`.
    Increment {
        /// The key.
        key: String,
        /// What to add.
        delta: u64,
    },
}

impl Op {
    /// The key it writes.
    pub fn key(&self) -> &str {
        match self {
            Op::Set { key, .. } | Op::Delete { key } | Op::Increment { key, .. } => key,
        }
    }
}

/// Checks a key a function gave: its length, and no NUL (the stores' own separator).
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(format!("a key must be 1 to {MAX_KEY} bytes long, not {}", key.len()));
    }
    if key.contains('\0') {
        return Err("a key may not contain NUL".into());
    }
    Ok(())
}

/// Checks the writes of one request, before any is sent or applied.
pub fn check_ops(ops: &[Op]) -> Result<(), String> {
    if ops.is_empty() || ops.len() > MAX_KEYS {
        return Err(format!("a write holds 1 to {MAX_KEYS} keys, not {}", ops.len()));
    }
    for op in ops {
        check_key(op.key())?;
        if let Op::Set { value, .. } = op
            && value.len() > MAX_VALUE
        {
            return Err(format!("a value may be at most {MAX_VALUE} bytes, not {}", value.len()));
        }
    }
    Ok(())
}

/// A request of `/tau/database/1`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DatabaseRequest {
    /// The values of `keys` (from a substrate node).
    Get {
        /// The store.
        store: StoreId,
        /// The keys, at most [`MAX_KEYS`].
        keys: Vec<String>,
    },
    /// Applies `ops` in order, all or none (from a substrate node).
    Write {
        /// The store.
        store: StoreId,
        /// The writes, at most [`MAX_KEYS`].
        ops: Vec<Op>,
    },
    /// A page of the store's keys, from `cursor` (from a substrate node).
    List {
        /// The store.
        store: StoreId,
        /// Where the page starts: 0, or the cursor the last page gave.
        cursor: u64,
    },
    /// Keys' states a holder took or learned (from a database node): merged, never refused
    /// for size.
    Merge {
        /// The store.
        store: StoreId,
        /// Each key with its state.
        entries: Vec<(String, KeyState)>,
    },
    /// The store's bucket digests (from a database node).
    Digest {
        /// The store.
        store: StoreId,
    },
    /// The states of one bucket's keys after `after` (from a database node).
    Bucket {
        /// The store.
        store: StoreId,
        /// Which bucket.
        bucket: u8,
        /// Start past this key; none from the first.
        after: Option<String>,
    },
    /// The stores this node holds.
    Stores,
}

/// An answer of `/tau/database/1`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DatabaseResponse {
    /// The values asked for, in order.
    Values(Vec<Option<serde_bytes::ByteBuf>>),
    /// Done; each write's result in order (an increment's new value).
    Written(Vec<Option<u64>>),
    /// A page of keys, and the cursor of the next (none at the end).
    Keys {
        /// The keys.
        keys: Vec<String>,
        /// Where the next page starts.
        cursor: Option<u64>,
    },
    /// Merged.
    Merged,
    /// The store's [`BUCKETS`] digests.
    Digest(Vec<[u8; 32]>),
    /// A bucket's states, and whether more follow.
    Entries {
        /// Keys and states, in key order.
        entries: Vec<(String, KeyState)>,
        /// Whether the bucket holds more past the last.
        more: bool,
    },
    /// The stores this node holds.
    Stores(Vec<StoreInfo>),
    /// Refused: why (the store does not exist, is full, a key is too long).
    Refused(String),
}

/// A store as one of its holders sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreInfo {
    /// The store.
    pub store: StoreId,
    /// Keys held (deleted ones included until they are forgotten).
    pub keys: u64,
    /// Bytes counted against its limit.
    pub bytes: u64,
}

/// The bucket of a key in anti-entropy.
pub fn bucket_of(key: &str) -> u8 {
    blake3::hash(key.as_bytes()).as_bytes()[0]
}

/// The `count` nodes (of `members`, by their peer ids' bytes) that hold `store`, best first:
/// rendezvous hashing, so every node computes the same holders from the same members, and a
/// member joining or leaving moves only the stores it wins or held.
pub fn holders<P: Clone>(
    store: &StoreId,
    members: &[P],
    id: impl Fn(&P) -> Vec<u8>,
    count: usize,
) -> Vec<P> {
    let name = blake3::hash(format!("{}\0{}", store.project, store.name).as_bytes());
    let mut scored: Vec<([u8; 32], &P)> = members
        .iter()
        .map(|member| {
            let mut hasher = blake3::Hasher::new();
            hasher.update(name.as_bytes());
            hasher.update(&id(member));
            (*hasher.finalize().as_bytes(), member)
        })
        .collect();
    scored.sort_by_key(|(score, _)| std::cmp::Reverse(*score));
    scored.into_iter().take(count).map(|(_, member)| member.clone()).collect()
}

/// A node's number in counters and clocks: the first 8 bytes of BLAKE3 of its peer id.
pub fn node_number(peer_id_bytes: &[u8]) -> u64 {
    let hash = blake3::hash(peer_id_bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_writes_are_bounded() {
        assert!(check_key("counter").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key(&"k".repeat(MAX_KEY + 1)).unwrap_err().contains("1025"));
        assert!(check_key("a\0b").is_err());
        let big = Op::Set { key: "k".into(), value: vec![0; MAX_VALUE + 1] };
        assert!(check_ops(&[big]).unwrap_err().contains("at most"));
        assert!(check_ops(&[]).is_err());
        let many: Vec<Op> = (0..=MAX_KEYS).map(|i| Op::Delete { key: format!("k{i}") }).collect();
        assert!(check_ops(&many).is_err());
    }

    #[test]
    fn every_node_picks_the_same_holders() {
        let members: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i; 38]).collect();
        let mut reversed = members.clone();
        reversed.reverse();
        let store = StoreId { project: "p".into(), name: "counts".into() };
        let a = holders(&store, &members, Vec::clone, 3);
        assert_eq!(a, holders(&store, &reversed, Vec::clone, 3));
        assert_eq!(a.len(), 3);
        let spread: std::collections::HashSet<Vec<Vec<u8>>> = (0..20)
            .map(|i| {
                let store = StoreId { project: format!("p{i}"), name: "s".into() };
                holders(&store, &members, Vec::clone, 3)
            })
            .collect();
        assert!(spread.len() > 5, "stores spread over the members");
    }
}
