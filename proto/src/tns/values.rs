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
