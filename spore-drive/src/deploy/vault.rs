//! After a deploy: the vault key set and the vault hosts as registrars, published to TNS (only
//! what TNS lacks).

use std::time::Duration;

use tau_proto::Client;
use tau_proto::client::ClientError;
use tau_proto::client::secrets::SecretError;
use tau_proto::keyfile::KeyFileError;
use tau_proto::vault::KeySet;
use tau_proto::yaml::YamlError;

use super::Run;
use crate::host::Desired;

/// Why the vault key set could not be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultPublishError {
    /// The key set file could not be read.
    #[error(transparent)]
    KeySet(#[from] YamlError),
    /// The operator key could not be read.
    #[error(transparent)]
    OperatorKey(#[from] KeyFileError),
    /// The cloud could not be reached.
    #[error(transparent)]
    Connect(#[from] ClientError),
    /// TNS did not take the records.
    #[error(transparent)]
    Publish(#[from] SecretError),
}

impl Run {
    /// Publishes the vault key set and the vault hosts as registrars; returns how many records
    /// were written.
    pub async fn publish_vault(&self) -> Result<usize, VaultPublishError> {
        let vault_hosts: Vec<&Desired> = self
            .desired
            .iter()
            .filter(|d| {
                self.playbook
                    .shape_of(&d.host)
                    .is_some_and(|s| s.services.iter().any(|x| x == "vault"))
            })
            .collect();
        if vault_hosts.is_empty() || self.playbook.hosts_running("tns").is_empty() {
            return Ok(0);
        }
        let keyset: KeySet = tau_proto::yaml::load(&self.layout.vault_keyset())?;
        let operator = tau_proto::keyfile::read(&self.layout.operator_key())?;
        let client = Client::connect(&self.operator_profile()).await?;
        let registrars: Vec<_> = vault_hosts.iter().map(|d| d.peer_id).collect();
        let mut tries = 0;
        loop {
            match client.publish_vault(&keyset, &registrars, &operator).await {
                Ok(written) => return Ok(written.len()),
                // Right after a start the entry node may not know a tns node yet.
                Err(_) if tries < 10 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
