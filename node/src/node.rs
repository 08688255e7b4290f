//! A running node: its config turned into keys, a resource sampler and the p2p task.

use std::sync::Arc;
use std::time::Instant;

use tau_proto::keyfile::{self, KeyFileError};
use tau_proto::swarm_key::{SwarmKey, SwarmKeyError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::NodeConfig;
use crate::p2p::{self, AdminContext, P2pConfig, P2pError};
use crate::{
    admin, database, hoarder, membership, monkey, patrick, resources, seer, substrate, tns, vault,
};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum NodeError {
    /// The identity key could not be loaded.
    #[error(transparent)]
    Identity(#[from] KeyFileError),
    /// The swarm key could not be loaded.
    #[error(transparent)]
    SwarmKey(#[from] SwarmKeyError),
    /// The data folder could not be created.
    #[error("cannot create the data folder {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    /// The p2p core could not start.
    #[error(transparent)]
    P2p(#[from] P2pError),
    /// The tns service could not start.
    #[error(transparent)]
    Tns(#[from] tns::TnsError),
    /// The hoarder service could not start.
    #[error(transparent)]
    Hoarder(#[from] hoarder::HoarderError),
    /// The vault service could not start.
    #[error(transparent)]
    Vault(#[from] vault::VaultStartError),
    /// Membership could not start.
    #[error(transparent)]
    Membership(#[from] crate::membership::MembershipError),
    /// The seer service could not start.
    #[error(transparent)]
    Seer(#[from] seer::SeerError),
    /// The substrate service could not start.
    #[error(transparent)]
    Substrate(#[from] substrate::SubstrateError),
    /// The ci service could not start.
    #[error(transparent)]
    Patrick(#[from] patrick::PatrickError),
    #[error(transparent)]
    Database(#[from] database::DatabaseError),
    /// The admin port could not be bound.
    #[error("cannot listen on {addr} for the admin port (ports.admin): {source}")]
    Admin { addr: std::net::SocketAddr, source: std::io::Error },
    /// The metrics exporter could not start.
    #[error(transparent)]
    Otlp(#[from] crate::metrics::OtlpError),
}

/// A started node. Stop it with [`Node::stop`].
pub struct Node {
    handle: p2p::Handle,
    shutdown: CancellationToken,
    p2p_task: JoinHandle<()>,
    services: Vec<JoinHandle<()>>,
    http_addrs: Vec<std::net::SocketAddr>,
    dns_addrs: Vec<std::net::SocketAddr>,
    webhook_addrs: Vec<std::net::SocketAddr>,
    admin_addrs: Vec<std::net::SocketAddr>,
    leaving: tokio::sync::watch::Sender<bool>,
}

impl Node {
    /// Loads the node's keys, creates its data folder and starts its parts. Returns once the node
    /// listens; joining the mesh goes on in the background.
    pub async fn start(config: &NodeConfig) -> Result<Self, NodeError> {
        let started = Instant::now();
        let keypair = keyfile::read(&config.identity_key)?;
        let swarm_key = SwarmKey::load(&config.swarm_key)?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let shutdown = CancellationToken::new();
        let resources = resources::spawn(config.data_dir.clone(), shutdown.child_token());
        let sampled = resources.clone();
        let sampled_for_metrics = resources.clone();
        let (leaving, leaving_rx) = tokio::sync::watch::channel(false);
        let (ready, ready_rx) = tokio::sync::watch::channel(false);
        let (handle, p2p_task) = p2p::spawn(
            P2pConfig {
                keypair: keypair.clone(),
                swarm_key,
                listen: config.p2p_listen_addrs(),
                announce: config.announce.clone(),
                bootstrap: config.bootstrap.clone(),
                admin: AdminContext {
                    services: config.services.clone(),
                    location: config.location.clone(),
                    started,
                    resources,
                    leaving: leaving_rx.clone(),
                    ready: ready_rx,
                },
                admitted: membership::initial(config.operator_key().as_ref()),
                connections: config.connections.clone(),
            },
            shutdown.child_token(),
        )
        .await?;
        let runs = |service: &str| config.services.iter().any(|s| s == service);
        let mut services = Vec::new();
        // Counter requests go to the node's counters, where it keeps some.
        let keeps_counters = runs("substrate") || runs("ci");
        let (counter_inbox, counter_requests) = tokio::sync::mpsc::channel(64);
        let admin_services = Arc::new(admin::Services::default());
        services.push(
            admin::start(
                admin::Parts {
                    handle: handle.clone(),
                    operator: config.operator_key(),
                    logs: crate::logs::global().clone(),
                    leaving: leaving.clone(),
                    counters: keeps_counters.then_some(counter_inbox),
                    services: admin_services.clone(),
                },
                shutdown.child_token(),
            )
            .await
            .map_err(|e| P2pError::Build(e.to_string()))?,
        );
        let mut counter_requests = Some(counter_requests);
        let mut local_tns = None;
        if runs("tns") {
            let (tasks, local) = tns::start(
                handle.clone(),
                &config.data_dir,
                config.operator_key(),
                tns::Quota {
                    records: config.tns.max_records_per_project,
                    bytes: config.tns.max_bytes(),
                },
                config.bootstrap.is_empty(),
                shutdown.child_token(),
            )
            .await?;
            services.extend(tasks);
            let _ = admin_services.tns.set(local.clone());
            local_tns = Some(local);
        }
        let (membership_task, admitted) = membership::start(
            handle.clone(),
            config.operator_key(),
            local_tns.clone(),
            shutdown.child_token(),
        )
        .await?;
        services.extend(membership_task);
        if let Some(local) = &local_tns {
            services.push(tns::watch_admission(
                local.clone(),
                admitted.clone(),
                shutdown.child_token(),
            ));
        }
        let mut local_hoarder = None;
        let mut hoarder_full = None;
        // Who is healthy, from seer's change feed: followed (below, once the node's own seer
        // runs) when a service needs it.
        let (health, health_rx) = tokio::sync::watch::channel(seer::follow::Health::default());
        if runs("hoarder") {
            let (tasks, local) = hoarder::start(
                handle.clone(),
                &config.data_dir,
                config.operator_key(),
                health_rx.clone(),
                leaving_rx.clone(),
                shutdown.child_token(),
            )
            .await?;
            services.extend(tasks);
            hoarder_full = Some(local.full());
            let _ = admin_services.hoarder.set(local.clone());
            local_hoarder = Some(local);
        }
        let mut local_vault = None;
        if runs("vault") {
            // Checked when the config was loaded; a config built in code may still lack it.
            let Some(vault_config) = &config.vault else {
                return Err(vault::VaultStartError::Keys {
                    path: "node.yaml".into(),
                    reason: "a vault node needs `vault: { keyset, share }`".into(),
                }
                .into());
            };
            let registry = match &local_tns {
                Some(local) => tns::Registry::Local(local.clone()),
                None => tns::Registry::Remote(handle.clone()),
            };
            let (tasks, local) = vault::start(
                handle.clone(),
                keypair.clone(),
                &config.data_dir,
                vault_config,
                registry,
                admitted.clone(),
                shutdown.child_token(),
            )
            .await?;
            services.extend(tasks);
            local_vault = Some(local);
        }
        let mut local_database = None;
        if runs("database") {
            let registry = match &local_tns {
                Some(local) => tns::Registry::Local(local.clone()),
                None => tns::Registry::Remote(handle.clone()),
            };
            let (tasks, local) = database::start(
                handle.clone(),
                &config.data_dir,
                registry,
                local_hoarder.clone(),
                config.database.storage_grace(),
                shutdown.child_token(),
            )
            .await?;
            services.extend(tasks);
            local_database = Some(local);
        }
        let mut http_addrs = Vec::new();
        let mut in_flight = None;
        // Signed counters: substrate's invocations, and a ci node's build jobs.
        let counters = if keeps_counters {
            Some(substrate::open_counters(&config.data_dir, keypair.clone(), &config.substrate)?)
        } else {
            None
        };
        if let Some(counters) = counters.clone().filter(|_| !runs("substrate")) {
            let shutdown = shutdown.child_token();
            if let Some(requests) = counter_requests.take() {
                services.push(substrate::serve_counters(
                    counters,
                    requests,
                    admitted.clone(),
                    shutdown,
                ));
            }
        }
        if let Some(counters) = counters.clone().filter(|_| runs("substrate")) {
            let started = substrate::start(
                substrate::Parts {
                    handle: handle.clone(),
                    data_dir: &config.data_dir,
                    http: config.http_listen_addrs(),
                    config: &config.substrate,
                    tns: local_tns.clone(),
                    hoarder: local_hoarder.clone(),
                    admitted: admitted.clone(),
                    region: config.location.as_ref().map(|l| l.region.clone()),
                    counters,
                    counter_requests: counter_requests
                        .take()
                        .expect("counter requests are taken once: substrate or ci, not both here"),
                    database: local_database.clone(),
                },
                shutdown.child_token(),
            )
            .await?;
            services.extend(started.tasks);
            http_addrs = started.http_addrs;
            in_flight = Some(started.in_flight);
        }
        let mut webhook_addrs = Vec::new();
        if runs("ci") {
            let registry = match &local_tns {
                Some(local) => tns::Registry::Local(local.clone()),
                None => tns::Registry::Remote(handle.clone()),
            };
            let started = patrick::start(
                patrick::Parts {
                    handle: handle.clone(),
                    keypair: keypair.clone(),
                    registry,
                    vault: local_vault.clone(),
                    listen: config.webhook_listen_addrs(),
                },
                shutdown.child_token(),
            )
            .await?;
            services.extend(started.tasks);
            webhook_addrs = started.addrs;
            services.extend(monkey::start(
                monkey::Parts {
                    handle: handle.clone(),
                    keypair: keypair.clone(),
                    registry: match &local_tns {
                        Some(local) => tns::Registry::Local(local.clone()),
                        None => tns::Registry::Remote(handle.clone()),
                    },
                    local: local_tns.clone(),
                    vault: local_vault.clone(),
                    data_dir: config.data_dir.clone(),
                    config: config.ci.clone(),
                    counters: counters.clone(),
                },
                shutdown.child_token(),
            ));
        }
        let mut dns_addrs = Vec::new();
        let mut own_seer = None;
        let seal = Arc::new(tau_proto::seer::BeatSeal::new(&swarm_key));
        if runs("seer") {
            let Some(seer_config) = &config.seer else {
                return Err(seer::SeerError::NoDomain.into());
            };
            let registry = match &local_tns {
                Some(local) => tns::Registry::Local(local.clone()),
                None => tns::Registry::Remote(handle.clone()),
            };
            let beats = seer::Beats { addrs: udp_addrs(&handle).await, seal: seal.clone() };
            let started = seer::start(
                handle.clone(),
                seer_config,
                registry,
                config.dns_listen_addrs(),
                beats,
                admitted.clone(),
                shutdown.child_token(),
            )
            .await?;
            services.extend(started.tasks);
            dns_addrs = started.dns_addrs;
            own_seer = Some(started.shared);
        }
        if runs("hoarder") {
            let follow = seer::follow::spawn(
                handle.clone(),
                own_seer.clone(),
                health,
                shutdown.child_token(),
            )
            .await
            .map_err(seer::SeerError::P2p)?;
            services.push(follow);
        }
        services.push(seer::beat::spawn(
            handle.clone(),
            seer::beat::BeatParts {
                keypair,
                config: config.clone(),
                http_port: http_addrs.first().map_or(0, |a| a.port()),
                resources: sampled,
                active_requests: in_flight,
                hoarder_full,
                seer: own_seer.clone(),
                leaving: leaving_rx.clone(),
                caught_up: local_tns.as_ref().map(tns::Local::watch_caught_up),
                udp: seer::beat::Udp { socket: beat_socket(config).await, seal },
            },
            shutdown.child_token(),
        ));
        // Metrics: served on the admin port, pushed over OTLP when a collector is named.
        let sources = crate::metrics::Sources {
            peer_id: handle.peer_id().to_string(),
            services: config.services.clone(),
            started,
            resources: sampled_for_metrics,
            leaving: leaving_rx,
            handle: handle.clone(),
            counters: counters.clone(),
            tns: local_tns.clone(),
            hoarder: local_hoarder.clone(),
            vault: local_vault.clone(),
            seer: own_seer.clone(),
        };
        let mut admin_addrs = Vec::new();
        for addr in config.admin_listen_addrs() {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| NodeError::Admin { addr, source })?;
            let bound =
                listener.local_addr().map_err(|source| NodeError::Admin { addr, source })?;
            tracing::info!(address = %bound, "admin port listening: GET /metrics");
            admin_addrs.push(bound);
            services.push(tokio::spawn(crate::metrics::serve(
                sources.clone(),
                listener,
                shutdown.child_token(),
            )));
        }
        if let Some(url) = &config.metrics.otlp {
            services.push(
                crate::metrics::Otlp::start(
                    url,
                    config.metrics.interval(),
                    sources,
                    shutdown.child_token(),
                )
                .await?,
            );
        }
        ready.send_replace(true);
        tracing::info!(
            peer_id = %handle.peer_id(),
            swarm_key = %swarm_key.fingerprint(),
            services = ?config.services,
            "node started"
        );
        Ok(Self {
            handle,
            shutdown,
            p2p_task,
            services,
            http_addrs,
            dns_addrs,
            webhook_addrs,
            admin_addrs,
            leaving,
        })
    }

    /// The addresses the admin HTTP port (`/metrics`) listens on.
    pub fn admin_addrs(&self) -> &[std::net::SocketAddr] {
        &self.admin_addrs
    }

    /// The addresses the HTTP gateway listens on (empty without substrate).
    pub fn http_addrs(&self) -> &[std::net::SocketAddr] {
        &self.http_addrs
    }

    /// The addresses patrick takes webhooks on (empty without ci).
    pub fn webhook_addrs(&self) -> &[std::net::SocketAddr] {
        &self.webhook_addrs
    }

    /// The addresses the DNS server listens on (empty without seer).
    pub fn dns_addrs(&self) -> &[std::net::SocketAddr] {
        &self.dns_addrs
    }

    /// The handle to the node's p2p task.
    pub fn handle(&self) -> &p2p::Handle {
        &self.handle
    }

    /// Tells the cloud this node is leaving: its heartbeats list no service from now on, so seer
    /// stops sending clients here. It goes on serving until [`Node::stop`].
    pub fn leave(&self) {
        self.leaving.send_replace(true);
    }

    /// Stops every part and waits until they have stopped.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.services {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a service task failed");
            }
        }
        if let Err(e) = self.p2p_task.await {
            tracing::error!(error = %e, "the p2p task failed");
        }
        tracing::info!("node stopped");
    }
}

/// Where a seer takes heartbeat datagrams: UDP on each TCP address the p2p core listens on.
async fn udp_addrs(handle: &p2p::Handle) -> Vec<std::net::SocketAddr> {
    let listening = handle.listen_addrs().await.unwrap_or_default();
    let mut addrs: Vec<std::net::SocketAddr> =
        listening.iter().filter_map(seer::beat::socket_addr).collect();
    addrs.sort();
    addrs.dedup();
    addrs
}

/// The socket a node sends its heartbeat datagrams from: on its first listen address, so that
/// a seer sees the node's own address; none (beats go by request) when it cannot be bound.
async fn beat_socket(config: &NodeConfig) -> Option<tokio::net::UdpSocket> {
    let ip = config.listen.first().copied()?;
    match tokio::net::UdpSocket::bind((ip, 0)).await {
        Ok(socket) => Some(socket),
        Err(error) => {
            tracing::warn!(%ip, %error, "cannot bind a UDP socket for heartbeats: sending them by request");
            None
        }
    }
}
