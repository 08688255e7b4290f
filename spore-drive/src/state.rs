//! What a deploy leaves behind for the next one: each host's result, in the state file
//! ([`crate::secrets::Layout::state`]), which `deploy --retry-failed` reads, and each deployed
//! host as the playbook described it, so that a host taken out of the playbook can still be
//! reached to remove it (`deploy --prune`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::host::Kind;
use crate::playbook::Host;

/// What a host ended as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Something was changed and the node is healthy.
    Changed,
    /// Nothing needed changing.
    Unchanged,
    /// It failed; nothing was changed, or the change could not be undone.
    Failed,
    /// The new node failed its health check; the previous binary and config run again (or,
    /// in a batch that failed, it was healthy but put back with the batch).
    RolledBack,
    /// Not touched: an earlier batch failed past `--max-failed`.
    Skipped,
    /// Drained, its replicas handed over, stopped, its files removed and its admission revoked.
    Removed,
}

impl Outcome {
    /// The word the recap and the progress lines use.
    pub fn word(self) -> &'static str {
        match self {
            Self::Changed => "changed",
            Self::Unchanged => "unchanged",
            Self::Failed => "failed",
            Self::RolledBack => "rolled back",
            Self::Skipped => "skipped",
            Self::Removed => "removed",
        }
    }
}

/// One host's line of the recap.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostReport {
    /// The host's name in the playbook.
    pub host: String,
    /// How it ended.
    pub result: Outcome,
    /// What changed (or would change, for `plan`).
    pub changes: Vec<Kind>,
    /// Seconds spent on it.
    pub seconds: f64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The host as the playbook described it when it was deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Host>,
    /// The files this deploy put in place (their previous versions kept as `.prev`): what a
    /// batch that failed puts back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub activated: Vec<String>,
}

impl HostReport {
    /// A report with nothing but its host, result and error.
    pub fn new(host: &str, result: Outcome, seconds: f64, error: Option<String>) -> Self {
        Self {
            host: host.to_string(),
            result,
            changes: Vec::new(),
            seconds,
            error,
            spec: None,
            activated: Vec::new(),
        }
    }
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum StateError {
    /// There is no state to retry from.
    #[error("--retry-failed: cannot read {path} ({source}): deploy once first")]
    Missing {
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a deploy's record.
    #[error("--retry-failed: {path}: {source}")]
    Corrupt {
        path: String,
        /// Why.
        source: serde_json::Error,
    },
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The hosts that failed, were rolled back or were skipped in the last deploy recorded at
/// `path`.
pub fn failed_last_time(path: &Path) -> Result<BTreeSet<String>, StateError> {
    let shown = || path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|source| StateError::Missing { path: shown(), source })?;
    let reports: Vec<HostReport> = serde_json::from_str(&text)
        .map_err(|source| StateError::Corrupt { path: shown(), source })?;
    Ok(reports
        .into_iter()
        .filter(|r| matches!(r.result, Outcome::Failed | Outcome::RolledBack | Outcome::Skipped))
        .map(|r| r.host)
        .collect())
}

fn read(path: &Path) -> BTreeMap<String, HostReport> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<Vec<HostReport>>(&t).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.host.clone(), r))
        .collect()
}

/// Every host a deploy reached, as the playbook described it then (the last description kept).
pub fn deployed(path: &Path) -> Vec<Host> {
    read(path).into_values().filter_map(|r| r.spec).collect()
}

/// Records this deploy's results, merged over the last ones (hosts not deployed keep theirs;
/// a host keeps the description it was last deployed with).
pub fn record(path: &Path, reports: &[HostReport]) -> Result<(), StateError> {
    let mut all = read(path);
    for r in reports {
        let mut r = r.clone();
        if r.spec.is_none() {
            r.spec = all.get(&r.host).and_then(|old| old.spec.clone());
        }
        all.insert(r.host.clone(), r);
    }
    write(path, all)
}

/// Forgets `hosts` (removed from the cloud).
pub fn forget(path: &Path, hosts: &[String]) -> Result<(), StateError> {
    let mut all = read(path);
    for host in hosts {
        all.remove(host);
    }
    write(path, all)
}

fn write(path: &Path, all: BTreeMap<String, HostReport>) -> Result<(), StateError> {
    let list: Vec<&HostReport> = all.values().collect();
    let write = |source| StateError::Write { path: path.display().to_string(), source };
    let text = serde_json::to_string_pretty(&list).map_err(|e| write(e.into()))?;
    std::fs::write(path, text).map_err(write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_keeps_the_hosts_not_deployed_and_names_the_failed()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("last-deploy.json");
        assert!(matches!(failed_last_time(&path), Err(StateError::Missing { .. })));
        let report = |host: &str, result| HostReport::new(host, result, 0.0, None);
        record(&path, &[report("a", Outcome::Failed), report("b", Outcome::Changed)])?;
        record(&path, &[report("b", Outcome::RolledBack)])?;
        let failed = failed_last_time(&path)?;
        assert_eq!(failed.into_iter().collect::<Vec<_>>(), ["a", "b"]);
        std::fs::write(&path, "not json")?;
        assert!(matches!(failed_last_time(&path), Err(StateError::Corrupt { .. })));
        Ok(())
    }
}
