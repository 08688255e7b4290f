//! The `vault` service: threshold secrets that no single node can read.
//!
//! The node holds one secret key share of the cloud's key set and the public key set (files
//! from `tau-node vault deal`, named in `node.yaml`). Secrets live in TNS, encrypted to the group
//! key, under `/projects/<id>/secrets/<name>`; this service only ever answers with its own
//! decryption share, and only to the project's owner.
//!
//! - `Store`: an owner-signed secret record; the node checks the writer owns the project, the
//!   ciphertext passes its validity check and is for this key set, binds it, then writes it to TNS.
//! - `Decrypt`: an owner-signed request for this node (by peer id), with a nonce it has not
//!   answered ([`nonces`]); the node checks signature and freshness, reads the secret from TNS,
//!   checks and binds the ciphertext, and answers its decryption share sealed to the request's
//!   one-time reply key.
//! - `Shares`: index, key set, threshold and how many secrets this node has bound.
//! - `Register`: creates a project (as a registrar the operator named under `/registrars/`)
//!   with its encrypted secrets, after checking the owner's signature and every ciphertext;
//!   a refused registration writes nothing.
//!
//! [`bindings`] keeps each ciphertext tied to the first secret key it was checked under.
//! Nothing here logs or returns a plaintext or a share other than this node's decryption share.

pub mod bindings;
pub mod nonces;
mod service;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use tau_proto::vault::{VaultProtocol, VaultRequest, VaultResponse};

