//! A database node's stores on disk: one redb file (`<data>/database.redb`), every key of every
//! store it holds with its [`KeyState`], and in memory each store's size and [`BUCKETS`] digests
//! (XOR of BLAKE3 of each key with its state), which anti-entropy compares.
//!
//! A key is stored under `project NUL name NUL bucket key`, so one bucket of one store is one
//! range. Writes come in batches ([`Store::apply`]): each change in a batch is all or nothing
//! (a write that would pass its store's limit changes none of its keys), the batch is one redb
//! transaction, and the sizes and digests change only after it committed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use redb::{ReadableTable, TableDefinition};
use tau_proto::cbor;
use tau_proto::database::{BUCKETS, MAX_BATCH_BYTES, Op, StoreId, StoreInfo, bucket_of};
use tau_proto::kv::{Clock, KeyState};
use tau_proto::storage::Entry;

use crate::db::{Db, DbError, Failure};

const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");

/// A change to apply.
#[derive(Debug)]
pub enum Change {
    /// A function's writes, refused whole if they would take the store past `max_bytes`.
    Write {
        /// The store.
        store: StoreId,
        /// The writes, in order.
        ops: Vec<Op>,
        /// The store's limit.
        max_bytes: u64,
    },
    /// States another holder sent: merged, whatever the size.
    Merge {
        /// The store.
        store: StoreId,
        /// Keys and states.
        entries: Vec<(String, KeyState)>,
    },
}

/// What one change of a batch came to: each write's result (an increment's new value), or why
/// it was refused.
pub type Outcome = Result<Vec<Option<u64>>, String>;

/// A batch applied: each change's outcome in order, and the new states of what the writes
/// changed (what the node sends to the store's other holders).
#[derive(Debug, Default)]
pub struct Applied {
    /// Per change.
    pub outcomes: Vec<Outcome>,
    /// Per store, the keys the writes changed and their new states.
    pub written: Vec<(StoreId, Vec<(String, KeyState)>)>,
}

#[derive(Clone)]
struct Summary {
    digests: Box<[[u8; 32]; BUCKETS]>,
    keys: u64,
    bytes: u64,
}

impl Default for Summary {
    fn default() -> Self {
        Self { digests: Box::new([[0; 32]; BUCKETS]), keys: 0, bytes: 0 }
    }
}

impl Summary {
    /// Takes `old` out and puts `new` in, for `store`'s `key`.
    fn replace(&mut self, store: &StoreId, key: &str, old: Option<&KeyState>, new: &KeyState) {
        let digest = &mut self.digests[bucket_of(key) as usize];
        if let Some(old) = old {
            xor(digest, &entry_hash(key, old));
            self.bytes = self.bytes.saturating_sub(weight(store, key, old));
        } else {
            self.keys += 1;
        }
        xor(digest, &entry_hash(key, new));
        self.bytes += weight(store, key, new);
    }
}

/// What a key counts against its store's limit: its state's size; in a storage's index, its
/// blob's size too ([`tau_proto::storage`]).
fn weight(store: &StoreId, key: &str, state: &KeyState) -> u64 {
    let blob = match tau_proto::storage::storage_of(store) {
        Some(_) => state.entry.value.as_deref().and_then(Entry::decode).map_or(0, |e| e.size),
        None => 0,
    };
    state.size(key).saturating_add(blob)
}

fn xor(into: &mut [u8; 32], hash: &[u8; 32]) {
    into.iter_mut().zip(hash).for_each(|(a, b)| *a ^= b);
}

fn entry_hash(key: &str, state: &KeyState) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(key.as_bytes());
    hasher.update(&[0]);
    // A state always encodes; the same state always to the same bytes.
    hasher.update(&cbor::to_vec(state).unwrap_or_default());
    *hasher.finalize().as_bytes()
}

fn store_prefix(store: &StoreId) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(store.project.len() + store.name.len() + 2);
    prefix.extend_from_slice(store.project.as_bytes());
    prefix.push(0);
    prefix.extend_from_slice(store.name.as_bytes());
    prefix.push(0);
    prefix
}

