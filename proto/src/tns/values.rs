//! The typed values stored under TNS keys (CBOR inside [`super::Record::value`]).

use serde::{Deserialize, Serialize};

use crate::hoarder::BlobId;
use crate::identity::WriterKey;

/// `/projects/<id>`, written by the operator: who owns the project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectRoot {
    /// The key that may write under the project.
    pub owner: WriterKey,
}

/// `/projects/<id>/config`, from the project's `config.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectConfig {
    /// A name for people.
    pub name: String,
    /// What it is.
    pub description: String,
    /// Branches other than the deployed one, each served by the nodes it names (a git-operated
    /// project's `branches:`): their functions are `/projects/<id>/branches/<branch>/functions/*`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub branches: std::collections::BTreeMap<String, BranchNodes>,
}

impl ProjectConfig {
    /// The branch whose version a node in `region` serves, if any: the first (by name) that
    /// names the region.
    pub fn branch_for(&self, region: Option<&str>) -> Option<&str> {
        let region = region?;
        self.branches
            .iter()
            .find(|(_, nodes)| nodes.regions.iter().any(|r| r == region))
            .map(|(name, _)| name.as_str())
    }
}

/// The nodes a branch's version is served by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchNodes {
    /// Nodes whose `location.region` is one of these.
    pub regions: Vec<String>,
}

/// `/projects/<id>/functions/<name>`, from `functions/<name>.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    /// The function's name (its id).
    pub name: String,
    /// What it does.
    pub description: String,
    /// What runs it.
    pub trigger: Trigger,
    /// The domains it answers on.
    pub domains: Vec<String>,
    /// Its WebAssembly component.
    pub source: Source,
    /// Its limits.
    pub execution: Execution,
    /// The hosts it may send HTTP requests to ([`crate::outbound::HostPattern`]s, as written
    /// `scheme://host:port`); none: no outgoing HTTP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_outbound_hosts: Vec<String>,
    /// Plain values (not secrets) it reads with `wasi:config`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub variables: std::collections::BTreeMap<String, String>,
}

impl Function {
    /// The most variables a function may have, and their longest name and value.
    pub const MAX_VARIABLES: usize = 64;
    /// See [`Function::MAX_VARIABLES`].
    pub const MAX_VARIABLE_NAME: usize = 64;
    /// See [`Function::MAX_VARIABLES`].
    pub const MAX_VARIABLE_VALUE: usize = 4096;

    /// Whether `name` is a variable's name: 1-64 of a-z, 0-9 and `_`, starting with a letter.
    pub fn is_variable_name(name: &str) -> bool {
        name.len() <= Self::MAX_VARIABLE_NAME
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    }
}

/// `/projects/<id>/databases/<name>`, from `databases/<name>.yaml`: a key-value store of the
/// project and the functions that may open it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Database {
    /// Its name, what a function opens (`wasi:keyvalue/store.open`).
    pub name: String,
    /// The project's functions that may open it.
    pub functions: Vec<String>,
    /// The most bytes of keys and values it holds; a set past it is refused.
    pub max_bytes: u64,
    /// How many database nodes hold it.
    #[serde(default = "default_replicas")]
    pub replicas: u8,
}

fn default_replicas() -> u8 {
    crate::database::DEFAULT_REPLICAS
}

impl Database {
    /// The largest size limit a store may have: 1 GiB.
    pub const MAX_BYTES: u64 = 1 << 30;
}

/// `/projects/<id>/storages/<name>`, from `storages/<name>.yaml`: named blobs of the project
/// (a key names a hoarder blob) and the functions that may use them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Storage {
    /// Its name, what a function opens.
    pub name: String,
    /// The project's functions that may open it.
    pub functions: Vec<String>,
    /// The most bytes of blobs its keys may name together.
    pub max_bytes: u64,
}

impl Storage {
    /// The largest size limit a storage may have: 64 GiB.
    pub const MAX_BYTES: u64 = 64 << 30;
}

/// An HTTP trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// `http` or `https`.
    pub kind: TriggerKind,
    /// The HTTP method, upper case.
    pub method: String,
    /// The paths, each starting with `/`.
    pub paths: Vec<String>,
}

