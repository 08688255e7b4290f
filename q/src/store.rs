//! Where q keeps what it collected: a SQLite file by default, PostgreSQL by URL. One schema
//! (`migrations/`) and one set of queries (`store/body.rs`) serve both; [`Store`] picks the
//! backend from the URL.
//!
//! Invariants: a (node, seq) is stored at most once; a batch's records, what it kept aside, its
//! gaps and the node's cursor are written in one transaction, so a crash or a retry never loses
//! or double-counts a record. A counter is stored as the bits of a signed 64-bit integer and read
//! back exactly; nothing sums or compares counters in SQL (see [`Store::totals`]). Sequence
//! numbers and window starts are compared in SQL, so a record with either beyond `i64::MAX` is
//! kept aside ([`Reason::OutOfRange`]).

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use libp2p::PeerId;
use serde::Serialize;
use sqlx::QueryBuilder;
use tau_proto::counters::{SignedCounter, Usage};

/// The schema, embedded at build time: `migrations/`, one file per version (named as sqlx's
/// migrator expects, so `sqlx migrate` reads the folder the same way). Listed here rather than
/// with `sqlx::migrate!`, whose proc macro would build both database drivers a second time.
fn migrator() -> sqlx::migrate::Migrator {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    let migration = |version, description: &'static str, sql| {
        Migration::new(version, description.into(), MigrationType::Simple, sql, false)
    };
    Migrator::with_migrations(vec![
        migration(
            1,
            "records",
            sqlx::SqlStr::from_static(include_str!("../migrations/0001_records.sql")),
        ),
        migration(
            2,
            "state figures",
            sqlx::SqlStr::from_static(include_str!("../migrations/0002_state_figures.sql")),
        ),
        migration(
            3,
            "billing",
            sqlx::SqlStr::from_static(include_str!("../migrations/0003_billing.sql")),
        ),
    ])
}

/// Rows per multi-row INSERT (22 binds each, under SQLite's limit of 32,766).
const INSERT_ROWS: usize = 1_000;

/// Why the store failed. Names the database; never holds a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names no backend q speaks.
    #[error(
        "`{0}` is not a database q can use: give a SQLite file (q.db, sqlite://q.db) or a postgres:// URL"
    )]
    Url(String),
    /// Opening or talking to the database failed.
    #[error("database {database}: {reason}")]
    Open {
        /// The database, without its password.
        database: String,
        /// Why.
        reason: String,
    },
    /// The schema could not be brought up to date.
    #[error("the database's schema could not be updated: {0}")]
    Migrate(String),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// Whoever was handed the records stopped (a write failed, a sum overflowed).
    #[error("{0}")]
    Stopped(std::io::Error),
}

/// Why a record was kept aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Its signature does not verify against the key in its node's peer id.
    BadSignature,
    /// It names another node than the one that served it.
    WrongNode,
    /// It names a node that is not part of the cloud.
    UnknownNode,
    /// A different record was stored under the same (node, seq).
    Conflict,
    /// Its sequence number or window start is beyond `i64::MAX`, which the store cannot order.
    OutOfRange,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::BadSignature => "bad signature",
            Reason::WrongNode => "signed for another node than the one that served it",
            Reason::UnknownNode => "from a node that is not part of the cloud",
            Reason::Conflict => "another record is stored under the same node and sequence",
            Reason::OutOfRange => "its sequence number or window start is beyond 2^63-1",
        })
    }
}

/// One node's page of records, sorted out: what to store, what to keep aside, the gaps seen,
/// and the cursor after it.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The node that served the page.
    pub node: PeerId,
    /// Verified records of that node, in sequence order.
    pub accepted: Vec<SignedCounter>,
    /// Records kept aside, with why.
    pub rejected: Vec<(SignedCounter, Reason)>,
    /// Missing sequence numbers, as inclusive ranges.
    pub gaps: Vec<(u64, u64)>,
    /// The next sequence number to ask the node for.
    pub next_seq: u64,
}

impl Batch {
    /// An empty batch for `node` whose cursor stays at `next_seq`.
    pub fn new(node: PeerId, next_seq: u64) -> Self {
        Self { node, accepted: Vec::new(), rejected: Vec::new(), gaps: Vec::new(), next_seq }
    }
}

/// What storing a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Ingested {
    /// Records stored for the first time.
    pub inserted: u64,
    /// Records stored before, identical (a retry): not counted again.
    pub replayed: u64,
    /// Records newly kept aside.
    pub rejected: u64,
    /// Gaps newly recorded.
    pub gaps: u64,
}

impl std::ops::AddAssign for Ingested {
    fn add_assign(&mut self, other: Self) {
        self.inserted += other.inserted;
        self.replayed += other.replayed;
        self.rejected += other.rejected;
        self.gaps += other.gaps;
    }
}

