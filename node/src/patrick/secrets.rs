//! A `ci` node reads a repository's webhook secret or deploy key from the vault, as the node the
//! project's owner granted it to (`tau_proto::git::Grants`): the same threshold read a client
//! does, signed with the node's own key. The plaintext lives in memory only, zeroized on drop.

use libp2p::identity::Keypair;
use tau_proto::client::secrets::{SecretError, keyset_of, reveal};
use tau_proto::tns::keys;
use tau_proto::vault::{VaultProtocol, VaultRequest};
use zeroize::Zeroizing;

use crate::p2p;
use crate::tns::{Registry, RegistryError};

/// Why a secret could not be read. Never holds the secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// TNS could not be read.
    #[error("cannot read {key} from tns: {source}")]
    Registry {
        /// What was read.
        key: String,
        /// Why it failed.
        source: Box<RegistryError>,
    },
    /// The project has no such secret.
    #[error("project `{project}` has no secret `{name}`")]
    Missing {
        /// The project.
        project: String,
        /// The secret's name.
        name: String,
    },
    /// The vault refused or could not answer.
    #[error("vault: {0}")]
    Vault(#[from] SecretError),
    /// The p2p task stopped.
    #[error(transparent)]
    Stopped(#[from] p2p::Stopped),
}

/// Reads secret `name` of `project` as this node (`keypair`), from the vault nodes `handle`
/// knows.
pub async fn read(
    handle: &p2p::Handle,
    registry: &Registry,
    keypair: &Keypair,
    project: &str,
    name: &str,
) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    let key = keys::secret(project, name);
    let get = |key: String| async move {
        registry
            .get(&key)
            .await
            .map_err(|source| ReadError::Registry { key, source: Box::new(source) })
    };
    let secret = get(key.clone()).await?.and_then(|r| r.value).ok_or_else(|| {
        ReadError::Missing { project: project.to_string(), name: name.to_string() }
    })?;
    let keyset = get(keys::VAULT_KEYSET.to_string()).await?.into_iter().collect::<Vec<_>>();
    let keyset = keyset_of(&keyset)?;
    let vaults: Vec<libp2p::PeerId> =
        handle.nodes("vault").await?.into_iter().map(|node| node.peer).collect();
    let revealed = reveal(&keyset, &secret, project, name, keypair, &vaults, |node, request| {
        let handle = handle.clone();
        async move {
            handle
                .call::<VaultProtocol>(node, VaultRequest::Decrypt { request })
                .await
                .map_err(|e| format!("{node}: {e}"))
        }
    })
    .await?;
    if !revealed.failures.is_empty() {
        tracing::debug!(project, name, failures = ?revealed.failures, "some vault nodes failed; the read succeeded");
    }
    Ok(Zeroizing::new(revealed.plaintext))
}