fn row_key(store: &StoreId, key: &str) -> Vec<u8> {
    let mut row = store_prefix(store);
    row.push(bucket_of(key));
    row.extend_from_slice(key.as_bytes());
    row
}

/// The store and key of a row key.
fn parse_row(row: &[u8]) -> Option<(StoreId, String)> {
    let mut parts = row.splitn(3, |b| *b == 0);
    let project = std::str::from_utf8(parts.next()?).ok()?;
    let name = std::str::from_utf8(parts.next()?).ok()?;
    let rest = parts.next()?;
    let key = std::str::from_utf8(rest.get(1..)?).ok()?;
    Some((StoreId { project: project.into(), name: name.into() }, key.into()))
}

/// The end of a prefix's range (the prefix with its last byte raised).
fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    // Prefixes here end with NUL or a bucket byte below 255, or the last bucket's: raise the
    // last byte that can be, as a range bound.
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

/// The stores of one database node.
pub struct Store {
    db: Db,
    node: u64,
    clock: Mutex<Clock>,
    summaries: Mutex<HashMap<StoreId, Summary>>,
}

impl Store {
    /// Opens (or creates) the file at `path`; `node` is this node's number in clocks and
    /// counters.
    pub fn open(path: &Path, node: u64) -> Result<Self, DbError> {
        let db = Db::open("database store", path, |txn| {
            txn.open_table(ENTRIES)?;
            Ok(())
        })?;
        let mut summaries: HashMap<StoreId, Summary> = HashMap::new();
        let mut latest = tau_proto::kv::Hlc::ZERO;
        db.read(|txn| {
            let table = txn.open_table(ENTRIES)?;
            for row in table.iter()? {
                let (row, value) = row?;
                let Some((store, key)) = parse_row(row.value()) else {
                    return Err(Failure::data("a row key that is not project/name/key"));
                };
                let state: KeyState = cbor::from_slice(value.value())
                    .map_err(|e| Failure::data(format!("{store} key {key}: {e}")))?;
                latest = latest.max(state.entry.at);
                summaries.entry(store.clone()).or_default().replace(&store, &key, None, &state);
            }
            Ok(())
        })?;
        let mut clock = Clock::new(node);
        clock.observe(latest, now_ms());
        Ok(Self { db, node, clock: Mutex::new(clock), summaries: Mutex::new(summaries) })
    }

    fn summaries(&self) -> MutexGuard<'_, HashMap<StoreId, Summary>> {
        self.summaries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stores held, with their sizes.
    pub fn stores(&self) -> Vec<StoreInfo> {
        let mut stores: Vec<StoreInfo> = self
            .summaries()
            .iter()
            .map(|(store, s)| StoreInfo { store: store.clone(), keys: s.keys, bytes: s.bytes })
            .collect();
        stores.sort_by(|a, b| a.store.cmp(&b.store));
        stores
    }

    /// A store's bucket digests (all zero for a store not held).
    pub fn digests(&self, store: &StoreId) -> Vec<[u8; 32]> {
        match self.summaries().get(store) {
            Some(summary) => summary.digests.to_vec(),
            None => vec![[0; 32]; BUCKETS],
        }
    }

    /// The state of each of `keys`.
    pub fn states(
        &self,
        store: &StoreId,
        keys: &[String],
    ) -> Result<Vec<Option<KeyState>>, DbError> {
        self.db.read(|txn| {
            let table = txn.open_table(ENTRIES)?;
            keys.iter()
                .map(|key| match table.get(row_key(store, key).as_slice())? {
                    None => Ok(None),
                    Some(bytes) => cbor::from_slice(bytes.value()).map(Some).map_err(Failure::data),
                })
                .collect()
        })
    }

    /// A page of at most `limit` keys that have a value, from position `cursor` among the
    /// store's rows, and the cursor of the next page.
    pub fn list(
        &self,
        store: &StoreId,
        cursor: u64,
        limit: usize,
    ) -> Result<(Vec<String>, Option<u64>), DbError> {
        let prefix = store_prefix(store);
        let end = range_end(&prefix);
        self.db.read(|txn| {
            let table = txn.open_table(ENTRIES)?;
            let mut keys = Vec::new();
            let mut position = cursor;
            for row in table.range(prefix.as_slice()..end.as_slice())?.skip(cursor as usize) {
                let (row, value) = row?;
                position += 1;
                let state: KeyState = cbor::from_slice(value.value()).map_err(Failure::data)?;
                if state.value().is_some()
                    && let Some((_, key)) = parse_row(row.value())
                {
                    keys.push(key);
                    if keys.len() == limit {
                        return Ok((keys, Some(position)));
                    }
                }
            }
            Ok((keys, None))
        })
    }