/// One line item: a function's sums over a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Total {
    /// The project id, as in TNS.
    pub project: String,
    /// The function's name within the project.
    pub function: String,
    /// Invocations.
    pub invocations: u64,
    /// Failed invocations.
    pub errors: u64,
    /// Wall-clock time, microseconds.
    pub wall_micros: u64,
    /// CPU time, microseconds.
    pub cpu_micros: u64,
    /// Key-value calls that read.
    pub kv_reads: u64,
    /// Key-value calls that wrote.
    pub kv_writes: u64,
    /// Bytes read from project storage.
    pub storage_read_bytes: u64,
    /// Bytes written to project storage.
    pub storage_written_bytes: u64,
    /// Bytes outgoing HTTP sent.
    pub outbound_sent_bytes: u64,
    /// Bytes outgoing HTTP received.
    pub outbound_received_bytes: u64,
    /// Records summed.
    pub records: u64,
}

impl Total {
    /// Adds `record`'s figures; `None` (and a partly added total) when a sum overflows.
    fn add(&mut self, record: &StoredRecord) -> Option<()> {
        self.invocations = self.invocations.checked_add(record.usage.invocations)?;
        self.errors = self.errors.checked_add(record.usage.errors)?;
        self.wall_micros = self.wall_micros.checked_add(record.usage.wall_micros)?;
        self.cpu_micros = self.cpu_micros.checked_add(record.usage.cpu_micros)?;
        let u = &record.usage;
        self.kv_reads = self.kv_reads.checked_add(u.kv_reads)?;
        self.kv_writes = self.kv_writes.checked_add(u.kv_writes)?;
        self.storage_read_bytes = self.storage_read_bytes.checked_add(u.storage_read_bytes)?;
        self.storage_written_bytes =
            self.storage_written_bytes.checked_add(u.storage_written_bytes)?;
        self.outbound_sent_bytes = self.outbound_sent_bytes.checked_add(u.outbound_sent_bytes)?;
        self.outbound_received_bytes =
            self.outbound_received_bytes.checked_add(u.outbound_received_bytes)?;
        self.records = self.records.checked_add(1)?;
        Some(())
    }
}

/// A stored record, as `q export` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredRecord {
    /// The node that signed it (peer id).
    pub node: String,
    /// Its sequence number on that node.
    pub seq: u64,
    /// The project id, as in TNS.
    pub project: String,
    /// The function's name within the project.
    pub function: String,
    /// Start of its window, ms since the Unix epoch.
    pub window_start_ms: u64,
    /// Length of its window, ms.
    pub window_ms: u64,
    /// What it counted.
    #[serde(flatten)]
    pub usage: Usage,
    /// The node's ed25519 signature over the canonical encoding, hex.
    #[serde(serialize_with = "as_hex")]
    pub signature: Vec<u8>,
    /// BLAKE3 of the canonical encoding and the signature, hex: the record's identity.
    #[serde(serialize_with = "as_hex")]
    pub hash: [u8; 32],
}

fn as_hex<S: serde::Serializer, T: AsRef<[u8]>>(bytes: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

/// The columns [`StoredRecord`] is read from, in its field order (a macro: queries are literals).
macro_rules! record_columns {
    () => {
        concat!(
            "node, seq, project, function, window_start_ms, window_ms, ",
            usage_columns!(),
            ", signature, hash"
        )
    };
}

/// Where a record stands in the order records were stored: its batch's ingest number, then its
/// sequence (a batch is one node's). The zero value comes before every record.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct Received {
    /// The ingest that stored it.
    pub ingest: u64,
    /// Its node's peer id.
    pub node: String,
    /// Its sequence number.
    pub seq: u64,
}

/// A proof q made, as the store notes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven {
    /// Its period's first millisecond.
    pub period_start_ms: u64,
    /// The first millisecond after the period.
    pub period_end_ms: u64,
    /// Its project, or empty for every project.
    pub project: String,
    /// Its root.
    pub root: [u8; 32],
    /// The root it amends, or zero for an original.
    pub amends: [u8; 32],
    /// The last ingest whose records it covers.
    pub through: u64,
}

/// Records of a proven period stored after its latest proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Late {
    /// The period's first millisecond.
    pub period_start_ms: u64,
    /// The first millisecond after it.
    pub period_end_ms: u64,
    /// The project proven, or empty for every project.
    pub project: String,
    /// The root of the latest proof of it: the one to amend.
    pub root: String,
    /// How many records came after it.
    pub records: u64,
}

