//! The YAML files of a project folder.

use serde::Deserialize;

/// `config.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The project id (as the operator created it).
    pub id: String,
    /// A name for people.
    #[serde(default)]
    pub name: String,
    /// What the project is.
    #[serde(default)]
    pub description: String,
    /// A git-operated project's other branches and the nodes that serve each: `staging:
    /// { regions: [eu-west] }` has the nodes of region `eu-west` serve what is pushed to
    /// `staging`, and every other node what is pushed to the deployed branch. Read from the
    /// deployed branch's `config.yaml` only.
    #[serde(default)]
    pub branches: std::collections::BTreeMap<String, BranchSpec>,
}

/// One of `branches:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchSpec {
    /// The regions (a node's `location.region`) whose nodes serve the branch.
    pub regions: Vec<String>,
}

/// `functions/<name>.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionFile {
    /// The function's name.
    pub id: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// What runs it.
    pub trigger: TriggerSpec,
    /// The domains it answers on.
    pub domains: Vec<String>,
    /// The `.wasm` component, relative to the project folder.
    pub source: String,
    /// Its limits.
    #[serde(default)]
    pub execution: ExecutionSpec,
    /// The hosts it may send HTTP requests to: `https://api.example.com`,
    /// `http://127.0.0.1:8080`, `https://*.example.com` (every subdomain), `https://*`.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Plain values (not secrets) it reads with `wasi:config`: names of a-z, 0-9 and `_`.
    #[serde(default)]
    pub variables: std::collections::BTreeMap<String, String>,
}

/// `databases/<name>.yaml`: a key-value store of the project.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseFile {
    /// Its name, what a function opens.
    pub id: String,
    /// The project's functions that may open it.
    pub functions: Vec<String>,
    /// The most bytes of keys and values it holds, such as `64MB` (at most `1GiB`).
    pub size: String,
    /// How many database nodes hold it (1-16) [default: 3].
    #[serde(default)]
    pub replicas: Option<u8>,
}

/// `storages/<name>.yaml`: named blobs of the project.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageFile {
    /// Its name, what a function opens.
    pub id: String,
    /// The project's functions that may open it.
    pub functions: Vec<String>,
    /// The most bytes of blobs its keys may name together, such as `10GB` (at most `64GiB`).
    pub size: String,
}

/// `trigger:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// `http` or `https`.
    #[serde(rename = "type")]
    pub kind: TriggerType,
    /// The HTTP method.
    pub method: String,
    /// URL paths, each starting with `/`; a trailing `/*` matches everything under it.
    pub paths: Vec<String>,
}

/// What can call a function; today only HTTPS requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerType {
    /// Plain HTTP.
    Http,
    /// HTTPS.
    Https,
}

/// `execution:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionSpec {
    /// A duration such as `10s` or `500ms`.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// A size such as `64MB` or `128MiB`.
    #[serde(default = "default_memory")]
    pub memory: String,
    /// The export to call.
    #[serde(default)]
    pub call: Option<String>,
}

impl Default for ExecutionSpec {
    fn default() -> Self {
        Self { timeout: default_timeout(), memory: default_memory(), call: None }
    }
}

fn default_timeout() -> String {
    "10s".into()
}

fn default_memory() -> String {
    "64MB".into()
}