    /// The entries the live keys of a storage's index name, by CID with their sizes: what
    /// its sweep keeps pinned.
    pub fn named_blobs(
        &self,
        store: &StoreId,
    ) -> Result<std::collections::BTreeMap<tau_proto::hoarder::BlobId, u64>, DbError> {
        let prefix = store_prefix(store);
        let end = range_end(&prefix);
        self.db.read(|txn| {
            let table = txn.open_table(ENTRIES)?;
            let mut named = std::collections::BTreeMap::new();
            for row in table.range(prefix.as_slice()..end.as_slice())? {
                let (_, value) = row?;
                let state: KeyState = cbor::from_slice(value.value()).map_err(Failure::data)?;
                if let Some(entry) = state.entry.value.as_deref().and_then(Entry::decode) {
                    named.insert(entry.cid, entry.size);
                }
            }
            Ok(named)
        })
    }

    /// One bucket's keys and states past `after`, up to [`MAX_BATCH_BYTES`] (at least one),
    /// and whether more follow.
    pub fn bucket(
        &self,
        store: &StoreId,
        bucket: u8,
        after: Option<&str>,
    ) -> Result<(Vec<(String, KeyState)>, bool), DbError> {
        let mut start = store_prefix(store);
        start.push(bucket);
        let end = range_end(&start);
        if let Some(after) = after {
            start.extend_from_slice(after.as_bytes());
        }
        self.db.read(|txn| {
            let table = txn.open_table(ENTRIES)?;
            let mut entries = Vec::new();
            let mut size = 0;
            for row in table.range(start.as_slice()..end.as_slice())? {
                let (row, value) = row?;
                let Some((_, key)) = parse_row(row.value()) else { continue };
                if Some(key.as_str()) == after {
                    continue;
                }
                size += key.len() + value.value().len();
                if size > MAX_BATCH_BYTES && !entries.is_empty() {
                    return Ok((entries, true));
                }
                let state: KeyState = cbor::from_slice(value.value()).map_err(Failure::data)?;
                entries.push((key, state));
            }
            Ok((entries, false))
        })
    }

