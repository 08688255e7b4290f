//! The pin table: every pin of the cloud as this node knows it, kept on disk
//! (`<data>/hoarder/pins.cbor`) and merged from state deltas and anti-entropy (last change
//! wins per pin).
//!
//! A pin belongs to its owner, the client whose request set it: a blob pinned by several
//! clients has one pin each, and its factor is the highest of them. A client changes only its
//! own pin; the operator changes them all. A stamp further than [`MAX_AHEAD_MS`] beyond this
//! node's clock is refused, so no pin can be made that a later change could not replace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use libp2p::PeerId;
use tau_proto::cbor;
use tau_proto::hoarder::{BlobId, PinRecord};

/// How far beyond this node's clock a pin's stamp may be: clocks of a cloud's hosts differ by
/// seconds, not by ten minutes.
pub const MAX_AHEAD_MS: u64 = 10 * 60 * 1000;

/// The most pins (owners, unpinned ones included) one blob may have: every node keeps every
/// pin, so a client making a new key per request must not grow them without end.
pub const MAX_PINS_PER_BLOB: usize = 16;

/// How long an unpinned record is kept (so that an older pin arriving late cannot bring it
/// back) before it is dropped and its place freed.
pub const UNPINNED_KEPT_MS: u64 = 60 * 60 * 1000;

/// Every pin this node knows of, merged from gossip (last writer wins per blob and owner).
pub struct PinTable {
    path: PathBuf,
    pins: BTreeMap<(BlobId, Option<PeerId>), PinRecord>,
    /// Records set here and not yet gossiped.
    outbox: Vec<PinRecord>,
    /// Counts up whenever a pin changes.
    generation: u64,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What [`PinTable::merge`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// Whether any pin changed.
    pub changed: bool,
    /// Records refused for a stamp too far beyond this node's clock.
    pub ahead: u64,
}

impl PinTable {
    /// Loads the table (an unreadable file is logged and starts empty: heartbeats refill it).
    pub fn load(path: &Path) -> Self {
        let pins = match std::fs::read(path) {
            Ok(bytes) => match cbor::from_slice::<Vec<PinRecord>>(&bytes) {
                Ok(list) => list.into_iter().map(|p| ((p.cid, p.owner), p)).collect(),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "pin table unreadable: starting empty");
                    BTreeMap::new()
                }
            },
            Err(_) => BTreeMap::new(),
        };
        Self { path: path.to_path_buf(), pins, outbox: Vec::new(), generation: 0 }
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

    /// Sets `owner`'s pin of `cid` (factor 0 unpins); returns the new record.
    pub fn set(&mut self, cid: BlobId, owner: Option<PeerId>, size: u64, factor: u8) -> PinRecord {
        let updated_ms = self
            .pins
            .get(&(cid, owner))
            .map_or(0, |p| p.updated_ms.saturating_add(1))
            .max(now_ms());
        let record = PinRecord { cid, size, factor, updated_ms, owner };
        self.pins.insert((cid, owner), record.clone());
        self.outbox.push(record.clone());
        self.generation += 1;
        self.save();
        record
    }

    /// Sets every pin of `cid` to `factor`, and `owner`'s too: what the operator does.
    pub fn set_all(&mut self, cid: BlobId, owner: Option<PeerId>, size: u64, factor: u8) {
        let mut owners = self.owners(&cid);
        owners.push(owner);
        for owner in owners {
            self.set(cid, owner, size, factor);
        }
    }

    /// Whether `owner` may set a pin of `cid`: it has one already, or the blob has room for
    /// another ([`MAX_PINS_PER_BLOB`]).
    pub fn has_room(&self, cid: &BlobId, owner: Option<PeerId>) -> bool {
        self.pins.contains_key(&(*cid, owner))
            || self.pins.range((*cid, None)..).take_while(|((c, _), _)| c == cid).count()
                < MAX_PINS_PER_BLOB
    }

    /// Drops unpinned records older than [`UNPINNED_KEPT_MS`]; returns how many.
    pub fn prune(&mut self) -> usize {
        let horizon = now_ms().saturating_sub(UNPINNED_KEPT_MS);
        let before = self.pins.len();
        self.pins.retain(|_, pin| pin.factor > 0 || pin.updated_ms >= horizon);
        let pruned = before - self.pins.len();
        if pruned > 0 {
            self.generation += 1;
        }
        if pruned > 0 {
            self.save();
        }
        pruned
    }

