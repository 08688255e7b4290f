//! The secrets a cloud is made with: the swarm key, the operator key, one identity per node and
//! the vault's key set with one share per vault node. `tau-node dev` and Spore Drive lay their
//! folders out differently ([`SecretPaths`] names every file); this module makes and checks the
//! files the same way for both.
//!
//! Every secret file is written with mode 0600, in folders made 0700, and never overwritten:
//! what exists is kept. The vault's key set is written after every share, so a folder left half
//! written (a crash, a full disk) is never taken for a whole one: without its key set it is dealt
//! again; with a key set whose shares do not all fit, it is dealt again only where the caller
//! allows it (before anything was encrypted to it).

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::SwarmKey;
use crate::keyfile::{self, KeyFileError};
use crate::swarm_key::SwarmKeyError;
use crate::vault::{self, KeySet, ShareFile, VaultError};

/// Where each secret of a cloud lives.
#[derive(Debug, Clone)]
pub struct SecretPaths {
    /// `swarm.key`: the pnet pre-shared key every peer of the cloud holds.
    pub swarm_key: PathBuf,
    /// `operator.key`: signs the operator's TNS records (registrars, domains).
    pub operator_key: PathBuf,
    /// Each node's identity key.
    pub identities: Vec<PathBuf>,
    /// The vault's files, when the cloud has vault nodes.
    pub vault: Option<VaultPaths>,
}

/// Where the vault's key set and shares live.
#[derive(Debug, Clone)]
pub struct VaultPaths {
    /// The public key set (not secret: it is published to TNS).
    pub keyset: PathBuf,
    /// One share per vault node, in share order.
    pub shares: Vec<PathBuf>,
    /// Shares to delete when a new key set is dealt (those of nodes that no longer run vault).
    pub stale: Vec<PathBuf>,
}

/// Whether an existing key set that no longer fits may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redeal {
    /// Replace it: nothing was encrypted to it yet (a dev cloud, a playbook never deployed).
    Allowed,
    /// Refuse: replacing it would make every stored secret unreadable.
    Refused,
}

/// What [`ensure`] did.
#[derive(Debug, Default)]
pub struct Made {
    /// Files created.
    pub created: Vec<PathBuf>,
    /// Files that existed and were kept.
    pub kept: Vec<PathBuf>,
}

/// Why the secrets could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum SecretsError {
    /// A file or folder could not be written, read or removed.
    #[error("{path}: {source}")]
    Io {
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
    /// The key set could not be dealt.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The number of vault nodes changed under a key set that may not be replaced.
    #[error("{keyset}: the key set has {had} shares but {now} vault nodes need one each")]
    VaultChanged {
        /// The key set file.
        keyset: String,
        /// Its shares.
        had: u32,
        /// Vault nodes now.
        now: usize,
    },
    /// A share is missing or belongs to another key set, under a key set that may not be
    /// replaced.
    #[error(
        "{share} is missing or does not belong to the key set {keyset}: restore it from a backup \
         (dealing a new key set would make every stored secret unreadable)"
    )]
    ShareMissing {
        share: String,
        /// The key set file.
        keyset: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecretsError + '_ {
    move |source| SecretsError::Io { path: path.display().to_string(), source }
}

/// The vault threshold for `shares` vault nodes: any majority (`threshold + 1` shares) decrypts,
/// and fewer learn nothing.
pub fn threshold(shares: usize) -> u32 {
    u32::try_from(shares.saturating_sub(1) / 2).unwrap_or(u32::MAX)
}

/// Makes every secret `paths` names that does not exist yet, and checks those that do. Returns
/// what it did and the vault's key set, if any.
pub fn ensure(paths: &SecretPaths, redeal: Redeal) -> Result<(Made, Option<KeySet>), SecretsError> {
    let mut made = Made::default();
    let swarm_key = &paths.swarm_key;
    if swarm_key.exists() {
        SwarmKey::load(swarm_key)?;
        made.kept.push(swarm_key.clone());
    } else {
        private_parent(swarm_key)?;
        keyfile::write_secret_file(swarm_key, SwarmKey::generate().to_file_format().as_bytes())
            .map_err(io(swarm_key))?;
        made.created.push(swarm_key.clone());
    }
    for path in std::iter::once(&paths.operator_key).chain(&paths.identities) {
        private_parent(path)?;
        let (_, created) = keyfile::read_or_create(path)?;
        if created { made.created.push(path.clone()) } else { made.kept.push(path.clone()) }
    }
    let keyset = match &paths.vault {
        Some(vault) if !vault.shares.is_empty() => Some(vault_keys(vault, redeal, &mut made)?),
        _ => None,
    };
    Ok((made, keyset))
}

