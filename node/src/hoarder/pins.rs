//! The pin table: every pin of the cloud as this node knows it, kept on disk
//! (`<data>/hoarder/pins.cbor`) and merged from heartbeats (last change wins).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use tau_proto::cbor;
use tau_proto::hoarder::{BlobId, PinRecord};

/// Every pin this node knows of, merged from gossip (last writer wins per blob).
pub struct PinTable {
    path: PathBuf,
    pins: BTreeMap<BlobId, PinRecord>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl PinTable {
    /// Loads the table (an unreadable file is logged and starts empty: heartbeats refill it).
    pub fn load(path: &Path) -> Self {
        let pins = match std::fs::read(path) {
            Ok(bytes) => match cbor::from_slice::<Vec<PinRecord>>(&bytes) {
                Ok(list) => list.into_iter().map(|p| (p.cid, p)).collect(),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "pin table unreadable: starting empty");
                    BTreeMap::new()
                }
            },
            Err(_) => BTreeMap::new(),
        };
        Self { path: path.to_path_buf(), pins }
    }

    fn save(&self) {
        let list: Vec<&PinRecord> = self.pins.values().collect();
        let result = cbor::to_vec(&list).map_err(std::io::Error::other).and_then(|bytes| {
            let tmp = self.path.with_extension("tmp");
            std::fs::write(&tmp, bytes)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        });
        if let Err(e) = result {
            tracing::error!(path = %self.path.display(), error = %e, "cannot save the pin table");
        }
    }

    /// Sets a pin (factor 0 unpins); returns the new record.
    pub fn set(&mut self, cid: BlobId, size: u64, factor: u8) -> PinRecord {
        let updated_ms = self.pins.get(&cid).map_or(0, |p| p.updated_ms + 1).max(now_ms());
        let record = PinRecord { cid, size, factor, updated_ms };
        self.pins.insert(cid, record.clone());
        self.save();
        record
    }

    /// Merges records from a peer; returns whether anything changed.
    pub fn merge(&mut self, records: Vec<PinRecord>) -> bool {
        let mut changed = false;
        for record in records {
            let newer = self.pins.get(&record.cid).is_none_or(|old| record.newer_than(old));
            if newer {
                self.pins.insert(record.cid, record);
                changed = true;
            }
        }
        if changed {
            self.save();
        }
        changed
    }

    /// The pin of `cid`, unpinned ones (factor 0) included.
    pub fn get(&self, cid: &BlobId) -> Option<&PinRecord> {
        self.pins.get(cid)
    }

    /// Every pin, unpinned ones included.
    pub fn all(&self) -> Vec<PinRecord> {
        self.pins.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_persist_and_merge_last_change_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pins.cbor");
        let cid = BlobId::of(b"a");
        let mut table = PinTable::load(&path);
        let first = table.set(cid, 10, 3);
        let second = table.set(cid, 10, 2);
        assert!(second.updated_ms > first.updated_ms, "a later change always has a later stamp");
        assert!(!table.merge(vec![first.clone()]), "an older record changes nothing");
        let newer = PinRecord { updated_ms: second.updated_ms + 5, factor: 0, ..second.clone() };
        assert!(table.merge(vec![newer.clone()]));
        assert_eq!(PinTable::load(&path).get(&cid), Some(&newer));
    }
}
