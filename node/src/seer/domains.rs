//! Which registered domains seer serves: those of generated domains at once, custom domains once
//! their TXT record `_tau.<fqdn>` holds the project's validation token.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::rr::RData;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use tau_proto::cbor;
use tau_proto::seer::validation_token;
use tau_proto::tns::keys;
use tau_proto::tns::values::{DomainClaim, ProjectRoot};

use crate::tns::{Registry, RegistryError};

/// How long a servable domain is remembered.
pub const POSITIVE_AGE: Duration = Duration::from_secs(30);
/// How long an unknown or unvalidated domain is remembered.
pub const NEGATIVE_AGE: Duration = Duration::from_secs(2);
/// The most domains remembered.
const MAX_ENTRIES: usize = 100_000;
/// How long a TXT lookup may take.
const TXT_TIMEOUT: Duration = Duration::from_secs(2);

/// How TXT records are looked up: the pluggable part of validation.
pub enum TxtLookup {
    /// Through a DNS resolver (the host's, or the one configured).
    Resolver(Box<TokioResolver>),
    /// A fixed table (tests).
    Fixed(HashMap<String, Vec<String>>),
}

/// Why a TXT resolver could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolverError {
    /// The host's resolver configuration (`/etc/resolv.conf`) could not be read.
    #[error("cannot read the host's resolver configuration: {0}")]
    HostConfig(String),
    /// The resolver could not be built.
    #[error("cannot build a resolver: {0}")]
    Build(String),
}

impl TxtLookup {
    /// A resolver asking `server`, or the host's resolv.conf servers.
    pub fn resolver(server: Option<SocketAddr>) -> Result<Self, ResolverError> {
        let builder = match server {
            Some(addr) => {
                let mut name_server = NameServerConfig::udp(addr.ip());
                for connection in &mut name_server.connections {
                    connection.port = addr.port();
                }
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![name_server]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| ResolverError::HostConfig(e.to_string()))?,
        };
        let resolver = builder.build().map_err(|e| ResolverError::Build(e.to_string()))?;
        Ok(Self::Resolver(Box::new(resolver)))
    }

    async fn txt(&self, name: &str) -> Vec<String> {
        match self {
            Self::Fixed(table) => table.get(name).cloned().unwrap_or_default(),
            Self::Resolver(resolver) => {
                let fqdn = format!("{name}.");
                match tokio::time::timeout(TXT_TIMEOUT, resolver.txt_lookup(fqdn)).await {
                    Ok(Ok(lookup)) => lookup
                        .answers()
                        .iter()
                        .filter_map(|record| match &record.data {
                            RData::TXT(txt) => Some(
                                txt.txt_data
                                    .iter()
                                    .map(|part| String::from_utf8_lossy(part))
                                    .collect::<String>(),
                            ),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                }
            }
        }
    }
}

/// The domains seer has decided on, for a while.
pub struct Domains {
    registry: Registry,
    generated: String,
    txt: TxtLookup,
    cache: Mutex<HashMap<String, (bool, Instant)>>,
}

impl Domains {
    /// Decides with `registry` (the domain claims and project owners), the generated-domain
    /// suffix and `txt` lookups.
    pub fn new(registry: Registry, generated: &str, txt: TxtLookup) -> Self {
        Self {
            registry,
            generated: generated.to_ascii_lowercase(),
            txt,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (bool, Instant)>> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The remembered decision on `fqdn`, if still fresh.
    pub fn cached(&self, fqdn: &str, now: Instant) -> Option<bool> {
        let cache = self.cache();
        let (servable, at) = cache.get(fqdn)?;
        let age = if *servable { POSITIVE_AGE } else { NEGATIVE_AGE };
        (now.saturating_duration_since(*at) < age).then_some(*servable)
    }

    /// Whether `fqdn` is registered and may be served: looks it up and remembers the answer.
    /// `None` while the node's own registry is catching up and does not have it: it may be new
    /// (nothing is remembered).
    pub async fn servable(&self, fqdn: &str) -> Option<bool> {
        let servable = match self.decide(fqdn).await {
            Ok(false) if !self.registry.caught_up() => return None,
            Ok(servable) => servable,
            Err(e) => {
                tracing::debug!(domain = fqdn, error = %e, "cannot decide on a domain");
                false
            }
        };
        let mut cache = self.cache();
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
        cache.insert(fqdn.to_string(), (servable, Instant::now()));
        Some(servable)
    }

    /// Whether `fqdn` is a generated domain of `project`: `<project>.<suffix>` or below it.
    pub fn is_generated(&self, fqdn: &str, project: &str) -> bool {
        let own = format!("{project}.{}", self.generated);
        fqdn == own || fqdn.ends_with(&format!(".{own}"))
    }

    async fn decide(&self, fqdn: &str) -> Result<bool, RegistryError> {
        if !keys::is_fqdn(fqdn) {
            return Ok(false);
        }
        let Some(claim) = self.registry.get(&keys::domain(fqdn)).await? else {
            return Ok(false);
        };
        let Some(claim) =
            claim.value.as_deref().and_then(|v| cbor::from_slice::<DomainClaim>(v).ok())
        else {
            return Ok(false);
        };
        if self.is_generated(fqdn, &claim.project) {
            return Ok(true);
        }
        let Some(root) = self.registry.get(&keys::project(&claim.project)).await? else {
            return Ok(false);
        };
        let Some(owner) =
            root.value.as_deref().and_then(|v| cbor::from_slice::<ProjectRoot>(v).ok())
        else {
            return Ok(false);
        };
        let token = validation_token(&claim.project, &owner.owner, fqdn);
        let found = self.txt.txt(&format!("_tau.{fqdn}")).await;
        let valid = found.iter().any(|value| value.trim() == token);
        if !valid {
            tracing::info!(
                domain = fqdn,
                project = claim.project,
                "custom domain not served: no TXT record _tau.{fqdn} with its validation token"
            );
        }
        Ok(valid)
    }
}
