//! Answers `/tau/database/1`, and the writer task: every write and merge goes through one
//! queue, applied in batches of what is waiting (one redb commit each), and what the writes
//! changed is sent to the store's other holders.

use std::sync::Arc;

use libp2p::PeerId;
use serde_bytes::ByteBuf;
use tau_proto::database::{
    DatabaseProtocol, DatabaseRequest, DatabaseResponse, MAX_BATCH_BYTES, MAX_KEYS, Op, StoreId,
    check_key, check_ops,
};
use tau_proto::kv::KeyState;
use tau_proto::tns::values::Database;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Placement;
use super::store::{Change, Outcome, Store};
use crate::p2p::{self, Inbound};

/// The most changes applied in one commit.
const MAX_BATCH: usize = 512;

pub(crate) struct Shared {
    pub(crate) store: Arc<Store>,
    pub(crate) placement: Placement,
    pub(crate) handle: p2p::Handle,
    pub(crate) writes: mpsc::Sender<Pending>,
    /// This node's hoarder service, when it runs one (what storages' sweeps ask).
    pub(crate) hoarder: Option<crate::hoarder::Local>,
}

/// A change waiting for the writer, and who waits for its outcome.
pub(crate) struct Pending {
    change: Change,
    /// For a write: how many holders the store has (whom to send the change to).
    replicas: Option<u8>,
    reply: oneshot::Sender<Outcome>,
}

impl Shared {
    /// The record of a store that exists, or why not.
    pub(crate) async fn existing(&self, store: &StoreId) -> Result<Database, String> {
        match self.placement.record(store).await {
            Ok(Some(record)) => Ok(record),
            Ok(None) => Err(match tau_proto::storage::storage_of(store) {
                Some(name) => format!(
                    "project {} has no storage `{name}` (storages/{name}.yaml)",
                    store.project
                ),
                None => format!(
                    "project {} has no key-value store `{}` (databases/{}.yaml)",
                    store.project, store.name, store.name
                ),
            }),
            Err(e) => Err(format!("cannot read store {store}'s record: {e}")),
        }
    }

    /// The values of `keys`.
    pub(crate) async fn get(
        &self,
        store: &StoreId,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, String> {
        if keys.len() > MAX_KEYS {
            return Err(format!("at most {MAX_KEYS} keys at once, not {}", keys.len()));
        }
        keys.iter().try_for_each(|k| check_key(k))?;
        self.existing(store).await?;
        let states = self.store.states(store, keys).map_err(|e| e.to_string())?;
        Ok(states.into_iter().map(|s| s.and_then(|s| s.value())).collect())
    }

    /// Applies a function's `ops` here, then sends them to the store's other holders.
    pub(crate) async fn write(&self, store: StoreId, ops: Vec<Op>) -> Outcome {
        check_ops(&ops)?;
        let record = self.existing(&store).await?;
        let change = Change::Write { store, ops, max_bytes: record.max_bytes };
        self.submit(change, Some(record.replicas)).await
    }

    /// Merges states another holder sent.
    pub(crate) async fn merge(&self, store: StoreId, entries: Vec<(String, KeyState)>) -> Outcome {
        entries.iter().try_for_each(|(k, _)| check_key(k))?;
        self.existing(&store).await?;
        self.submit(Change::Merge { store, entries }, None).await
    }

    async fn submit(&self, change: Change, replicas: Option<u8>) -> Outcome {
        let (reply, outcome) = oneshot::channel();
        let pending = Pending { change, replicas, reply };
        if self.writes.send(pending).await.is_err() {
            return Err("the database service is stopping".into());
        }
        outcome.await.unwrap_or_else(|_| Err("the database service is stopping".into()))
    }

    /// A page of the store's keys.
    pub(crate) async fn list(
        &self,
        store: &StoreId,
        cursor: u64,
    ) -> Result<(Vec<String>, Option<u64>), String> {
        self.existing(store).await?;
        self.store.list(store, cursor, MAX_KEYS).map_err(|e| e.to_string())
    }

    async fn answer(&self, peer: PeerId, request: DatabaseRequest) -> DatabaseResponse {
        let refused = DatabaseResponse::Refused;
        match request {
            DatabaseRequest::Get { store, keys } => match self.get(&store, &keys).await {
                Ok(values) => DatabaseResponse::Values(
                    values.into_iter().map(|v| v.map(ByteBuf::from)).collect(),
                ),
                Err(e) => refused(e),
            },
            DatabaseRequest::Write { store, ops } => match self.write(store, ops).await {
                Ok(results) => DatabaseResponse::Written(results),
                Err(e) => refused(e),
            },
            DatabaseRequest::List { store, cursor } => match self.list(&store, cursor).await {
                Ok((keys, cursor)) => DatabaseResponse::Keys { keys, cursor },
                Err(e) => refused(e),
            },
            DatabaseRequest::Merge { store, entries } => match self.merge(store, entries).await {
                Ok(_) => DatabaseResponse::Merged,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "refused a merge");
                    refused(e)
                }
            },
            DatabaseRequest::Digest { store } => {
                DatabaseResponse::Digest(self.store.digests(&store))
            }
            DatabaseRequest::Bucket { store, bucket, after } => {
                match self.store.bucket(&store, bucket, after.as_deref()) {
                    Ok((entries, more)) => DatabaseResponse::Entries { entries, more },
                    Err(e) => refused(e.to_string()),
                }
            }
            DatabaseRequest::Stores => DatabaseResponse::Stores(self.store.stores()),
        }
    }
}

