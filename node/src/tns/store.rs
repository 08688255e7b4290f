//! The registry on disk (redb, `<data>/tns.redb`) and its in-memory index.
//!
//! The index holds a [`Summary`] of every record, by anti-entropy bucket, with each bucket's
//! digest (XOR of its record hashes), the counts, the Lamport clock and the owner of every live
//! project. It is rebuilt from the database at start and changed only after a commit succeeds.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use redb::{ReadableTable, TableDefinition};
use tau_proto::cbor;
use tau_proto::git::{self, Grants, Right};
use tau_proto::identity::WriterKey;
use tau_proto::membership::Admission;
use tau_proto::tns::keys::{self, Authority};
use tau_proto::tns::values::{CloudNames, DomainClaim, Function, ProjectRoot, Registrar, Route};
use tau_proto::tns::{
    BUCKETS, Digest, MAX_CLOCK_AHEAD, MAX_PAGE, MAX_PAGE_BYTES, Record, Summary, bucket,
};

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
    /// The record would take its project over this node's quota; what was exceeded.
    OverQuota(String),
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
            Self::OverQuota(why) => write!(f, "over quota: {why}"),
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

/// What one project may hold on this node: live records and their size
/// ([`Record::size`]). The operator's records are stored whatever the quota says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Live records.
    pub records: u64,
    /// Their size, bytes.
    pub bytes: u64,
}

impl Default for Quota {
    fn default() -> Self {
        let config = tau_proto::node_config::TnsConfig::default();
        Self { records: config.max_records_per_project, bytes: config.max_bytes() }
    }
}

/// What one project holds: live records and their size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Live records.
    pub records: u64,
    /// Their size, bytes.
    pub bytes: u64,
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
    /// The cloud's names, from `/cloud`.
    names: Option<CloudNames>,
    /// Each admitted node's key to the roles its `/nodes/<peer id>` record gives it.
    roles: HashMap<WriterKey, Vec<String>>,
    /// Each project's grants, from `/projects/<id>/grants`.
    grants: HashMap<String, Grants>,
    /// Records dropped since start for a bad signature, and for lack of authority.
    pub forged: u64,
    /// See `forged`.
    pub unauthorized: u64,
    /// Records dropped since start for a version too far beyond the clock.
    pub ahead: u64,
    /// Records dropped since start because their project was at its quota.
    pub over_quota: u64,
    quota: Quota,
    /// Each project's live records and their size.
    usage: HashMap<Box<str>, Usage>,
}

/// What the index keeps of a record.
#[derive(Debug, Clone)]
struct Entry {
    summary: Summary,
    tombstone: bool,
    /// For a live `/domains/` or `/http/` record, the project that holds it.
    claim: Option<Box<str>>,
    /// For a live record of a project, the project and the record's size.
    counted: Counted,
}

/// The project a record counts against, and its size (`None`: a tombstone, or no project's).
type Counted = Option<(Box<str>, u64)>;

