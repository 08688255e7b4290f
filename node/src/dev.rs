//! The files of a local development cloud: N nodes on 127.0.0.1, like Taubyte's Dream.
//!
//! [`prepare`] lays out `DIR`:
//!
//! ```text
//! DIR/swarm.key        the cloud's swarm key (0600)
//! DIR/operator.key     the operator key (0600)
//! DIR/cloud.yaml       the cloud profile naming both, with every node as bootstrap
//! DIR/vault/keyset.yaml  the vault key set (n = nodes, t = (n - 1) / 2)
//! DIR/node-<i>/        node.yaml, identity.key and vault-share.yaml (0600), data/, node.log,
//!                      node.pid
//! ```
//!
//! Keys already in `DIR` are kept (the vault key set too, while the node count is the same), so a restarted dev cloud has the same peer ids; ports are
//! chosen anew each time (free ports on 127.0.0.1) and the YAML files rewritten. `tau-node dev`
//! then runs one `tau-node run` process per node.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tau_proto::admin::Location;
use tau_proto::keyfile::{self, KeyFileError};
use tau_proto::profile::ProfileError;
use tau_proto::swarm_key::SwarmKeyError;
use tau_proto::tns::WriterKey;
use tau_proto::{CloudProfile, SwarmKey};

use crate::config::{NodeConfig, Ports, SERVICES, SubstrateConfig, VaultConfig};
use tau_proto::vault::{self, KeySet, ShareFile};

/// How many bootstrap peers each dev node is given.
const BOOTSTRAP_PEERS: usize = 3;

/// Why a dev cloud could not be laid out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevError {
    /// A file or folder could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file could not be read or written.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// The existing swarm key is unreadable.
    #[error(transparent)]
    SwarmKey(#[from] SwarmKeyError),
    /// The profile could not be written.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The vault key set could not be dealt.
    #[error(transparent)]
    Vault(#[from] tau_proto::vault::VaultError),
}

/// A laid-out dev cloud.
#[derive(Debug, Clone)]
pub struct DevCloud {
    /// The cloud profile.
    pub profile: PathBuf,
    /// Its nodes.
    pub nodes: Vec<DevNode>,
    /// The vault key set every node holds a share of.
    pub keyset: KeySet,
}

/// One node of a dev cloud.
#[derive(Debug, Clone)]
pub struct DevNode {
    /// `node-<i>`.
    pub name: String,
    /// Its `node.yaml`.
    pub config: PathBuf,
    /// Where its process logs.
    pub log: PathBuf,
    /// Its peer id.
    pub peer_id: PeerId,
    /// Its p2p address, with `/p2p/<peer id>`.
    pub addr: Multiaddr,
    /// Its HTTP gateway.
    pub http: std::net::SocketAddr,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DevError + '_ {
    move |source| DevError::Io { path: path.display().to_string(), source }
}

/// Lays out a cloud of `count` nodes in `dir`.
pub fn prepare(
    dir: &Path,
    count: usize,
    substrate: &SubstrateConfig,
) -> Result<DevCloud, DevError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let dir = dir.canonicalize().map_err(io(dir))?;
    let swarm_key_path = dir.join("swarm.key");
    if swarm_key_path.exists() {
        SwarmKey::load(&swarm_key_path)?;
    } else {
        keyfile::write_secret_file(
            &swarm_key_path,
            SwarmKey::generate().to_file_format().as_bytes(),
        )
        .map_err(io(&swarm_key_path))?;
    }
    let (operator, _) = keyfile::read_or_create(&dir.join("operator.key"))?;
    let operator_key = WriterKey::of(&operator).map(|k| k.to_string());

    let keyset = vault_keys(&dir, count)?;

    let ports = free_ports(count * 3).map_err(io(&dir))?;
    let mut nodes = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("node-{i}");
        let node_dir = dir.join(&name);
        std::fs::create_dir_all(&node_dir).map_err(io(&node_dir))?;
        let (keypair, _) = keyfile::read_or_create(&node_dir.join("identity.key"))?;
        let peer_id = keypair.public().to_peer_id();
        let p2p = ports[i * 3];
        let addr = Multiaddr::from(Ipv4Addr::LOCALHOST)
            .with(Protocol::Tcp(p2p))
            .with(Protocol::P2p(peer_id));
        nodes.push(DevNode {
            config: node_dir.join("node.yaml"),
            log: node_dir.join("node.log"),
            name,
            peer_id,
            addr,
            http: (Ipv4Addr::LOCALHOST, ports[i * 3 + 1]).into(),
        });
    }
    for (i, node) in nodes.iter().enumerate() {
        let bootstrap = nodes
            .iter()
            .take(BOOTSTRAP_PEERS + 1)
            .filter(|other| other.peer_id != node.peer_id)
            .take(BOOTSTRAP_PEERS)
            .map(|other| other.addr.clone())
            .collect();
        let config = NodeConfig {
            identity_key: "identity.key".into(),
            swarm_key: "../swarm.key".into(),
            operator_key: operator_key.clone(),
            listen: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            announce: Vec::new(),
            bootstrap,
            services: SERVICES.iter().map(|s| s.to_string()).collect(),
            data_dir: "data".into(),
            ports: Ports { p2p: ports[i * 3], http: ports[i * 3 + 1], dns: ports[i * 3 + 2] },
            location: Some(Location { region: "dev".into(), latitude: None, longitude: None }),
            substrate: substrate.clone(),
            vault: Some(VaultConfig {
                keyset: PathBuf::from("../vault/keyset.yaml"),
                share: PathBuf::from(SHARE_FILE),
            }),
        };
        config.save(&node.config).map_err(io(&node.config))?;
    }
    let profile = dir.join("cloud.yaml");
    CloudProfile {
        name: "dev".into(),
        swarm_key: "swarm.key".into(),
        bootstrap: nodes.iter().map(|n| n.addr.clone()).collect(),
        operator_key: Some("operator.key".into()),
    }
    .save(&profile)?;
    Ok(DevCloud { profile, nodes, keyset })
}

