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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tau_proto::cbor;
use tau_proto::tns::keys;
use tau_proto::tns::values::{DomainClaim, Function, Route};

use super::counters::{Counters, FunctionStats};
use crate::tns::{Registry, RegistryError};

/// How long a host's routes are used before they are read again.
pub const MAX_AGE: Duration = Duration::from_secs(30);
/// How long "no such host" is remembered.
pub const NEGATIVE_AGE: Duration = Duration::from_secs(2);
/// The most hosts remembered; past it, stale entries are dropped (then all unknown hosts), so
/// that requests with made-up Host headers cannot grow the table without bound.
pub const MAX_HOSTS: usize = 10_000;

/// A function a request goes to.
pub struct Target {
    /// Its project.
    pub project: String,
    /// Its record.
    pub function: Function,
    /// Its running counters.
    pub stats: Arc<FunctionStats>,
}

/// One host's routes: `<METHOD><path>` to the function.
struct HostRoutes {
    loaded: Instant,
    routes: HashMap<String, Arc<Target>>,
}

impl HostRoutes {
    fn fresh(&self) -> bool {
        let age = if self.routes.is_empty() { NEGATIVE_AGE } else { MAX_AGE };
        self.loaded.elapsed() < age
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
    hosts: Mutex<HashMap<String, Arc<HostRoutes>>>,
    loading: tokio::sync::Mutex<()>,
}

impl Routes {
    /// An empty table over `registry`.
    pub fn new(registry: Registry, counters: Arc<Counters>) -> Self {
        Self { registry, counters, hosts: Mutex::default(), loading: tokio::sync::Mutex::new(()) }
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
        let claim = self.registry.get(&keys::domain(host)).await?.and_then(|record| {
            let claim = cbor::from_slice::<DomainClaim>(record.value.as_deref()?).ok()?;
            (claim.project == record.scope).then_some(claim.project)
        });
        let prefix = format!("/http/{host}/");
        let records = match &claim {
            Some(_) => self.registry.list(&prefix).await?,
            None => Vec::new(),
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
                let target = self.target(&route).await?;
                functions.insert(id.clone(), target);
            }
            if let Some(Some(target)) = functions.get(&id) {
                routes.insert(record.key[prefix.len()..].to_string(), target.clone());
            }
        }
        let entry = Arc::new(HostRoutes { loaded: Instant::now(), routes });
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

    async fn target(&self, route: &Route) -> Result<Option<Arc<Target>>, RegistryError> {
        let key = keys::function(&route.project, &route.function);
        let Some(record) = self.registry.get(&key).await? else {
            tracing::warn!(%key, "a route names a function that is not in the registry");
            return Ok(None);
        };
        let Some(value) = &record.value else { return Ok(None) };
        match cbor::from_slice::<Function>(value) {
            Ok(function) => Ok(Some(Arc::new(Target {
                project: route.project.clone(),
                stats: self.counters.stats(&route.project, &function.name),
                function,
            }))),
            Err(e) => {
                tracing::warn!(%key, error = %e, "a function record that does not decode");
                Ok(None)
            }
        }
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
            },
            stats: Arc::default(),
        })
    }

    #[test]
    fn a_path_matches_itself_and_below() {
        let t = target();
        let routes = HostRoutes {
            loaded: Instant::now(),
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