fn counted_of(record: &Record) -> Counted {
    (!record.is_tombstone() && !record.scope.is_empty())
        .then(|| (record.scope.as_str().into(), record.size() as u64))
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

fn names_of(record: &Record) -> Option<CloudNames> {
    cbor::from_slice(record.value.as_deref()?).ok()
}

/// The key of the node a `/nodes/<peer id>` key admits.
fn node_key(key: &str) -> Option<WriterKey> {
    WriterKey::of_peer(&key.strip_prefix(keys::NODES)?.parse().ok()?)
}

/// The roles a live admission record gives.
fn roles_of(record: &Record) -> Option<Vec<String>> {
    cbor::from_slice::<Admission>(record.value.as_deref()?).ok().map(|a| a.services)
}

/// The project of a `/projects/<id>/grants` key.
fn grants_id(key: &str) -> Option<&str> {
    let id = key.strip_prefix("/projects/")?.strip_suffix("/grants")?;
    (!id.contains('/')).then_some(id)
}

fn grants_of(record: &Record) -> Option<Grants> {
    cbor::from_slice(record.value.as_deref()?).ok()
}

/// The project a live domain or route record holds its key for (its scope).
fn claim_of(record: &Record) -> Option<Box<str>> {
    let claims = keys::claimed_domain(&record.key).is_some() && !record.is_tombstone();
    claims.then(|| record.scope.as_str().into())
}

/// Registrar and admission records and the cloud's names first, then project roots, then
/// grants, then domains, then the rest: one batch can delegate, admit, create a project, grant,
/// claim its domains and route them (and anti-entropy asks for and sends records in this order,
/// so that a project's records never come before the project or the grant that lets a role
/// node write them).
pub fn apply_order(key: &str) -> u8 {
    if key.starts_with(keys::REGISTRARS) || key.starts_with(keys::NODES) || key == keys::CLOUD {
        0
    } else if root_id(key).is_some() {
        1
    } else if grants_id(key).is_some() {
        2
    } else if key.starts_with("/domains/") {
        3
    } else {
        4
    }
}

/// What a batch being applied changes of the index, before it is stored.
#[derive(Default)]
struct PendingIndex {
    owners: HashMap<String, Option<WriterKey>>,
    registrars: HashMap<String, Option<WriterKey>>,
    /// Domain and route keys to the project that holds them (`None`: released).
    claims: HashMap<String, Option<Box<str>>>,
    names: Option<Option<CloudNames>>,
    /// Admission records: a node's key to its roles (`None`: revoked).
    roles: HashMap<WriterKey, Option<Vec<String>>>,
    /// Grants (`None`: deleted).
    grants: HashMap<String, Option<Grants>>,
    /// Project roots: the record's summary and whether it is a tombstone.
    roots: HashMap<String, (Summary, bool)>,
}

/// How two versions of one key compare (`Greater`: `a` wins): the last writer wins
/// ([`Summary::order`]), except at a project's root, where the operator's records beat a
/// registrar's, and between registrars the first registration (the lower record) wins. Two vault
/// nodes that register one id at once thus end with the same owner on every node, whatever
/// order the records arrive in; anti-entropy compares by this too.
pub fn precedence(a: &Summary, b: &Summary, operator: Option<&WriterKey>) -> std::cmp::Ordering {
    if root_id(&a.key).is_none() {
        return a.order(b);
    }
    let by_operator = |s: &Summary| operator == Some(&s.writer);
    match (by_operator(a), by_operator(b)) {
        (true, true) => a.order(b),
        (false, false) => b.order(a),
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
    }
}

/// Whether `key` is a function's, `/projects/<id>/functions/<name>`.
fn is_function(key: &str) -> bool {
    let mut segments = key.split('/').skip(1);
    matches!(
        (segments.next(), segments.next(), segments.next(), segments.next(), segments.next()),
        (Some("projects"), Some(_), Some("functions"), Some(_), None)
    )
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
            names: None,
            roles: HashMap::new(),
            grants: HashMap::new(),
            forged: 0,
            unauthorized: 0,
            ahead: 0,
            over_quota: 0,
            quota: Quota::default(),
            usage: HashMap::new(),
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
        let entry = Entry {
            summary: record.summary(),
            tombstone: record.is_tombstone(),
            claim: claim_of(record),
            counted: counted_of(record),
        };
        if let Some((project, size)) = &entry.counted {
            let usage = self.usage.entry(project.clone()).or_default();
            usage.records += 1;
            usage.bytes += size;
        }
        let b = bucket(&record.key);
        xor(&mut self.digests[b], &entry.summary.hash);
        if entry.tombstone {
            self.tombstones += 1;
        } else {
            self.live += 1;
        }
        if let Some(old) = self.buckets[b].insert(record.key.clone(), entry) {
            if let Some((project, size)) = &old.counted
                && let Some(usage) = self.usage.get_mut(project)
            {
                usage.records = usage.records.saturating_sub(1);
                usage.bytes = usage.bytes.saturating_sub(*size);
                if usage.records == 0 {
                    self.usage.remove(project);
                }
            }
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
        if record.key == keys::CLOUD {
            self.names = names_of(record);
        }
        if let Some(node) = node_key(&record.key) {
            match roles_of(record) {
                Some(roles) => self.roles.insert(node, roles),
                None => self.roles.remove(&node),
            };
        }
        if let Some(id) = grants_id(&record.key) {
            match grants_of(record) {
                Some(grants) => self.grants.insert(id.to_string(), grants),
                None => self.grants.remove(id),
            };
        }
    }

    /// Sets what one project may hold from now on (records already stored stay).
    pub fn set_quota(&mut self, quota: Quota) {
        self.quota = quota;
    }

    /// What `project` holds.
    pub fn usage(&self, project: &str) -> Usage {
        self.usage.get(project).copied().unwrap_or_default()
    }

    /// Refuses a record that counts as `new` if storing it in place of `old` would take its
    /// project over the quota (`pending`: the batch's changes so far); records that shrink a
    /// project always pass.
    fn check_quota(
        &self,
        new: &Counted,
        old: &Counted,
        pending: &HashMap<Box<str>, (i64, i64)>,
    ) -> Result<(), Rejection> {
        let Some((project, size)) = new else { return Ok(()) };
        let size = *size;
        let (more_records, more_bytes) = match old {
            Some((was, old_size)) if was == project => (0, size.saturating_sub(*old_size)),
            _ => (1, size),
        };
        if more_records == 0 && more_bytes == 0 {
            return Ok(());
        }
        let usage = self.usage(project);
        let (records_delta, bytes_delta) = pending.get(project).copied().unwrap_or_default();
        let records = usage.records.saturating_add_signed(records_delta) + more_records;
        let bytes = usage.bytes.saturating_add_signed(bytes_delta).saturating_add(more_bytes);
        let Quota { records: max_records, bytes: max_bytes } = self.quota;
        if records > max_records {
            return Err(Rejection::OverQuota(format!(
                "project {project} may hold {max_records} records on this node"
            )));
        }
        if bytes > max_bytes {
            return Err(Rejection::OverQuota(format!(
                "project {project} may hold {max_bytes} bytes of records on this node \
                 ({bytes} with this one)"
            )));
        }
        Ok(())
    }

    /// Whether `key` may create projects: the operator's, or one it named as a registrar.
    /// Whether `record`'s writer is a node whose roles `project`'s grants give `right`, and the
    /// record is one that right covers.
    fn granted(
        &self,
        record: &Record,
        project: &str,
        right: Right,
        pending: &PendingIndex,
    ) -> bool {
        if right == Right::Deploy && !git::deployable(&record.key) {
            return false;
        }
        let roles = match pending.roles.get(&record.writer) {
            Some(roles) => roles.as_ref(),
            None => self.roles.get(&record.writer),
        };
        let grants = match pending.grants.get(project) {
            Some(grants) => grants.as_ref(),
            None => self.grants.get(project),
        };
        matches!((roles, grants), (Some(roles), Some(grants)) if grants.allows(roles, right))
    }

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

    /// Up to `limit` records (and [`MAX_PAGE_BYTES`], at least one) whose keys start with
    /// `prefix` and come after `after`, in key order, and the key to continue after if there
    /// are more.
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
            let mut size = 0;
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
                size += record.size();
                if records.len() == limit || (size > MAX_PAGE_BYTES && !records.is_empty()) {
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
        records.sort_by_key(|record| apply_order(&record.key));
        let mut applied = Applied::default();
        let mut pending: HashMap<String, Summary> = HashMap::new();
        let mut pending_index = PendingIndex::default();
        // What the batch changes of each project's usage so far, and what each key it stores
        // counts against.
        let mut pending_usage: HashMap<Box<str>, (i64, i64)> = HashMap::new();
        let mut pending_counted: HashMap<String, Counted> = HashMap::new();
        let mut to_store: Vec<Record> = Vec::new();
        for record in records {
            let checked = self.check(&record, operator, &pending_index);
            let summary = record.summary();
            let current = pending.get(&record.key).or_else(|| self.summary(&record.key));
            if checked.is_ok() && current.is_some_and(|c| precedence(c, &summary, operator).is_ge())
            {
                applied.unchanged += 1;
                continue;
            }
            let old = match pending_counted.get(&record.key) {
                Some(counted) => counted.clone(),
                None => self.entry(&record.key).and_then(|e| e.counted.clone()),
            };
            let new = counted_of(&record);
            let checked = checked.and_then(|()| match operator == Some(&record.writer) {
                true => Ok(()),
                false => self.check_quota(&new, &old, &pending_usage),
            });
            if let Err(rejection) = checked {
                match rejection {
                    Rejection::Forged => self.forged += 1,
                    Rejection::Unauthorized(_) => self.unauthorized += 1,
                    Rejection::Ahead { .. } => self.ahead += 1,
                    Rejection::OverQuota(_) => self.over_quota += 1,
                }
                applied.rejected.push((record.key.clone(), rejection));
                continue;
            }
            for (counted, sign) in [(&old, -1), (&new, 1)] {
                if let Some((project, size)) = counted {
                    let delta = pending_usage.entry(project.clone()).or_default();
                    delta.0 += sign;
                    delta.1 += sign * i64::try_from(*size).unwrap_or(i64::MAX);
                }
            }
            pending_counted.insert(record.key.clone(), new);
            if let Some(id) = root_id(&record.key) {
                pending_index.owners.insert(id.to_string(), owner_of(&record));
                pending_index
                    .roots
                    .insert(id.to_string(), (summary.clone(), record.is_tombstone()));
            }
            if record.key.starts_with(keys::REGISTRARS) {
                pending_index.registrars.insert(record.key.clone(), registrar_of(&record));
            }
            if record.key == keys::CLOUD {
                pending_index.names = Some(names_of(&record));
            }
            if keys::claimed_domain(&record.key).is_some() {
                pending_index.claims.insert(record.key.clone(), claim_of(&record));
            }
            if let Some(node) = node_key(&record.key) {
                pending_index.roles.insert(node, roles_of(&record));
            }
            if let Some(id) = grants_id(&record.key) {
                pending_index.grants.insert(id.to_string(), grants_of(&record));
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
                if record.key == keys::CLOUD && !record.is_tombstone() {
                    let names = names_of(record).ok_or_else(|| {
                        Rejection::Unauthorized("/cloud must hold the cloud's names".into())
                    })?;
                    if !keys::is_domain(&names.domain) || !keys::is_domain(&names.generated_domain)
                    {
                        return Err(Rejection::Unauthorized(
                            "/cloud names a domain that is not one".into(),
                        ));
                    }
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
                    let root = match pending.roots.get(id) {
                        Some(root) => Some(root.clone()),
                        None => self.buckets[bucket(&record.key)]
                            .get(&record.key)
                            .map(|e| (e.summary.clone(), e.tombstone)),
                    };
                    let current = match pending.owners.get(id) {
                        Some(owner) => *owner,
                        None => self.owners.get(id).copied(),
                    };
                    match root {
                        Some((_, true)) => {
                            return Err(Rejection::Unauthorized(format!(
                                "project `{id}` was deleted: only the operator may create it again"
                            )));
                        }
                        // Another registrar's registration of the same id, made at the same
                        // time: the first one (the lower record) holds everywhere.
                        Some((root, false))
                            if current.is_some_and(|owner| Some(owner) != owner_of(record))
                                && !precedence(&record.summary(), &root, operator).is_gt() =>
                        {
                            return Err(Rejection::Unauthorized(format!(
                                "project `{id}` exists: a registrar may not change its owner"
                            )));
                        }
                        _ => {}
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
                    Some(owner)
                        if owner != record.writer
                            && !self.granted(record, &project, Right::Deploy, pending) =>
                    {
                        return Err(Rejection::Unauthorized(format!(
                            "only the owner of project `{project}`, or a node whose role it granted deploys, may write {}",
                            record.key
                        )));
                    }
                    Some(_) => {}
                }
                if let Some(fqdn) = keys::claimed_domain(&record.key) {
                    self.check_claim(record, &project, fqdn, pending)?;
                }
                if is_function(&record.key)
                    && let Some(value) = &record.value
                {
                    let function = cbor::from_slice::<Function>(value).map_err(|_| {
                        Rejection::Unauthorized(format!("{} does not hold a function", record.key))
                    })?;
                    if let Some(why) = function.execution.problem() {
                        return Err(Rejection::Unauthorized(format!("{}: {why}", record.key)));
                    }
                }
            }
        }
        Ok(())
    }

    /// A domain or route of `project`: it names its own project, is not one of the cloud's
    /// names or inside another project's generated domain, and neither it nor its domain is
    /// held by another project that still exists. A claim holds until its project releases it
    /// (a tombstone) or is deleted.
    fn check_claim(
        &self,
        record: &Record,
        project: &str,
        fqdn: &str,
        pending: &PendingIndex,
    ) -> Result<(), Rejection> {
        let refuse = |why: String| Err(Rejection::Unauthorized(why));
        if let Some(value) = &record.value {
            let named = if record.key.starts_with("/domains/") {
                cbor::from_slice::<DomainClaim>(value).map(|claim| claim.project)
            } else {
                cbor::from_slice::<Route>(value).map(|route| route.project)
            };
            match named {
                Ok(named) if named == project => {}
                Ok(named) => {
                    return refuse(format!(
                        "{} names project `{named}`, not its own `{project}`",
                        record.key
                    ));
                }
                Err(_) => return refuse(format!("{} does not hold a domain or route", record.key)),
            }
            let names = match &pending.names {
                Some(names) => names.as_ref(),
                None => self.names.as_ref(),
            };
            if let Some(why) = names.and_then(|names| names.refuses(fqdn, project)) {
                return refuse(why);
            }
        }
        let domain = keys::domain(fqdn);
        for key in [record.key.as_str(), domain.as_str()] {
            let holder = match pending.claims.get(key) {
                Some(holder) => holder.clone(),
                None => self.buckets[bucket(key)].get(key).and_then(|e| e.claim.clone()),
            };
            let Some(holder) = holder.filter(|holder| **holder != *project) else { continue };
            let exists = match pending.owners.get(&*holder) {
                Some(owner) => owner.is_some(),
                None => self.owners.contains_key(&*holder),
            };
            if exists && key == domain {
                return refuse(format!("`{fqdn}` is claimed by project `{holder}`"));
            }
            if exists {
                return refuse(format!("{key} is held by project `{holder}`"));
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
        self.entry(key).map(|e| &e.summary)
    }

    fn entry(&self, key: &str) -> Option<&Entry> {
        self.buckets[bucket(key)].get(key)
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

    /// A key under project `id` that holds any bytes (a function's must hold a function).
    fn file(id: &str, name: &str) -> String {
        format!("/projects/{id}/files/{name}")
    }

    fn child(id: &str, name: &str, value: &[u8], version: u64, signer: &Keypair) -> Record {
        Draft { key: file(id, name), scope: id.into(), value: Some(value.to_vec()) }
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

        assert_eq!(store.get(&file("shop", "evil")).unwrap(), None);
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
    fn two_registrations_of_one_id_end_the_same_everywhere_and_a_deleted_id_stays_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let k = keys();
        let operator = op(&k);
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let delegations =
            vec![delegate("a", &a, 1, &k.operator), delegate("b", &b, 1, &k.operator)];
        // Two vault nodes register `shop` at once for different owners; two nodes receive the
        // registrations in opposite orders, then exchange what they hold.
        let first = root("shop", &k.owner, 5, &a);
        let second = root("shop", &k.stranger, 6, &b);
        let mut stores: Vec<Store> = ["one", "two"]
            .iter()
            .map(|name| Store::open(&dir.path().join(format!("{name}.redb"))).unwrap())
            .collect();
        for (store, order) in stores.iter_mut().zip([[&first, &second], [&second, &first]]) {
            store.apply(delegations.clone(), Some(&operator)).unwrap();
            for record in order {
                store.apply(vec![record.clone()], Some(&operator)).unwrap();
            }
        }
        let held: Vec<Record> =
            stores.iter().map(|s| s.get(&keys::project("shop")).unwrap().unwrap()).collect();
        assert_eq!(held[0], first);
        assert_eq!(held[1], first, "the first registration holds on both");
        assert!(precedence(&first.summary(), &second.summary(), Some(&operator)).is_gt());
        // The operator's word beats either.
        let moved = root("shop", &k.stranger, 4, &k.operator);
        assert!(precedence(&moved.summary(), &first.summary(), Some(&operator)).is_gt());

        // Deleted by the operator, the id is not a registrar's to give again.
        let store = &mut stores[0];
        let deleted = Draft { key: keys::project("shop"), scope: "shop".into(), value: None };
        store.apply(vec![deleted.sign(7, &k.operator).unwrap()], Some(&operator)).unwrap();
        let again = store.apply(vec![root("shop", &k.stranger, 8, &b)], Some(&operator)).unwrap();
        let why = again.rejected.first().map(|(_, why)| why.to_string()).unwrap_or_default();
        assert!(why.contains("was deleted: only the operator"), "{why}");
        let applied =
            store.apply(vec![root("shop", &k.stranger, 9, &k.operator)], Some(&operator)).unwrap();
        assert_eq!(applied.stored.len(), 1, "{:?}", applied.rejected);
    }

    fn claim(key: String, project: &str, named: &str, version: u64, signer: &Keypair) -> Record {
        let value = if key.starts_with("/domains/") {
            cbor::to_vec(&DomainClaim { project: named.into() })
        } else {
            cbor::to_vec(&Route { project: named.into(), function: "f".into() })
        };
        Draft { key, scope: project.into(), value: Some(value.unwrap()) }
            .sign(version, signer)
            .unwrap()
    }

    fn release(key: String, project: &str, version: u64, signer: &Keypair) -> Record {
        Draft { key, scope: project.into(), value: None }.sign(version, signer).unwrap()
    }

    /// The reason the one record of `records` was refused ("" when it was stored).
    fn verdict(store: &mut Store, records: Vec<Record>, operator: &WriterKey) -> String {
        let applied = store.apply(records, Some(operator)).unwrap();
        applied.rejected.first().map(|(_, why)| why.to_string()).unwrap_or_default()
    }

    #[test]
    fn a_domain_belongs_to_the_project_that_claimed_it_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("tns.redb")).unwrap();
        let k = keys();
        let operator = op(&k);
        let names = CloudNames { domain: "dev".into(), generated_domain: "tau".into() };
        let names = Draft {
            key: keys::CLOUD.into(),
            scope: String::new(),
            value: Some(cbor::to_vec(&names).unwrap()),
        };
        let batch = vec![
            root("victim", &k.owner, 1, &k.operator),
            root("shop", &k.stranger, 1, &k.operator),
            names.sign(1, &k.operator).unwrap(),
        ];
        assert!(store.apply(batch, Some(&operator)).unwrap().rejected.is_empty());
        // The victim claims its custom domain and routes it in one batch.
        let (domain, route) =
            (keys::domain("api.victim.com"), keys::route("api.victim.com", "GET", "/"));
        let batch = vec![
            claim(route.clone(), "victim", "victim", 2, &k.owner),
            claim(domain.clone(), "victim", "victim", 2, &k.owner),
        ];
        assert!(store.apply(batch, Some(&operator)).unwrap().rejected.is_empty());

        let s = &k.stranger;
        for (record, why) in [
            (claim(domain.clone(), "shop", "shop", 9, s), "claimed by project `victim`"),
            (
                claim(keys::route("api.victim.com", "GET", "/x"), "shop", "shop", 9, s),
                "claimed by project `victim`",
            ),
            (claim(route.clone(), "shop", "shop", 9, s), "held by project `victim`"),
            (release(domain.clone(), "shop", 9, s), "claimed by project `victim`"),
            (
                claim(keys::domain("api.victim.tau"), "shop", "shop", 9, s),
                "inside project `victim`",
            ),
            (claim(keys::domain("substrate.tau.dev"), "shop", "shop", 9, s), "service name"),
            (
                claim(keys::domain("shop.example.com"), "shop", "victim", 9, s),
                "names project `victim`",
            ),
        ] {
            let key = record.key.clone();
            assert!(verdict(&mut store, vec![record], &operator).contains(why), "{key}: {why}");
        }
        // Its own generated domain, and a free one, are the shop's to claim.
        for fqdn in ["shop.tau", "www.shop.tau", "shop.example.com"] {
            let record = claim(keys::domain(fqdn), "shop", "shop", 10, s);
            assert_eq!(verdict(&mut store, vec![record], &operator), "", "{fqdn}");
        }

        // Released by its project, the domain is free; so is the domain of a deleted project.
        assert_eq!(
            verdict(&mut store, vec![release(domain.clone(), "victim", 11, &k.owner)], &operator),
            ""
        );
        assert_eq!(
            verdict(&mut store, vec![claim(domain.clone(), "shop", "shop", 12, s)], &operator),
            ""
        );
        let route_kept = claim(route.clone(), "shop", "shop", 13, s);
        assert!(
            verdict(&mut store, vec![route_kept], &operator).contains("held by project `victim`")
        );
        let deleted = Draft { key: keys::project("victim"), scope: "victim".into(), value: None };
        let deleted = deleted.sign(14, &k.operator).unwrap();
        assert_eq!(verdict(&mut store, vec![deleted], &operator), "");
        assert_eq!(verdict(&mut store, vec![claim(route, "shop", "shop", 15, s)], &operator), "");

        // Reopened, the claims are where they were.
        drop(store);
        let mut store = Store::open(&dir.path().join("tns.redb")).unwrap();
        let record = claim(keys::domain("api.other.tau"), "shop", "shop", 16, s);
        assert!(verdict(&mut store, vec![record], &operator).contains("inside project `other`"));
        let record = claim(keys::route("api.victim.com", "GET", "/x"), "victim", "victim", 16, s);
        assert!(verdict(&mut store, vec![record], &operator).contains("does not exist"));
    }

    #[test]
    fn a_node_whose_role_the_owner_granted_deploys_but_touches_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("tns.redb")).unwrap();
        let k = keys();
        let operator = op(&k);
        let ci = Keypair::generate_ed25519();
        let builder = Keypair::generate_ed25519();
        let peer = |key: &Keypair| key.public().to_peer_id().to_string();
        let admit = |key: &Keypair, role: &str, version| {
            let value = cbor::to_vec(&Admission {
                services: vec![role.to_string()],
                labels: Default::default(),
            })
            .unwrap();
            Draft { key: keys::node(&peer(key)), scope: String::new(), value: Some(value) }
                .sign(version, &k.operator)
                .unwrap()
        };
        let put = |key: String, value: Vec<u8>, version, signer: &Keypair| {
            Draft { key, scope: "shop".into(), value: Some(value) }.sign(version, signer).unwrap()
        };
        let grants = cbor::to_vec(&Grants::ci()).unwrap();
        // Admission, root, grant and the ci node's first write in one batch: the grant applies
        // before the write whatever order they came in.
        let batch = vec![
            put(keys::project_config("shop"), b"by ci".to_vec(), 5, &ci),
            put(git::grants_key("shop"), grants.clone(), 4, &k.owner),
            root("shop", &k.owner, 3, &k.operator),
            admit(&ci, git::CI_ROLE, 2),
            admit(&builder, "substrate", 2),
        ];
        let applied = store.apply(batch, Some(&operator)).unwrap();
        assert!(applied.rejected.is_empty(), "{:?}", applied.rejected);

        let job = git::job_key("shop", &"a".repeat(40), None);
        let staging = keys::branch_function("shop", "staging", "ping");
        let mut version = 10;
        let mut attempt = |key: &str, signer: &Keypair, store: &mut Store| {
            version += 1;
            let record = put(key.to_string(), b"x".to_vec(), version, signer);
            store.apply(vec![record], Some(&operator)).unwrap().rejected
        };
        for key in
            [job.as_str(), &git::deployed_key("shop"), &keys::project_config("shop"), &staging]
        {
            assert!(attempt(key, &ci, &mut store).is_empty(), "{key}");
        }
        // Not the grant, the repositories, the secrets or the root; not a node of another role.
        for key in [
            git::grants_key("shop"),
            git::key("shop", git::RepoKind::Code),
            keys::secret("shop", "code-deploy-key"),
            file("shop", "other"),
        ] {
            let rejected = attempt(&key, &ci, &mut store);
            assert!(matches!(rejected[0].1, Rejection::Unauthorized(_)), "{key}: {rejected:?}");
        }
        assert!(!attempt(&job, &builder, &mut store).is_empty());

        // Revoking the grant, or the node, ends it.
        let revoked = Draft { key: git::grants_key("shop"), scope: "shop".into(), value: None }
            .sign(30, &k.owner)
            .unwrap();
        assert!(store.apply(vec![revoked], Some(&operator)).unwrap().rejected.is_empty());
        assert!(!attempt(&job, &ci, &mut store).is_empty());
        let regranted = put(git::grants_key("shop"), grants, 40, &k.owner);
        assert!(store.apply(vec![regranted], Some(&operator)).unwrap().rejected.is_empty());
        assert!(attempt(&job, &ci, &mut store).is_empty());
        let expelled = Draft { key: keys::node(&peer(&ci)), scope: String::new(), value: None }
            .sign(50, &k.operator)
            .unwrap();
        assert!(store.apply(vec![expelled], Some(&operator)).unwrap().rejected.is_empty());
        assert!(!attempt(&job, &ci, &mut store).is_empty());

        // The index is rebuilt the same at start.
        drop(store);
        let mut store = Store::open(&dir.path().join("tns.redb")).unwrap();
        assert!(!attempt(&job, &ci, &mut store).is_empty());
        let readmitted = admit(&ci, git::CI_ROLE, 60);
        assert!(store.apply(vec![readmitted], Some(&operator)).unwrap().rejected.is_empty());
        assert!(attempt(&job, &ci, &mut store).is_empty());
    }

    #[test]
    fn a_function_with_limits_out_of_range_is_refused() {
        use tau_proto::tns::values::{Execution, Source, Trigger, TriggerKind};
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("tns.redb")).unwrap();
        let k = keys();
        let operator = op(&k);
        store.apply(vec![root("shop", &k.owner, 1, &k.operator)], Some(&operator)).unwrap();
        let function = |timeout_ms, memory_bytes| Function {
            name: "f".into(),
            description: String::new(),
            trigger: Trigger {
                kind: TriggerKind::Http,
                method: "GET".into(),
                paths: vec!["/".into()],
            },
            domains: vec!["shop.tau".into()],
            source: Source {
                file: "f.wasm".into(),
                cid: tau_proto::hoarder::BlobId::of(b"f"),
                size: 1,
            },
            execution: Execution { timeout_ms, memory_bytes, call: None },
            allowed_outbound_hosts: Vec::new(),
            variables: Default::default(),
        };
        let record = |value: Vec<u8>| {
            Draft { key: keys::function("shop", "f"), scope: "shop".into(), value: Some(value) }
                .sign(2, &k.owner)
                .unwrap()
        };
        for (value, why) in [
            (cbor::to_vec(&function(u64::MAX, 1 << 20)).unwrap(), "timeout"),
            (cbor::to_vec(&function(0, 1 << 20)).unwrap(), "timeout"),
            (cbor::to_vec(&function(1_000, u64::MAX)).unwrap(), "memory"),
            (b"not a function".to_vec(), "does not hold a function"),
        ] {
            let refused = verdict(&mut store, vec![record(value)], &operator);
            assert!(refused.contains(why), "{why}: {refused}");
        }
        let fine = cbor::to_vec(&function(1_000, 1 << 20)).unwrap();
        assert_eq!(verdict(&mut store, vec![record(fine)], &operator), "");
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
        assert_eq!(store.get(&file("shop", "ping")).unwrap(), None);
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
        assert_eq!(store.get("/projects/shop/files/tie").unwrap(), Some(winner.clone()));
        assert_eq!(other.get("/projects/shop/files/tie").unwrap(), Some(winner));
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
    fn a_project_holds_what_its_quota_allows_and_deleting_always_works() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tns.redb");
        let k = keys();
        let operator = op(&k);
        let quota = Quota { records: 4, bytes: 1 << 20 };
        let verdicts = |applied: &Applied| -> Vec<String> {
            applied.rejected.iter().map(|(key, why)| format!("{key}: {why}")).collect()
        };
        let mut store = Store::open(&path).unwrap();
        store.set_quota(quota);
        // The root counts as one of the four; one batch of five files keeps the first three.
        let mut batch = vec![root("shop", &k.owner, 1, &k.operator)];
        batch.extend((0..5).map(|i| child("shop", &format!("f{i}"), b"x", 2, &k.owner)));
        let applied = store.apply(batch, Some(&operator)).unwrap();
        assert_eq!(applied.stored.len(), 4, "{:?}", verdicts(&applied));
        assert_eq!(
            verdicts(&applied),
            [
                "/projects/shop/files/f3: over quota: project shop may hold 4 records on this node",
                "/projects/shop/files/f4: over quota: project shop may hold 4 records on this node",
            ]
        );
        assert_eq!((store.over_quota, store.usage("shop").records), (2, 4));
        // At the quota, a file may still change, and be deleted; then another fits.
        let applied =
            store.apply(vec![child("shop", "f0", b"y", 3, &k.owner)], Some(&operator)).unwrap();
        assert_eq!(applied.stored.len(), 1, "{:?}", verdicts(&applied));
        let gone = Draft { key: file("shop", "f1"), scope: "shop".into(), value: None }
            .sign(4, &k.owner)
            .unwrap();
        let batch = vec![gone, child("shop", "f3", b"x", 4, &k.owner)];
        let applied = store.apply(batch, Some(&operator)).unwrap();
        assert_eq!(applied.stored.len(), 2, "{:?}", verdicts(&applied));
        assert_eq!(store.usage("shop").records, 4);
        // Other projects have their own quota.
        let batch =
            vec![root("cafe", &k.owner, 5, &k.operator), child("cafe", "a", b"x", 5, &k.owner)];
        assert_eq!(store.apply(batch, Some(&operator)).unwrap().stored.len(), 2);

        // The size counts too: a file may not grow past the byte quota, but may shrink.
        let used = store.usage("shop").bytes;
        store.set_quota(Quota { records: 10, bytes: used + 1000 });
        let big = child("shop", "f0", &[7; 1500], 6, &k.owner);
        let applied = store.apply(vec![big], Some(&operator)).unwrap();
        assert!(
            matches!(&applied.rejected[..], [(_, Rejection::OverQuota(why))] if why.contains("bytes")),
            "{:?}",
            verdicts(&applied)
        );
        let fits = child("shop", "f0", &[7; 900], 7, &k.owner);
        assert_eq!(store.apply(vec![fits], Some(&operator)).unwrap().stored.len(), 1);
        store.set_quota(Quota { records: 10, bytes: 1 });
        let smaller = child("shop", "f0", &[7; 100], 8, &k.owner);
        assert_eq!(store.apply(vec![smaller], Some(&operator)).unwrap().stored.len(), 1);
        let usage = store.usage("shop");
        drop(store);

        // A restart counts the same, and refuses the same.
        let mut store = Store::open(&path).unwrap();
        store.set_quota(quota);
        assert_eq!(store.usage("shop"), usage);
        let applied =
            store.apply(vec![child("shop", "f9", b"x", 9, &k.owner)], Some(&operator)).unwrap();
        assert!(matches!(applied.rejected[..], [(_, Rejection::OverQuota(_))]));
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
                store.list("/projects/shop/files/", after.as_deref(), 10, false).unwrap();
            keys_seen.extend(page.into_iter().map(|r| r.key));
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(keys_seen.len(), 25);
        assert!(keys_seen.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_page_stops_at_its_byte_limit_and_batches_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("tns.redb")).unwrap();
        let k = keys();
        let big = vec![7u8; 250_000];
        let mut batch = vec![root("shop", &k.owner, 1, &k.operator)];
        batch.extend((0..40).map(|i| child("shop", &format!("f{i:02}"), &big, 2, &k.owner)));
        store.apply(batch.clone(), Some(&op(&k))).unwrap();
        let (mut seen, mut after, mut pages) = (0, None, 0);
        loop {
            let (page, next) =
                store.list("/projects/shop/files/", after.as_deref(), MAX_PAGE, false).unwrap();
            let bytes: usize = page.iter().map(Record::size).sum();
            assert!(bytes <= MAX_PAGE_BYTES, "a page of {bytes} bytes");
            seen += page.len();
            pages += 1;
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!((seen, pages), (40, 3), "40 records of 250 KB in pages of at most 4 MiB");
        let batches = tau_proto::tns::batches(batch, MAX_PAGE_BYTES);
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 41);
        assert!(
            batches.iter().all(|b| b.iter().map(Record::size).sum::<usize>() <= MAX_PAGE_BYTES)
        );
        let one = vec![child("shop", "huge", &[0; 300_000], 3, &k.owner)];
        assert_eq!(tau_proto::tns::batches(one, 1_000).len(), 1, "a larger record goes alone");
    }
}
