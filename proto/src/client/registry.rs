//! Reading the registry (TNS) as tools do: a whole listing through every page, one record, a
//! node's status, and [`RecordView`], a record with its value decoded for people and scripts;
//! and hoarder's pin table.

use libp2p::PeerId;
use serde::Serialize;

use super::{Client, ClientError};
use crate::cbor::{self, CborError};
use crate::hoarder::{HoarderProtocol, HoarderRequest, HoarderResponse, PinInfo};
use crate::seer::{NodeStatus, SeerProtocol, SeerRequest, SeerResponse};
use crate::tns::values::{DomainClaim, Function, ProjectConfig, ProjectRoot, Registrar, Route};
use crate::tns::{MAX_PAGE, Record, TnsProtocol, TnsRequest, TnsResponse, TnsStatus};
use crate::vault::{KeySet, SecretValue};

/// Why operator records could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorWriteError {
    /// The cloud could not be asked.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The operator key is not an ed25519 key.
    #[error("the operator key is not an ed25519 key")]
    OperatorKey,
    /// TNS refused records, each with its reason.
    #[error("the registry refused: {}", .0.join("; "))]
    Refused(Vec<String>),
}

impl Client {
    /// Writes operator records (`key`, its value or `None` to delete it) through the tns node
    /// `tns`: only those that differ from what it holds (a held record counts when its
    /// signature verifies), all at one version above its clock; returns the keys written.
    pub async fn put_operator_records(
        &self,
        tns: PeerId,
        mut wanted: Vec<(String, Option<Vec<u8>>)>,
        operator: &libp2p::identity::Keypair,
    ) -> Result<Vec<String>, OperatorWriteError> {
        let keys: Vec<String> = wanted.iter().map(|(key, _)| key.clone()).collect();
        let current = match self.call::<TnsProtocol>(tns, TnsRequest::Get { keys }).await? {
            TnsResponse::Records(records) => records,
            _ => return Err(ClientError::Unexpected { peer: tns }.into()),
        };
        wanted.retain(|(key, value)| {
            let held = current.iter().find(|r| r.key == *key && r.verify());
            match (held, value) {
                (Some(record), value) => record.value != *value,
                // Deleting what was never written: nothing to write.
                (None, None) => false,
                (None, Some(_)) => true,
            }
        });
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let version = self.tns_clock(tns).await?.saturating_add(1);
        let records = wanted
            .iter()
            .map(|(key, value)| {
                crate::tns::Draft { key: key.clone(), scope: String::new(), value: value.clone() }
                    .sign(version, operator)
                    .ok_or(OperatorWriteError::OperatorKey)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let refused = self.tns_put(tns, records).await?;
        if !refused.is_empty() {
            return Err(OperatorWriteError::Refused(refused));
        }
        Ok(wanted.into_iter().map(|(key, _)| key).collect())
    }
}

/// A record as tools show it: its value decoded by what its key says it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordView {
    /// Such as `/projects/example/functions/ping`.
    pub key: String,
    /// The scope it belongs to (who may write it).
    pub scope: String,
    /// Its Lamport version.
    pub version: u64,
    /// The writer's public key.
    pub writer: String,
    /// Whether it is a tombstone.
    pub deleted: bool,
    /// The value, decoded (raw bytes when it does not decode).
    pub value: Option<Value>,
}

impl From<&Record> for RecordView {
    fn from(r: &Record) -> Self {
        Self {
            key: r.key.clone(),
            scope: r.scope.clone(),
            version: r.version,
            writer: r.writer.to_string(),
            deleted: r.is_tombstone(),
            value: r
                .value
                .as_deref()
                .map(|v| Value::decode(&r.key, v).unwrap_or(Value::Raw(v.to_vec()))),
        }
    }
}

impl Client {
    /// Stores signed records at the tns node `tns`; what it refused, each as `key: why` (none
    /// when it took them all).
    pub async fn tns_put(
        &self,
        tns: PeerId,
        records: Vec<Record>,
    ) -> Result<Vec<String>, ClientError> {
        match self.call::<TnsProtocol>(tns, TnsRequest::Put { records }).await? {
            TnsResponse::Put(outcome) => {
                Ok(outcome.rejected.iter().map(|(key, why)| format!("{key}: {why}")).collect())
            }
            _ => Err(ClientError::Unexpected { peer: tns }),
        }
    }

