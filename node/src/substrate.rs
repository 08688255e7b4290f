//! The `substrate` service: runs WebAssembly functions behind an HTTP gateway and signs what it
//! ran. The only part of the node that touches wasmtime.
//!
//! - [`engine`]: the wasmtime facade (pooling allocator, epoch deadlines, memory limits, the
//!   compiled-artifact cache, the `wasi:http/proxy` host that grants nothing else).
//! - [`functions`]: components by CID, fetched from hoarder and compiled once.
//! - [`routes`]: host and path to a function record, through a TNS cache.
//! - [`keyvalue`]: `wasi:keyvalue` over the `database` service.
//! - [`gateway`]: the hyper server that ties them together.
//! - [`counters`]: per-function totals, one signed record per function and window, on disk until
//!   acknowledged, served over `/tau/admin/1`.

pub mod blobs;
pub mod counters;
pub mod engine;
pub mod functions;
pub mod gateway;
pub mod keyvalue;
pub mod outbound;
pub mod output;
pub mod routes;
pub mod storage;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

pub use engine::check_component;
use libp2p::identity::Keypair;
use tau_proto::tns::Record;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::SubstrateConfig;
use crate::p2p::{self, Verdict};
use crate::{hoarder, tns};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum SubstrateError {
    /// The engine could not be built.
    #[error("cannot start the wasm engine: {0}")]
    Engine(#[from] engine::LoadError),
    /// The counter store could not be opened.
    #[error(transparent)]
    Counters(#[from] crate::db::DbError),
    /// The outgoing https roots could not be read.
    #[error("cannot create the folder of storage puts {0}: {1}")]
    Spool(String, std::io::Error),
    #[error("substrate.outbound_roots: {0}")]
    Outbound(String),
    /// Its folder could not be made.
    #[error("cannot create {path}: {source}")]
    Folder { path: String, source: std::io::Error },
    /// The gateway's port could not be bound.
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    /// The p2p task stopped, or a gossip topic could not be joined.
    #[error("cannot start substrate: {0}")]
    P2p(#[from] crate::p2p::GossipError),
}

/// What substrate needs from the rest of the node.
pub struct Parts<'a> {
    /// The p2p handle.
    pub handle: p2p::Handle,
    /// The node's data folder.
    pub data_dir: &'a Path,
    /// Where the gateway listens.
    pub http: Vec<SocketAddr>,
    /// From the node's `node.yaml`.
    pub config: &'a SubstrateConfig,
    /// The node's own registry, if it runs tns.
    pub tns: Option<tns::Local>,
    /// The node's own blob store, if it runs hoarder.
    pub hoarder: Option<hoarder::Local>,
    /// Who is admitted: only an admitted q may acknowledge counter records.
    pub admitted: tokio::sync::watch::Receiver<tau_proto::membership::Admitted>,
    /// The node's region (`location.region`): which mapped branch's version it serves.
    pub region: Option<String>,
    /// The node's counters ([`open_counters`]), which the gateway adds to.
    pub counters: Arc<counters::Counters>,
    /// The admin protocol's counter requests.
    pub counter_requests: CounterRequests,
    /// The node's own database service, if it runs one.
    pub database: Option<crate::database::Local>,
}

/// Opens the node's signed counters (`<data>/substrate/counters.redb`): substrate counts its
/// invocations there, and a `ci` node its build jobs.
pub fn open_counters(
    data_dir: &Path,
    keypair: Keypair,
    config: &SubstrateConfig,
) -> Result<Arc<counters::Counters>, SubstrateError> {
    let root = data_dir.join("substrate");
    std::fs::create_dir_all(&root)
        .map_err(|source| SubstrateError::Folder { path: root.display().to_string(), source })?;
    Ok(Arc::new(counters::Counters::open(
        &root.join("counters.redb"),
        keypair,
        config.window(),
        config.retention(),
    )?))
}

/// Serves `counters` (their windows, and the admin protocol's counter requests) on a node that
/// does not run substrate, until `shutdown`.
pub fn serve_counters(
    counters: Arc<counters::Counters>,
    requests: CounterRequests,
    admitted: tokio::sync::watch::Receiver<tau_proto::membership::Admitted>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(counters::run(counters, requests, admitted, shutdown))
}

/// The admin protocol's counter requests, as the node's admin task hands them on.
pub type CounterRequests = tokio::sync::mpsc::Receiver<
    p2p::Inbound<tau_proto::admin::AdminRequest, tau_proto::admin::AdminResponse>,
>;

/// What a running substrate service hands back to the node.
pub struct Started {
    /// Its tasks.
    pub tasks: Vec<JoinHandle<()>>,
    /// The addresses the gateway listens on.
    pub http_addrs: Vec<SocketAddr>,
    /// Requests being served now.
    pub in_flight: Arc<std::sync::atomic::AtomicU64>,
}

/// Starts the engine, the gateway, the counter windows and the route invalidation.
pub async fn start(
    parts: Parts<'_>,
    shutdown: CancellationToken,
) -> Result<Started, SubstrateError> {
    let root = parts.data_dir.join("substrate");
    let engine = Arc::new(engine::Engine::new(&root.join("compiled"), parts.config.max_instances)?);
    let counters = parts.counters;
    let outbound =
        outbound::NodePolicy::new(parts.config.outbound_allow(), &parts.config.outbound_roots)
            .map_err(SubstrateError::Outbound)?;
    let registry = match &parts.tns {
        Some(local) => tns::Registry::Local(local.clone()),
        None => tns::Registry::Remote(parts.handle.clone()),
    };
    // Storage puts in progress when the node stopped are of no use: start empty.
    let spool = root.join("uploads");
    let _ = std::fs::remove_dir_all(&spool);
    std::fs::create_dir_all(&spool)
        .map_err(|e| SubstrateError::Spool(spool.display().to_string(), e))?;
    let in_flight = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let gateway = Arc::new(gateway::Gateway {
        engine: engine.clone(),
        functions: functions::Functions::new(
            engine,
            parts.handle.clone(),
            parts.hoarder.clone(),
            &root.join("fetching"),
            parts.config.load_memory(),
        )?,
        routes: routes::Routes::new(
            registry.clone(),
            counters.clone(),
            parts.region.clone(),
            outbound,
            crate::database::Kv::new(parts.handle.clone(), registry, parts.database),
            blobs::BlobSource::new(parts.handle.clone(), parts.hoarder.clone(), spool),
        ),
        slots: Arc::new(tokio::sync::Semaphore::new(parts.config.max_instances as usize)),
        caps: gateway::Caps {
            max_timeout: parts.config.max_timeout(),
            max_memory: parts.config.max_memory(),
            slot_wait: parts.config.slot_wait(),
            header_timeout: parts.config.header_timeout(),
            max_connections: parts.config.max_connections as usize,
            max_connections_per_ip: parts.config.max_connections_per_ip as usize,
        },
        in_flight: in_flight.clone(),
    });
    let mut listeners = Vec::new();
    let mut http_addrs = Vec::new();
    for addr in parts.http {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SubstrateError::Listen { addr, source })?;
        let bound =
            listener.local_addr().map_err(|source| SubstrateError::Listen { addr, source })?;
        tracing::info!(address = %bound, "http gateway listening");
        http_addrs.push(bound);
        listeners.push(listener);
    }
    let admin = parts.counter_requests;
    let mut tasks = Vec::new();
    let serving: Vec<_> = listeners
        .into_iter()
        .map(|listener| tokio::spawn(gateway::serve(gateway.clone(), listener, shutdown.clone())))
        .collect();
    // The last counter window is written once every gateway has finished its requests, so that
    // a request served while the node stops is counted.
    let gateways_done = CancellationToken::new();
    tasks.push(tokio::spawn({
        let (shutdown, gateways_done) = (shutdown.clone(), gateways_done.clone());
        async move {
            shutdown.cancelled().await;
            for task in serving {
                let _ = task.await;
            }
            gateways_done.cancel();
        }
    }));
    tasks.push(tokio::spawn(counters::run(counters, admin, parts.admitted, gateways_done)));
    tasks.push(match parts.tns {
        Some(local) => tokio::spawn(watch_local(gateway, local, shutdown)),
        None => {
            let gossip = parts.handle.subscribe::<tau_proto::tns::TnsTopic>().await?;
            tokio::spawn(watch_gossip(gateway, parts.handle, gossip, shutdown))
        }
    });
    Ok(Started { tasks, http_addrs, in_flight })
}

/// Drops stale routes as the node's own registry changes.
async fn watch_local(
    gateway: Arc<gateway::Gateway>,
    local: tns::Local,
    shutdown: CancellationToken,
) {
    let mut changes = local.changes();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            change = changes.recv() => match change {
                Ok(keys) => gateway.routes.invalidate(&keys),
                // Missed some: forget everything.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    gateway.routes.invalidate(&["/projects/".to_string()]);
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

/// Drops stale routes as registry gossip goes by, and forwards it when every record's
/// signature holds: with bounded connections a tns node's gossip reaches most substrate nodes
/// through others. (This node cannot check a record's authority without the registry; the tns
/// nodes that store it do, and only tns nodes may publish on the topic.)
async fn watch_gossip(
    gateway: Arc<gateway::Gateway>,
    handle: p2p::Handle,
    mut gossip: tokio::sync::mpsc::Receiver<p2p::GossipMessage>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(message) = gossip.recv() => {
                let verdict = match tau_proto::cbor::from_slice::<Vec<Record>>(&message.data) {
                    Ok(records) if records.iter().all(Record::verify) => {
                        let announced: Vec<(String, u64, bool)> = records
                            .into_iter()
                            .map(|r| {
                                let deleted = r.is_tombstone();
                                (r.key, r.version, deleted)
                            })
                            .collect();
                        gateway.routes.announced(&announced);
                        Verdict::Accept
                    }
                    Ok(_) => Verdict::Reject,
                    Err(_) => Verdict::Reject,
                };
                if handle.validate(message.id, verdict).await.is_err() {
                    break;
                }
            }
            else => break,
        }
    }
}