    /// Applies `changes` in one transaction.
    pub fn apply(&self, changes: Vec<Change>) -> Result<Applied, DbError> {
        let now = now_ms();
        // What this batch has changed so far, with what the key held before it.
        let mut batch: HashMap<(StoreId, String), (Option<KeyState>, KeyState)> = HashMap::new();
        let mut order: Vec<(StoreId, String)> = Vec::new();
        let mut sizes: HashMap<StoreId, i64> = HashMap::new();
        let mut applied = Applied::default();
        let mut clock = self.clock.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let committed = self.db.write(|txn| {
            let mut table = txn.open_table(ENTRIES)?;
            for change in changes {
                let (store, ops, max_bytes, merged) = match change {
                    Change::Write { store, ops, max_bytes } => (store, ops, max_bytes, Vec::new()),
                    Change::Merge { store, entries } => (store, Vec::new(), u64::MAX, entries),
                };
                // This change's new states, kept apart until it is whole.
                let mut scratch: HashMap<String, KeyState> = HashMap::new();
                let mut results = Vec::with_capacity(ops.len());
                let mut refused = None;
                let current = |table: &redb::Table<&[u8], &[u8]>,
                               key: &str,
                               scratch: &HashMap<String, KeyState>|
                 -> Result<Option<KeyState>, Failure> {
                    if let Some(state) = scratch.get(key) {
                        return Ok(Some(state.clone()));
                    }
                    if let Some((_, state)) = batch.get(&(store.clone(), key.to_string())) {
                        return Ok(Some(state.clone()));
                    }
                    read_state(table, &store, key)
                };
                for op in &ops {
                    let mut state = current(&table, op.key(), &scratch)?.unwrap_or_default();
                    let result = match op {
                        Op::Set { value, .. } => {
                            state.write(Some(value.clone()), clock.tick(now));
                            None
                        }
                        Op::Delete { .. } => {
                            state.write(None, clock.tick(now));
                            None
                        }
                        Op::Increment { delta, .. } => match state.increment(self.node, *delta) {
                            Ok(value) => Some(value),
                            Err(e) => {
                                refused = Some(format!("key `{}`: {e}", op.key()));
                                break;
                            }
                        },
                    };
                    results.push(result);
                    scratch.insert(op.key().to_string(), state);
                }
                for (key, theirs) in &merged {
                    clock.observe(theirs.entry.at, now);
                    let mut state = current(&table, key, &scratch)?.unwrap_or_default();
                    let before = state.clone();
                    state.merge(theirs);
                    if state != before {
                        scratch.insert(key.clone(), state);
                    }
                }
                if refused.is_none() && !ops.is_empty() {
                    let mut delta: i64 = 0;
                    for (key, state) in &scratch {
                        let old = current(&table, key, &HashMap::new())?;
                        delta += weight(&store, key, state) as i64
                            - old.map_or(0, |o| weight(&store, key, &o)) as i64;
                    }
                    let held = self.summaries().get(&store).map_or(0, |s| s.bytes) as i64;
                    let pending = sizes.get(&store).copied().unwrap_or(0);
                    let total = held + pending + delta;
                    if delta > 0 && total > max_bytes as i64 {
                        let what = match tau_proto::storage::storage_of(&store) {
                            Some(name) => format!("storage `{name}`"),
                            None => format!("store `{}`", store.name),
                        };
                        refused = Some(format!(
                            "{what} is full: this write needs {delta} more bytes, it holds {} of its {max_bytes}",
                            held + pending,
                        ));
                    }
                }
                if let Some(reason) = refused {
                    applied.outcomes.push(Err(reason));
                    continue;
                }
                let mut written = Vec::new();
                let mut olds = Vec::with_capacity(scratch.len());
                for key in scratch.keys() {
                    olds.push(current(&table, key, &HashMap::new())?);
                }
                for ((key, state), old) in scratch.into_iter().zip(olds) {
                    let delta = weight(&store, &key, &state) as i64
                        - old.as_ref().map_or(0, |o| weight(&store, &key, o)) as i64;
                    *sizes.entry(store.clone()).or_default() += delta;
                    let bytes = cbor::to_vec(&state).map_err(Failure::data)?;
                    table.insert(row_key(&store, &key).as_slice(), bytes.as_slice())?;
                    if !ops.is_empty() {
                        written.push((key.clone(), state.clone()));
                    }
                    let id = (store.clone(), key);
                    match batch.get_mut(&id) {
                        Some((_, now)) => *now = state,
                        None => {
                            // What the key held before this batch, for the digests.
                            let before = old;
                            order.push(id.clone());
                            batch.insert(id, (before, state));
                        }
                    }
                }
                if !written.is_empty() {
                    applied.written.push((store, written));
                }
                applied.outcomes.push(Ok(results));
            }
            Ok(())
        });
        committed?;
        *self.clock.lock().unwrap_or_else(PoisonError::into_inner) = clock;
        let mut summaries = self.summaries();
        for id in order {
            if let Some((before, after)) = batch.get(&id) {
                summaries.entry(id.0.clone()).or_default().replace(
                    &id.0,
                    &id.1,
                    before.as_ref(),
                    after,
                );
            }
        }
        Ok(applied)
    }
}

