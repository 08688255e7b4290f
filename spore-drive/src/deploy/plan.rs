//! `plan`: what a deploy would change on a host, found by reading its facts; changes nothing.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::{Bundle, Run, strip_host};
use crate::host::{self, Desired, Service};

/// What a deploy would do with the node binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BinaryAction {
    /// Upload it: the host has another one, or none.
    Upload,
    /// Leave it: the host has this one.
    Unchanged,
}

/// What a deploy would do with a config, secret or service file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileAction {
    /// Write it: the host has none.
    Create,
    /// Replace it: the host has another.
    Update,
    /// Leave it.
    Unchanged,
}

/// What a deploy would do with the running node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeAction {
    /// Start it: it does not run.
    Start,
    /// Restart it on the new files.
    Restart,
    /// Nothing: it runs and nothing changes.
    None,
}

impl BinaryAction {
    fn word(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Unchanged => "unchanged",
        }
    }
}

impl FileAction {
    fn word(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Unchanged => "unchanged",
        }
    }
}

impl NodeAction {
    fn word(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Restart => "restart",
            Self::None => "none",
        }
    }
}

macro_rules! display_word {
    ($($kind:ty),*) => {$(
        impl fmt::Display for $kind {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.word())
            }
        }
    )*};
}

display_word!(BinaryAction, FileAction, NodeAction);

/// What `plan` found for one host.
#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    /// The host's name in the playbook.
    pub host: String,
    /// What happens to `tau-node` on the host.
    pub binary: BinaryAction,
    /// Config, secrets and service files, by path.
    pub files: BTreeMap<String, FileAction>,
    /// What happens to the running node (start, restart, nothing).
    pub node: NodeAction,
    /// How the node is kept running there.
    pub service: Service,
    /// The host's machine.
    pub arch: String,
    /// Why the host cannot be planned (unreachable, refused...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HostPlan {
    /// Whether a deploy would change anything.
    pub fn changes_anything(&self) -> bool {
        self.binary != BinaryAction::Unchanged
            || self.node != NodeAction::None
            || self.files.values().any(|a| *a != FileAction::Unchanged)
    }
}

impl Run {
    /// What a deploy would do on one host; changes nothing.
    pub async fn plan_host(&self, desired: &Desired, bundle: &Bundle) -> HostPlan {
        let mut plan = HostPlan {
            host: desired.host.name.clone(),
            binary: BinaryAction::Unchanged,
            files: BTreeMap::new(),
            node: NodeAction::None,
            service: Service::Supervised,
            arch: String::new(),
            error: None,
        };
        let conn = match self.connect(desired, true).await {
            Ok(conn) => conn,
            Err(e) => {
                plan.error = Some(strip_host(&e.to_string()));
                return plan;
            }
        };
        let facts = match self.facts(&conn, desired).await {
            Ok(facts) => facts,
            Err(e) => {
                plan.error = Some(e.reason);
                conn.close().await;
                return plan;
            }
        };
        conn.close().await;
        plan.arch = facts.arch.clone();
        if !host::arch_matches(bundle.arch, &facts.arch) {
            plan.error = Some(bundle.arch_error(&facts.arch));
        }
        plan.service = if facts.systemd { Service::Systemd } else { Service::Supervised };
        if !facts.has("bin/tau-node", &bundle.sha256) {
            plan.binary = BinaryAction::Upload;
        }
        let mut changed = plan.binary != BinaryAction::Unchanged;
        for file in desired.all_files(plan.service) {
            let action = if facts.has(&file.path, &file.sha256()) {
                FileAction::Unchanged
            } else if facts.exists(&file.path) {
                FileAction::Update
            } else {
                FileAction::Create
            };
            changed |= action != FileAction::Unchanged;
            plan.files.insert(file.path.clone(), action);
        }
        plan.node = match (changed, facts.running) {
            (true, true) => NodeAction::Restart,
            (_, false) => NodeAction::Start,
            (false, true) => NodeAction::None,
        };
        plan
    }
}