    /// The owners of `cid`'s live pins.
    pub fn owners(&self, cid: &BlobId) -> Vec<Option<PeerId>> {
        self.pins
            .range((*cid, None)..)
            .take_while(|((c, _), _)| c == cid)
            .filter(|(_, p)| p.factor > 0)
            .map(|((_, o), _)| *o)
            .collect()
    }

    /// `owner`'s records (unpinned ones included), by CID past `after`, at most `limit`: a
    /// scan of the pins from `after` on, what a storage's sweep asks for now and then.
    pub fn of_owner(
        &self,
        owner: Option<PeerId>,
        after: Option<&BlobId>,
        limit: usize,
    ) -> Vec<PinRecord> {
        let records: Box<dyn Iterator<Item = _>> = match after.copied() {
            None => Box::new(self.pins.iter()),
            Some(after) => Box::new(
                self.pins.range((after, None)..).skip_while(move |((c, _), _)| *c == after),
            ),
        };
        records.filter(|((_, o), _)| *o == owner).take(limit).map(|(_, p)| p.clone()).collect()
    }

    /// Merges records from a peer.
    pub fn merge(&mut self, records: Vec<PinRecord>) -> Merged {
        let mut merged = Merged::default();
        let horizon = now_ms().saturating_add(MAX_AHEAD_MS);
        let forgotten = now_ms().saturating_sub(UNPINNED_KEPT_MS);
        for record in records {
            if record.updated_ms > horizon {
                merged.ahead += 1;
                continue;
            }
            // An unpin old enough to be pruned here is not taken back from a peer that has
            // not pruned it yet.
            if record.factor == 0 && record.updated_ms < forgotten {
                continue;
            }
            let key = (record.cid, record.owner);
            if self.pins.get(&key).is_none_or(|old| record.newer_than(old)) {
                self.pins.insert(key, record);
                merged.changed = true;
            }
        }
        if merged.changed {
            self.generation += 1;
            self.save();
        }
        merged
    }

    /// The pin in force for `cid`: the highest factor of its pins (0 once all are unpinned),
    /// the latest stamp, no owner.
    pub fn get(&self, cid: &BlobId) -> Option<PinRecord> {
        let mut pins = self.pins.range((*cid, None)..).take_while(|((c, _), _)| c == cid);
        let (_, first) = pins.next()?;
        Some(pins.fold(PinRecord { owner: None, ..first.clone() }, |sum, (_, pin)| PinRecord {
            factor: sum.factor.max(pin.factor),
            updated_ms: sum.updated_ms.max(pin.updated_ms),
            ..sum
        }))
    }

    /// The pin in force for every blob ([`PinTable::get`]), unpinned ones included.
    pub fn effective(&self) -> Vec<PinRecord> {
        let mut cids: Vec<BlobId> = self.pins.keys().map(|(cid, _)| *cid).collect();
        cids.dedup();
        cids.iter().filter_map(|cid| self.get(cid)).collect()
    }

    /// How many pins it holds (blob and owner), unpinned ones included.
    pub fn len(&self) -> usize {
        self.pins.len()
    }

    /// Whether it holds no pin.
    pub fn is_empty(&self) -> bool {
        self.pins.is_empty()
    }

    /// Every owner's pin, unpinned ones included: what anti-entropy exchanges.
    pub fn all(&self) -> Vec<PinRecord> {
        self.pins.values().cloned().collect()
    }

    /// The records set here since the last call: what the next state delta carries.
    pub fn take_outbox(&mut self) -> Vec<PinRecord> {
        std::mem::take(&mut self.outbox)
    }

