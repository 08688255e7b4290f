//! The cloud profile (`cloud.yaml`): everything a client needs to reach a cloud.
//!
//! ```yaml
//! name: dev
//! swarm_key: swarm.key          # relative paths are relative to this file's folder
//! bootstrap:
//!   - /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...
//! operator_key: operator.key    # optional: only operators hold it
//! ```
//!
//! Spore Drive writes it after a deployment and `tau-node dev` writes it for a local cloud;
//! every client takes `--cloud FILE`.

use std::path::{Path, PathBuf};

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use serde::{Deserialize, Serialize};

use crate::swarm_key::{SwarmKey, SwarmKeyError};
use crate::yaml::{self, YamlError};

/// A cloud profile, as written in `cloud.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudProfile {
    /// The cloud's name, for people.
    pub name: String,
    /// Path of the swarm key file.
    pub swarm_key: PathBuf,
    /// Addresses of nodes to connect to first, each ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Path of the operator key file, for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_key: Option<PathBuf>,
}

/// Why a profile could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum ProfileError {
    /// The YAML could not be loaded.
    #[error(transparent)]
    Yaml(#[from] YamlError),
    /// The swarm key it names could not be loaded.
    #[error(transparent)]
    SwarmKey(#[from] SwarmKeyError),
    /// The profile could not be written.
    #[error("cannot write cloud profile {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

impl CloudProfile {
    /// Loads a profile, checks it, and makes its paths absolute (relative to the file's folder).
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let mut profile: Self = yaml::load(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        profile.swarm_key = base.join(&profile.swarm_key);
        profile.operator_key = profile.operator_key.map(|k| base.join(k));
        if profile.bootstrap.is_empty() {
            return Err(
                YamlError::invalid(path, "bootstrap", "at least one address is needed").into()
            );
        }
        for (i, addr) in profile.bootstrap.iter().enumerate() {
            if peer_id_of(addr).is_none() {
                return Err(YamlError::invalid(
                    path,
                    format!("bootstrap[{i}]"),
                    format!("{addr} does not end in /p2p/<peer id>"),
                )
                .into());
            }
        }
        Ok(profile)
    }

    /// Writes the profile as YAML to `path`.
    pub fn save(&self, path: &Path) -> Result<(), ProfileError> {
        let write = |source| ProfileError::Write { path: path.display().to_string(), source };
        let text = serde_yaml_ng::to_string(self)
            .map_err(|e| write(std::io::Error::other(e.to_string())))?;
        std::fs::write(path, text).map_err(write)
    }

    /// Loads the swarm key the profile names.
    pub fn load_swarm_key(&self) -> Result<SwarmKey, SwarmKeyError> {
        SwarmKey::load(&self.swarm_key)
    }
}

/// The peer id at the end of a `/p2p/...` multiaddr, if any.
pub fn peer_id_of(addr: &Multiaddr) -> Option<libp2p::PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_paths_relative_to_the_profile() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let peer = libp2p::identity::Keypair::generate_ed25519().public().to_peer_id();
        let path = dir.path().join("cloud.yaml");
        std::fs::write(
            &path,
            format!(
                "name: t\nswarm_key: swarm.key\nbootstrap: [/ip4/127.0.0.1/tcp/1/p2p/{peer}]\n"
            ),
        )?;
        let profile = CloudProfile::load(&path)?;
        assert_eq!(profile.swarm_key, dir.path().join("swarm.key"));
        assert_eq!(peer_id_of(&profile.bootstrap[0]), Some(peer));
        Ok(())
    }

    #[test]
    fn rejects_a_bootstrap_address_without_peer_id() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("cloud.yaml");
        std::fs::write(&path, "name: t\nswarm_key: k\nbootstrap: [/ip4/127.0.0.1/tcp/1]\n")?;
        let msg = CloudProfile::load(&path).unwrap_err().to_string();
        assert!(msg.contains("cloud.yaml: field `bootstrap[0]`"), "{msg}");
        Ok(())
    }
}
