//! Blobs on disk, in chunks, written so that a crash never leaves a bad blob under a valid id.
//!
//! ```text
//! <data>/hoarder/chunks/<2 hex>/<64 hex>   a chunk, named by its BLAKE3 (shared between blobs)
//! <data>/hoarder/manifests/<cid>           a blob's manifest (CBOR): present only when complete
//! <data>/hoarder/tmp/                      files being written
//! ```
//!
//! Every file is written to `tmp/` and renamed into place. A blob's manifest is written last:
//! after every chunk is in place, has been read back, checked, and synced to disk (one `fsync`
//! per chunk at commit, when most of it is already written back, rather than one in the middle
//! of each transfer), and the whole blob has been hashed against its id; the manifest is synced
//! before its rename. So a crash can leave stray chunks, never a manifest whose chunks are not on
//! disk. Every read is checked against the chunk's
//! hash; a corrupt chunk is deleted with the manifests that use it, so the blob counts as missing
//! here and is fetched again from a peer.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tau_proto::cbor;
use tau_proto::hoarder::{BlobId, ChunkHash, Manifest, ManifestError};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum StoreError {
    /// The disk failed.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// Data does not match its hash.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A chunk is missing.
    #[error("chunk {index} of {cid} is missing")]
    MissingChunk { cid: BlobId, index: u32 },
    /// A chunk on disk was corrupt; it and the blobs using it were dropped.
    #[error("chunk {index} of {cid} was corrupt on disk; the blob was dropped here")]
    Corrupt { cid: BlobId, index: u32 },
    /// The chunks do not make up the blob the id names.
    #[error("the chunks of {0} do not hash to it")]
    WrongBlob(BlobId),
}

/// The blob store of one node.
pub struct BlobStore {
    root: PathBuf,
    next_tmp: AtomicU64,
    /// Counts up whenever a blob is added or dropped.
    generation: AtomicU64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.display().to_string(), source }
}

impl BlobStore {
    /// Free bytes on the store's file system, if it can tell.
    pub fn free_bytes(&self) -> Option<u64> {
        crate::resources::free_bytes(&self.root)
    }

