//! The cloud's secrets, generated once and kept in the playbook's secrets folder:
//!
//! ```text
//! <secrets>/swarm.key                    the cloud's pre-shared key
//! <secrets>/operator.key                 the operator key (signs project creation, the vault
//!                                        key set, registrars)
//! <secrets>/hosts/<host>/identity.key    each host's node identity (its peer id)
//! <secrets>/vault/keyset.yaml            the vault's public key set (when vault hosts exist)
//! <secrets>/hosts/<host>/vault-share.yaml  each vault host's share
//! ```
//!
//! The folder is created 0700 and every file 0600; nothing that exists is ever overwritten, so a
//! second run keeps every identity (and peer id) and every share.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use tau_proto::keyfile::{self, KeyFileError};
use tau_proto::swarm_key::{SwarmKey, SwarmKeyError};
use tau_proto::vault::{self, KeySet, ShareFile, VaultError};

use crate::playbook::Playbook;

/// Why the secrets could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// A file or folder could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A key file is unreadable.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// The swarm key is unreadable.
    #[error(transparent)]
    SwarmKey(#[from] SwarmKeyError),
    /// The vault key set could not be dealt.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The vault hosts changed under an existing key set.
    #[error(
        "{keyset}: the key set has {had} shares but the playbook has {now} vault hosts; dealing a new one would make every stored secret unreadable, so move {dir} away first if that is what you want"
    )]
    VaultChanged {
        /// The key set file.
        keyset: String,
        /// Its shares.
        had: u32,
        /// Vault hosts now.
        now: usize,
        /// The vault folder.
        dir: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecretsError + '_ {
    move |source| SecretsError::Io { path: path.display().to_string(), source }
}

/// Where each secret lives.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The secrets folder.
    pub dir: PathBuf,
}

impl Layout {
    /// The swarm key.
    pub fn swarm_key(&self) -> PathBuf {
        self.dir.join("swarm.key")
    }

    /// The operator key.
    pub fn operator_key(&self) -> PathBuf {
        self.dir.join("operator.key")
    }

    /// `host`'s node identity.
    pub fn identity(&self, host: &str) -> PathBuf {
        self.dir.join("hosts").join(host).join("identity.key")
    }

    /// The vault's public key set.
    pub fn vault_keyset(&self) -> PathBuf {
        self.dir.join("vault").join("keyset.yaml")
    }

    /// `host`'s vault share.
    pub fn vault_share(&self, host: &str) -> PathBuf {
        self.dir.join("hosts").join(host).join("vault-share.yaml")
    }

    /// The cloud's folder: the secrets folder's parent, where the profile and the state live.
    pub fn cloud_dir(&self) -> PathBuf {
        self.dir.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
    }

    /// The file that records the last deploy (`last-deploy.json`, read by `--retry-failed`):
    /// once it exists, hosts may hold vault shares.
    pub fn state(&self) -> PathBuf {
        self.cloud_dir().join("last-deploy.json")
    }

    /// The cloud profile Spore Drive writes for clients (`cloud.yaml`).
    pub fn profile(&self) -> PathBuf {
        self.cloud_dir().join("cloud.yaml")
    }
}

/// What [`ensure`] did.
#[derive(Debug, Default)]
pub struct Made {
    /// Files created.
    pub created: Vec<PathBuf>,
    /// Files that existed and were kept.
    pub kept: Vec<PathBuf>,
}

fn private_dir(path: &Path) -> Result<(), SecretsError> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(io(path))
}

/// Creates every secret the playbook needs that does not exist yet.
pub fn ensure(playbook: &Playbook) -> Result<Made, SecretsError> {
    let layout = Layout { dir: playbook.secrets_dir() };
    let mut made = Made::default();
    private_dir(&layout.dir)?;
    let swarm_key = layout.swarm_key();
    if swarm_key.exists() {
        SwarmKey::load(&swarm_key)?;
        made.kept.push(swarm_key);
    } else {
        keyfile::write_secret_file(&swarm_key, SwarmKey::generate().to_file_format().as_bytes())
            .map_err(io(&swarm_key))?;
        made.created.push(swarm_key);
    }
    let mut keys = vec![layout.operator_key()];
    for host in &playbook.hosts {
        let path = layout.identity(&host.name);
        private_dir(path.parent().unwrap_or(&layout.dir))?;
        keys.push(path);
    }
    for path in keys {
        let (_, created) = keyfile::read_or_create(&path)?;
        if created { made.created.push(path) } else { made.kept.push(path) }
    }
    vault_shares(playbook, &layout, &mut made)?;
    Ok(made)
}

fn vault_shares(playbook: &Playbook, layout: &Layout, made: &mut Made) -> Result<(), SecretsError> {
    let hosts = playbook.hosts_running("vault");
    if hosts.is_empty() {
        return Ok(());
    }
    let keyset_path = layout.vault_keyset();
    if keyset_path.exists() {
        let keyset: KeySet = tau_proto::yaml::load(&keyset_path).map_err(|e| SecretsError::Io {
            path: keyset_path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        // Before the first deploy no host has a share and no secret exists: a playbook edited
        // after `init` (hosts or shapes changed) simply gets a new key set.
        let never_deployed = !layout.state().exists();
        if keyset.shares as usize == hosts.len() {
            made.kept.push(keyset_path);
            for host in hosts {
                made.kept.push(layout.vault_share(&host.name));
            }
            return Ok(());
        }
        if !never_deployed {
            return Err(SecretsError::VaultChanged {
                keyset: keyset_path.display().to_string(),
                had: keyset.shares,
                now: hosts.len(),
                dir: layout.dir.join("vault").display().to_string(),
            });
        }
        // The old shares go with the old key set, those of hosts that no longer run vault too.
        for host in &playbook.hosts {
            let share = layout.vault_share(&host.name);
            if share.exists() {
                std::fs::remove_file(&share).map_err(io(&share))?;
            }
        }
        std::fs::remove_file(&keyset_path).map_err(io(&keyset_path))?;
    }
    let threshold = (hosts.len().saturating_sub(1) / 2) as u32;
    let (keyset, shares) = vault::deal(hosts.len() as u32, threshold)?;
    private_dir(&layout.dir.join("vault"))?;
    for (host, share) in hosts.iter().zip(&shares) {
        let path = layout.vault_share(&host.name);
        write_yaml_secret(&path, share)?;
        made.created.push(path);
    }
    // The key set last: its presence says every share was written.
    let text = serde_yaml_ng::to_string(&keyset).map_err(|e| SecretsError::Io {
        path: keyset_path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&keyset_path, text).map_err(io(&keyset_path))?;
    made.created.push(keyset_path);
    Ok(())
}

fn write_yaml_secret(path: &Path, share: &ShareFile) -> Result<(), SecretsError> {
    let text = serde_yaml_ng::to_string(share).map_err(|e| SecretsError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    if path.exists() {
        // A share left by an interrupted run, whose key set was never written: replace it.
        std::fs::remove_file(path).map_err(io(path))?;
    }
    keyfile::write_secret_file(path, text.as_bytes()).map_err(io(path))
}
