//! How substrate reaches a store: through this node's own database service when it holds the
//! store, else through the holders, nearest first (connected ones by ping time), the next one
//! when a holder does not answer.
//!
//! A read goes to the next holder on any failure. A write does too, except one with an
//! increment, which moves on only when the holder could not be reached at all: a holder that
//! took it and then failed to answer may have counted it, and counting it twice would be worse
//! than the error the function gets.

use std::sync::Arc;

use libp2p::PeerId;
use tau_proto::database::{
    DatabaseProtocol, DatabaseRequest, DatabaseResponse, Op, SERVICE, StoreId,
};

use super::{Local, Placement};
use crate::p2p::{self, RequestError};
use crate::tns::Registry;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// A holder refused it (no such store, full, a bad key): its reason.
    #[error("{0}")]
    Refused(String),
    /// No holder answered.
    #[error("no node holding store {store} answered: {reason}")]
    Unreachable {
        /// The store.
        store: StoreId,
        /// The last failure.
        reason: String,
    },
}

/// Substrate's way to the stores.
#[derive(Clone)]
pub struct Kv {
    inner: Arc<Inner>,
}

struct Inner {
    handle: p2p::Handle,
    local: Option<Local>,
    placement: Placement,
}

impl Kv {
    /// Stores reached from this node: `local` when it is a database node.
    pub fn new(handle: p2p::Handle, registry: Registry, local: Option<Local>) -> Self {
        let placement = Placement::new(handle.clone(), registry, local.is_some());
        Self { inner: Arc::new(Inner { handle, local, placement }) }
    }

    /// The holders to ask, in order, or this node's own service when it is one.
    async fn route(&self, store: &StoreId, replicas: u8) -> Result<Route<'_>, KvError> {
        let inner = &self.inner;
        let holders = inner.placement.holders(store, replicas).await;
        let me = inner.handle.peer_id();
        if let Some(local) = &inner.local
            && holders.contains(&me)
        {
            return Ok(Route::Local(local));
        }
        // The directory's order: connected first, nearest first.
        let nodes = inner.handle.nodes(SERVICE).await.unwrap_or_default();
        let ordered: Vec<PeerId> =
            nodes.into_iter().map(|n| n.peer).filter(|p| holders.contains(p)).collect();
        if ordered.is_empty() {
            return Err(KvError::Unreachable {
                store: store.clone(),
                reason: "no database node holds it (are any running?)".into(),
            });
        }
        Ok(Route::Remote(ordered))
    }

    async fn ask(
        &self,
        store: &StoreId,
        holders: Vec<PeerId>,
        request: DatabaseRequest,
        retry: impl Fn(&RequestError) -> bool,
    ) -> Result<DatabaseResponse, KvError> {
        let mut last = String::new();
        for peer in holders {
            match self.inner.handle.call::<DatabaseProtocol>(peer, request.clone()).await {
                Ok(DatabaseResponse::Refused(reason)) => return Err(KvError::Refused(reason)),
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    let again = retry(&e);
                    last = e.to_string();
                    if !again {
                        break;
                    }
                }
            }
        }
        Err(KvError::Unreachable { store: store.clone(), reason: last })
    }

    /// The values of `keys`.
    pub async fn get(
        &self,
        store: &StoreId,
        replicas: u8,
        keys: Vec<String>,
    ) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        let holders = match self.route(store, replicas).await? {
            Route::Local(local) => {
                return local.shared.get(store, &keys).await.map_err(KvError::Refused);
            }
            Route::Remote(holders) => holders,
        };
        let count = keys.len();
        let request = DatabaseRequest::Get { store: store.clone(), keys };
        match self.ask(store, holders, request, |_| true).await? {
            DatabaseResponse::Values(values) if values.len() == count => {
                Ok(values.into_iter().map(|v| v.map(|v| v.into_vec())).collect())
            }
            _ => Err(unexpected(store)),
        }
    }

    /// Applies `ops`, all or none; each one's result (an increment's new value).
    pub async fn write(
        &self,
        store: &StoreId,
        replicas: u8,
        ops: Vec<Op>,
    ) -> Result<Vec<Option<u64>>, KvError> {
        let holders = match self.route(store, replicas).await? {
            Route::Local(local) => {
                return local.shared.write(store.clone(), ops).await.map_err(KvError::Refused);
            }
            Route::Remote(holders) => holders,
        };
        let counts = ops.iter().any(|op| matches!(op, Op::Increment { .. }));
        let count = ops.len();
        let request = DatabaseRequest::Write { store: store.clone(), ops };
        let retry = |e: &RequestError| !counts || e.undelivered;
        match self.ask(store, holders, request, retry).await? {
            DatabaseResponse::Written(results) if results.len() == count => Ok(results),
            _ => Err(unexpected(store)),
        }
    }

    /// A page of the store's keys from `cursor`, and the next page's cursor.
    pub async fn list(
        &self,
        store: &StoreId,
        replicas: u8,
        cursor: u64,
    ) -> Result<(Vec<String>, Option<u64>), KvError> {
        let holders = match self.route(store, replicas).await? {
            Route::Local(local) => {
                return local.shared.list(store, cursor).await.map_err(KvError::Refused);
            }
            Route::Remote(holders) => holders,
        };
        let request = DatabaseRequest::List { store: store.clone(), cursor };
        match self.ask(store, holders, request, |_| true).await? {
            DatabaseResponse::Keys { keys, cursor } => Ok((keys, cursor)),
            _ => Err(unexpected(store)),
        }
    }
}

enum Route<'a> {
    Local(&'a Local),
    Remote(Vec<PeerId>),
}

fn unexpected(store: &StoreId) -> KvError {
    KvError::Unreachable { store: store.clone(), reason: "an answer that does not fit".into() }
}
