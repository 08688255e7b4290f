//! Admission: every host of the playbook admitted as a node for its shape's services
//! (`/nodes/<peer id>`, signed with the operator key; see `tau_proto::membership`), and the
//! cloud's names (`/cloud`: its domain and generated-domain suffix, which no project may claim
//! in but its own). Until a host
//! is admitted the others treat it as a client; Spore Drive writes the records through the first
//! node that can take them (on a first deploy, the first tns node up).

use tau_proto::Client;
use tau_proto::client::members::AdmitError;
use tau_proto::keyfile::KeyFileError;
use tau_proto::membership::Admission;
use tau_proto::tns::values::CloudNames;

use super::Run;

/// Why the hosts could not be admitted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(super) enum AdmitHostsError {
    /// The operator key could not be read.
    #[error(transparent)]
    OperatorKey(#[from] KeyFileError),
    /// TNS could not be reached or did not take the records.
    #[error(transparent)]
    Admit(#[from] AdmitError),
}

impl Run {
    /// Admits every host of the playbook before any node starts, when the cloud runs already
    /// (a later deploy): a host added to the playbook joins as a node at once, not as a client.
    /// Returns how many records were written; on a first deploy (or a cloud that cannot be
    /// reached) nothing, and the health check admits the hosts once a node runs.
    pub async fn admit_ahead(&self) -> Result<usize, String> {
        self.may_start.send_replace(false);
        let admitted = self.admit_ahead_now().await;
        self.may_start.send_replace(true);
        admitted
    }

    /// Waits until no admission is being written ([`Run::admit_ahead`]).
    pub(super) async fn wait_may_start(&self) {
        let _ = self.may_start.subscribe().wait_for(|may| *may).await;
    }

    async fn admit_ahead_now(&self) -> Result<usize, String> {
        if !self.layout.state().exists() {
            return Ok(0);
        }
        let options = tau_proto::client::ConnectOptions {
            timeout: std::time::Duration::from_secs(5),
            ..Default::default()
        };
        let client = Client::connect_with(&self.operator_profile(), options)
            .await
            .map_err(|e| e.to_string())?;
        self.admit_hosts(&client).await.map_err(|e| e.to_string())
    }

    /// Admits every host of the playbook for its shape's services, labelled with its name and
    /// region, through the first of the playbook's tns hosts that takes the records; returns how
    /// many records were written (only what TNS does not hold already).
    pub(super) async fn admit_hosts(&self, client: &Client) -> Result<usize, AdmitHostsError> {
        let operator = tau_proto::keyfile::read(&self.layout.operator_key())?;
        let admissions: Vec<_> = self
            .desired
            .iter()
            .map(|d| {
                let services =
                    self.playbook.shape_of(&d.host).map(|s| s.services.clone()).unwrap_or_default();
                let mut labels = std::collections::BTreeMap::new();
                labels.insert("host".to_string(), d.host.name.clone());
                if let Some(location) = &d.host.location {
                    labels.insert("region".to_string(), location.region.clone());
                }
                (d.peer_id, Some(Admission { services, labels }))
            })
            .collect();
        let names = CloudNames {
            domain: self.playbook.cloud.domain.clone(),
            generated_domain: self.playbook.cloud.generated_domain.clone(),
        };
        let mut last = AdmitError::NoTns;
        for host in self.playbook.hosts_running("tns") {
            let Some(tns) = self.desired.iter().find(|d| d.host.name == host.name) else {
                continue;
            };
            client
                .add_address(tns.peer_id, tns.p2p_addr.clone())
                .await
                .map_err(AdmitError::from)?;
            let written = async {
                let admitted = client.admit_at(tns.peer_id, &admissions, &operator).await?;
                let named = client.publish_names_at(tns.peer_id, &names, &operator).await?;
                Ok::<_, AdmitError>(admitted.len() + named.len())
            };
            match written.await {
                Ok(written) => return Ok(written),
                Err(error) => last = error,
            }
        }
        Err(last.into())
    }
}
