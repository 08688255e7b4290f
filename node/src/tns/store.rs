//! The registry on disk (redb, `<data>/tns.redb`) and its in-memory index.
//!
//! The index holds a [`Summary`] of every record, by anti-entropy bucket, with each bucket's
//! digest (XOR of its record hashes), the counts, the Lamport clock and the owner of every live
//! project. It is rebuilt from the database at start and changed only after a commit succeeds.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use redb::{ReadableTable, TableDefinition};
use tau_proto::cbor;
use tau_proto::identity::WriterKey;
use tau_proto::tns::keys::{self, Authority};
use tau_proto::tns::values::{ProjectRoot, Registrar};
use tau_proto::tns::{BUCKETS, Digest, MAX_CLOCK_AHEAD, MAX_PAGE, Record, Summary, bucket};

use crate::db::{Db, DbError, Failure};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");

/// The largest value a record may carry.
pub const MAX_VALUE: usize = 256 * 1024;

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The signature does not match the record.
    Forged,
    /// The writer may not write this key, or the key or value is malformed.
    Unauthorized(String),
    /// The version is more than [`MAX_CLOCK_AHEAD`] beyond the node's clock.
    Ahead {
        /// The record's version.
        version: u64,
        /// The node's clock.
        clock: u64,
    },
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Forged => write!(f, "bad signature"),
            Self::Unauthorized(why) => write!(f, "unauthorized: {why}"),
            Self::Ahead { version, clock } => write!(
                f,
                "version {version} is more than {MAX_CLOCK_AHEAD} beyond this node's clock {clock}"
            ),
        }
    }
}

/// What [`Store::apply`] did.
#[derive(Debug, Default)]
pub struct Applied {
    /// The records stored (each newer than what was there).
    pub stored: Vec<Record>,
    /// Records that were not newer.
    pub unchanged: u32,
    /// Records refused.
    pub rejected: Vec<(String, Rejection)>,
}

/// The records on disk and, in memory, their index (digests, counts, clock, owners).
pub struct Store {
    db: Db,
    buckets: Vec<BTreeMap<String, Entry>>,
    digests: Vec<Digest>,
    live: u64,
    tombstones: u64,
    clock: u64,
    owners: HashMap<String, WriterKey>,
    /// `/registrars/<name>` to the key it delegates project creation to.
    registrars: HashMap<String, WriterKey>,
    /// Records dropped since start for a bad signature, and for lack of authority.
    pub forged: u64,
    /// See `forged`.
    pub unauthorized: u64,
    /// Records dropped since start for a version too far beyond the clock.
    pub ahead: u64,
}

/// What the index keeps of a record.
#[derive(Debug, Clone)]
struct Entry {
    summary: Summary,
    tombstone: bool,
}

fn xor(into: &mut Digest, hash: &[u8; 32]) {
    for (a, b) in into.iter_mut().zip(hash) {
        *a ^= b;
    }
}

fn owner_of(record: &Record) -> Option<WriterKey> {
    let value = record.value.as_deref()?;
    cbor::from_slice::<ProjectRoot>(value).ok().map(|root| root.owner)
}

fn registrar_of(record: &Record) -> Option<WriterKey> {
    let value = record.value.as_deref()?;
    cbor::from_slice::<Registrar>(value).ok().map(|r| r.key)
}

/// Registrar records first, then project roots, then the rest: one batch can delegate, create a
/// project and fill it.
fn apply_order(record: &Record) -> u8 {
    if record.key.starts_with(keys::REGISTRARS) {
        0
    } else if root_id(&record.key).is_some() {
        1
    } else {
        2
    }
}

/// What a batch being applied changes of the index, before it is stored.
#[derive(Default)]
struct PendingIndex {
    owners: HashMap<String, Option<WriterKey>>,
    registrars: HashMap<String, Option<WriterKey>>,
}

/// The project id of a `/projects/<id>` key.
fn root_id(key: &str) -> Option<&str> {
    let id = key.strip_prefix("/projects/")?;
    (!id.contains('/')).then_some(id)
}

