//! The questions taucorder asks a cloud, over one light-client connection.

use std::path::Path;

use libp2p::PeerId;
use tau_proto::admin::PeerInfo;
use tau_proto::client::ClientError;
use tau_proto::client::registry::RecordView;
use tau_proto::client::secrets::{SecretError, VaultReport};
use tau_proto::hoarder::PinInfo;
use tau_proto::seer::NodeStatus;
use tau_proto::{Client, CloudProfile};

use crate::usage::{UsageRow, UsageTracker};

/// A key-value store as its holders report it: the most keys and bytes any holder has, and
/// which database nodes hold it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoreRow {
    /// The project's id.
    pub project: String,
    /// The store's name.
    pub store: String,
    /// Keys held (deleted ones until forgotten), the most any holder has.
    pub keys: u64,
    /// Bytes counted against its limit, the most any holder has.
    pub bytes: u64,
    /// The database nodes that hold it.
    #[serde(serialize_with = "peer_ids")]
    pub nodes: Vec<PeerId>,
}

fn peer_ids<S: serde::Serializer>(peers: &[PeerId], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(peers.iter().map(PeerId::to_string))
}

/// Why a question could not be answered. Names the file, the service or the key at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The cloud profile could not be read.
    #[error("cannot read the cloud profile {path}: {reason}")]
    Profile {
        /// The profile's path.
        path: String,
        /// Why.
        reason: String,
    },
    /// No node of the cloud answered, or a request failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// No node runs the service the question is for.
    #[error("no node of this cloud runs {0}")]
    NoService(&'static str),
    /// The vault could not be inspected.
    #[error(transparent)]
    Vault(#[from] SecretError),
    /// The registry has no record under the key.
    #[error("no record under {0}")]
    NoRecord(String),
}

/// A connection to one cloud.
pub struct Cloud {
    client: Client,
}

impl Cloud {
    /// Reads the profile at `path` and joins its cloud.
    pub async fn connect(path: &Path) -> Result<Self, QueryError> {
        Self::connect_as(path, None).await
    }

    /// [`Cloud::connect`] as `identity` (the operator's key, for logs and actions), or as a
    /// new peer each time.
    pub async fn connect_as(
        path: &Path,
        identity: Option<libp2p::identity::Keypair>,
    ) -> Result<Self, QueryError> {
        let profile = CloudProfile::load(path).map_err(|e| QueryError::Profile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let options = tau_proto::client::ConnectOptions { identity, ..Default::default() };
        Ok(Self { client: Client::connect_with(&profile, options).await? })
    }

    /// The light client, for questions this module does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The node to ask about `service`: `node` if given, else the first that runs it.
    async fn service_node(
        &self,
        service: &'static str,
        node: Option<PeerId>,
    ) -> Result<PeerId, QueryError> {
        let running = self.client.nodes_running(service).await?;
        match node {
            Some(node) => Ok(node),
            None => running.first().copied().ok_or(QueryError::NoService(service)),
        }
    }

    /// The nodes `node` (default: the node taucorder joined through) is connected to.
    pub async fn peers(&self, node: Option<PeerId>) -> Result<Vec<PeerInfo>, QueryError> {
        let node = match node {
            Some(node) if node != self.client.entry() => {
                // Learn every node's addresses from the entry node, so that we can dial it.
                self.client.nodes().await?;
                node
            }
            _ => self.client.entry(),
        };
        Ok(self.client.peers(node).await?)
    }

    /// Every node as seer sees it: health and the latest heartbeat.
    pub async fn nodes(&self, seer: Option<PeerId>) -> Result<Vec<NodeStatus>, QueryError> {
        let seer = self.service_node("seer", seer).await?;
        Ok(self.client.seer_nodes(seer).await?)
    }

    /// The live registry records under `prefix`, values decoded.
    pub async fn tns_list(
        &self,
        prefix: &str,
        node: Option<PeerId>,
    ) -> Result<Vec<RecordView>, QueryError> {
        let node = self.service_node("tns", node).await?;
        let records = self.client.tns_list(node, prefix, false).await?;
        Ok(records.iter().map(RecordView::from).collect())
    }

    /// The record under `key`, value decoded.
    pub async fn tns_get(&self, key: &str, node: Option<PeerId>) -> Result<RecordView, QueryError> {
        let node = self.service_node("tns", node).await?;
        match self.client.tns_record(node, key).await? {
            Some(record) if !record.is_tombstone() => Ok(RecordView::from(&record)),
            _ => Err(QueryError::NoRecord(key.to_string())),
        }
    }

    /// Every pin a hoarder node knows: CID, size, factor, holders, state.
    pub async fn hoarder_pins(&self, node: Option<PeerId>) -> Result<Vec<PinInfo>, QueryError> {
        let node = self.service_node("hoarder", node).await?;
        Ok(self.client.hoarder_pins(node).await?)
    }

    /// Each function's latest counter window, summed over the substrate nodes (read from the
    /// end of each node's log).
    pub async fn usage(&self) -> Result<Vec<UsageRow>, QueryError> {
        let nodes = self.client.counting_nodes().await?;
        if nodes.is_empty() {
            return Err(QueryError::NoService("substrate"));
        }
        let mut tracker = UsageTracker::default();
        tracker.poll(&self.client, &nodes).await?;
        Ok(tracker.rows())
    }

    /// Every key-value store, from every database node: keys, size and holders (never a key
    /// or a value). A node that does not answer is left out; none answering is an error.
    pub async fn stores(&self) -> Result<Vec<StoreRow>, QueryError> {
        use tau_proto::database::{DatabaseProtocol, DatabaseRequest, DatabaseResponse};
        let nodes = self.client.nodes_running(tau_proto::database::SERVICE).await?;
        if nodes.is_empty() {
            return Err(QueryError::NoService("database"));
        }
        let asked = nodes.iter().map(|node| async move {
            let answer = self.client.call::<DatabaseProtocol>(*node, DatabaseRequest::Stores).await;
            (*node, answer)
        });
        let mut rows: std::collections::BTreeMap<(String, String), StoreRow> = Default::default();
        let mut last_error = None;
        let mut answered = false;
        for (node, answer) in futures::future::join_all(asked).await {
            let stores = match answer {
                Ok(DatabaseResponse::Stores(stores)) => stores,
                Ok(_) => continue,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            answered = true;
            for info in stores {
                let id = (info.store.project.clone(), info.store.name.clone());
                let row = rows.entry(id).or_insert_with(|| StoreRow {
                    project: info.store.project,
                    store: info.store.name,
                    keys: 0,
                    bytes: 0,
                    nodes: Vec::new(),
                });
                row.keys = row.keys.max(info.keys);
                row.bytes = row.bytes.max(info.bytes);
                row.nodes.push(node);
            }
        }
        match (answered, last_error) {
            (false, Some(e)) => Err(e.into()),
            _ => Ok(rows.into_values().collect()),
        }
    }

    /// Each vault node's share (index, key set, threshold, secrets bound; never the share),
    /// and whether enough shares are reachable right now to read a secret.
    pub async fn vault(&self) -> Result<VaultReport, QueryError> {
        let report = self.client.vault_report().await?;
        if report.nodes.is_empty() {
            return Err(QueryError::NoService("vault"));
        }
        Ok(report)
    }
}