/// Keeps the key set when it fits, else deals a new one (where allowed): every share first,
/// the key set last.
fn vault_keys(paths: &VaultPaths, redeal: Redeal, made: &mut Made) -> Result<KeySet, SecretsError> {
    let keyset_path = &paths.keyset;
    if keyset_path.exists() {
        let keyset: KeySet = crate::yaml::load(keyset_path).map_err(|e| SecretsError::Io {
            path: keyset_path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let unfit = paths
            .shares
            .iter()
            .find(|share| !crate::yaml::load::<ShareFile>(share).is_ok_and(|s| s.matches(&keyset)));
        match (keyset.shares as usize == paths.shares.len(), unfit, redeal) {
            (true, None, _) => {
                made.kept.push(keyset_path.clone());
                made.kept.extend(paths.shares.iter().cloned());
                return Ok(keyset);
            }
            (false, _, Redeal::Refused) => {
                return Err(SecretsError::VaultChanged {
                    keyset: keyset_path.display().to_string(),
                    had: keyset.shares,
                    now: paths.shares.len(),
                });
            }
            (true, Some(share), Redeal::Refused) => {
                return Err(SecretsError::ShareMissing {
                    share: share.display().to_string(),
                    keyset: keyset_path.display().to_string(),
                });
            }
            (_, _, Redeal::Allowed) => {}
        }
        // The key set goes first: until the new one is written, the folder has none.
        std::fs::remove_file(keyset_path).map_err(io(keyset_path))?;
    }
    for stale in paths.stale.iter().chain(&paths.shares) {
        match std::fs::remove_file(stale) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(stale)(e)),
            _ => {}
        }
    }
    let count = u32::try_from(paths.shares.len()).unwrap_or(u32::MAX);
    let (keyset, shares) = vault::deal(count, threshold(paths.shares.len()))?;
    for (path, share) in paths.shares.iter().zip(&shares) {
        private_parent(path)?;
        let text = serde_yaml_ng::to_string(share).map_err(|e| SecretsError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        keyfile::write_secret_file(path, text.as_bytes()).map_err(io(path))?;
        made.created.push(path.clone());
    }
    // Last: its presence says every share was written.
    private_parent(keyset_path)?;
    let text = serde_yaml_ng::to_string(&keyset).map_err(|e| SecretsError::Io {
        path: keyset_path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(keyset_path, text).map_err(io(keyset_path))?;
    made.created.push(keyset_path.clone());
    Ok(keyset)
}

/// Makes the folder that holds `path`, 0700 where it is new.
fn private_parent(path: &Path) -> Result<(), SecretsError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io(parent)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn paths(dir: &Path, vault_nodes: usize) -> SecretPaths {
        SecretPaths {
            swarm_key: dir.join("swarm.key"),
            operator_key: dir.join("operator.key"),
            identities: (0..3).map(|i| dir.join(format!("node-{i}/identity.key"))).collect(),
            vault: Some(VaultPaths {
                keyset: dir.join("vault/keyset.yaml"),
                shares: (0..vault_nodes)
                    .map(|i| dir.join(format!("node-{i}/vault-share.yaml")))
                    .collect(),
                stale: Vec::new(),
            }),
        }
    }

    #[test]
    fn a_majority_decrypts() {
        let thresholds: Vec<u32> = (1..=7).map(threshold).collect();
        assert_eq!(thresholds, [0, 0, 1, 1, 2, 2, 3]);
    }

    #[test]
    fn secrets_are_made_private_once_then_kept() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let paths = paths(dir.path(), 3);
        let (made, keyset) = ensure(&paths, Redeal::Refused)?;
        assert_eq!(made.created.len(), 1 + 1 + 3 + 3 + 1, "{made:?}");
        let keyset = keyset.ok_or("a key set")?;
        assert_eq!((keyset.shares, keyset.threshold), (3, 1));
        for path in made.created.iter().filter(|p| !p.ends_with("keyset.yaml")) {
            let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        let (again, kept) = ensure(&paths, Redeal::Refused)?;
        assert!(again.created.is_empty(), "{again:?}");
        assert_eq!(kept, Some(keyset));
        Ok(())
    }

    #[test]
    fn a_half_written_vault_is_never_taken_for_a_whole_one()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let paths = paths(dir.path(), 3);
        let (_, first) = ensure(&paths, Redeal::Refused)?;
        let first = first.ok_or("a key set")?;
        // A share lost under a key set secrets may be encrypted to: refused, naming the share.
        let lost = &paths.vault.as_ref().ok_or("vault")?.shares[2];
        std::fs::remove_file(lost)?;
        let error = ensure(&paths, Redeal::Refused).err().map(|e| e.to_string());
        assert!(
            error.as_deref().is_some_and(|e| e.contains("node-2/vault-share.yaml")),
            "{error:?}"
        );
        // Where a new key set is allowed, it is dealt whole.
        let (_, second) = ensure(&paths, Redeal::Allowed)?;
        let second = second.ok_or("a key set")?;
        assert_ne!(second.id, first.id);
        // Shares written but no key set (a crash before the last write): dealt again, even
        // where replacing a key set is refused, since none was ever complete.
        std::fs::remove_file(&paths.vault.as_ref().ok_or("vault")?.keyset)?;
        let (_, third) = ensure(&paths, Redeal::Refused)?;
        assert_ne!(third.ok_or("a key set")?.id, second.id);
        // More vault nodes than shares: refused where secrets may exist.
        let error =
            ensure(&self::paths(dir.path(), 5), Redeal::Refused).err().map(|e| e.to_string());
        assert!(error.as_deref().is_some_and(|e| e.contains("3 shares")), "{error:?}");
        Ok(())
    }
}
