//! Routing a request by host and path to a function, through TNS.
//!
//! A host's routes (`/http/<host>/...`) and the functions they name are loaded from TNS on the
//! first request for that host and cached. A route is served only when the host's domain record
//! (`/domains/<host>`) names the route's project, and both records are that project's own: a
//! route written for a domain nobody claimed, or another project's, serves nothing. An IP
//! address serves nothing. The cache entry is dropped when TNS says one of those
//! keys changed (the node's own registry tells it at once; a node without tns listens to the
//! registry's gossip), and is reloaded after [`MAX_AGE`] in any case, so a missed change heals.
//! Unknown hosts are remembered for [`NEGATIVE_AGE`] so that a flood of 404s does not become a
//! flood of registry queries.
//!
//! A project's config may map a branch to regions (`branches:`): a node in one of them serves
//! that branch's version of a function (`/projects/<id>/branches/<branch>/functions/<name>`)
//! where it has one, on the deployed branch's domains and routes.
//!
//! Gossip can reach a substrate node before it reaches the tns node the substrate node reads
//! from. So the versions gossip announced are remembered for [`AWAIT_FOR`], and a host loaded
//! from a registry that does not have them yet is kept only for [`RETRY_AGE`]: the new route
//! is served as soon as the registry has it, not a negative-cache period later.
//!
//! While the node's own registry is still catching up with the cloud's (a node that just joined),
//! a host without routes is an error (the gateway's 503), not a 404, and is not remembered.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tau_proto::cbor;
use tau_proto::tns::keys;
use tau_proto::tns::values::{DomainClaim, Function, ProjectConfig, Route};

use super::blobs::BlobSource;
use super::counters::{Counters, FunctionStats};
use super::engine::Capabilities;
use super::keyvalue::Stores;
use super::outbound::{Allowed, NodePolicy};
use super::storage::Storages;
use crate::database::Kv;
use crate::tns::{Registry, RegistryError};
use tau_proto::outbound::HostPattern;
use tau_proto::tns::values::{Database, Storage};

/// How long a host's routes are used before they are read again.
pub const MAX_AGE: Duration = Duration::from_secs(30);
/// How long "no such host" is remembered.
pub const NEGATIVE_AGE: Duration = Duration::from_secs(2);
/// How long versions announced by gossip are awaited from the registry.
pub const AWAIT_FOR: Duration = Duration::from_secs(10);
/// How long a host loaded without an awaited version is used before it is read again.
pub const RETRY_AGE: Duration = Duration::from_millis(100);
/// The most awaited versions remembered.
const MAX_AWAITED: usize = 10_000;
/// The most hosts remembered; past it, stale entries are dropped (then all unknown hosts), so
/// that requests with made-up Host headers cannot grow the table without bound.
pub const MAX_HOSTS: usize = 10_000;

/// A record version gossip announced.
#[derive(Debug, Clone, Copy)]
struct Announced {
    version: u64,
    /// A tombstone: had once the key is gone (or newer).
    deleted: bool,
    at: Instant,
}

/// A function a request goes to.
pub struct Target {
    /// Its project.
    pub project: String,
    /// Its record.
    pub function: Function,
    /// Its running counters.
    pub stats: Arc<FunctionStats>,
    /// Its variables and where it may send requests.
    pub capabilities: Arc<Capabilities>,
}

/// One host's routes: `<METHOD><path>` to the function.
struct HostRoutes {
    loaded: Instant,
    /// How long it is used: [`MAX_AGE`], [`NEGATIVE_AGE`] or [`RETRY_AGE`].
    max_age: Duration,
    routes: HashMap<String, Arc<Target>>,
}

impl HostRoutes {
    fn fresh(&self) -> bool {
        self.loaded.elapsed() < self.max_age
    }

    /// The route for `path` or, failing that, for the nearest parent path: `/avatar` serves
    /// `/avatar/alice` too, and `/` the whole host. Keys have no trailing `/` (see
    /// [`keys::route`]).
    fn find(&self, method: &str, path: &str) -> Option<Arc<Target>> {
        let mut path = path.trim_end_matches('/');
        loop {
            if let Some(target) = self.routes.get(&format!("{method}{path}")) {
                return Some(target.clone());
            }
            if path.is_empty() {
                return None;
            }
            path = &path[..path.rfind('/').unwrap_or(0)];
        }
    }
}