use libp2p::identity::Keypair;
use tau_proto::vault::{KeySet, ShareFile};
use tau_proto::yaml::YamlError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::VaultConfig;
use crate::{p2p, tns};
use bindings::Bindings;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum VaultStartError {
    /// A key file is unreadable or wrong.
    #[error("vault: {path}: {reason}")]
    Keys {
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The bindings could not be opened.
    #[error(transparent)]
    Bindings(#[from] crate::db::DbError),
    /// The p2p task stopped, or a gossip topic could not be joined.
    #[error("cannot start vault: {0}")]
    P2p(#[from] crate::p2p::GossipError),
}

/// What the service's request handlers share.
pub(crate) struct Shared {
    keyset: KeySet,
    share: ShareFile,
    bindings: Bindings,
    registry: tns::Registry,
    /// Signs the project roots this node creates as a registrar.
    keypair: Keypair,
    /// Decrypt requests answered, until they expire.
    nonces: std::sync::Mutex<nonces::Nonces>,
    /// Who the operator admitted, and for which roles: a granted role's node may read the
    /// secrets its grant covers.
    admitted: tokio::sync::watch::Receiver<tau_proto::membership::Admitted>,
    /// Decryption shares answered since the start.
    pub(crate) answered: Arc<std::sync::atomic::AtomicU64>,
}

/// Loads and checks the key set and this node's share.
pub fn load_keys(config: &VaultConfig) -> Result<(KeySet, ShareFile), VaultStartError> {
    let keys = |path: &Path, reason: String| VaultStartError::Keys {
        path: path.display().to_string(),
        reason,
    };
    let keyset: KeySet =
        tau_proto::yaml::load(&config.keyset).map_err(|e| keys(&config.keyset, e.to_string()))?;
    keyset.validate().map_err(|e| keys(&config.keyset, format!("not a usable key set: {e}")))?;
    let mode = std::fs::metadata(&config.share)
        .map_err(|e| keys(&config.share, e.to_string()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(keys(
            &config.share,
            format!(
                "a key share must be readable by its owner only (mode {:o}): chmod 600 it",
                mode & 0o777
            ),
        ));
    }
    // The share's own error text could quote the file; say only which field is wrong.
    let share: ShareFile = tau_proto::yaml::load(&config.share).map_err(|e| match e {
        YamlError::Read { source, .. } => keys(&config.share, source.to_string()),
        YamlError::Parse { field, .. } if !field.is_empty() => {
            keys(&config.share, format!("not a share file: {}", field.trim_end_matches(": ")))
        }
        _ => keys(&config.share, "not a share file".into()),
    })?;
    if !share.matches(&keyset) {
        return Err(keys(
            &config.share,
            format!(
                "share {} of key set {} does not belong to key set {} in {}",
                share.index,
                share.keyset,
                keyset.id,
                config.keyset.display()
            ),
        ));
    }
    Ok((keyset, share))
}

/// The node's own vault, asked in process (a node cannot dial itself): its other services
/// (the ci service reading a repository's secret) send their requests here, as from this node.
#[derive(Clone)]
pub struct Local {
    inbox: tokio::sync::mpsc::Sender<p2p::Inbound<VaultRequest, VaultResponse>>,
    me: libp2p::PeerId,
    answered: Arc<std::sync::atomic::AtomicU64>,
}

impl Local {
    /// Decryption shares this node answered since it started.
    pub fn answered(&self) -> u64 {
        self.answered.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Asks this node's vault, as this node.
    pub async fn ask(&self, request: VaultRequest) -> Result<VaultResponse, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let inbound = p2p::Inbound { peer: self.me, request, reply };
        self.inbox.send(inbound).await.map_err(|_| "this node's vault has stopped".to_string())?;
        answer.await.map_err(|_| "this node's vault did not answer".to_string())
    }

    /// This node's peer id.
    pub fn peer(&self) -> libp2p::PeerId {
        self.me
    }
}

/// Starts the vault service: loads its keys, opens `<data>/vault.redb` and serves
/// `/tau/vault/1` (and [`Local`] requests). The task stops on `shutdown`.
pub async fn start(
    handle: p2p::Handle,
    keypair: Keypair,
    data_dir: &Path,
    config: &VaultConfig,
    registry: tns::Registry,
    admitted: tokio::sync::watch::Receiver<tau_proto::membership::Admitted>,
    shutdown: CancellationToken,
) -> Result<(Vec<JoinHandle<()>>, Local), VaultStartError> {
    let (keyset, share) = load_keys(config)?;
    let bindings = Bindings::open(&data_dir.join("vault.redb"))?;
    tracing::info!(
        keyset = %keyset.id,
        index = share.index,
        threshold = keyset.threshold,
        shares = keyset.shares,
        secrets = bindings.count()?,
        "vault share loaded"
    );
    let nonces = std::sync::Mutex::default();
    let answered = Arc::default();
    let shared = Arc::new(Shared {
        keyset,
        share,
        bindings,
        registry,
        keypair,
        nonces,
        admitted,
        answered: Arc::clone(&answered),
    });
    let (inbox, requests) = tokio::sync::mpsc::channel(256);
    let local = Local { inbox: inbox.clone(), me: handle.peer_id(), answered };
    handle.serve::<VaultProtocol>(inbox).await.map_err(|e| VaultStartError::P2p(e.into()))?;
    Ok((vec![tokio::spawn(service::run(shared, requests, shutdown))], local))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use tau_proto::vault::deal;

    use super::*;

    fn write(
        dir: &Path,
        name: &str,
        value: &impl serde::Serialize,
        mode: u32,
    ) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, serde_yaml_ng::to_string(value).unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_share_loads_only_if_private_and_of_this_key_set() {
        let dir = tempfile::tempdir().unwrap();
        let (keyset, shares) = deal(3, 1).unwrap();
        let (_, strangers) = deal(3, 1).unwrap();
        let keyset_path = write(dir.path(), "keyset.yaml", &keyset, 0o644);
        let config = |share: std::path::PathBuf| VaultConfig { keyset: keyset_path.clone(), share };
        let secret_hex = hex::encode(&shares[1].secret);

        let open = write(dir.path(), "open.yaml", &shares[1], 0o644);
        let err = load_keys(&config(open)).unwrap_err().to_string();
        assert!(err.contains("open.yaml") && err.contains("chmod 600"), "{err}");

        let foreign = write(dir.path(), "foreign.yaml", &strangers[1], 0o600);
        let err = load_keys(&config(foreign)).unwrap_err().to_string();
        assert!(err.contains("does not belong to key set"), "{err}");

        let mut wrong_index = shares[1].clone();
        wrong_index.index = 2;
        let err = load_keys(&config(write(dir.path(), "moved.yaml", &wrong_index, 0o600)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not belong") && !err.contains(&secret_hex), "{err}");

        let garbled = dir.path().join("garbled.yaml");
        std::fs::write(&garbled, format!("keyset: x\nindex: one\nsecret: {secret_hex}\n")).unwrap();
        std::fs::set_permissions(&garbled, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_keys(&config(garbled)).unwrap_err().to_string();
        assert!(err.contains("not a share file") && !err.contains(&secret_hex), "{err}");

        let good = write(dir.path(), "share-1.yaml", &shares[1], 0o600);
        let (loaded, share) = load_keys(&config(good)).unwrap();
        assert_eq!((loaded.id, share.index), (keyset.id, 1));
    }
}