fn clamp(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

/// The columns of a record's figures, in [`Usage::figures`]' order.
macro_rules! usage_columns {
    () => {
        "invocations, errors, wall_micros, cpu_micros, peak_memory, bytes_in, bytes_out, \
         kv_reads, kv_writes, storage_read_bytes, storage_written_bytes, outbound_requests, \
         outbound_sent_bytes, outbound_received_bytes"
    };
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The store on SQLite.
pub mod sqlite {
    use super::*;
    use sqlx::Sqlite as Db;
    use sqlx::SqlitePool as Pool;

    /// Commits that need not wait for the disk, and back (WAL: a killed process loses none).
    const RELAXED: (&str, &str) = ("PRAGMA synchronous = NORMAL", "PRAGMA synchronous = FULL");

    include!("store/body.rs");
}

/// The store on PostgreSQL.
pub mod postgres {
    use super::*;
    use sqlx::PgPool as Pool;
    use sqlx::Postgres as Db;

    /// Commits that need not wait for the WAL's flush, and back (a crash of the server may lose
    /// the last of them, never half of one).
    const RELAXED: (&str, &str) = ("SET synchronous_commit = off", "RESET synchronous_commit");

    include!("store/body.rs");
}

/// A store on the backend its URL names.
#[derive(Debug, Clone)]
pub enum Store {
    /// A SQLite file.
    Sqlite(sqlite::Store),
    /// A PostgreSQL database.
    Postgres(postgres::Store),
}

/// Calls the same method on whichever backend the store is.
macro_rules! on_backend {
    ($store:expr, $s:ident => $call:expr) => {
        match $store {
            Store::Sqlite($s) => $call,
            Store::Postgres($s) => $call,
        }
    };
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl Store {
    /// Opens (creating if needed) the database at `url`: `postgres://...` or `postgresql://...`
    /// for PostgreSQL; `sqlite://FILE`, `sqlite:FILE` or a plain path for SQLite.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let open_error =
            |e: sqlx::Error| StoreError::Open { database: redact(url), reason: e.to_string() };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(std::time::Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(open_error)?;
            return Ok(Store::Postgres(postgres::Store::new(pool).await?));
        }
        if url.contains("://") && !url.starts_with("sqlite://") {
            return Err(StoreError::Url(redact(url)));
        }
        let path =
            url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(open_error)?
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            // FULL: a committed batch survives a power cut, not only a killed process (the
            // node may prune what q acknowledged).
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(open_error)?;
        Ok(Store::Sqlite(sqlite::Store::new(pool).await?))
    }

    /// The next sequence number to ask `node` for.
    pub async fn cursor(&self, node: &PeerId) -> Result<u64, StoreError> {
        let node = node.to_string();
        on_backend!(self, s => s.cursor(&node).await)
    }

    /// Stores a batch in one transaction.
    pub async fn ingest(&self, batch: &Batch) -> Result<Ingested, StoreError> {
        on_backend!(self, s => s.ingest(batch).await)
    }

    /// Per (project, function), the sums of the records whose window starts in
    /// `[from_ms, to_ms)`, optionally of one project; sorted by project and function.
    ///
    /// Summed here over the whole `u64` range, from the same stream of records `q prove` sums,
    /// rather than by SQL: both backends keep a counter as a signed 64-bit integer (its bits,
    /// read back exactly), which SQL's `SUM` would read as negative above `i64::MAX`. A sum
    /// that does not fit in 64 bits is an error, as it is for a proof.
    pub async fn totals(
        &self,
        from_ms: u64,
        to_ms: u64,
        project: Option<&str>,
    ) -> Result<Vec<Total>, StoreError> {
        let mut totals: Vec<Total> = Vec::new();
        self.records(from_ms, to_ms, project, |record| {
            let same = totals
                .last()
                .is_some_and(|t| t.project == record.project && t.function == record.function);
            if !same {
                totals.push(Total {
                    project: record.project.clone(),
                    function: record.function.clone(),
                    invocations: 0,
                    errors: 0,
                    wall_micros: 0,
                    cpu_micros: 0,
                    kv_reads: 0,
                    kv_writes: 0,
                    storage_read_bytes: 0,
                    storage_written_bytes: 0,
                    outbound_sent_bytes: 0,
                    outbound_received_bytes: 0,
                    records: 0,
                });
            }
            let total = totals.last_mut().expect("pushed above");
            total.add(&record).ok_or_else(|| {
                std::io::Error::other(format!(
                    "the sums of {}/{} do not fit in 64 bits",
                    total.project, total.function
                ))
            })
        })
        .await?;
        Ok(totals)
    }

    /// Every record whose window starts in `[from_ms, to_ms)`, optionally of one project, in
    /// the order (project, function, node, seq), handed to `each` one at a time (never all in
    /// memory); stops at the first error `each` returns.
    pub async fn records(
        &self,
        from_ms: u64,
        to_ms: u64,
        project: Option<&str>,
        each: impl FnMut(StoredRecord) -> std::io::Result<()>,
    ) -> Result<u64, StoreError> {
        on_backend!(self, s => s.records(from_ms, to_ms, project, (-1, i64::MAX), each).await)
    }

    /// As [`Store::records`], only those stored by an ingest after `after` (any, if `None`)
    /// up to `through`.
    pub async fn records_received(
        &self,
        from_ms: u64,
        to_ms: u64,
        project: Option<&str>,
        (after, through): (Option<u64>, u64),
        each: impl FnMut(StoredRecord) -> std::io::Result<()>,
    ) -> Result<u64, StoreError> {
        let bounds = (after.map_or(-1, clamp), clamp(through));
        on_backend!(self, s => s.records(from_ms, to_ms, project, bounds, each).await)
    }

    /// Up to `limit` records stored after `cursor`, in the order they were stored (ingest,
    /// then node and seq), each with where it stands in that order.
    pub async fn records_after(
        &self,
        cursor: &Received,
        limit: u64,
        each: impl FnMut(Received, StoredRecord) -> std::io::Result<()>,
    ) -> Result<u64, StoreError> {
        on_backend!(self, s => s.records_after(cursor, limit, each).await)
    }

    /// The number of the last batch stored: a proof made now covers every record stored by
    /// an ingest up to it.
    pub async fn clock(&self) -> Result<u64, StoreError> {
        on_backend!(self, s => s.clock().await)
    }

    /// Notes a proof made, so a late record can be found and the proof amended.
    pub async fn note_proof(&self, proof: &Proven) -> Result<(), StoreError> {
        on_backend!(self, s => s.note_proof(proof).await)
    }

    /// A push target's cursor (the last record its receiver acknowledged) and the events
    /// acknowledged so far.
    pub async fn push_cursor(&self, target: &str) -> Result<(Received, u64), StoreError> {
        on_backend!(self, s => s.push_cursor(target).await)
    }

    /// Moves a push target's cursor past an acknowledged batch of `events`.
    pub async fn move_push_cursor(
        &self,
        target: &str,
        to: &Received,
        events: u64,
    ) -> Result<(), StoreError> {
        on_backend!(self, s => s.move_push_cursor(target, to, events).await)
    }

    /// Whether an alert rule is firing (false for a rule never seen).
    pub async fn alert_firing(&self, rule: &str) -> Result<bool, StoreError> {
        on_backend!(self, s => s.alert_firing(rule).await)
    }

    /// Notes that an alert rule fired or cleared.
    pub async fn set_alert(&self, rule: &str, firing: bool) -> Result<(), StoreError> {
        on_backend!(self, s => s.set_alert(rule, firing).await)
    }

    /// Every proof noted, oldest first.
    pub async fn proofs(&self) -> Result<Vec<Proven>, StoreError> {
        on_backend!(self, s => s.proofs().await)
    }

    /// Proven periods with late records: per period and project proven, the records of it
    /// stored after its latest proof (original or amendment), which `q prove --amend` proves.
    pub async fn late(&self) -> Result<Vec<Late>, StoreError> {
        let mut latest: std::collections::BTreeMap<(u64, u64, String), Proven> =
            std::collections::BTreeMap::new();
        for proof in self.proofs().await? {
            let key = (proof.period_start_ms, proof.period_end_ms, proof.project.clone());
            match latest.get(&key) {
                Some(seen) if seen.through >= proof.through => {}
                _ => {
                    latest.insert(key, proof);
                }
            }
        }
        let mut late = Vec::new();
        for ((from_ms, to_ms, project), proof) in latest {
            let named = Some(project.as_str()).filter(|p| !p.is_empty());
            let records = self.count_after(from_ms, to_ms, named, proof.through).await?;
            if records > 0 {
                late.push(Late {
                    period_start_ms: from_ms,
                    period_end_ms: to_ms,
                    project,
                    root: format!("0x{}", hex::encode(proof.root)),
                    records,
                });
            }
        }
        Ok(late)
    }

    /// How many records of a period (and project) were stored by an ingest after `through`.
    pub async fn count_after(
        &self,
        from_ms: u64,
        to_ms: u64,
        project: Option<&str>,
        through: u64,
    ) -> Result<u64, StoreError> {
        on_backend!(self, s => s.count_after(from_ms, to_ms, project, through).await)
    }

    /// Records kept aside.
    pub async fn rejected(&self) -> Result<Vec<(String, u64, String)>, StoreError> {
        on_backend!(self, s => s.rejected().await)
    }

    /// Gaps seen.
    pub async fn gaps(&self) -> Result<Vec<(String, u64, u64)>, StoreError> {
        on_backend!(self, s => s.gaps().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(redact("postgres://q:secret@localhost/q"), "postgres://q@localhost/q");
        assert_eq!(redact("postgres://localhost/q"), "postgres://localhost/q");
        assert_eq!(redact("q.db"), "q.db");
    }
}
