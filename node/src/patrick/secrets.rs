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

/// What reading a secret as this node takes.
pub struct Reader<'a> {
    /// The p2p core: the other vault nodes.
    pub handle: &'a p2p::Handle,
    /// Where the secret and the key set are read.
    pub registry: &'a Registry,
    /// The node's key, which signs the requests.
    pub keypair: &'a Keypair,
    /// The node's own vault, asked in process (a node cannot dial itself).
    pub vault: Option<&'a crate::vault::Local>,
}

/// Reads secret `name` of `project` as this node, from every vault node: the others over
/// `/tau/vault/1`, its own in process.
pub async fn read(
    reader: &Reader<'_>,
    project: &str,
    name: &str,
) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    let key = keys::secret(project, name);
    let get = |key: String| async move {
        reader
            .registry
            .get(&key)
            .await
            .map_err(|source| ReadError::Registry { key, source: Box::new(source) })
    };
    let secret = get(key.clone()).await?.and_then(|r| r.value).ok_or_else(|| {
        ReadError::Missing { project: project.to_string(), name: name.to_string() }
    })?;
    let keyset = get(keys::VAULT_KEYSET.to_string()).await?.into_iter().collect::<Vec<_>>();
    let keyset = keyset_of(&keyset)?;
    let mut vaults: Vec<libp2p::PeerId> =
        reader.handle.nodes("vault").await?.into_iter().map(|node| node.peer).collect();
    if let Some(local) = reader.vault
        && !vaults.contains(&local.peer())
    {
        vaults.push(local.peer());
    }
    let revealed =
        reveal(&keyset, &secret, project, name, reader.keypair, &vaults, |node, request| {
            let handle = reader.handle.clone();
            let local = reader.vault.filter(|local| local.peer() == node).cloned();
            async move {
                let request = VaultRequest::Decrypt { request };
                match local {
                    Some(local) => local.ask(request).await,
                    None => handle
                        .call::<VaultProtocol>(node, request)
                        .await
                        .map_err(|e| format!("{node}: {e}")),
                }
            }
        })
        .await?;
    if !revealed.failures.is_empty() {
        tracing::debug!(project, name, failures = ?revealed.failures, "some vault nodes failed; the read succeeded");
    }
    Ok(Zeroizing::new(revealed.plaintext))
}