    /// Opens (or creates) the store under `root`, dropping unfinished temporary files.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        for dir in ["chunks", "manifests", "tmp"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(io(&path))?;
        }
        let tmp = root.join("tmp");
        for entry in std::fs::read_dir(&tmp).map_err(io(&tmp))?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(Self {
            root: root.to_path_buf(),
            next_tmp: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        })
    }

    /// A number that changes whenever a blob is added or dropped: what the node's state
    /// deltas look at before they read the store.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    fn chunk_path(&self, hash: &ChunkHash) -> PathBuf {
        let hex = hex::encode(hash.0);
        self.root.join("chunks").join(&hex[..2]).join(hex)
    }

    fn manifest_path(&self, cid: &BlobId) -> PathBuf {
        self.root.join("manifests").join(cid.to_string())
    }

    /// Writes `bytes` to `path` atomically: a temporary file, synced if `sync`, then renamed.
    fn write_atomic(&self, path: &Path, bytes: &[u8], sync: bool) -> Result<(), StoreError> {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self.root.join("tmp").join(format!("{}-{n}", std::process::id()));
        let result = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            if sync {
                file.sync_all()?;
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io(path))
    }

    /// Whether the whole blob is here.
    pub fn has(&self, cid: &BlobId) -> bool {
        self.manifest_path(cid).exists()
    }

    /// Whether a chunk is here (it may belong to another blob).
    pub fn has_chunk(&self, hash: &ChunkHash) -> bool {
        self.chunk_path(hash).exists()
    }

    /// The manifest of a blob held here.
    pub fn manifest(&self, cid: &BlobId) -> Result<Option<Manifest>, StoreError> {
        let path = self.manifest_path(cid);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let manifest: Manifest = cbor::from_slice(&bytes).map_err(|e| StoreError::Io {
                    path: path.display().to_string(),
                    source: std::io::Error::other(e),
                })?;
                Ok(Some(manifest))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Every blob held here.
    pub fn held(&self) -> Result<Vec<BlobId>, StoreError> {
        let dir = self.root.join("manifests");
        let mut held: Vec<BlobId> = std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        held.sort();
        Ok(held)
    }

    /// Checks chunk `index` of `manifest` and stores it.
    pub fn write_chunk(
        &self,
        manifest: &Manifest,
        index: u32,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        manifest.verify_chunk(index, bytes)?;
        let path = self.chunk_path(&manifest.chunks[index as usize]);
        self.write_atomic(&path, bytes, false)
    }

    /// Reads chunk `index` of a blob and checks it. A corrupt chunk is deleted, with every
    /// manifest that uses it.
    pub fn read_chunk(&self, manifest: &Manifest, index: u32) -> Result<Vec<u8>, StoreError> {
        let hash = manifest
            .chunks
            .get(index as usize)
            .ok_or(ManifestError::NoChunk { cid: manifest.cid, index })?;
        let path = self.chunk_path(hash);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.drop_manifests_using(hash);
                return Err(StoreError::MissingChunk { cid: manifest.cid, index });
            }
            Err(e) => return Err(io(&path)(e)),
        };
        if manifest.verify_chunk(index, &bytes).is_err() {
            tracing::warn!(cid = %manifest.cid, index, "corrupt chunk on disk: dropped");
            let _ = std::fs::remove_file(&path);
            self.drop_manifests_using(hash);
            return Err(StoreError::Corrupt { cid: manifest.cid, index });
        }
        Ok(bytes)
    }

    fn drop_manifests_using(&self, hash: &ChunkHash) {
        for cid in self.held().unwrap_or_default() {
            if let Ok(Some(manifest)) = self.manifest(&cid)
                && manifest.chunks.contains(hash)
            {
                let _ = std::fs::remove_file(self.manifest_path(&cid));
            }
        }
        self.changed();
    }

    /// Completes a blob whose chunks are all here: checks every chunk and the whole blob against
    /// its id, then writes the manifest. Until then the blob does not
    /// exist here. A chunk that fails its check is deleted (and reported missing), so that it is
    /// fetched again.
    pub fn commit(&self, manifest: &Manifest) -> Result<(), StoreError> {
        manifest.check()?;
        let mut whole = blake3::Hasher::new();
        for index in 0..manifest.chunks.len() as u32 {
            let path = self.chunk_path(&manifest.chunks[index as usize]);
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(StoreError::MissingChunk { cid: manifest.cid, index });
                }
                Err(e) => return Err(io(&path)(e)),
            };
            if manifest.verify_chunk(index, &bytes).is_err() {
                let _ = std::fs::remove_file(&path);
                return Err(StoreError::MissingChunk { cid: manifest.cid, index });
            }
            whole.update(&bytes);
            // The chunk reaches the disk before the manifest that makes it part of a blob.
            std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(io(&path))?;
        }
        if BlobId::from_blake3(whole.finalize().as_bytes()) != manifest.cid {
            return Err(StoreError::WrongBlob(manifest.cid));
        }
        let bytes = cbor::to_vec(manifest).map_err(|e| StoreError::Io {
            path: self.manifest_path(&manifest.cid).display().to_string(),
            source: std::io::Error::other(e),
        })?;
        self.write_atomic(&self.manifest_path(&manifest.cid), &bytes, true)?;
        self.changed();
        Ok(())
    }

    /// Drops a blob, and the chunks no other blob here uses.
    pub fn remove(&self, cid: &BlobId) -> Result<(), StoreError> {
        let Some(manifest) = self.manifest(cid)? else { return Ok(()) };
        let path = self.manifest_path(cid);
        std::fs::remove_file(&path).map_err(io(&path))?;
        self.changed();
        let mut used: HashSet<ChunkHash> = HashSet::new();
        for other in self.held()? {
            if let Some(m) = self.manifest(&other)? {
                used.extend(m.chunks);
            }
        }
        for hash in manifest.chunks.iter().filter(|h| !used.contains(h)) {
            let _ = std::fs::remove_file(self.chunk_path(hash));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tau_proto::hoarder::{CHUNK_SIZE, ManifestBuilder};

    use super::*;

    fn blob(size: usize, seed: u8) -> (Vec<u8>, Manifest) {
        let mut bytes = vec![0u8; size];
        blake3::Hasher::new().update(&[seed]).finalize_xof().fill(&mut bytes);
        let mut builder = ManifestBuilder::default();
        builder.update(&bytes);
        (bytes, builder.finish())
    }

    fn put(store: &BlobStore, bytes: &[u8], manifest: &Manifest) {
        for (i, chunk) in bytes.chunks(CHUNK_SIZE as usize).enumerate() {
            store.write_chunk(manifest, i as u32, chunk).unwrap();
        }
        store.commit(manifest).unwrap();
    }

    #[test]
    fn a_blob_exists_only_once_committed_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (bytes, manifest) = blob(2 * CHUNK_SIZE as usize + 5, 3);
        store.write_chunk(&manifest, 0, &bytes[..CHUNK_SIZE as usize]).unwrap();
        assert!(!store.has(&manifest.cid), "no manifest before commit");
        assert!(matches!(store.commit(&manifest), Err(StoreError::MissingChunk { index: 1, .. })));
        put(&store, &bytes, &manifest);
        assert!(store.has(&manifest.cid));
        assert_eq!(store.held().unwrap(), vec![manifest.cid]);
        let back: Vec<u8> = (0..3).flat_map(|i| store.read_chunk(&manifest, i).unwrap()).collect();
        assert_eq!(back, bytes);
        // Reopening keeps it and clears temporary files.
        std::fs::write(dir.path().join("tmp/leftover"), b"x").unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        assert!(store.has(&manifest.cid));
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_chunk_that_does_not_match_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (bytes, manifest) = blob(100, 5);
        let mut bad = bytes.clone();
        bad[10] ^= 0xff;
        assert!(matches!(
            store.write_chunk(&manifest, 0, &bad),
            Err(StoreError::Manifest(ManifestError::BadChunk { .. }))
        ));
        // A manifest that lies about the blob id never commits.
        let mut lying = manifest.clone();
        lying.cid = BlobId::of(b"something else");
        store.write_chunk(&lying, 0, &bytes).unwrap();
        assert!(matches!(store.commit(&lying), Err(StoreError::WrongBlob(_))));
        assert!(!store.has(&lying.cid));
    }

    #[test]
    fn a_corrupt_chunk_on_disk_is_detected_and_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (bytes, manifest) = blob(CHUNK_SIZE as usize + 10, 7);
        put(&store, &bytes, &manifest);
        let path = store.chunk_path(&manifest.chunks[1]);
        let mut on_disk = std::fs::read(&path).unwrap();
        on_disk[3] ^= 1;
        std::fs::write(&path, on_disk).unwrap();
        assert!(matches!(
            store.read_chunk(&manifest, 1),
            Err(StoreError::Corrupt { index: 1, .. })
        ));
        assert!(!path.exists(), "the corrupt chunk is deleted");
        assert!(!store.has(&manifest.cid), "the blob now counts as missing here");
    }

    #[test]
    fn removing_a_blob_keeps_chunks_another_blob_uses() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (a, ma) = blob(CHUNK_SIZE as usize + 1, 9);
        // b shares a's first chunk.
        let mut b = a[..CHUNK_SIZE as usize].to_vec();
        b.extend_from_slice(b"tail");
        let mut builder = ManifestBuilder::default();
        builder.update(&b);
        let mb = builder.finish();
        put(&store, &a, &ma);
        put(&store, &b, &mb);
        store.remove(&ma.cid).unwrap();
        assert!(!store.has(&ma.cid) && store.has(&mb.cid));
        assert_eq!(store.read_chunk(&mb, 0).unwrap(), a[..CHUNK_SIZE as usize]);
        assert!(!store.has_chunk(&ma.chunks[1]), "a's own chunk is gone");
    }
}
