//! The cloud's secrets, generated once and kept in the playbook's secrets folder:
//!
//! ```text
//! <secrets>/swarm.key                    the cloud's pre-shared key
//! <secrets>/operator.key                 the operator key (signs project creation, the vault
//!                                        key set, registrars)
//! <secrets>/hosts/<host>/identity.key    each host's node identity (its peer id)
//! <secrets>/vault/keyset.yaml            the vault's public key set (when vault hosts exist)
//! <secrets>/hosts/<host>/vault-share.yaml  each vault host's share
//! <secrets>/vault/retired/<host>.yaml    the share of a vault host removed with none to take
//!                                        it over: kept, for the next vault host added
//! ```
//!
//! The number of shares never changes once secrets may be encrypted (after the first deploy):
//! a host that takes a removed vault host's place takes over its share
//! ([`take_over_shares`]).
//!
//! The folder is created 0700 and every file 0600; nothing that exists is ever overwritten, so a
//! second run keeps every identity (and peer id) and every share.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use tau_proto::cloud_secrets::{self, Redeal, SecretPaths, VaultPaths};

use crate::playbook::Playbook;

/// Why the secrets could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum SecretsError {
    /// The secrets folder could not be made.
    #[error("{path}: {source}")]
    Io {
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A secret could not be made or read.
    #[error(transparent)]
    Secrets(cloud_secrets::SecretsError),
    /// The vault hosts changed under an existing key set.
    #[error(
        "{keyset}: the key set has {had} shares but the playbook has {now} vault hosts: the number of vault hosts cannot change, since dealing a new key set would make every stored secret unreadable. To replace a vault host, take it out of the playbook and add its replacement (a host of a vault shape) in the same deploy: the new host takes over its share. To start over, move {dir} away"
    )]
    VaultChanged {
        /// The key set file.
        keyset: String,
        /// Its shares.
        had: u32,
        /// Vault hosts now.
        now: usize,
        dir: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecretsError + '_ {
    move |source| SecretsError::Io { path: path.display().to_string(), source }
}

/// Where each secret lives.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The secrets folder (`secrets/` beside the playbook unless it says otherwise).
    pub dir: PathBuf,
}

impl Layout {
    /// `swarm.key` in the folder.
    pub fn swarm_key(&self) -> PathBuf {
        self.dir.join("swarm.key")
    }

    /// `operator.key` in the folder.
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

    /// Where the share of vault host `host`, removed with no host to take it over, is kept.
    pub fn retired_share(&self, host: &str) -> PathBuf {
        self.dir.join("vault").join("retired").join(format!("{host}.yaml"))
    }

    /// The retired shares, sorted.
    pub fn retired_shares(&self) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(self.dir.join("vault").join("retired"))
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        found.sort();
        found
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

    /// The seed addresses every node bootstraps from, one per line (`seeds.txt`, beside the
    /// state), recorded at the first deploy.
    pub fn seeds(&self) -> PathBuf {
        self.cloud_dir().join("seeds.txt")
    }

    /// The cloud profile Spore Drive writes for clients (`cloud.yaml`).
    pub fn profile(&self) -> PathBuf {
        self.cloud_dir().join("cloud.yaml")
    }
}

pub use cloud_secrets::Made;

fn private_dir(path: &Path) -> Result<(), SecretsError> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(io(path))
}

/// Creates every secret the playbook needs that does not exist yet. The vault key set is dealt
/// again when the vault hosts changed, but only until the first deploy (the state file): after
/// it, secrets may be encrypted to it.
pub fn ensure(playbook: &Playbook) -> Result<Made, SecretsError> {
    let layout = Layout { dir: playbook.secrets_dir() };
    private_dir(&layout.dir)?;
    let vault_hosts = playbook.hosts_running("vault");
    // Retired shares count: the key set keeps its number of shares.
    let retired = if layout.state().exists() { layout.retired_shares() } else { Vec::new() };
    let paths = SecretPaths {
        swarm_key: layout.swarm_key(),
        operator_key: layout.operator_key(),
        identities: playbook.hosts.iter().map(|h| layout.identity(&h.name)).collect(),
        vault: Some(VaultPaths {
            keyset: layout.vault_keyset(),
            shares: vault_hosts
                .iter()
                .map(|h| layout.vault_share(&h.name))
                .chain(retired)
                .collect(),
            // The old shares go with the old key set, those of hosts that no longer run vault too.
            stale: playbook.hosts.iter().map(|h| layout.vault_share(&h.name)).collect(),
        }),
    };
    let redeal = if layout.state().exists() { Redeal::Refused } else { Redeal::Allowed };
    match cloud_secrets::ensure(&paths, redeal) {
        Ok((made, _)) => Ok(made),
        Err(cloud_secrets::SecretsError::VaultChanged { keyset, had, now }) => {
            Err(SecretsError::VaultChanged {
                keyset,
                had,
                now,
                dir: layout.dir.join("vault").display().to_string(),
            })
        }
        Err(e) => Err(SecretsError::Secrets(e)),
    }
}

/// A vault share that moved to another host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Takeover {
    /// The host whose share it was (leaving, or retired).
    pub from: String,
    /// The host that holds it now.
    pub to: String,
}

/// Before a deploy: each vault host of the playbook with no share yet takes over the share of a
/// vault host leaving the cloud (deployed, no longer in the playbook), then of a retired one.
/// The file moves within the secrets folder: the new host gets it at its deploy, the old host's
/// copy goes when it is removed. Nothing moves before the first deploy (the key set may still
/// be dealt again then).
pub fn take_over_shares(
    playbook: &Playbook,
    leaving: &[crate::playbook::Host],
) -> Result<Vec<Takeover>, SecretsError> {
    let layout = Layout { dir: playbook.secrets_dir() };
    if !layout.state().exists() || !layout.vault_keyset().exists() {
        return Ok(Vec::new());
    }
    let mut sources: Vec<(String, PathBuf)> = leaving
        .iter()
        .map(|h| (h.name.clone(), layout.vault_share(&h.name)))
        .filter(|(_, path)| path.exists())
        .collect();
    for path in layout.retired_shares() {
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        sources.push((format!("{name} (retired)"), path));
    }
    let mut sources = sources.into_iter();
    let mut moved = Vec::new();
    for host in playbook.hosts_running("vault") {
        let target = layout.vault_share(&host.name);
        if target.exists() {
            continue;
        }
        let Some((from, source)) = sources.next() else { break };
        if let Some(parent) = target.parent() {
            private_dir(parent)?;
        }
        std::fs::rename(&source, &target).map_err(io(&source))?;
        moved.push(Takeover { from, to: host.name.clone() });
    }
    Ok(moved)
}

/// Keeps the share of a vault host removed with no host to take it over (`--force`), so that
/// the key set keeps its number of shares and a vault host added later takes it over.
pub fn retire_share(playbook: &Playbook, host: &str) -> Result<bool, SecretsError> {
    let layout = Layout { dir: playbook.secrets_dir() };
    let share = layout.vault_share(host);
    if !share.exists() {
        return Ok(false);
    }
    let target = layout.retired_share(host);
    if let Some(parent) = target.parent() {
        private_dir(parent)?;
    }
    std::fs::rename(&share, &target).map_err(io(&share))?;
    Ok(true)
}