/// Each dev node's vault share, in its folder.
const SHARE_FILE: &str = "vault-share.yaml";

/// The vault threshold of a dev cloud of `count` nodes: a majority decrypts.
pub fn vault_threshold(count: usize) -> u32 {
    (count.saturating_sub(1) / 2) as u32
}

/// Keeps the vault key set in `dir` if it fits `count` nodes and every share is there, else
/// deals a new one (secrets stored under the old one can no longer be read).
fn vault_keys(dir: &Path, count: usize) -> Result<KeySet, DevError> {
    let vault_dir = dir.join("vault");
    let keyset_path = vault_dir.join("keyset.yaml");
    let share_path = |i: usize| dir.join(format!("node-{i}")).join(SHARE_FILE);
    if let Ok(keyset) = tau_proto::yaml::load::<KeySet>(&keyset_path) {
        let fits = keyset.shares as usize == count
            && (0..count).all(|i| {
                tau_proto::yaml::load::<ShareFile>(&share_path(i)).is_ok_and(|s| s.matches(&keyset))
            });
        if fits {
            return Ok(keyset);
        }
    }
    let (keyset, shares) = vault::deal(count as u32, vault_threshold(count))?;
    std::fs::create_dir_all(&vault_dir).map_err(io(&vault_dir))?;
    let text = serde_yaml_ng::to_string(&keyset).map_err(|e| DevError::Io {
        path: keyset_path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&keyset_path, text).map_err(io(&keyset_path))?;
    for (i, share) in shares.iter().enumerate() {
        let path = share_path(i);
        let parent = path.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&path)(e)),
            _ => {}
        }
        let text = serde_yaml_ng::to_string(share).map_err(|e| DevError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        keyfile::write_secret_file(&path, text.as_bytes()).map_err(io(&path))?;
    }
    Ok(keyset)
}

/// `count` distinct free TCP ports on 127.0.0.1 (all held open until all are chosen).
fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_a_cloud_and_keeps_identities() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let first = prepare(dir.path(), 4, &SubstrateConfig::default())?;
        assert_eq!(first.nodes.len(), 4);
        let profile = CloudProfile::load(&first.profile)?;
        assert_eq!(profile.bootstrap.len(), 4);
        profile.load_swarm_key()?;
        for node in &first.nodes {
            let config = NodeConfig::load(&node.config)?;
            assert_eq!(config.bootstrap.len(), 3);
            assert!(config.operator_key().is_some(), "every node knows the operator key");
            assert!(!config.bootstrap.contains(&node.addr));
            assert_eq!(keyfile::read(&config.identity_key)?.public().to_peer_id(), node.peer_id);
        }
        let again = prepare(dir.path(), 4, &SubstrateConfig::default())?;
        let ids = |c: &DevCloud| c.nodes.iter().map(|n| n.peer_id).collect::<Vec<_>>();
        assert_eq!(ids(&first), ids(&again));
        // The vault key set is kept, and every node's share loads and fits it.
        assert_eq!(first.keyset, again.keyset);
        assert_eq!(again.keyset.threshold, 1);
        for node in &again.nodes {
            let config = NodeConfig::load(&node.config)?;
            let vault = config.vault.as_ref().ok_or("no vault section")?;
            crate::vault::load_keys(vault)?;
        }
        // A different node count needs a new key set.
        let bigger = prepare(dir.path(), 5, &SubstrateConfig::default())?;
        assert_ne!(bigger.keyset.id, again.keyset.id);
        assert_eq!(bigger.keyset.threshold, 2);
        Ok(())
    }
}
