//! The `database` service: projects' key-value stores (`databases/<name>.yaml`), which functions
//! use through `wasi:keyvalue`.
//!
//! - [`store`]: the keys on disk (redb `<data>/database.redb`), each store's size and digests.
//! - `service`: answers `/tau/database/1`; the writer task, which applies writes and merges in
//!   batches (one redb commit for all the writes waiting) and sends what the writes changed to
//!   the store's other holders.
//! - `sync`: anti-entropy. Every [`SYNC_INTERVAL`] each store held is compared (bucket
//!   digests) with one other holder, in turn, and the buckets that differ are exchanged both
//!   ways, so a holder that was down, cut off or new catches up by itself.
//! - `sweep`: storages' pins ([`tau_proto::storage`]): the first holder of a storage's index
//!   pins the blobs its keys name and unpins those no key names any more.
//! - [`Kv`]: how substrate reaches a store: its own store when this node holds it, else the
//!   nearest holder that answers.
//!
//! A store is held by its record's `replicas` database nodes, chosen by rendezvous hashing of
//! its name over every database node the operator admitted ([`tau_proto::database::holders`]).
//! A write is answered once it is committed on the node that took it and on its way to the
//! other holders.

mod access;
mod service;
pub mod store;
mod sweep;
mod sync;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use access::{Kv, KvError};
use libp2p::PeerId;
use tau_proto::cbor;
use tau_proto::database::{DatabaseProtocol, SERVICE, StoreId, holders};
use tau_proto::tns::keys;
use tau_proto::tns::values::{Database, Storage};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::p2p;
use crate::tns::Registry;

/// How often each store held is compared with another holder.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(2);
/// How long a store's record (limit, replicas, functions) is used before it is read again.
const RECORD_AGE: Duration = Duration::from_secs(5);
/// How long "no such store" is used: a store just deployed is served within this.
const MISSING_AGE: Duration = Duration::from_millis(500);
/// How long the list of database nodes is used before it is asked for again.
const MEMBERS_AGE: Duration = Duration::from_secs(2);

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatabaseError {
    /// Its file.
    #[error(transparent)]
    Store(#[from] crate::db::DbError),
    /// The p2p task stopped.
    #[error("cannot start the database service: {0}")]
    P2p(#[from] p2p::Stopped),
}

/// Where stores live: the database nodes, and the records that say what each store is.
pub(crate) struct Placement {
    handle: p2p::Handle,
    registry: Registry,
    /// Whether this node is a database node.
    member: bool,
    members: Mutex<Option<(Instant, Vec<PeerId>)>>,
    records: Mutex<HashMap<StoreId, (Instant, Option<Database>)>>,
}

impl Placement {
    pub(crate) fn new(handle: p2p::Handle, registry: Registry, member: bool) -> Self {
        Self { handle, registry, member, members: Mutex::default(), records: Mutex::default() }
    }

    /// The store's record, if the project declares it (read at most every [`RECORD_AGE`]).
    pub(crate) async fn record(&self, store: &StoreId) -> Result<Option<Database>, String> {
        if let Some((at, record)) = lock(&self.records).get(store) {
            let age = if record.is_some() { RECORD_AGE } else { MISSING_AGE };
            if at.elapsed() < age {
                return Ok(record.clone());
            }
        }
        let database = match tau_proto::storage::storage_of(store) {
            None => {
                let key = keys::database(&store.project, &store.name);
                let record = self.registry.get(&key).await.map_err(|e| e.to_string())?;
                record
                    .filter(|r| r.scope == store.project)
                    .and_then(|r| cbor::from_slice::<Database>(r.value.as_deref()?).ok())
                    .filter(|d| d.name == store.name)
            }
            // A storage's index: held like a store of the default replicas, its limit the
            // storage's (which its keys' blobs count against).
            Some(name) => {
                let key = keys::storage(&store.project, name);
                let record = self.registry.get(&key).await.map_err(|e| e.to_string())?;
                record
                    .filter(|r| r.scope == store.project)
                    .and_then(|r| cbor::from_slice::<Storage>(r.value.as_deref()?).ok())
                    .filter(|s| s.name == name)
                    .map(|s| Database {
                        name: store.name.clone(),
                        functions: s.functions,
                        max_bytes: s.max_bytes,
                        replicas: tau_proto::database::DEFAULT_REPLICAS,
                    })
            }
        };
        let mut records = lock(&self.records);
        if records.len() > 10_000 {
            records.retain(|_, (at, _)| at.elapsed() < RECORD_AGE);
        }
        records.insert(store.clone(), (Instant::now(), database.clone()));
        Ok(database)
    }

    /// Every database node (this one too, if it is one).
    async fn members(&self) -> Vec<PeerId> {
        if let Some((at, members)) = &*lock(&self.members)
            && at.elapsed() < MEMBERS_AGE
        {
            return members.clone();
        }
        let mut members: Vec<PeerId> = match self.handle.nodes(SERVICE).await {
            Ok(nodes) => nodes.into_iter().map(|n| n.peer).collect(),
            Err(_) => Vec::new(),
        };
        if self.member {
            members.push(self.handle.peer_id());
        }
        *lock(&self.members) = Some((Instant::now(), members.clone()));
        members
    }

    /// The nodes that hold a store with `replicas` copies, best first.
    pub(crate) async fn holders(&self, store: &StoreId, replicas: u8) -> Vec<PeerId> {
        let members = self.members().await;
        holders(store, &members, |p| p.to_bytes(), replicas as usize)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A database node's own stores, for the node's substrate.
#[derive(Clone)]
pub struct Local {
    shared: Arc<service::Shared>,
}

/// Starts the service: opens the stores, serves `/tau/database/1`, runs the writer,
/// anti-entropy and the sweep of storages' pins (whose grace is `storage_grace`), through
/// this node's `hoarder` when it runs one.
pub async fn start(
    handle: p2p::Handle,
    data_dir: &Path,
    registry: Registry,
    hoarder: Option<crate::hoarder::Local>,
    storage_grace: Duration,
    shutdown: CancellationToken,
) -> Result<(Vec<JoinHandle<()>>, Local), DatabaseError> {
    let node = tau_proto::database::node_number(&handle.peer_id().to_bytes());
    let store = store::Store::open(&data_dir.join("database.redb"), node)?;
    let stores = store.stores();
    tracing::info!(
        stores = stores.len(),
        keys = stores.iter().map(|s| s.keys).sum::<u64>(),
        "database stores opened"
    );
    let (writes, queue) = mpsc::channel(4096);
    let shared = Arc::new(service::Shared {
        store: Arc::new(store),
        placement: Placement::new(handle.clone(), registry, true),
        handle: handle.clone(),
        writes,
        hoarder,
    });
    let (inbox, requests) = mpsc::channel(1024);
    handle.serve::<DatabaseProtocol>(inbox).await?;
    let tasks = vec![
        tokio::spawn(service::write_loop(shared.clone(), queue, shutdown.clone())),
        tokio::spawn(service::run(shared.clone(), requests, shutdown.clone())),
        tokio::spawn(sync::run(shared.clone(), shutdown.clone())),
        tokio::spawn(sweep::run(shared.clone(), storage_grace, shutdown)),
    ];
    Ok((tasks, Local { shared }))
}
