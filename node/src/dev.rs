//! The files of a local development cloud: N nodes on 127.0.0.1, like Taubyte's Dream.
//!
//! [`prepare`] lays out `DIR`:
//!
//! ```text
//! DIR/swarm.key        the cloud's swarm key (0600)
//! DIR/operator.key     the operator key (0600)
//! DIR/cloud.yaml       the cloud profile naming both, with every node as bootstrap
//! DIR/vault/keyset.yaml  the vault key set (n = core nodes, t = (n - 1) / 2)
//! DIR/node-<i>/        node.yaml, identity.key and vault-share.yaml (0600, core nodes), data/,
//!                      node.log, node.pid
//! ```
//!
//! The first [`DevOptions::core`] nodes (5 by default) run every service; the others run
//! hoarder and substrate, as the storage and compute nodes of a larger cloud do.
//!
//! Keys already in `DIR` are kept (the vault key set too, while the node count is the same), so a restarted dev cloud has the same peer ids; ports are
//! chosen anew each time (free ports on 127.0.0.1) and the YAML files rewritten. `tau-node dev`
//! then runs one `tau-node run` process per node.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tau_proto::CloudProfile;
use tau_proto::admin::Location;
use tau_proto::identity::WriterKey;
use tau_proto::keyfile::{self, KeyFileError};
use tau_proto::profile::ProfileError;

use crate::config::{
    ConnectionsConfig, DatabaseConfig, NodeConfig, Ports, SERVICES, SeerConfig, SubstrateConfig,
    TnsConfig, VaultConfig,
};
use tau_proto::cloud_secrets::{self, Redeal, SecretPaths, VaultPaths};
use tau_proto::vault::KeySet;

/// A dev cloud's domain: seer answers `<service>.tau.dev`.
pub const DEV_DOMAIN: &str = "dev";
/// A dev cloud's generated domains: `<project>.tau` and below (the example project's
/// `ping.example.tau`) are served with no TXT record.
pub const DEV_GENERATED_DOMAIN: &str = "tau";

/// How many bootstrap peers each dev node is given.
const BOOTSTRAP_PEERS: usize = 3;

/// Why a dev cloud could not be laid out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum DevError {
    /// A file or folder could not be written.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// A key file could not be read.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// The cloud's secrets could not be made or read.
    #[error(transparent)]
    Secrets(#[from] cloud_secrets::SecretsError),
    /// A dev cloud needs at least one node.
    #[error("a dev cloud needs at least one node")]
    NoNodes,
    /// The profile could not be written.
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

/// A laid-out dev cloud.
#[derive(Debug, Clone)]
pub struct DevCloud {
    /// `cloud.yaml` in the cloud's folder, for the CLI and tools (`--cloud`).
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
    /// Its HTTP gateway (listening only if it runs substrate).
    pub http: std::net::SocketAddr,
    /// Its seer DNS server (UDP and TCP).
    pub dns: std::net::SocketAddr,
    /// patrick's webhook endpoint (listening only if it runs ci).
    pub webhook: std::net::SocketAddr,
    /// The admin HTTP port (`/metrics`).
    pub admin: std::net::SocketAddr,
    /// The services it runs.
    pub services: Vec<String>,
}

impl DevNode {
    /// Whether the node runs `service`.
    pub fn runs(&self, service: &str) -> bool {
        self.services.iter().any(|s| s == service)
    }
}

/// What a dev cloud looks like.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// How many nodes.
    pub count: usize,
    /// How many of them (the first ones) run substrate; the others run every other service.
    pub substrate_nodes: usize,
    /// Written into every substrate node's `node.yaml`.
    pub substrate: SubstrateConfig,
    /// Where seer looks TXT validation records up [default: resolv.conf's server].
    pub txt_resolver: Option<std::net::SocketAddr>,
    /// Written into every node's `node.yaml`: the per-project quotas of TNS.
    pub tns: TnsConfig,
    /// Written into every node's `node.yaml`: the database service's settings.
    pub database: DatabaseConfig,
    /// How many of the nodes (the first ones) run tns, vault and seer besides hoarder and
    /// substrate; the others run only those two.
    pub core: usize,
    /// The nodes' regions, given in turn (node `i` is in `regions[i % len]`; `dev` if empty).
    pub regions: Vec<String>,
}