/// Which function answers a request, by host and path, rebuilt from TNS as it changes.
pub struct Routes {
    registry: Registry,
    counters: Arc<Counters>,
    /// This node's region: which mapped branch it serves.
    region: Option<String>,
    /// What the operator lets every function reach.
    outbound: Arc<NodePolicy>,
    /// The way to key-value stores.
    kv: Kv,
    /// Where functions read blobs from.
    blobs: BlobSource,
    hosts: Mutex<HashMap<String, Arc<HostRoutes>>>,
    /// Records gossip announced, awaited from the registry, by key (ordered: a host's routes
    /// are a range).
    awaited: Mutex<BTreeMap<String, Announced>>,
    loading: tokio::sync::Mutex<()>,
}

/// What a project declares that its functions may open.
#[derive(Default)]
struct Declared {
    databases: Vec<Database>,
    storages: Vec<Storage>,
}

impl Routes {
    /// An empty table over `registry`.
    pub fn new(
        registry: Registry,
        counters: Arc<Counters>,
        region: Option<String>,
        outbound: NodePolicy,
        kv: Kv,
        blobs: BlobSource,
    ) -> Self {
        Self {
            registry,
            counters,
            region,
            outbound: Arc::new(outbound),
            kv,
            blobs,
            hosts: Mutex::default(),
            awaited: Mutex::default(),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    fn hosts(&self) -> MutexGuard<'_, HashMap<String, Arc<HostRoutes>>> {
        self.hosts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cached(&self, host: &str) -> Option<Arc<HostRoutes>> {
        self.hosts().get(host).filter(|h| h.fresh()).cloned()
    }

    /// The function that serves `method host path`, if any. `host` is lower case, without port.
    pub async fn lookup(
        &self,
        host: &str,
        method: &str,
        path: &str,
    ) -> Result<Option<Arc<Target>>, RegistryError> {
        if !keys::is_fqdn(host) || keys::is_ip_literal(host) {
            return Ok(None);
        }
        let routes = match self.cached(host) {
            Some(routes) => routes,
            None => self.load(host).await?,
        };
        Ok(routes.find(method, path))
    }

    async fn load(&self, host: &str) -> Result<Arc<HostRoutes>, RegistryError> {
        let _one_at_a_time = self.loading.lock().await;
        if let Some(routes) = self.cached(host) {
            return Ok(routes);
        }
        let domain_key = keys::domain(host);
        let domain = self.registry.get(&domain_key).await?;
        // What was read, by key and version (none: looked up and not there): checked against
        // what gossip announced.
        let mut read: HashMap<String, Option<u64>> = HashMap::new();
        if let Some(record) = &domain {
            read.insert(record.key.clone(), Some(record.version));
        }
        let claim = domain.and_then(|record| {
            let claim = cbor::from_slice::<DomainClaim>(record.value.as_deref()?).ok()?;
            (claim.project == record.scope).then_some(claim.project)
        });
        let prefix = format!("/http/{host}/");
        let records = match &claim {
            Some(_) => self.registry.list(&prefix).await?,
            None => Vec::new(),
        };
        read.extend(records.iter().map(|r| (r.key.clone(), Some(r.version))));
        let branch = match &claim {
            Some(project) => self.branch(project, &mut read).await?,
            None => None,
        };
        let declared = match &claim {
            Some(project) if !records.is_empty() => self.declared(project, &mut read).await?,
            _ => Declared::default(),
        };
        let mut functions: HashMap<(String, String), Option<Arc<Target>>> = HashMap::new();
        let mut routes = HashMap::new();
        for record in records {
            let Some(value) = &record.value else { continue };
            let Ok(route) = cbor::from_slice::<Route>(value) else {
                tracing::warn!(key = %record.key, "a route that does not decode");
                continue;
            };
            if claim.as_deref() != Some(route.project.as_str()) || route.project != record.scope {
                tracing::debug!(key = %record.key, "a route of a project that does not hold its domain");
                continue;
            }
            let id = (route.project.clone(), route.function.clone());
            if !functions.contains_key(&id) {
                let target = self.target(&route, branch.as_deref(), &declared, &mut read).await?;
                functions.insert(id.clone(), target);
            }
            if let Some(Some(target)) = functions.get(&id) {
                routes.insert(record.key[prefix.len()..].to_string(), target.clone());
            }
        }
        // A host this node does not know yet may be one its registry has not caught up with:
        // not a 404 (and not remembered) until the registry has.
        if routes.is_empty() && !self.registry.caught_up() {
            return Err(RegistryError::CatchingUp);
        }
        let max_age = if !self.has_awaited(&domain_key, &prefix, &read) {
            tracing::debug!(%host, "the registry lacks a version gossip announced: read again soon");
            RETRY_AGE
        } else if routes.is_empty() {
            NEGATIVE_AGE
        } else {
            MAX_AGE
        };
        let entry = Arc::new(HostRoutes { loaded: Instant::now(), max_age, routes });
        let mut hosts = self.hosts();
        if hosts.len() >= MAX_HOSTS {
            hosts.retain(|_, h| h.fresh());
            if hosts.len() >= MAX_HOSTS {
                hosts.retain(|_, h| !h.routes.is_empty());
            }
        }
        hosts.insert(host.to_string(), entry.clone());
        Ok(entry)
    }

    /// Whether what was `read` for a host has every version gossip announced for it.
    fn has_awaited(
        &self,
        domain_key: &str,
        prefix: &str,
        read: &HashMap<String, Option<u64>>,
    ) -> bool {
        let awaited = self.awaited.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        has_awaited(&awaited, domain_key, prefix, read)
    }

    /// The branch of `project` whose version this node serves, if its config maps one to this
    /// node's region; what was read goes into `read`.
    async fn branch(
        &self,
        project: &str,
        read: &mut HashMap<String, Option<u64>>,
    ) -> Result<Option<String>, RegistryError> {
        if self.region.is_none() {
            return Ok(None);
        }
        let key = keys::project_config(project);
        let record = self.registry.get(&key).await?;
        read.insert(key, record.as_ref().map(|r| r.version));
        let config =
            record.and_then(|r| cbor::from_slice::<ProjectConfig>(r.value.as_deref()?).ok());
        Ok(config.and_then(|c| c.branch_for(self.region.as_deref()).map(str::to_string)))
    }

    /// The key-value stores and storages `project` declares; what was read goes into `read`.
    async fn declared(
        &self,
        project: &str,
        read: &mut HashMap<String, Option<u64>>,
    ) -> Result<Declared, RegistryError> {
        Ok(Declared {
            databases: self.declared_of(keys::database(project, ""), project, read).await?,
            storages: self.declared_of(keys::storage(project, ""), project, read).await?,
        })
    }

    /// The records of `project` under `key` (a folder's key with an empty last segment).
    async fn declared_of<T: serde::de::DeserializeOwned>(
        &self,
        key: String,
        project: &str,
        read: &mut HashMap<String, Option<u64>>,
    ) -> Result<Vec<T>, RegistryError> {
        let prefix = format!("{}/", key.trim_end_matches('/'));
        let records = self.registry.list(&prefix).await?;
        read.extend(records.iter().map(|r| (r.key.clone(), Some(r.version))));
        Ok(records
            .iter()
            .filter(|r| r.scope == project)
            .filter_map(|r| cbor::from_slice::<T>(r.value.as_deref()?).ok())
            .collect())
    }

    /// The function a route names: `branch`'s version of it if there is one, else the deployed
    /// branch's. The versions read go into `read`.
    async fn target(
        &self,
        route: &Route,
        branch: Option<&str>,
        declared: &Declared,
        read: &mut HashMap<String, Option<u64>>,
    ) -> Result<Option<Arc<Target>>, RegistryError> {
        if let Some(branch) = branch {
            let key = keys::branch_function(&route.project, branch, &route.function);
            let record = self.registry.get(&key).await?;
            read.insert(key.clone(), record.as_ref().map(|r| r.version));
            if let Some(function) = record.as_ref().and_then(|r| decode(&key, r.value.as_deref()?))
            {
                return Ok(Some(self.target_of(route, function, declared)));
            }
        }
        let key = keys::function(&route.project, &route.function);
        let Some(record) = self.registry.get(&key).await? else {
            tracing::warn!(%key, "a route names a function that is not in the registry");
            return Ok(None);
        };
        read.insert(key.clone(), Some(record.version));
        let function = record.value.as_deref().and_then(|value| decode(&key, value));
        Ok(function.map(|function| self.target_of(route, function, declared)))
    }

    fn target_of(&self, route: &Route, function: Function, declared: &Declared) -> Arc<Target> {
        // A record is the owner's, and checked when compiled; what does not parse here allows
        // nothing.
        let hosts = function
            .allowed_outbound_hosts
            .iter()
            .filter_map(|h| HostPattern::parse(h).ok())
            .collect();
        let capabilities = Capabilities {
            variables: function.variables.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            outbound: Arc::new(Allowed { hosts, node: self.outbound.clone() }),
            stores: Stores {
                kv: Some(self.kv.clone()),
                project: route.project.clone(),
                declared: declared
                    .databases
                    .iter()
                    .map(|d| {
                        let allowed = d.functions.contains(&function.name);
                        (d.name.clone(), allowed.then_some(d.replicas))
                    })
                    .collect(),
            },
            storages: Storages {
                kv: Some(self.kv.clone()),
                project: route.project.clone(),
                declared: declared
                    .storages
                    .iter()
                    .map(|s| {
                        let allowed = s.functions.contains(&function.name);
                        (s.name.clone(), allowed.then_some(s.max_bytes))
                    })
                    .collect(),
            },
            blobs: Some(self.blobs.clone()),
        };
        Arc::new(Target {
            project: route.project.clone(),
            stats: self.counters.stats(&route.project, &function.name),
            capabilities: Arc::new(capabilities),
            function,
        })
    }

    /// Drops what the gossiped `records` (key, version, whether a tombstone) make stale, and
    /// remembers their versions: a host is not cached for long until the registry it is read
    /// from has them.
    pub fn announced(&self, records: &[(String, u64, bool)]) {
        {
            let mut awaited =
                self.awaited.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if awaited.len() + records.len() > MAX_AWAITED {
                awaited.retain(|_, a| a.at.elapsed() < AWAIT_FOR);
            }
            let room = MAX_AWAITED.saturating_sub(awaited.len());
            for (key, version, deleted) in records.iter().take(room) {
                let now = Instant::now();
                let fresh = Announced { version: *version, deleted: *deleted, at: now };
                let entry = awaited.entry(key.clone()).or_insert(fresh);
                if *version >= entry.version {
                    *entry = fresh;
                }
            }
        }
        let keys: Vec<String> = records.iter().map(|(key, _, _)| key.clone()).collect();
        self.invalidate(&keys);
    }

    /// Drops what the changed `keys` make stale.
    pub fn invalidate(&self, keys: &[String]) {
        let mut hosts = self.hosts();
        for key in keys {
            let segments: Vec<&str> = key.trim_start_matches('/').split('/').collect();
            match segments.as_slice() {
                ["http", host, ..] => {
                    hosts.remove(*host);
                }
                ["projects", ..] | ["domains", ..] => {
                    // A function's limits or component changed, or a project went: few hosts
                    // are cached, so forget them all.
                    hosts.clear();
                    return;
                }
                _ => {}
            }
        }
    }
}

/// A function record's value, or nothing (and a warning) if it does not decode.
fn decode(key: &str, value: &[u8]) -> Option<Function> {
    cbor::from_slice::<Function>(value)
        .inspect_err(|e| tracing::warn!(%key, error = %e, "a function record that does not decode"))
        .ok()
}

/// Whether what was `read` for a host (its domain record at `domain_key`, routes under `prefix`,
/// and the functions they name, key to version) has every record `awaited` (and announced in
/// the last [`AWAIT_FOR`]) for those keys: a live one at its version or newer, a tombstone gone
/// or newer. Looks up only the keys the host concerns, not every announcement.
fn has_awaited(
    awaited: &BTreeMap<String, Announced>,
    domain_key: &str,
    prefix: &str,
    read: &HashMap<String, Option<u64>>,
) -> bool {
    let had = |key: &str, a: &Announced| {
        a.at.elapsed() >= AWAIT_FOR
            || match read.get(key) {
                Some(Some(have)) => *have >= a.version,
                Some(None) | None => a.deleted,
            }
    };
    let routes =
        awaited.range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded));
    let routes = routes.take_while(|(key, _)| key.starts_with(prefix));
    let others = std::iter::once(domain_key)
        .chain(read.keys().map(String::as_str))
        .filter_map(|key| awaited.get_key_value(key));
    routes.chain(others).all(|(key, a)| had(key, a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Arc<Target> {
        Arc::new(Target {
            project: "p".into(),
            function: Function {
                name: "f".into(),
                description: String::new(),
                trigger: tau_proto::tns::values::Trigger {
                    kind: tau_proto::tns::values::TriggerKind::Http,
                    method: "GET".into(),
                    paths: vec!["/avatar".into()],
                },
                domains: vec![],
                source: tau_proto::tns::values::Source {
                    file: "f.wasm".into(),
                    cid: tau_proto::hoarder::BlobId::of(b"x"),
                    size: 1,
                },
                execution: tau_proto::tns::values::Execution {
                    timeout_ms: 1000,
                    memory_bytes: 1 << 20,
                    call: None,
                },
                allowed_outbound_hosts: Vec::new(),
                variables: Default::default(),
            },
            stats: Arc::default(),
            capabilities: Arc::default(),
        })
    }

    #[test]
    fn a_host_read_before_the_registry_had_what_gossip_announced_is_not_kept_long() {
        let at = Instant::now();
        let live = |version| Announced { version, deleted: false, at };
        let awaited: BTreeMap<String, Announced> = [
            ("/domains/a.tau".to_string(), live(7)),
            ("/http/a.tau/GET/x".to_string(), live(8)),
            ("/projects/p/functions/f".to_string(), live(9)),
            ("/http/b.tau/GET/y".to_string(), live(100)),
        ]
        .into();
        let read = |pairs: &[(&str, u64)]| -> HashMap<String, Option<u64>> {
            pairs.iter().map(|(k, v)| (k.to_string(), Some(*v))).collect()
        };
        let (domain, prefix) = ("/domains/a.tau", "/http/a.tau/");
        // Nothing yet: the domain and the route are missing.
        assert!(!has_awaited(&awaited, domain, prefix, &read(&[])));
        // An older domain record.
        let old = read(&[("/domains/a.tau", 6), ("/http/a.tau/GET/x", 8)]);
        assert!(!has_awaited(&awaited, domain, prefix, &old));
        // The route there, its function at an older version.
        let stale_function = read(&[
            ("/domains/a.tau", 7),
            ("/http/a.tau/GET/x", 8),
            ("/projects/p/functions/f", 3),
        ]);
        assert!(!has_awaited(&awaited, domain, prefix, &stale_function));
        // Everything at or past what was announced; b.tau's route is no concern of a.tau.
        let fresh = read(&[
            ("/domains/a.tau", 7),
            ("/http/a.tau/GET/x", 9),
            ("/projects/p/functions/f", 9),
        ]);
        assert!(has_awaited(&awaited, domain, prefix, &fresh));
        // A branch's version of the function, looked up and not there yet though announced.
        let branch_key = "/projects/p/branches/s/functions/f".to_string();
        let mut with_branch = awaited.clone();
        with_branch.insert(branch_key.clone(), live(10));
        let mut missing = fresh.clone();
        missing.insert(branch_key.clone(), None);
        assert!(!has_awaited(&with_branch, domain, prefix, &missing));
        missing.insert(branch_key, Some(10));
        assert!(has_awaited(&with_branch, domain, prefix, &missing));
        // A deletion announced (a route gone): had once the route is not read.
        let deleted: BTreeMap<String, Announced> =
            [("/http/a.tau/GET/x".to_string(), Announced { version: 8, deleted: true, at })].into();
        assert!(has_awaited(&deleted, domain, prefix, &read(&[("/domains/a.tau", 7)])));
        let still_there = read(&[("/domains/a.tau", 7), ("/http/a.tau/GET/x", 5)]);
        assert!(!has_awaited(&deleted, domain, prefix, &still_there));
        // An announcement older than AWAIT_FOR is no longer awaited.
        let Some(long_ago) = Instant::now().checked_sub(AWAIT_FOR + Duration::from_secs(1)) else {
            return;
        };
        let expired: BTreeMap<String, Announced> = [(
            "/domains/a.tau".to_string(),
            Announced { version: 7, deleted: false, at: long_ago },
        )]
        .into();
        assert!(has_awaited(&expired, domain, prefix, &read(&[])));
    }

    #[test]
    fn a_path_matches_itself_and_below() {
        let t = target();
        let routes = HostRoutes {
            loaded: Instant::now(),
            max_age: MAX_AGE,
            routes: [("GET/avatar".to_string(), t.clone()), ("POST".to_string(), t)].into(),
        };
        assert!(routes.find("GET", "/avatar").is_some());
        assert!(routes.find("GET", "/avatar/").is_some());
        assert!(routes.find("GET", "/avatar/alice/big").is_some());
        assert!(routes.find("GET", "/avatars").is_none());
        assert!(routes.find("GET", "/").is_none());
        assert!(routes.find("PUT", "/avatar").is_none());
        assert!(routes.find("POST", "/anything/at/all").is_some(), "`/` serves the whole host");
    }
}