    /// Every record under `prefix` on `node`, through all pages (tombstones when asked).
    pub async fn tns_list(
        &self,
        node: PeerId,
        prefix: &str,
        tombstones: bool,
    ) -> Result<Vec<Record>, ClientError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let request =
                TnsRequest::List { prefix: prefix.to_string(), after, limit: MAX_PAGE, tombstones };
            match self.call::<TnsProtocol>(node, request).await? {
                TnsResponse::Page { records, next } => {
                    all.extend(records);
                    match next {
                        Some(next) => after = Some(next),
                        None => return Ok(all),
                    }
                }
                _ => return Err(ClientError::Unexpected { peer: node }),
            }
        }
    }

    /// The record under `key` on `node`, if any (a tombstone included).
    pub async fn tns_record(&self, node: PeerId, key: &str) -> Result<Option<Record>, ClientError> {
        match self
            .call::<TnsProtocol>(node, TnsRequest::Get { keys: vec![key.to_string()] })
            .await?
        {
            TnsResponse::Records(records) => Ok(records.into_iter().next()),
            _ => Err(ClientError::Unexpected { peer: node }),
        }
    }

    /// `node`'s TNS status: record count, digest, clock, refused records.
    pub async fn tns_status(&self, node: PeerId) -> Result<TnsStatus, ClientError> {
        match self.call::<TnsProtocol>(node, TnsRequest::Status).await? {
            TnsResponse::Status(status) => Ok(status),
            _ => Err(ClientError::Unexpected { peer: node }),
        }
    }

    /// Every pin `node` (a hoarder node) knows: CID, size, factor, holders, state.
    pub async fn hoarder_pins(&self, node: PeerId) -> Result<Vec<PinInfo>, ClientError> {
        match self.call::<HoarderProtocol>(node, HoarderRequest::List).await? {
            HoarderResponse::Pins(pins) => Ok(pins),
            _ => Err(ClientError::Unexpected { peer: node }),
        }
    }
}

impl Client {
    /// Every node a seer knows, with its latest heartbeat and health.
    pub async fn seer_nodes(&self, peer: PeerId) -> Result<Vec<NodeStatus>, ClientError> {
        match self.call::<SeerProtocol>(peer, SeerRequest::Nodes).await? {
            SeerResponse::Nodes(nodes) => Ok(nodes),
            _ => Err(ClientError::Unexpected { peer }),
        }
    }
}

