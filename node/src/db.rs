//! The node's embedded database: one redb file per service in the data folder (`tns.redb`,
//! `vault.redb`, `counters.redb`), opened through [`Db`].
//!
//! Every failure is a [`DbError`] that names the store and its file. After an I/O error redb
//! refuses every later call on the same handle, so [`Db`] drops a handle that saw one and opens
//! the file again on the next call: a node whose disk was full writes again as soon as it has
//! room, without a restart.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};

/// Opens the database file (at first, and again after an I/O error).
pub type Opener = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>;

/// A store's database failed.
#[derive(Debug, thiserror::Error)]
#[error("{store} {path}: {failure}")]
pub struct DbError {
    store: &'static str,
    path: String,
    failure: Box<Failure>,
}

/// What went wrong inside a transaction: redb's error, or the data read was not what the store
/// wrote (it does not decode, or cannot be made).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// From redb (an I/O error closes the handle: see [`Db`]).
    #[error(transparent)]
    Db(#[from] redb::Error),
    /// From the store's own reading or writing of its values.
    #[error("{0}")]
    Data(Box<dyn std::error::Error + Send + Sync>),
}

impl Failure {
    /// A failure of the store's own code, such as a value that does not decode.
    pub fn data(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Data(e.into())
    }

    fn closes_handle(&self) -> bool {
        matches!(self, Self::Db(redb::Error::Io(_) | redb::Error::PreviousIo))
    }
}

macro_rules! failure_from {
    ($($error:ty),*) => {$(
        impl From<$error> for Failure {
            fn from(e: $error) -> Self {
                Self::Db(e.into())
            }
        }
    )*};
}

failure_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// One redb file. Transactions run concurrently; a handle that saw an I/O error is replaced on
/// the next call.
pub struct Db {
    store: &'static str,
    path: String,
    opener: Opener,
    /// `None` after an I/O error until the next call opens the file again.
    handle: Mutex<Option<Arc<Database>>>,
}

impl Db {
    /// Opens (or creates) the file at `path` for `store` (the name errors give it, such as
    /// "tns store"), and runs `init` (creating the tables) in a first write transaction.
    pub fn open(
        store: &'static str,
        path: &Path,
        init: impl FnOnce(&WriteTransaction) -> Result<(), Failure>,
    ) -> Result<Self, DbError> {
        let file = path.to_path_buf();
        Self::open_with(store, path, Box::new(move || Database::create(&file)), init)
    }

    /// [`Db::open`] with the file opened by `opener`, such as one over a test's storage backend.
    pub fn open_with(
        store: &'static str,
        path: &Path,
        opener: Opener,
        init: impl FnOnce(&WriteTransaction) -> Result<(), Failure>,
    ) -> Result<Self, DbError> {
        let mut db =
            Self { store, path: path.display().to_string(), opener, handle: Mutex::default() };
        let first = (db.opener)().map_err(|e| db.error(e))?;
        db.handle = Mutex::new(Some(Arc::new(first)));
        db.write(init)?;
        Ok(db)
    }

    /// The file, as errors and logs show it.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A [`DbError`] of this store, for a failure found outside a transaction.
    pub fn error(&self, failure: impl Into<Failure>) -> DbError {
        DbError { store: self.store, path: self.path.clone(), failure: Box::new(failure.into()) }
    }

    /// Runs `work` in a read transaction.
    pub fn read<T>(
        &self,
        work: impl FnOnce(&ReadTransaction) -> Result<T, Failure>,
    ) -> Result<T, DbError> {
        self.with(|db| work(&db.begin_read()?))
    }

    /// Runs `work` in a write transaction and commits it if `work` succeeds; an error from
    /// `work` leaves the database as it was.
    pub fn write<T>(
        &self,
        work: impl FnOnce(&WriteTransaction) -> Result<T, Failure>,
    ) -> Result<T, DbError> {
        self.with(|db| {
            let txn = db.begin_write()?;
            let done = work(&txn)?;
            txn.commit()?;
            Ok(done)
        })
    }