/// The kinds of trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerKind {
    /// Plain HTTP.
    Http,
    /// HTTPS.
    Https,
}

/// A function's WebAssembly component, stored in hoarder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The file, relative to the project folder.
    pub file: String,
    /// Its hoarder blob id.
    pub cid: BlobId,
    /// Its size in bytes.
    pub size: u64,
}

/// A function's limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    /// The deadline of one invocation, milliseconds.
    pub timeout_ms: u64,
    /// The memory limit, bytes.
    pub memory_bytes: u64,
    /// The export to call, where the component has several.
    pub call: Option<String>,
}

impl Execution {
    /// The longest timeout a function may ask for: 15 minutes.
    pub const MAX_TIMEOUT_MS: u64 = 15 * 60 * 1000;
    /// The most memory a function may ask for: 4 GiB.
    pub const MAX_MEMORY: u64 = 4 << 30;

    /// What is wrong with these limits, if anything: every registry node refuses a function
    /// whose limits are out of range, and every substrate node cuts them to its own caps.
    pub fn problem(&self) -> Option<&'static str> {
        if !(1..=Self::MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            return Some("a function's timeout must be more than 0 and at most 15m");
        }
        if !(1..=Self::MAX_MEMORY).contains(&self.memory_bytes) {
            return Some("a function's memory must be more than 0 and at most 4GiB");
        }
        None
    }
}

/// `/domains/<fqdn>`: the project that serves the domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainClaim {
    /// The project id.
    pub project: String,
}

/// `/http/<fqdn>/<METHOD><path>`: the function a request goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The project id.
    pub project: String,
    /// The function's name.
    pub function: String,
}

/// `/registrars/<name>`, written by the operator: a key that may create projects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registrar {
    /// The key the operator lets create projects.
    pub key: WriterKey,
}

/// `/cloud`, written by the operator: the cloud's names, which no project may claim a domain in
/// but its own. Until a registry holds this record it checks a claim only against other claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudNames {
    /// The cloud's domain: seer answers `<service>.tau.<domain>`.
    pub domain: String,
    /// The suffix of generated domains: `<project>.<generated_domain>` and below belong to
    /// `<project>`.
    pub generated_domain: String,
}

impl CloudNames {
    /// Why `project` may not claim `fqdn`, if it may not: a service name, the generated-domain
    /// suffix itself, or a name inside another project's generated domain.
    pub fn refuses(&self, fqdn: &str, project: &str) -> Option<String> {
        let under = |suffix: &str| fqdn == suffix || fqdn.ends_with(&format!(".{suffix}"));
        let services = format!("tau.{}", self.domain);
        if under(&services) {
            return Some(format!("`{fqdn}` is a service name of the cloud (*.{services})"));
        }
        let generated = &self.generated_domain;
        if fqdn == generated {
            return Some(format!("`{fqdn}` is the cloud's generated-domain suffix"));
        }
        let owner = fqdn.strip_suffix(&format!(".{generated}"))?.rsplit('.').next()?;
        (owner != project).then(|| {
            format!("`{fqdn}` is inside project `{owner}`'s generated domain {owner}.{generated}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_claims_only_its_own_generated_names_and_no_service_name() {
        let names = CloudNames { domain: "dev".into(), generated_domain: "tau".into() };
        assert_eq!(names.refuses("ping.shop.tau", "shop"), None);
        assert_eq!(names.refuses("shop.tau", "shop"), None);
        assert_eq!(names.refuses("shop.example.com", "shop"), None);
        for (fqdn, why) in [
            ("api.victim.tau", "inside project `victim`"),
            ("victim.tau", "inside project `victim`"),
            ("substrate.tau.dev", "service name"),
            ("tau.dev", "service name"),
        ] {
            let refused = names.refuses(fqdn, "shop").unwrap_or_default();
            assert!(refused.contains(why), "{fqdn}: {refused}");
        }
        let nested = CloudNames { domain: "lab.tau".into(), generated_domain: "g.lab.tau".into() };
        assert!(nested.refuses("g.lab.tau", "shop").is_some());
        assert!(nested.refuses("seer.tau.lab.tau", "shop").is_some());
        assert_eq!(nested.refuses("a.shop.g.lab.tau", "shop"), None);
    }
}
