//! A project's named storages (`storages/<name>.yaml`): keys naming hoarder blobs, which
//! functions put, get, list and delete through `tau:storage/storage`.
//!
//! A storage is two things kept by services that exist already:
//! - its **index**, key to [`Entry`] (the blob's CID and size), a hidden key-value store of
//!   the `database` service named [`index`] (`storage:<name>`, a name no `databases/` file
//!   can take), so it is replicated, merged and checked for size like any store; a key's
//!   weight against the storage's `size` is the key plus its blob's bytes;
//! - its **blobs**, in hoarder, each pinned by the storage itself: a pin whose owner is the
//!   storage's own id ([`owner`]), not a peer's, so that any substrate node may pin for it
//!   and any database node may take the pin away, whichever node wrote the key.
//!
//! A put streams the blob to hoarder, pins it for the storage, then writes the key. A delete
//! (or a put over a key) only writes the key: the storage's first database holder sweeps its
//! pins now and then, pins any blob a key names that has no pin, and unpins a blob no key
//! names once its pin is older than the node's `database.storage_grace`, so that a pin just
//! made for a key not yet replicated is never taken away.

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::database::StoreId;
use crate::hoarder::BlobId;

/// What starts the name of a storage's index store.
pub const INDEX_PREFIX: &str = "storage:";

/// The most bytes a function may put under one key: the largest a storage may hold.
pub const MAX_BLOB: u64 = crate::tns::values::Storage::MAX_BYTES;

/// The index store of storage `name` in `project`.
pub fn index(project: &str, name: &str) -> StoreId {
    StoreId { project: project.into(), name: format!("{INDEX_PREFIX}{name}") }
}

/// The storage whose index `store` is, if it is one.
pub fn storage_of(store: &StoreId) -> Option<&str> {
    store.name.strip_prefix(INDEX_PREFIX)
}

/// What a storage's key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The blob.
    pub cid: BlobId,
    /// Its size, bytes.
    pub size: u64,
}

impl Entry {
    /// The bytes stored as the key's value.
    pub fn encode(&self) -> Vec<u8> {
        // A CID and a number always encode.
        crate::cbor::to_vec(self).unwrap_or_default()
    }

    /// The entry a key's value holds (`None`: not an entry).
    pub fn decode(value: &[u8]) -> Option<Entry> {
        crate::cbor::from_slice(value).ok()
    }
}

/// The owner of the pins a storage holds: a peer id no key stands behind (an identity
/// multihash of BLAKE3 over the storage's project and name), so no client can be it.
pub fn owner(project: &str, name: &str) -> PeerId {
    let name = blake3::hash(format!("tau/storage/1\0{project}\0{name}").as_bytes());
    let multihash = libp2p::multihash::Multihash::<64>::wrap(0x00, name.as_bytes())
        .expect("32 bytes fit a 64-byte multihash");
    PeerId::from_multihash(multihash).expect("an identity multihash of 32 bytes is a peer id")
}

/// The owner of the pins of the storage whose index is `store` (`None`: not an index).
pub fn owner_of(store: &StoreId) -> Option<PeerId> {
    storage_of(store).map(|name| owner(&store.project, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_is_a_store_no_database_file_can_name() {
        let store = index("shop", "files");
        assert_eq!(storage_of(&store), Some("files"));
        assert_eq!(storage_of(&StoreId { project: "shop".into(), name: "files".into() }), None);
        // A database's name is letters, digits and dashes: never the prefix's colon.
        assert!(!crate::tns::keys::is_name("storage:files"));
    }

    #[test]
    fn entries_round_trip_and_owners_differ_per_storage() {
        let entry = Entry { cid: BlobId::of(b"x"), size: 1 };
        assert_eq!(Entry::decode(&entry.encode()), Some(entry));
        assert_eq!(Entry::decode(b"nonsense"), None);
        assert_eq!(owner("a", "files"), owner("a", "files"));
        assert_ne!(owner("a", "files"), owner("b", "files"));
        assert_ne!(owner("a", "files"), owner("a", "file"));
        let id = owner("a", "files");
        assert_eq!(PeerId::from_bytes(&id.to_bytes()).unwrap(), id);
    }
}