impl Client {
    /// A blob's bytes, at most `max` of them, from a hoarder node that holds it (the first
    /// hoarder node says which do); every chunk checked against its hash.
    pub async fn fetch_blob(
        &self,
        cid: crate::hoarder::BlobId,
        max: u64,
    ) -> Result<Vec<u8>, crate::hoarder::transfer::TransferError> {
        use crate::hoarder::transfer::{TransferError, download_chunks, fetch_manifest};
        let refused = |peer, reason: String| TransferError::Peer { peer, reason };
        let nodes = self.nodes_running("hoarder").await.map_err(|e| TransferError::Io {
            path: "the cloud's hoarder nodes".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let mut candidates = nodes.clone();
        if let Some(first) = nodes.first()
            && let Ok(HoarderResponse::NotFound { holders }) = self
                .call::<HoarderProtocol>(
                    *first,
                    HoarderRequest::Manifest { cid, in_progress: false },
                )
                .await
        {
            candidates = holders;
        }
        let mut last = TransferError::NotFound(cid);
        for peer in candidates {
            let manifest = match fetch_manifest(self, peer, cid, false).await {
                Ok(manifest) if manifest.size > max => {
                    return Err(refused(
                        peer,
                        format!("{cid} is {} bytes, over {max}", manifest.size),
                    ));
                }
                Ok(manifest) => manifest,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let mut out = Vec::new();
            match download_chunks(self, peer, cid, &manifest, &mut out).await {
                Ok(_) => return Ok(out),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

impl crate::hoarder::transfer::Asker for Client {
    type Error = ClientError;

    async fn ask(
        &self,
        peer: PeerId,
        request: HoarderRequest,
    ) -> Result<HoarderResponse, ClientError> {
        self.call::<HoarderProtocol>(peer, request).await
    }
}

/// Any TNS value, decoded by the shape of its key.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// `/projects/<id>`.
    ProjectRoot(ProjectRoot),
    /// `/projects/<id>/config`.
    ProjectConfig(ProjectConfig),
    /// `/projects/<id>/functions/<name>`, `/projects/<id>/branches/<branch>/functions/<name>`.
    Function(Box<Function>),
    /// `/projects/<id>/databases/<name>`.
    Database(crate::tns::values::Database),
    /// `/projects/<id>/storages/<name>`.
    Storage(crate::tns::values::Storage),
    /// `/domains/<fqdn>`.
    Domain(DomainClaim),
    /// `/http/...`.
    Route(Route),
    /// `/projects/<id>/secrets/<name>` (the ciphertext, never a plaintext).
    Secret(SecretValue),
    /// `/registrars/<name>`.
    Registrar(Registrar),
    /// `/vault/keyset`.
    KeySet(KeySet),
    /// `/projects/<id>/repos/<config|code>`.
    Repository(Box<crate::git::Repository>),
    /// `/projects/<id>/grants`.
    Grants(crate::git::Grants),
    /// `/projects/<id>/deployed`.
    Deployed(crate::git::Deployed),
    /// `/jobs/<id>/<commit>`.
    Job(Box<crate::git::Job>),
    /// Anything else: the raw CBOR bytes.
    Raw(#[serde(with = "crate::bytes::vec")] Vec<u8>),
}

impl Value {
    /// Decodes `bytes` as the value type that `key` holds.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, CborError> {
        let segments: Vec<&str> = key.trim_start_matches('/').split('/').collect();
        Ok(match segments.as_slice() {
            ["projects", _] => Self::ProjectRoot(cbor::from_slice(bytes)?),
            ["projects", _, "config"] => Self::ProjectConfig(cbor::from_slice(bytes)?),
            ["projects", _, "functions", _] | ["projects", _, "branches", _, "functions", _] => {
                Self::Function(Box::new(cbor::from_slice(bytes)?))
            }
            ["projects", _, "databases", _] => Self::Database(cbor::from_slice(bytes)?),
            ["projects", _, "storages", _] => Self::Storage(cbor::from_slice(bytes)?),
            ["domains", _] => Self::Domain(cbor::from_slice(bytes)?),
            ["projects", _, "secrets", _] => Self::Secret(cbor::from_slice(bytes)?),
            ["http", ..] => Self::Route(cbor::from_slice(bytes)?),
            ["registrars", _] => Self::Registrar(cbor::from_slice(bytes)?),
            ["vault", "keyset"] => Self::KeySet(cbor::from_slice(bytes)?),
            ["projects", _, "repos", _] => Self::Repository(Box::new(cbor::from_slice(bytes)?)),
            ["projects", _, "grants"] => Self::Grants(cbor::from_slice(bytes)?),
            ["projects", _, "deployed"] => Self::Deployed(cbor::from_slice(bytes)?),
            ["jobs", _, _] => Self::Job(Box::new(cbor::from_slice(bytes)?)),
            _ => Self::Raw(bytes.to_vec()),
        })
    }
}
