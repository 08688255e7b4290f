//! Admitting and revoking nodes as the operator does ([`crate::membership`]): admission records
//! signed with the operator key and written to TNS, and the list TNS holds.

use libp2p::PeerId;
use libp2p::identity::Keypair;

use super::registry::OperatorWriteError;
use super::{Client, ClientError};
use crate::membership::{Admission, admitted_peer};
use crate::tns::values::CloudNames;
use crate::tns::{Record, keys};

/// Why nodes could not be admitted or revoked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdmitError {
    /// The cloud could not be asked.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// No connected node runs tns.
    #[error("no tns node is reachable to hold the admission records")]
    NoTns,
    /// The operator key is not an ed25519 key.
    #[error("the operator key is not an ed25519 key")]
    OperatorKey,
    /// The value could not be encoded.
    #[error("cannot encode an admission: {0}")]
    Encode(String),
    /// TNS refused records, each with its reason.
    #[error("the registry refused: {}", .0.join("; "))]
    Refused(Vec<String>),
}

impl From<OperatorWriteError> for AdmitError {
    fn from(error: OperatorWriteError) -> Self {
        match error {
            OperatorWriteError::Client(e) => Self::Client(e),
            OperatorWriteError::OperatorKey => Self::OperatorKey,
            OperatorWriteError::Refused(refused) => Self::Refused(refused),
        }
    }
}

/// One peer's admission as TNS holds it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AdmissionView {
    /// The node.
    pub peer_id: String,
    /// What it is admitted for; `None` when it was revoked.
    pub admission: Option<Admission>,
    /// The record's version.
    pub version: u64,
}

impl Client {
    /// A tns node to write admission records to: the entry node when it runs tns (before any
    /// node is admitted, the entry node lists no peers), else the first that does.
    pub async fn tns_node(&self) -> Result<PeerId, AdmitError> {
        self.nodes_running("tns").await?.first().copied().ok_or(AdmitError::NoTns)
    }

    /// Admits each peer for its [`Admission`], or revokes it (`None`), with records signed by
    /// `operator`, through the first tns node found. Writes only what differs from what TNS
    /// holds; returns the keys written.
    pub async fn admit(
        &self,
        changes: &[(PeerId, Option<Admission>)],
        operator: &Keypair,
    ) -> Result<Vec<String>, AdmitError> {
        let tns = self.tns_node().await?;
        self.admit_at(tns, changes, operator).await
    }

    /// [`Client::admit`] through the tns node `tns`.
    pub async fn admit_at(
        &self,
        tns: PeerId,
        changes: &[(PeerId, Option<Admission>)],
        operator: &Keypair,
    ) -> Result<Vec<String>, AdmitError> {
        let mut wanted = Vec::new();
        for (peer, admission) in changes {
            let value = match admission {
                Some(admission) => Some(
                    crate::cbor::to_vec(admission)
                        .map_err(|e| AdmitError::Encode(e.to_string()))?,
                ),
                None => None,
            };
            wanted.push((keys::node(&peer.to_string()), value));
        }
        Ok(self.put_operator_records(tns, wanted, operator).await?)
    }

    /// Writes the cloud's names (`/cloud`) through the tns node `tns`, unless TNS holds them
    /// already; returns the keys written. Registry nodes then refuse domains that are service
    /// names or inside another project's generated domain.
    pub async fn publish_names_at(
        &self,
        tns: PeerId,
        names: &CloudNames,
        operator: &Keypair,
    ) -> Result<Vec<String>, AdmitError> {
        let value = crate::cbor::to_vec(names).map_err(|e| AdmitError::Encode(e.to_string()))?;
        let wanted = vec![(keys::CLOUD.to_string(), Some(value))];
        Ok(self.put_operator_records(tns, wanted, operator).await?)
    }

    /// Every admission record TNS holds, revocations included, those signed by `operator`
    /// only (others are listed by no node either).
    pub async fn admissions(
        &self,
        operator: &crate::identity::WriterKey,
    ) -> Result<Vec<AdmissionView>, AdmitError> {
        let tns = self.tns_node().await?;
        let records = self.tns_list(tns, keys::NODES, true).await?;
        Ok(records.iter().filter_map(|record| view(record, operator)).collect())
    }
}

fn view(record: &Record, operator: &crate::identity::WriterKey) -> Option<AdmissionView> {
    let peer = admitted_peer(&record.key)?;
    if record.writer != *operator || !record.verify() {
        return None;
    }
    let admission = match &record.value {
        None => None,
        Some(value) => Some(crate::cbor::from_slice(value).ok()?),
    };
    Some(AdmissionView { peer_id: peer.to_string(), admission, version: record.version })
}