fn read_state(
    table: &redb::Table<&[u8], &[u8]>,
    store: &StoreId,
    key: &str,
) -> Result<Option<KeyState>, Failure> {
    match table.get(row_key(store, key).as_slice())? {
        None => Ok(None),
        Some(bytes) => cbor::from_slice(bytes.value()).map(Some).map_err(Failure::data),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_id(name: &str) -> StoreId {
        StoreId { project: "p".into(), name: name.into() }
    }

    fn set(key: &str, value: &[u8]) -> Op {
        Op::Set { key: key.into(), value: value.to_vec() }
    }

    fn incr(key: &str, delta: u64) -> Op {
        Op::Increment { key: key.into(), delta }
    }

    fn write(store: &Store, name: &str, ops: Vec<Op>, max_bytes: u64) -> Outcome {
        let change = Change::Write { store: store_id(name), ops, max_bytes };
        store.apply(vec![change]).unwrap().outcomes.remove(0)
    }

    fn value(store: &Store, name: &str, key: &str) -> Option<Vec<u8>> {
        let states = store.states(&store_id(name), &[key.to_string()]).unwrap();
        states[0].as_ref().and_then(KeyState::value)
    }

    #[test]
    fn writes_are_whole_within_the_limit_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("database.redb");
        let store = Store::open(&path, 1).unwrap();
        assert_eq!(
            write(&store, "a", vec![set("k", b"hello"), incr("n", 2)], 100),
            Ok(vec![None, Some(2)])
        );
        // Past the limit: neither key changes.
        let refused = write(&store, "a", vec![set("k", b"bye"), set("big", &[0; 80])], 100);
        assert!(refused.unwrap_err().contains("store `a` is full"));
        assert_eq!(value(&store, "a", "k"), Some(b"hello".to_vec()));
        // Not a number: refused, nothing changed.
        assert!(write(&store, "a", vec![incr("n", 1), incr("k", 1)], 100).is_err());
        assert_eq!(value(&store, "a", "n"), Some(b"2".to_vec()));
        // Shrinking is always allowed; another store has its own limit.
        assert!(write(&store, "a", vec![Op::Delete { key: "k".into() }], 1).is_ok());
        assert!(write(&store, "b", vec![set("k", &[1; 50])], 100).is_ok());
        // One batch of several changes: each change sees the ones before it.
        let applied = store
            .apply(vec![
                Change::Write { store: store_id("a"), ops: vec![incr("n", 5)], max_bytes: 100 },
                Change::Write { store: store_id("a"), ops: vec![incr("n", 1)], max_bytes: 100 },
            ])
            .unwrap();
        assert_eq!(applied.outcomes, vec![Ok(vec![Some(7)]), Ok(vec![Some(8)])]);
        let digests = store.digests(&store_id("a"));
        let stores = store.stores();
        drop(store);
        let store = Store::open(&path, 1).unwrap();
        assert_eq!(value(&store, "a", "n"), Some(b"8".to_vec()));
        assert_eq!(value(&store, "a", "k"), None);
        assert_eq!(store.digests(&store_id("a")), digests, "digests rebuilt the same");
        assert_eq!(store.stores(), stores);
        let (keys, next) = store.list(&store_id("a"), 0, 10).unwrap();
        assert_eq!((keys, next), (vec!["n".to_string()], None));
    }

    #[test]
    fn two_holders_converge_by_merging_buckets() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(&dir.path().join("a.redb"), 1).unwrap();
        let b = Store::open(&dir.path().join("b.redb"), 2).unwrap();
        for i in 0..50 {
            write(&a, "s", vec![incr("count", 1), set(&format!("a{i}"), b"x")], 1 << 20).unwrap();
            write(&b, "s", vec![incr("count", 1)], 1 << 20).unwrap();
        }
        write(&b, "s", vec![set("a7", b"later")], 1 << 20).unwrap();
        let id = store_id("s");
        let (da, db) = (a.digests(&id), b.digests(&id));
        for bucket in 0..BUCKETS {
            if da[bucket] == db[bucket] {
                continue;
            }
            for (from, to) in [(&a, &b), (&b, &a)] {
                let (entries, more) = from.bucket(&id, bucket as u8, None).unwrap();
                assert!(!more);
                to.apply(vec![Change::Merge { store: id.clone(), entries }]).unwrap();
            }
        }
        assert_eq!(a.digests(&id), b.digests(&id));
        assert_eq!(value(&a, "s", "count"), Some(b"100".to_vec()));
        assert_eq!(value(&b, "s", "a7"), Some(b"later".to_vec()));
        assert_eq!(value(&a, "s", "a7"), Some(b"later".to_vec()));
        assert_eq!(a.list(&id, 0, 1000).unwrap().0.len(), 51);
    }
}
