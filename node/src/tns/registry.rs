//! Reading and writing the registry from the node's other services (substrate, vault): through
//! the node's own tns when it runs one, else through the connected tns nodes.

use libp2p::PeerId;
use tau_proto::tns::TnsProtocol;
use tau_proto::tns::{MAX_PAGE, PutOutcome, Record, TnsRequest, TnsResponse};

use super::Local;
use crate::db::DbError;
use crate::p2p::{self, RequestError};

/// Why the registry could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum RegistryError {
    /// The node's own registry could not be read.
    #[error(transparent)]
    Store(#[from] DbError),
    /// The registry refused the request, with its reason.
    #[error("the registry refused: {0}")]
    Refused(String),
    /// A registry node answered something that does not fit the request.
    #[error("{peer} gave an unexpected answer to {request}")]
    Unexpected { peer: PeerId, request: &'static str },
    /// A registry node could not be asked.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// No registry node answered: the last one's error.
    #[error("no registry node answered (last: {0})")]
    NoAnswer(Box<RegistryError>),
    /// No registry node is connected.
    #[error("no registry node is connected")]
    NoNode,
    /// The node's own registry has not yet synced with the cloud's: what it lacks may be new.
    #[error("this node's registry is still catching up with the cloud's")]
    CatchingUp,
    /// The p2p task has stopped.
    #[error(transparent)]
    Stopped(#[from] p2p::Stopped),
}

/// Where the registry is read from.
#[derive(Clone)]
pub enum Registry {
    /// This node runs tns.
    Local(Local),
    /// Another node's tns, over `/tau/tns/1`.
    Remote(p2p::Handle),
}

impl Registry {
    /// Whether what the registry lacks is really not there: the node's own registry once it
    /// has caught up with the cloud's (see [`super::Local::caught_up`]); always for another
    /// node's.
    pub fn caught_up(&self) -> bool {
        match self {
            Self::Local(local) => local.caught_up(),
            Self::Remote(_) => true,
        }
    }

    /// Stores signed records: in the node's own registry (and gossips them), or at the first
    /// tns node that answers (which gossips them).
    pub async fn put(&self, records: Vec<Record>) -> Result<PutOutcome, RegistryError> {
        match self {
            Self::Local(local) => local.put(records).await,
            Self::Remote(handle) => {
                remote(handle, |peer| {
                    let handle = handle.clone();
                    let records = records.clone();
                    async move {
                        match handle.call::<TnsProtocol>(peer, TnsRequest::Put { records }).await {
                            Ok(TnsResponse::Put(outcome)) => Ok(outcome),
                            Ok(TnsResponse::Error(e)) => Err(RegistryError::Refused(e)),
                            Ok(_) => Err(RegistryError::Unexpected { peer, request: "Put" }),
                            Err(e) => Err(e.into()),
                        }
                    }
                })
                .await
            }
        }
    }

    /// The highest version the registry has seen: a writer signs with one more.
    pub async fn clock(&self) -> Result<u64, RegistryError> {
        match self {
            Self::Local(local) => Ok(local.clock()),
            Self::Remote(handle) => {
                remote(handle, |peer| {
                    let handle = handle.clone();
                    async move {
                        match handle.call::<TnsProtocol>(peer, TnsRequest::Status).await {
                            Ok(TnsResponse::Status(status)) => Ok(status.clock),
                            Ok(TnsResponse::Error(e)) => Err(RegistryError::Refused(e)),
                            Ok(_) => Err(RegistryError::Unexpected { peer, request: "Status" }),
                            Err(e) => Err(e.into()),
                        }
                    }
                })
                .await
            }
        }
    }

    /// Every live record under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Record>, RegistryError> {
        match self {
            Self::Local(local) => Ok(local.list(prefix)?),
            Self::Remote(handle) => {
                remote(handle, |peer| {
                    let prefix = prefix.to_string();
                    let handle = handle.clone();
                    async move { list_from(&handle, peer, &prefix).await }
                })
                .await
            }
        }
    }

    /// The live record at `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Record>, RegistryError> {
        match self {
            Self::Local(local) => Ok(local.get(key)?.filter(|r| !r.is_tombstone())),
            Self::Remote(handle) => {
                let records = remote(handle, |peer| {
                    let handle = handle.clone();
                    let keys = vec![key.to_string()];
                    async move {
                        match handle.call::<TnsProtocol>(peer, TnsRequest::Get { keys }).await {
                            Ok(TnsResponse::Records(records)) => Ok(records),
                            Ok(TnsResponse::Error(e)) => Err(RegistryError::Refused(e)),
                            Ok(_) => Err(RegistryError::Unexpected { peer, request: "Get" }),
                            Err(e) => Err(e.into()),
                        }
                    }
                })
                .await?;
                Ok(records.into_iter().find(|r| r.key == key && !r.is_tombstone() && r.verify()))
            }
        }
    }
}

/// Asks the tns nodes in turn until one answers: the connected ones first, those that answered
/// a ping most recently first (a node cut off is still connected for a few seconds, but
/// quiet), then the others (dialed on demand).
async fn remote<T, F, Fut>(handle: &p2p::Handle, ask: F) -> Result<T, RegistryError>
where
    F: Fn(PeerId) -> Fut,
    Fut: std::future::Future<Output = Result<T, RegistryError>>,
{
    let mut peers = handle.nodes("tns").await?;
    peers.sort_by_key(|p| (!p.connected, p.quiet.unwrap_or_default()));
    let mut last = RegistryError::NoNode;
    for peer in &peers {
        match ask(peer.peer).await {
            Ok(answer) => return Ok(answer),
            Err(e) => last = e,
        }
    }
    match last {
        RegistryError::NoNode => Err(last),
        other => Err(RegistryError::NoAnswer(Box::new(other))),
    }
}

async fn list_from(
    handle: &p2p::Handle,
    peer: PeerId,
    prefix: &str,
) -> Result<Vec<Record>, RegistryError> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let request = TnsRequest::List {
            prefix: prefix.to_string(),
            after,
            limit: MAX_PAGE,
            tombstones: false,
        };
        match handle.call::<TnsProtocol>(peer, request).await {
            Ok(TnsResponse::Page { records, next }) => {
                all.extend(records.into_iter().filter(Record::verify));
                match next {
                    Some(next) => after = Some(next),
                    None => return Ok(all),
                }
            }
            Ok(TnsResponse::Error(e)) => return Err(RegistryError::Refused(e)),
            Ok(_) => return Err(RegistryError::Unexpected { peer, request: "List" }),
            Err(e) => return Err(e.into()),
        }
    }
}