    /// A number that changes whenever a pin does.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// BLAKE3 over every record in order: equal on two nodes that know the same pins.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        for pin in self.pins.values() {
            if let Ok(bytes) = cbor::to_vec(pin) {
                hasher.update(&(bytes.len() as u64).to_le_bytes());
                hasher.update(&bytes);
            }
        }
        *hasher.finalize().as_bytes()
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
        let owner = Some(PeerId::random());
        let mut table = PinTable::load(&path);
        let first = table.set(cid, owner, 10, 3);
        let second = table.set(cid, owner, 10, 2);
        assert!(second.updated_ms > first.updated_ms, "a later change always has a later stamp");
        assert!(!table.merge(vec![first.clone()]).changed, "an older record changes nothing");
        let newer = PinRecord { updated_ms: second.updated_ms + 5, factor: 0, ..second.clone() };
        assert!(table.merge(vec![newer.clone()]).changed);
        assert_eq!(PinTable::load(&path).get(&cid), Some(PinRecord { owner: None, ..newer }));
    }

    #[test]
    fn a_blob_keeps_the_highest_factor_of_its_owners_pins() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = PinTable::load(&dir.path().join("pins.cbor"));
        let cid = BlobId::of(b"a");
        let (owner, other) = (Some(PeerId::random()), Some(PeerId::random()));
        table.set(cid, owner, 10, 3);
        table.set(cid, other, 10, 1);
        assert_eq!(table.get(&cid).map(|p| p.factor), Some(3));
        table.set(cid, other, 10, 0);
        assert_eq!(table.get(&cid).map(|p| p.factor), Some(3), "another's unpin leaves it");
        assert_eq!(table.owners(&cid), [owner]);
        table.set_all(cid, None, 10, 0);
        assert_eq!(table.get(&cid).map(|p| p.factor), Some(0), "the operator unpins them all");
        assert_eq!(table.effective().len(), 1);
        assert_eq!(table.all().len(), 3);
    }

    #[test]
    fn a_blob_has_room_for_a_bounded_number_of_pins_and_old_unpins_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = PinTable::load(&dir.path().join("pins.cbor"));
        let cid = BlobId::of(b"a");
        let owners: Vec<_> = (0..MAX_PINS_PER_BLOB).map(|_| Some(PeerId::random())).collect();
        for owner in &owners {
            assert!(table.has_room(&cid, *owner));
            table.set(cid, *owner, 1, 1);
        }
        assert!(!table.has_room(&cid, Some(PeerId::random())), "full");
        assert!(table.has_room(&cid, owners[0]), "an owner changes its own pin");
        assert!(table.has_room(&BlobId::of(b"b"), Some(PeerId::random())), "per blob");
        // An unpin holds its place until it is old.
        table.set(cid, owners[0], 1, 0);
        assert_eq!(table.prune(), 0);
        let old = PinRecord { updated_ms: 1, ..table.pins[&(cid, owners[0])].clone() };
        table.pins.insert((cid, owners[0]), old);
        assert_eq!(table.prune(), 1);
        assert!(table.has_room(&cid, Some(PeerId::random())));
    }

    #[test]
    fn an_owners_records_come_in_pages_by_cid() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = PinTable::load(&dir.path().join("pins.cbor"));
        let (owner, other) = (Some(PeerId::random()), Some(PeerId::random()));
        let mut cids: Vec<BlobId> = (0..5u8).map(|i| BlobId::of(&[i])).collect();
        cids.sort();
        for cid in &cids {
            table.set(*cid, owner, 1, 1);
            table.set(*cid, other, 1, 1);
        }
        let first = table.of_owner(owner, None, 2);
        assert_eq!(first.iter().map(|p| p.cid).collect::<Vec<_>>(), cids[..2]);
        assert!(first.iter().all(|p| p.owner == owner));
        let rest = table.of_owner(owner, Some(&cids[1]), 10);
        assert_eq!(rest.iter().map(|p| p.cid).collect::<Vec<_>>(), cids[2..]);
    }

    #[test]
    fn a_stamp_far_beyond_the_clock_is_refused_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = PinTable::load(&dir.path().join("pins.cbor"));
        let cid = BlobId::of(b"a");
        let owner = Some(PeerId::random());
        let frozen = PinRecord { cid, size: 1, factor: 3, updated_ms: u64::MAX, owner };
        assert_eq!(table.merge(vec![frozen]), Merged { changed: false, ahead: 1 });
        table.set(cid, owner, 1, 2);
        let later = table.set(cid, owner, 1, 1);
        assert_eq!(table.get(&cid).map(|p| p.factor), Some(1));
        // A stamp at the end of the clock, set locally, still saturates instead of wrapping.
        table.pins.insert((cid, owner), PinRecord { updated_ms: u64::MAX, ..later });
        assert_eq!(table.set(cid, owner, 1, 0).updated_ms, u64::MAX);
    }
}