/// Answers requests, each in its own task (a write waits for the writer).
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut requests: mpsc::Receiver<Inbound<DatabaseRequest, DatabaseResponse>>,
    shutdown: CancellationToken,
) {
    loop {
        let Inbound { peer, request, reply } = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = requests.recv() => match next {
                Some(inbound) => inbound,
                None => return,
            },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = reply.send(shared.answer(peer, request).await);
        });
    }
}

/// Applies what is queued, a batch at a time, answers each change, and sends what writes
/// changed to the other holders.
pub(crate) async fn write_loop(
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<Pending>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = queue.recv() => match next {
                Some(pending) => pending,
                None => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        let mut changes = Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        for Pending { change, replicas, reply } in batch {
            let store = match &change {
                Change::Write { store, .. } => Some(store.clone()),
                Change::Merge { .. } => None,
            };
            changes.push(change);
            waiting.push((store.zip(replicas), reply));
        }
        let store = shared.store.clone();
        let applied = tokio::task::spawn_blocking(move || store.apply(changes)).await;
        let applied = match applied {
            Ok(Ok(applied)) => applied,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot apply writes");
                for (_, reply) in waiting {
                    let _ = reply.send(Err(e.to_string()));
                }
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "the database writer panicked");
                continue;
            }
        };
        let mut replicas_of = std::collections::HashMap::new();
        for ((store, reply), outcome) in waiting.into_iter().zip(applied.outcomes) {
            if let Some((store, replicas)) = store {
                replicas_of.insert(store, replicas);
            }
            let _ = reply.send(outcome);
        }
        for (store, entries) in applied.written {
            let replicas = replicas_of.get(&store).copied().unwrap_or(1);
            replicate(&shared, store, entries, replicas).await;
        }
    }
}

/// Sends `entries` of `store` to each of its other holders, in messages of at most
/// [`MAX_BATCH_BYTES`]; what does not arrive, anti-entropy brings later.
async fn replicate(
    shared: &Shared,
    store: StoreId,
    entries: Vec<(String, KeyState)>,
    replicas: u8,
) {
    let me = shared.handle.peer_id();
    let holders: Vec<PeerId> =
        shared.placement.holders(&store, replicas).await.into_iter().filter(|p| *p != me).collect();
    if holders.is_empty() {
        return;
    }
    for chunk in chunks(entries) {
        for peer in &holders {
            let handle = shared.handle.clone();
            let request = DatabaseRequest::Merge { store: store.clone(), entries: chunk.clone() };
            let peer = *peer;
            tokio::spawn(async move {
                match handle.call::<DatabaseProtocol>(peer, request).await {
                    Ok(DatabaseResponse::Merged) => {}
                    Ok(other) => tracing::debug!(%peer, ?other, "a holder did not merge"),
                    Err(e) => tracing::debug!(%peer, error = %e, "cannot send writes to a holder"),
                }
            });
        }
    }
}

/// `entries` in groups of at most [`MAX_BATCH_BYTES`] (a bigger one alone).
pub(crate) fn chunks(entries: Vec<(String, KeyState)>) -> Vec<Vec<(String, KeyState)>> {
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for (key, state) in entries {
        let bytes = state.size(&key) as usize + 64;
        if size + bytes > MAX_BATCH_BYTES && !current.is_empty() {
            chunks.push(std::mem::take(&mut current));
            size = 0;
        }
        size += bytes;
        current.push((key, state));
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}