/// How many nodes of a dev cloud run every service, unless said otherwise.
pub const DEFAULT_CORE: usize = 5;

/// The services besides hoarder and substrate, which only the core nodes run.
const CORE_SERVICES: [&str; 5] = ["tns", "vault", "seer", "ci", "database"];

impl DevOptions {
    /// `count` nodes running every service, with default settings.
    pub fn new(count: usize) -> Self {
        Self {
            count,
            substrate_nodes: count,
            substrate: SubstrateConfig::default(),
            txt_resolver: None,
            tns: TnsConfig::default(),
            database: DatabaseConfig::default(),
            core: count.min(DEFAULT_CORE),
            regions: vec!["dev".into()],
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DevError + '_ {
    move |source| DevError::Io { path: path.display().to_string(), source }
}

/// Lays out a cloud in `dir`.
pub fn prepare(dir: &Path, options: &DevOptions) -> Result<DevCloud, DevError> {
    let count = options.count;
    let core = options.core.clamp(1, count.max(1));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let dir = dir.canonicalize().map_err(io(dir))?;
    let node_dir = |i: usize| dir.join(format!("node-{i}"));
    let paths = SecretPaths {
        swarm_key: dir.join("swarm.key"),
        operator_key: dir.join("operator.key"),
        identities: (0..count).map(|i| node_dir(i).join("identity.key")).collect(),
        vault: Some(VaultPaths {
            keyset: dir.join("vault").join("keyset.yaml"),
            shares: (0..core.min(count)).map(|i| node_dir(i).join(SHARE_FILE)).collect(),
            stale: (core..count).map(|i| node_dir(i).join(SHARE_FILE)).collect(),
        }),
    };
    // A dev cloud's key set is dealt anew whenever its node count changes: secrets stored under
    // the old one can no longer be read, which a dev cloud accepts.
    let (_, keyset) = cloud_secrets::ensure(&paths, Redeal::Allowed)?;
    let keyset = keyset.ok_or(DevError::NoNodes)?;
    let operator = keyfile::read(&paths.operator_key)?;
    let operator_key = WriterKey::of(&operator).map(|k| k.to_string());

    let ips: Vec<Ipv4Addr> = (0..count).map(node_ip).collect();
    let [http_port, dns_port, webhook_port, admin_port] = shared_ports(&ips).map_err(io(&dir))?;
    let mut nodes = Vec::with_capacity(count);
    for (i, ip) in ips.iter().copied().enumerate() {
        let name = format!("node-{i}");
        let node_dir = node_dir(i);
        let keypair = keyfile::read(&paths.identities[i])?;
        let peer_id = keypair.public().to_peer_id();
        let p2p =
            p2p_port(ip, &[http_port, dns_port, webhook_port, admin_port]).map_err(io(&dir))?;
        let addr = Multiaddr::from(ip).with(Protocol::Tcp(p2p)).with(Protocol::P2p(peer_id));
        let services = SERVICES
            .iter()
            .filter(|s| i < options.substrate_nodes || **s != "substrate")
            .filter(|s| i < core || !CORE_SERVICES.contains(s))
            .map(|s| s.to_string())
            .collect();
        nodes.push(DevNode {
            config: node_dir.join("node.yaml"),
            log: node_dir.join("node.log"),
            name,
            peer_id,
            addr,
            http: (ip, http_port).into(),
            dns: (ip, dns_port).into(),
            webhook: (ip, webhook_port).into(),
            admin: (ip, admin_port).into(),
            services,
        });
    }
    for (i, node) in nodes.iter().enumerate() {
        let region = match options.regions.len() {
            0 => "dev".to_string(),
            n => options.regions[i % n].clone(),
        };
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
            listen: vec![node.http.ip()],
            announce: Vec::new(),
            bootstrap,
            services: node.services.clone(),
            data_dir: "data".into(),
            ports: Ports {
                p2p: node_p2p_port(node),
                http: http_port,
                dns: dns_port,
                webhook: webhook_port,
                admin: admin_port,
            },
            location: Some(Location { region, latitude: None, longitude: None }),
            // A dev cloud's nodes stop at once: no client caches their DNS answers for long.
            drain: "0s".into(),
            substrate: options.substrate.clone(),
            seer: Some(SeerConfig {
                txt_resolver: options.txt_resolver,
                ..SeerConfig::new(DEV_DOMAIN.into(), DEV_GENERATED_DOMAIN.into())
            }),
            tns: options.tns.clone(),
            vault: node.runs("vault").then(|| VaultConfig {
                keyset: PathBuf::from("../vault/keyset.yaml"),
                share: PathBuf::from(SHARE_FILE),
            }),
            connections: ConnectionsConfig::default(),
            ci: Default::default(),
            database: options.database.clone(),
            metrics: Default::default(),
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

/// Node `i`'s address: `127.0.0.<i + 1>`. Every dev node has its own loopback address (Linux
/// routes all of 127.0.0.0/8 to the host), so that seer's answers name each node, and all of
/// them serve HTTP and DNS on the same ports, as the nodes of a real cloud do.
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, u8::try_from(i + 1).unwrap_or(u8::MAX))
}

fn node_p2p_port(node: &DevNode) -> u16 {
    node.addr
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap_or(0)
}

/// A TCP port free on `ip` other than `taken` (the shared ports, free on `ip` now but not for
/// long).
fn p2p_port(ip: Ipv4Addr, taken: &[u16]) -> std::io::Result<u16> {
    for _ in 0..100 {
        let port = TcpListener::bind((ip, 0))?.local_addr()?.port();
        if !taken.contains(&port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::other(format!("no free port on {ip}")))
}

/// An HTTP port (TCP), a DNS port (UDP and TCP), a webhook port (TCP) and an admin port (TCP)
/// free on every one of `ips`.
fn shared_ports(ips: &[Ipv4Addr]) -> std::io::Result<[u16; 4]> {
    let free_everywhere = |port: u16, udp: bool| {
        ips.iter().all(|ip| {
            TcpListener::bind((*ip, port)).is_ok()
                && (!udp || std::net::UdpSocket::bind((*ip, port)).is_ok())
        })
    };
    let mut found = Vec::new();
    for _ in 0..100 {
        let port = TcpListener::bind((ips[0], 0))?.local_addr()?.port();
        if !found.contains(&port) && free_everywhere(port, found.len() == 1) {
            found.push(port);
            if let [http, dns, webhook, admin] = found[..] {
                return Ok([http, dns, webhook, admin]);
            }
        }
    }
    Err(std::io::Error::other("no port is free on every node's address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_a_cloud_and_keeps_identities() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let first = prepare(dir.path(), &DevOptions::new(4))?;
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
        let again = prepare(dir.path(), &DevOptions::new(4))?;
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
        let bigger = prepare(dir.path(), &DevOptions::new(5))?;
        assert_ne!(bigger.keyset.id, again.keyset.id);
        assert_eq!(bigger.keyset.threshold, 2);
        // In a larger cloud only the core nodes run tns, vault and seer, and hold a share.
        let large = prepare(dir.path(), &DevOptions::new(8))?;
        assert_eq!(large.keyset.id, bigger.keyset.id, "the same five vault nodes");
        for (i, node) in large.nodes.iter().enumerate() {
            let config = NodeConfig::load(&node.config)?;
            let core = i < DEFAULT_CORE;
            assert_eq!(node.runs("tns") && node.runs("vault") && node.runs("seer"), core);
            assert!(node.runs("hoarder") && node.runs("substrate"));
            assert_eq!(config.vault.is_some(), core, "{}", node.name);
        }
        Ok(())
    }
}
