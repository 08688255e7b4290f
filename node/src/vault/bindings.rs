//! Which secret each ciphertext belongs to, on this node's disk (redb, `<data>/vault.redb`).
//!
//! A vault node binds a ciphertext's id ([`tau_proto::vault::ciphertext_id`]) to the first
//! secret key it checks it under, and never gives a decryption share for that ciphertext under
//! another key: copying another project's ciphertext into one's own project gets a refusal,
//! not the other project's plaintext.

use std::path::Path;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::db::{Db, DbError};

const BINDINGS: TableDefinition<&[u8], &str> = TableDefinition::new("bindings");

/// Ciphertext id to the secret key it was first checked under.
pub struct Bindings {
    db: Db,
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
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let db = Db::open("vault bindings", path, |txn| {
            txn.open_table(BINDINGS)?;
            Ok(())
        })?;
        Ok(Self { db })
    }

    /// The key `id` is bound to, if any.
    pub fn lookup(&self, id: &[u8; 32]) -> Result<Option<String>, DbError> {
        self.db.read(|txn| {
            let table = txn.open_table(BINDINGS)?;
            Ok(table.get(id.as_slice())?.map(|v| v.value().to_string()))
        })
    }

    /// Binds every id to its key in one transaction, unless one is bound elsewhere: then
    /// nothing changes and that binding is returned.
    pub fn bind(&self, pairs: &[([u8; 32], &str)]) -> Result<Bound, DbError> {
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
        self.db.write(|txn| {
            let mut table = txn.open_table(BINDINGS)?;
            // Another request may have bound one since the read: the write transaction is
            // exclusive, so look again inside it, all before writing any.
            for (id, key) in &missing {
                if let Some(bound) = table.get(id.as_slice())?
                    && bound.value() != **key
                {
                    return Ok(Bound::Elsewhere(bound.value().to_string()));
                }
            }
            for (id, key) in missing {
                table.insert(id.as_slice(), *key)?;
            }
            Ok(Bound::Ok)
        })
    }

    /// How many ciphertexts are bound: the secrets this node has checked.
    pub fn count(&self) -> Result<u64, DbError> {
        self.db.read(|txn| Ok(txn.open_table(BINDINGS)?.len()?))
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
