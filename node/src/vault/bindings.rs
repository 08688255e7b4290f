//! Which secret each ciphertext belongs to, on this node's disk (redb, `<data>/vault.redb`).
//!
//! A vault node binds a ciphertext's id ([`tau_proto::vault::ciphertext_id`]) to the first
//! secret key it checks it under, and never gives a decryption share for that ciphertext under
//! another key: copying another project's ciphertext into one's own project gets a refusal,
//! not the other project's plaintext.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

const BINDINGS: TableDefinition<&[u8], &str> = TableDefinition::new("bindings");

/// Why the bindings could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("vault bindings {path}: {message}")]
pub struct BindingsError {
    path: String,
    message: String,
}

/// The bindings table.
pub struct Bindings {
    db: Database,
    path: String,
}

/// The outcome of [`Bindings::bind`].
#[derive(Debug, PartialEq, Eq)]
pub enum Bound {
    /// The ciphertext belongs to this key (now, or already).
    Ok,
    /// The ciphertext belongs to another key.
    Elsewhere(String),
}

impl Bindings {
    /// Opens (or creates) the table at `path`.
    pub fn open(path: &Path) -> Result<Self, BindingsError> {
        let error = |e: &dyn std::fmt::Display| BindingsError {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let db = Database::create(path).map_err(|e| error(&e))?;
        let txn = db.begin_write().map_err(|e| error(&e))?;
        txn.open_table(BINDINGS).map_err(|e| error(&e))?;
        txn.commit().map_err(|e| error(&e))?;
        Ok(Self { db, path: path.display().to_string() })
    }

    fn error(&self, e: impl std::fmt::Display) -> BindingsError {
        BindingsError { path: self.path.clone(), message: e.to_string() }
    }

    /// The key `id` is bound to, if any.
    pub fn lookup(&self, id: &[u8; 32]) -> Result<Option<String>, BindingsError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(BINDINGS).map_err(|e| self.error(e))?;
        Ok(table.get(id.as_slice()).map_err(|e| self.error(e))?.map(|v| v.value().to_string()))
    }

    /// Binds every id to its key in one transaction, unless one is bound elsewhere: then
    /// nothing changes and that binding is returned.
    pub fn bind(&self, pairs: &[([u8; 32], &str)]) -> Result<Bound, BindingsError> {
        let mut missing = Vec::new();
        for (id, key) in pairs {
            match self.lookup(id)? {
                Some(bound) if bound == *key => {}
                Some(bound) => return Ok(Bound::Elsewhere(bound)),
                None => missing.push((id, key)),
            }
        }
        if missing.is_empty() {
            return Ok(Bound::Ok);
        }
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            let mut table = txn.open_table(BINDINGS).map_err(|e| self.error(e))?;
            for (id, key) in missing {
                // Another request may have bound it since the read: the write transaction is
                // exclusive, so look again inside it.
                let existing = table
                    .get(id.as_slice())
                    .map_err(|e| self.error(e))?
                    .map(|v| v.value().to_string());
                match existing {
                    Some(bound) if bound != **key => return Ok(Bound::Elsewhere(bound)),
                    Some(_) => {}
                    None => {
                        table.insert(id.as_slice(), *key).map_err(|e| self.error(e))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| self.error(e))?;
        Ok(Bound::Ok)
    }

    /// How many ciphertexts are bound: the secrets this node has checked.
    pub fn count(&self) -> Result<u64, BindingsError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(BINDINGS).map_err(|e| self.error(e))?;
        table.len().map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ciphertext_belongs_to_the_first_key_it_was_bound_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.redb");
        let bindings = Bindings::open(&path).unwrap();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(bindings.bind(&[(a, "/projects/shop/secrets/db")]).unwrap(), Bound::Ok);
        assert_eq!(bindings.bind(&[(a, "/projects/shop/secrets/db")]).unwrap(), Bound::Ok);
        assert_eq!(
            bindings
                .bind(&[(b, "/projects/evil/secrets/x"), (a, "/projects/evil/secrets/db")])
                .unwrap(),
            Bound::Elsewhere("/projects/shop/secrets/db".into())
        );
        // The refused batch bound nothing.
        assert_eq!(bindings.count().unwrap(), 1);
        drop(bindings);
        let bindings = Bindings::open(&path).unwrap();
        assert_eq!(bindings.count().unwrap(), 1, "kept across a restart");
    }
}
