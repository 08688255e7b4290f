//! `wasi:keyvalue` (store, atomics, batch) for functions, over the `database` service.
//!
//! A function opens a store of its own project by name: one its project does not declare is
//! `no-such-store`, one that does not list the function is `access-denied`. There is no way to
//! name another project's store: the project is the function's own. Every other failure (the
//! store is full, a key is too long, no holder answered) is `other` with the reason.
//!
//! wasmtime's `wasmtime-wasi-keyvalue` implements these interfaces over an in-memory map with
//! synchronous calls; a store here is on other nodes, so the node binds the same WIT (in
//! `node/wit`) with async host calls of its own.

use std::collections::BTreeMap;

use tau_proto::database::{MAX_KEYS, Op, StoreId};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::database::{Kv, KvError};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "tau:node/keyvalue",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};
use store::{Error, KeyResponse};

/// An open store.
pub struct Bucket {
    store: StoreId,
    replicas: u8,
}

/// What a function's instances may open: its project's stores, by name, with the number of
/// holders of those the function may use (`None`: declared, but not for this function).
#[derive(Clone, Default)]
pub struct Stores {
    /// The way to the database nodes; none on a node built without one (tests).
    pub kv: Option<Kv>,
    /// The function's project.
    pub project: String,
    /// The project's stores.
    pub declared: BTreeMap<String, Option<u8>>,
}

/// What one invocation did with stores, for its counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct KvUse {
    /// Reads (get, exists, list-keys, get-many: one per call).
    pub reads: u64,
    /// Writes (set, delete, increment, set-many, delete-many: one per call).
    pub writes: u64,
}

/// The host side of one invocation.
pub struct KvView<'a> {
    pub(super) stores: &'a Stores,
    pub(super) table: &'a mut ResourceTable,
    pub(super) used: &'a mut KvUse,
}

/// The [`HasData`] of the key-value bindings.
pub struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

/// Adds the key-value interfaces to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasKv>(linker, view)?;
    atomics::add_to_linker::<T, HasKv>(linker, view)?;
    batch::add_to_linker::<T, HasKv>(linker, view)?;
    Ok(())
}

fn other(e: KvError) -> Error {
    Error::Other(e.to_string())
}

impl KvView<'_> {
    fn bucket(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<(StoreId, u8, Kv)> {
        let open = self.table.get(bucket)?;
        // A bucket is only opened with a way to the stores.
        let kv =
            self.stores.kv.clone().ok_or_else(|| wasmtime::Error::msg("no key-value stores"))?;
        Ok((open.store.clone(), open.replicas, kv))
    }

    async fn get_values(
        &mut self,
        bucket: &Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<Vec<u8>>>, Error>> {
        self.used.reads += 1;
        if keys.len() > MAX_KEYS {
            return Ok(Err(Error::Other(format!("at most {MAX_KEYS} keys at once"))));
        }
        let (store, replicas, kv) = self.bucket(bucket)?;
        Ok(kv.get(&store, replicas, keys).await.map_err(other))
    }

    async fn write(
        &mut self,
        bucket: &Resource<Bucket>,
        ops: Vec<Op>,
    ) -> wasmtime::Result<Result<Vec<Option<u64>>, Error>> {
        self.used.writes += 1;
        if ops.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        if let Err(e) = tau_proto::database::check_ops(&ops) {
            return Ok(Err(Error::Other(e)));
        }
        let (store, replicas, kv) = self.bucket(bucket)?;
        Ok(kv.write(&store, replicas, ops).await.map_err(other))
    }
}

impl store::Host for KvView<'_> {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, Error>> {
        let replicas = match self.stores.declared.get(&identifier) {
            None => return Ok(Err(Error::NoSuchStore)),
            Some(None) => return Ok(Err(Error::AccessDenied)),
            Some(Some(replicas)) => *replicas,
        };
        if self.stores.kv.is_none() {
            return Ok(Err(Error::Other("this node cannot reach key-value stores".into())));
        }
        let store = StoreId { project: self.stores.project.clone(), name: identifier };
        Ok(Ok(self.table.push(Bucket { store, replicas })?))
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(self.get_values(&bucket, vec![key]).await?.map(|mut v| v.pop().flatten()))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.write(&bucket, vec![Op::Set { key, value }]).await?.map(drop))
    }

    async fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.write(&bucket, vec![Op::Delete { key }]).await?.map(drop))
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        Ok(self
            .get_values(&bucket, vec![key])
            .await?
            .map(|v| v.into_iter().flatten().next().is_some()))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<KeyResponse, Error>> {
        self.used.reads += 1;
        let (store, replicas, kv) = self.bucket(&bucket)?;
        Ok(kv
            .list(&store, replicas, cursor.unwrap_or(0))
            .await
            .map(|(keys, cursor)| KeyResponse { keys, cursor })
            .map_err(other))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let written = self.write(&bucket, vec![Op::Increment { key, delta }]).await?;
        Ok(written.map(|results| results.first().copied().flatten().unwrap_or(0)))
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, Error>> {
        let values = self.get_values(&bucket, keys.clone()).await?;
        Ok(values.map(|values| {
            keys.into_iter().zip(values).map(|(key, value)| value.map(|v| (key, v))).collect()
        }))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let ops = key_values.into_iter().map(|(key, value)| Op::Set { key, value }).collect();
        Ok(self.write(&bucket, ops).await?.map(drop))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let ops = keys.into_iter().map(|key| Op::Delete { key }).collect();
        Ok(self.write(&bucket, ops).await?.map(drop))
    }
}