    fn handle(&self) -> MutexGuard<'_, Option<Arc<Database>>> {
        self.handle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` on the database, opening the file first when there is no handle; an I/O
    /// error in `work` drops the handle.
    fn with<T>(&self, work: impl FnOnce(&Database) -> Result<T, Failure>) -> Result<T, DbError> {
        let db = {
            let mut handle = self.handle();
            match &*handle {
                Some(db) => db.clone(),
                None => {
                    let db = Arc::new((self.opener)().map_err(|e| self.error(e))?);
                    tracing::info!(store = self.store, path = %self.path, "opened again");
                    *handle = Some(db.clone());
                    db
                }
            }
        };
        let result = work(&db);
        if let Err(failure) = &result
            && failure.closes_handle()
        {
            let mut handle = self.handle();
            if handle.as_ref().is_some_and(|current| Arc::ptr_eq(current, &db)) {
                *handle = None;
            }
        }
        result.map_err(|failure| self.error(failure))
    }
}

/// A file whose writes fail on demand, as on a full or failing disk: for tests of what a store
/// does then.
#[cfg(test)]
pub(crate) mod failing_disk {
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use redb::backends::FileBackend;

    use super::Opener;

    /// Opens `path` over a backend whose writes fail with ENOSPC while `failing` is set.
    pub(crate) fn opener(path: &Path, failing: &Arc<AtomicBool>) -> Opener {
        let (path, failing) = (path.to_path_buf(), failing.clone());
        Box::new(move || {
            let handle = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            let file = FileBackend::new(handle)?;
            redb::Builder::new().create_with_backend(FailingDisk { file, failing: failing.clone() })
        })
    }

    #[derive(Debug)]
    struct FailingDisk {
        file: FileBackend,
        failing: Arc<AtomicBool>,
    }

    impl FailingDisk {
        fn check(&self) -> std::io::Result<()> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
            }
            Ok(())
        }
    }

    impl redb::StorageBackend for FailingDisk {
        fn len(&self) -> std::io::Result<u64> {
            self.file.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            self.file.read(offset, out)
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.check()?;
            self.file.set_len(len)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            self.check()?;
            self.file.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.check()?;
            self.file.write(offset, data)
        }
        fn close(&self) -> std::io::Result<()> {
            self.file.close()
        }
        fn try_lock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.file.try_lock_range(start, end)
        }
        fn try_lock_shared_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.file.try_lock_shared_range(start, end)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use redb::TableDefinition;

    use super::*;

    const VALUES: TableDefinition<&str, u64> = TableDefinition::new("values");

    fn put(db: &Db, key: &str, value: u64) -> Result<(), DbError> {
        db.write(|txn| {
            txn.open_table(VALUES)?.insert(key, value)?;
            Ok(())
        })
    }

    fn get(db: &Db, key: &str) -> Result<Option<u64>, DbError> {
        db.read(|txn| Ok(txn.open_table(VALUES)?.get(key)?.map(|v| v.value())))
    }

    #[test]
    fn after_an_io_error_the_file_is_opened_again_and_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.redb");
        let failing = Arc::new(AtomicBool::new(false));
        let opener = failing_disk::opener(&path, &failing);
        let db = Db::open_with("test store", &path, opener, |txn| {
            txn.open_table(VALUES)?;
            Ok(())
        })
        .unwrap();
        put(&db, "a", 1).unwrap();

        failing.store(true, Ordering::SeqCst);
        let error = put(&db, "b", 2).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("test store {}: ", path.display())),
            "the error names the store and its file: {error}"
        );
        // redb refuses every call on the handle that saw the error; the disk is still full.
        assert!(put(&db, "b", 2).is_err());

        failing.store(false, Ordering::SeqCst);
        put(&db, "b", 2).unwrap();
        assert_eq!((get(&db, "a").unwrap(), get(&db, "b").unwrap()), (Some(1), Some(2)));
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.redb");
        let db = Db::open("test store", &path, |txn| {
            txn.open_table(VALUES)?;
            Ok(())
        })
        .unwrap();
        let refused = db.write(|txn| {
            txn.open_table(VALUES)?.insert("a", 1)?;
            Err::<(), _>(Failure::data("the second value does not encode"))
        });
        let error = refused.unwrap_err().to_string();
        assert!(error.ends_with(": the second value does not encode"), "{error}");
        assert_eq!(get(&db, "a").unwrap(), None);
        drop(db);
        let db = Db::open("test store", &path, |_| Ok(())).unwrap();
        assert_eq!(get(&db, "a").unwrap(), None, "nothing on disk either");
    }
}