impl Store {
    /// Opens (or creates) the registry at `path` and builds the index.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let db = Db::open("tns store", path, |txn| {
            txn.open_table(RECORDS)?;
            Ok(())
        })?;
        let mut store = Self {
            db,
            buckets: vec![BTreeMap::new(); BUCKETS],
            digests: vec![[0; 32]; BUCKETS],
            live: 0,
            tombstones: 0,
            clock: 0,
            owners: HashMap::new(),
            registrars: HashMap::new(),
            forged: 0,
            unauthorized: 0,
            ahead: 0,
        };
        let records = store.db.read(|txn| {
            let table = txn.open_table(RECORDS)?;
            let mut records = Vec::new();
            for entry in table.iter()? {
                let (key, value) = entry?;
                let record: Record = cbor::from_slice(value.value())
                    .map_err(|e| Failure::data(format!("record {}: {e}", key.value())))?;
                records.push(record);
            }
            Ok(records)
        })?;
        for record in &records {
            store.index(record);
        }
        Ok(store)
    }

    /// Adds a just-stored record to the index, replacing what it supersedes.
    fn index(&mut self, record: &Record) {
        let entry = Entry { summary: record.summary(), tombstone: record.is_tombstone() };
        let b = bucket(&record.key);
        xor(&mut self.digests[b], &entry.summary.hash);
        if entry.tombstone {
            self.tombstones += 1;
        } else {
            self.live += 1;
        }
        if let Some(old) = self.buckets[b].insert(record.key.clone(), entry) {
            xor(&mut self.digests[b], &old.summary.hash);
            if old.tombstone {
                self.tombstones -= 1;
            } else {
                self.live -= 1;
            }
        }
        self.clock = self.clock.max(record.version);
        if let Some(id) = root_id(&record.key) {
            match owner_of(record) {
                Some(owner) => self.owners.insert(id.to_string(), owner),
                None => self.owners.remove(id),
            };
        }
        if record.key.starts_with(keys::REGISTRARS) {
            match registrar_of(record) {
                Some(key) => self.registrars.insert(record.key.clone(), key),
                None => self.registrars.remove(&record.key),
            };
        }
    }

    /// Whether `key` may create projects: the operator's, or one it named as a registrar.
    fn may_register(
        &self,
        key: &WriterKey,
        operator: Option<&WriterKey>,
        pending: &PendingIndex,
    ) -> bool {
        if operator == Some(key) {
            return true;
        }
        // A delegation in this batch replaces the stored one of the same name.
        let stored = self
            .registrars
            .iter()
            .any(|(name, delegate)| delegate == key && !pending.registrars.contains_key(name));
        stored || pending.registrars.values().any(|delegate| delegate.as_ref() == Some(key))
    }

    /// The record under `key`, tombstones included.
    pub fn get(&self, key: &str) -> Result<Option<Record>, DbError> {
        self.db.read(|txn| match txn.open_table(RECORDS)?.get(key)? {
            None => Ok(None),
            Some(bytes) => cbor::from_slice(bytes.value()).map(Some).map_err(Failure::data),
        })
    }

    /// Up to `limit` records whose keys start with `prefix` and come after `after`, in key
    /// order, and the key to continue after if there are more.
    pub fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
        tombstones: bool,
    ) -> Result<(Vec<Record>, Option<String>), DbError> {
        let limit = limit.clamp(1, MAX_PAGE) as usize;
        let start = after.unwrap_or(prefix);
        self.db.read(|txn| {
            let table = txn.open_table(RECORDS)?;
            let mut records = Vec::new();
            for entry in table.range(start..)? {
                let (key, value) = entry?;
                let key = key.value();
                if Some(key) == after {
                    continue;
                }
                if !key.starts_with(prefix) {
                    break;
                }
                let record: Record = cbor::from_slice(value.value()).map_err(Failure::data)?;
                if !tombstones && record.is_tombstone() {
                    continue;
                }
                if records.len() == limit {
                    let next = records.last().map(|r: &Record| r.key.clone());
                    return Ok((records, next));
                }
                records.push(record);
            }
            Ok((records, None))
        })
    }

    /// Checks and stores `records` in one transaction: each must be well-formed, correctly
    /// signed, written by the key allowed to write it (`operator` for operator keys, the
    /// project's owner for the rest) and newer than what is stored. Project roots are applied
    /// first, so one batch can create a project and fill it.
    pub fn apply(
        &mut self,
        mut records: Vec<Record>,
        operator: Option<&WriterKey>,
    ) -> Result<Applied, DbError> {
        records.sort_by_key(apply_order);
        let mut applied = Applied::default();
        let mut pending: HashMap<String, Summary> = HashMap::new();
        let mut pending_index = PendingIndex::default();
        let mut to_store: Vec<Record> = Vec::new();
        for record in records {
            if let Err(rejection) = self.check(&record, operator, &pending_index) {
                match rejection {
                    Rejection::Forged => self.forged += 1,
                    Rejection::Unauthorized(_) => self.unauthorized += 1,
                    Rejection::Ahead { .. } => self.ahead += 1,
                }
                applied.rejected.push((record.key.clone(), rejection));
                continue;
            }
            let summary = record.summary();
            let current = pending.get(&record.key).or_else(|| self.summary(&record.key));
            if current.is_some_and(|c| c.order(&summary).is_ge()) {
                applied.unchanged += 1;
                continue;
            }
            if let Some(id) = root_id(&record.key) {
                pending_index.owners.insert(id.to_string(), owner_of(&record));
            }
            if record.key.starts_with(keys::REGISTRARS) {
                pending_index.registrars.insert(record.key.clone(), registrar_of(&record));
            }
            pending.insert(record.key.clone(), summary);
            to_store.retain(|r| r.key != record.key);
            to_store.push(record);
        }
        if to_store.is_empty() {
            return Ok(applied);
        }
        self.db.write(|txn| {
            let mut table = txn.open_table(RECORDS)?;
            for record in &to_store {
                let bytes = cbor::to_vec(record).map_err(Failure::data)?;
                table.insert(record.key.as_str(), bytes.as_slice())?;
            }
            Ok(())
        })?;
        for record in &to_store {
            self.index(record);
        }
        applied.stored = to_store;
        Ok(applied)
    }

    fn check(
        &self,
        record: &Record,
        operator: Option<&WriterKey>,
        pending: &PendingIndex,
    ) -> Result<(), Rejection> {
        let authority = keys::authority(&record.key, &record.scope)
            .map_err(|e| Rejection::Unauthorized(e.to_string()))?;
        if record.value.as_ref().is_some_and(|v| v.len() > MAX_VALUE) {
            return Err(Rejection::Unauthorized(format!("value larger than {MAX_VALUE} bytes")));
        }
        if !record.verify() {
            return Err(Rejection::Forged);
        }
        if record.version > self.clock.saturating_add(MAX_CLOCK_AHEAD) {
            return Err(Rejection::Ahead { version: record.version, clock: self.clock });
        }
        match authority {
            Authority::Operator => {
                let Some(operator) = operator else {
                    return Err(Rejection::Unauthorized(
                        "this node has no operator key configured".into(),
                    ));
                };
                if record.writer != *operator {
                    return Err(Rejection::Unauthorized(format!(
                        "only the operator key may write {}",
                        record.key
                    )));
                }
                if record.key.starts_with(keys::REGISTRARS)
                    && !record.is_tombstone()
                    && registrar_of(record).is_none()
                {
                    return Err(Rejection::Unauthorized(
                        "a registrar record must name its key".into(),
                    ));
                }
            }
            Authority::Registrar => {
                if operator.is_none() {
                    return Err(Rejection::Unauthorized(
                        "this node has no operator key configured".into(),
                    ));
                }
                if !self.may_register(&record.writer, operator, pending) {
                    return Err(Rejection::Unauthorized(format!(
                        "only the operator key or a registrar may write {}",
                        record.key
                    )));
                }
                if !record.is_tombstone() && owner_of(record).is_none() {
                    return Err(Rejection::Unauthorized(
                        "a project record must name its owner".into(),
                    ));
                }
                // A registrar creates projects; it never deletes one or changes its owner
                // (only the operator does), so a registrar's key cannot take a project over.
                if operator != Some(&record.writer) {
                    if record.is_tombstone() {
                        return Err(Rejection::Unauthorized(
                            "a registrar may create a project, not delete one".into(),
                        ));
                    }
                    let id = root_id(&record.key).unwrap_or_default();
                    let current = match pending.owners.get(id) {
                        Some(owner) => *owner,
                        None => self.owners.get(id).copied(),
                    };
                    if current.is_some_and(|owner| Some(owner) != owner_of(record)) {
                        return Err(Rejection::Unauthorized(format!(
                            "project `{id}` exists: a registrar may not change its owner"
                        )));
                    }
                }
            }
            Authority::Owner(project) => {
                let owner = match pending.owners.get(&project) {
                    Some(owner) => *owner,
                    None => self.owners.get(&project).copied(),
                };
                match owner {
                    None => {
                        return Err(Rejection::Unauthorized(format!(
                            "project `{project}` does not exist"
                        )));
                    }
                    Some(owner) if owner != record.writer => {
                        return Err(Rejection::Unauthorized(format!(
                            "only the owner of project `{project}` may write {}",
                            record.key
                        )));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Each anti-entropy bucket's digest, in bucket order: what peers compare.
    pub fn digests(&self) -> &[Digest] {
        &self.digests
    }

    /// The summaries of every record in `buckets`.
    pub fn summaries(&self, buckets: &[u16]) -> Vec<Summary> {
        buckets
            .iter()
            .filter_map(|b| self.buckets.get(usize::from(*b)))
            .flat_map(|bucket| bucket.values().map(|e| e.summary.clone()))
            .collect()
    }

    /// The summary of the record under `key`.
    pub fn summary(&self, key: &str) -> Option<&Summary> {
        self.buckets[bucket(key)].get(key).map(|e| &e.summary)
    }

    /// Live records, tombstones, the XOR of all hashes, and the clock.
    pub fn counts(&self) -> (u64, u64, Digest, u64) {
        let mut digest = [0; 32];
        for d in &self.digests {
            xor(&mut digest, d);
        }
        (self.live, self.tombstones, digest, self.clock)
    }
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;
    use tau_proto::tns::Draft;

    use super::*;

    struct Keys {
        operator: Keypair,
        owner: Keypair,
        stranger: Keypair,
    }

    fn keys() -> Keys {
        Keys {
            operator: Keypair::generate_ed25519(),
            owner: Keypair::generate_ed25519(),
            stranger: Keypair::generate_ed25519(),
        }
    }

    fn op(k: &Keys) -> WriterKey {
        WriterKey::of(&k.operator).unwrap()
    }

    fn root(id: &str, owner: &Keypair, version: u64, signer: &Keypair) -> Record {
        let value = cbor::to_vec(&ProjectRoot { owner: WriterKey::of(owner).unwrap() }).unwrap();
        Draft { key: keys::project(id), scope: id.into(), value: Some(value) }
            .sign(version, signer)
            .unwrap()
    }

    fn child(id: &str, name: &str, value: &[u8], version: u64, signer: &Keypair) -> Record {
        Draft { key: keys::function(id, name), scope: id.into(), value: Some(value.to_vec()) }
            .sign(version, signer)
            .unwrap()
    }

    #[test]
    fn the_operator_creates_projects_and_only_owners_write_in_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("tns.redb")).unwrap();
        let k = keys();
        let operator = op(&k);
        let applied =
            store.apply(vec![root("shop", &k.owner, 1, &k.operator)], Some(&operator)).unwrap();
        assert_eq!(applied.stored.len(), 1);

        // A stranger cannot create a project, nor can the owner.
        for signer in [&k.stranger, &k.owner] {
            let applied =
                store.apply(vec![root("other", signer, 2, signer)], Some(&operator)).unwrap();
            assert!(
                matches!(applied.rejected[0].1, Rejection::Unauthorized(_)),
                "{:?}",
                applied.rejected
            );
        }
        // The owner writes in its project; a stranger and the operator cannot.
        let applied =
            store.apply(vec![child("shop", "ping", b"a", 2, &k.owner)], Some(&operator)).unwrap();
        assert_eq!(applied.stored.len(), 1);
        for signer in [&k.stranger, &k.operator] {
            let applied =
                store.apply(vec![child("shop", "evil", b"x", 9, signer)], Some(&operator)).unwrap();
            assert!(matches!(applied.rejected[0].1, Rejection::Unauthorized(_)));
        }
        // Nobody writes in a project that does not exist.
        let applied =
            store.apply(vec![child("ghost", "f", b"x", 3, &k.owner)], Some(&operator)).unwrap();
        assert!(
            matches!(&applied.rejected[0].1, Rejection::Unauthorized(why) if why.contains("does not exist"))
        );
        // Without an operator key configured, no project can be created.
        let applied = store.apply(vec![root("new", &k.owner, 5, &k.operator)], None).unwrap();
        assert!(matches!(applied.rejected[0].1, Rejection::Unauthorized(_)));

        assert_eq!(store.get(&keys::function("shop", "evil")).unwrap(), None);
        assert_eq!(store.unauthorized, 6);
    }

    fn delegate(name: &str, key: &Keypair, version: u64, signer: &Keypair) -> Record {
        let value = cbor::to_vec(&Registrar { key: WriterKey::of(key).unwrap() }).unwrap();
        Draft { key: keys::registrar(name), scope: String::new(), value: Some(value) }
            .sign(version, signer)
            .unwrap()
    }

    #[test]
    fn a_registrar_the_operator_named_creates_projects_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("tns.redb")).unwrap();
        let k = keys();
        let operator = op(&k);
        let vault = Keypair::generate_ed25519();
        // Not yet delegated.
        let applied = store.apply(vec![root("a", &k.owner, 1, &vault)], Some(&operator)).unwrap();
        assert_eq!(applied.rejected.len(), 1);
        // Only the operator may delegate.
        let applied =
            store.apply(vec![delegate("v", &vault, 2, &k.stranger)], Some(&operator)).unwrap();
        assert_eq!(applied.rejected.len(), 1);
        // Delegation and creation in one batch, in any order.
        let batch = vec![root("a", &k.owner, 3, &vault), delegate("v", &vault, 2, &k.operator)];
        let applied = store.apply(batch, Some(&operator)).unwrap();
        assert_eq!(
            (applied.stored.len(), applied.rejected.len()),
            (2, 0),
            "{:?}",
            applied.rejected
        );
        // The registrar creates projects, not what is inside them.
        let applied = store.apply(vec![child("a", "f", b"x", 4, &vault)], Some(&operator)).unwrap();
        assert_eq!(applied.rejected.len(), 1);
        // Revoked: no more projects; the index survives a reopen.
        let revoke = Draft { key: keys::registrar("v"), scope: String::new(), value: None }
            .sign(5, &k.operator)
            .unwrap();
        store.apply(vec![revoke], Some(&operator)).unwrap();
        drop(store);
        let mut store = Store::open(&dir.path().join("tns.redb")).unwrap();
        let applied = store.apply(vec![root("b", &k.owner, 6, &vault)], Some(&operator)).unwrap();
        assert_eq!(applied.rejected.len(), 1);
        assert!(store.get(&keys::project("a")).unwrap().is_some());
    }

    #[test]
    fn a_tampered_record_is_forged_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("tns.redb")).unwrap();
        let k = keys();
        store.apply(vec![root("shop", &k.owner, 1, &k.operator)], Some(&op(&k))).unwrap();
        let mut tampered = child("shop", "ping", b"good", 2, &k.owner);
        tampered.value = Some(b"evil".to_vec());
        let applied = store.apply(vec![tampered], Some(&op(&k))).unwrap();
        assert_eq!(applied.rejected[0].1, Rejection::Forged);
        assert_eq!(store.forged, 1);
        assert_eq!(store.get(&keys::function("shop", "ping")).unwrap(), None);
    }

    #[test]
    fn last_writer_wins_and_old_versions_replay_to_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("tns.redb")).unwrap();
        let k = keys();
        let operator = op(&k);
        store.apply(vec![root("shop", &k.owner, 1, &k.operator)], Some(&operator)).unwrap();
        let v2 = child("shop", "ping", b"two", 2, &k.owner);
        let v3 = child("shop", "ping", b"three", 3, &k.owner);
        store.apply(vec![v3.clone()], Some(&operator)).unwrap();
        let applied = store.apply(vec![v2.clone()], Some(&operator)).unwrap();
        assert_eq!(
            (applied.stored.len(), applied.unchanged),
            (0, 1),
            "a replayed older version is ignored"
        );
        assert_eq!(store.get(&v3.key).unwrap(), Some(v3.clone()));

        // A delete is a tombstone that wins over what it deletes, and over replays of it.
        let tombstone = Draft { key: v3.key.clone(), scope: "shop".into(), value: None }
            .sign(4, &k.owner)
            .unwrap();
        store.apply(vec![tombstone.clone()], Some(&operator)).unwrap();
        let applied = store.apply(vec![v3, v2], Some(&operator)).unwrap();
        assert_eq!(applied.unchanged, 2);
        assert_eq!(store.get(&tombstone.key).unwrap(), Some(tombstone.clone()));
        let (live, tombstones, _, clock) = store.counts();
        assert_eq!((live, tombstones, clock), (1, 1, 4));
        // Listing skips tombstones unless asked.
        assert_eq!(store.list("/projects/shop/", None, 10, false).unwrap().0.len(), 0);
        assert_eq!(store.list("/projects/shop/", None, 10, true).unwrap().0, vec![tombstone]);

        // Two records at one version: every node keeps the same one.
        let a = child("shop", "tie", b"a", 7, &k.owner);
        let b = child("shop", "tie", b"b", 7, &k.owner);
        let winner = if a.summary().order(&b.summary()).is_gt() { a.clone() } else { b.clone() };
        store.apply(vec![a.clone()], Some(&operator)).unwrap();
        store.apply(vec![b.clone()], Some(&operator)).unwrap();
        let mut other = Store::open(&dir.path().join("other.redb")).unwrap();
        other.apply(vec![root("shop", &k.owner, 1, &k.operator), b, a], Some(&operator)).unwrap();
        assert_eq!(store.get("/projects/shop/functions/tie").unwrap(), Some(winner.clone()));
        assert_eq!(other.get("/projects/shop/functions/tie").unwrap(), Some(winner));
    }

    #[test]
    fn a_version_far_beyond_the_clock_is_refused_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("tns.redb")).unwrap();
        let k = keys();
        let operator = op(&k);
        store.apply(vec![root("shop", &k.owner, 1, &k.operator)], Some(&operator)).unwrap();
        for version in [u64::MAX, 2 + MAX_CLOCK_AHEAD] {
            let applied = store
                .apply(vec![child("shop", "f", b"x", version, &k.owner)], Some(&operator))
                .unwrap();
            assert!(
                matches!(applied.rejected[..], [(_, Rejection::Ahead { clock: 1, .. })]),
                "{version}: {:?}",
                applied.rejected
            );
        }
        assert_eq!((store.counts().3, store.ahead), (1, 2), "the clock did not move");
        // At the bound it is accepted; the next write still has room.
        let at = child("shop", "f", b"y", 1 + MAX_CLOCK_AHEAD, &k.owner);
        assert_eq!(store.apply(vec![at], Some(&operator)).unwrap().stored.len(), 1);
        assert_eq!(store.counts().3, 1 + MAX_CLOCK_AHEAD);
    }

    #[test]
    fn one_batch_may_create_a_project_and_fill_it_and_a_restart_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tns.redb");
        let k = keys();
        let operator = op(&k);
        let before = {
            let mut store = Store::open(&path).unwrap();
            let batch =
                vec![child("shop", "a", b"1", 2, &k.owner), root("shop", &k.owner, 1, &k.operator)];
            let applied = store.apply(batch, Some(&operator)).unwrap();
            assert_eq!(applied.stored.len(), 2, "{:?}", applied.rejected);
            (store.counts(), store.digests().to_vec())
        };
        let mut store = Store::open(&path).unwrap();
        assert_eq!((store.counts(), store.digests().to_vec()), before);
        // The owner is known again after the restart.
        let applied =
            store.apply(vec![child("shop", "b", b"2", 3, &k.owner)], Some(&operator)).unwrap();
        assert_eq!(applied.stored.len(), 1);
    }

    #[test]
    fn pages_through_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("tns.redb")).unwrap();
        let k = keys();
        let mut batch = vec![root("shop", &k.owner, 1, &k.operator)];
        batch.extend((0..25).map(|i| child("shop", &format!("f{i:02}"), b"v", 2, &k.owner)));
        store.apply(batch, Some(&op(&k))).unwrap();
        let mut keys_seen = Vec::new();
        let mut after = None;
        loop {
            let (page, next) =
                store.list("/projects/shop/functions/", after.as_deref(), 10, false).unwrap();
            keys_seen.extend(page.into_iter().map(|r| r.key));
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(keys_seen.len(), 25);
        assert!(keys_seen.windows(2).all(|w| w[0] < w[1]));
    }
}
