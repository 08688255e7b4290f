//! `tau-node init`.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use libp2p::Multiaddr;
use tau_node::NodeConfig;
use tau_node::config::{Ports, SeerConfig, VaultConfig};
use tau_proto::SwarmKey;
use tau_proto::admin::Location;
use tau_proto::keyfile;

/// Set up a node: write DIR/node.yaml and DIR/identity.key (ed25519, mode 0600), print the
/// peer id.
///
/// An existing identity key is kept (a node's peer id never changes by accident). Without
/// --swarm-key, a new swarm key is generated in DIR/swarm.key: that starts a new cloud, whose
/// other nodes and clients need a copy of it.
#[derive(Debug, Args)]
pub(crate) struct Init {
    /// The node's folder.
    #[arg(long)]
    dir: PathBuf,
    /// The cloud's swarm key file; referenced from node.yaml by its absolute path.
    #[arg(long)]
    swarm_key: Option<PathBuf>,
    /// The public half of the cloud's operator key (ed25519:<hex>, as `tau-node key public`
    /// prints it): the only key that may create projects.
    #[arg(long)]
    operator_key: Option<tau_proto::identity::WriterKey>,
    /// The services to run, comma-separated: tns, hoarder, vault, seer, substrate.
    #[arg(long, value_delimiter = ',')]
    services: Vec<String>,
    /// A peer to join through, ending in /p2p/<peer id>; repeat for several.
    #[arg(long)]
    bootstrap: Vec<Multiaddr>,
    /// An IP address to listen on; repeat for several [default: 0.0.0.0].
    #[arg(long)]
    listen: Vec<IpAddr>,
    /// An address to announce to peers instead of the listen addresses; repeat for several.
    #[arg(long)]
    announce: Vec<Multiaddr>,
    /// The libp2p port (0: any free port).
    #[arg(long, default_value_t = Ports::default().p2p)]
    p2p_port: u16,
    /// The HTTP gateway port.
    #[arg(long, default_value_t = Ports::default().http)]
    http_port: u16,
    /// The DNS port.
    #[arg(long, default_value_t = Ports::default().dns)]
    dns_port: u16,
    /// patrick's webhook port, on a `ci` node.
    #[arg(long, default_value_t = Ports::default().webhook)]
    webhook_port: u16,
    /// The admin HTTP port: GET /metrics, Prometheus text (0: any free port).
    #[arg(long, default_value_t = Ports::default().admin)]
    admin_port: u16,
    /// The vault key set file (`keyset.yaml` from `tau-node vault deal`), for a vault node.
    #[arg(long, requires = "vault_share")]
    vault_keyset: Option<PathBuf>,
    /// This node's vault share file (`share-<i>.yaml`), for a vault node.
    #[arg(long, requires = "vault_keyset")]
    vault_share: Option<PathBuf>,
    /// The cloud's domain, for a seer node: it answers `<service>.tau.<domain>`.
    #[arg(long, requires = "generated_domain")]
    domain: Option<String>,
    /// The suffix of the cloud's generated domains, for a seer node (`<project>.<suffix>`).
    #[arg(long, requires = "domain")]
    generated_domain: Option<String>,
    /// The node's region, such as eu-west.
    #[arg(long)]
    region: Option<String>,
    /// Overwrite an existing node.yaml (the identity key is still kept).
    #[arg(long)]
    force: bool,
}

fn absolute(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    path.canonicalize().with_context(|| format!("cannot resolve {}", path.display()))
}

impl Init {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let config_path = self.dir.join("node.yaml");
        if config_path.exists() && !self.force {
            bail!("{} exists; pass --force to overwrite it", config_path.display());
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let new_swarm_key = self.dir.join("swarm.key");
        let swarm_key = match &self.swarm_key {
            Some(path) => {
                SwarmKey::load(path)?;
                path.canonicalize().with_context(|| format!("cannot resolve {}", path.display()))?
            }
            None => PathBuf::from("swarm.key"),
        };
        let config = NodeConfig {
            identity_key: "identity.key".into(),
            swarm_key,
            operator_key: self.operator_key.map(|k| k.to_string()),
            listen: if self.listen.is_empty() { NodeConfig::default().listen } else { self.listen },
            announce: self.announce,
            bootstrap: self.bootstrap,
            services: self.services,
            data_dir: "data".into(),
            ports: Ports {
                p2p: self.p2p_port,
                http: self.http_port,
                dns: self.dns_port,
                webhook: self.webhook_port,
                admin: self.admin_port,
            },
            location: self.region.map(|region| Location {
                region,
                latitude: None,
                longitude: None,
            }),
            drain: NodeConfig::default().drain,
            substrate: Default::default(),
            tns: Default::default(),
            seer: match (&self.domain, &self.generated_domain) {
                (Some(domain), Some(generated)) => {
                    Some(SeerConfig::new(domain.clone(), generated.clone()))
                }
                _ => None,
            },
            vault: match (&self.vault_keyset, &self.vault_share) {
                (Some(keyset), Some(share)) => {
                    Some(VaultConfig { keyset: absolute(keyset)?, share: absolute(share)? })
                }
                _ => None,
            },
            connections: Default::default(),
            ci: Default::default(),
            database: Default::default(),
            metrics: Default::default(),
        };
        // The same checks as loading the file, before anything is written.
        let text = serde_yaml_ng::to_string(&config)?;
        NodeConfig::parse(&text, &config_path)?;
        if self.swarm_key.is_none() && !new_swarm_key.exists() {
            keyfile::write_secret_file(
                &new_swarm_key,
                SwarmKey::generate().to_file_format().as_bytes(),
            )
            .with_context(|| format!("cannot write {}", new_swarm_key.display()))?;
            eprintln!(
                "generated a new swarm key in {}: every node and client of this cloud needs a copy",
                new_swarm_key.display()
            );
        }
        let (keypair, created) = keyfile::read_or_create(&self.dir.join("identity.key"))?;
        if !created {
            eprintln!("kept the existing identity key {}", self.dir.join("identity.key").display());
        }
        std::fs::write(&config_path, text)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        println!("{}", keypair.public().to_peer_id());
        Ok(())
    }
}
