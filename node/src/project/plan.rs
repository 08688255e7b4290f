//! What a push changes.

use std::collections::{BTreeSet, HashMap};

use tau_proto::identity::WriterKey;
use tau_proto::tns::keys;
use tau_proto::tns::{Draft, Record};

use super::Compiled;

/// What a push will write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// New or changed records.
    pub writes: Vec<Draft>,
    /// Records the folder no longer has: tombstones.
    pub deletes: Vec<Draft>,
    /// Records already as the folder says.
    pub unchanged: usize,
}

impl Plan {
    /// Every draft to sign, writes then deletes.
    pub fn drafts(&self) -> impl Iterator<Item = &Draft> {
        self.writes.iter().chain(&self.deletes)
    }
}

/// Why a push cannot go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum PlanError {
    /// A domain or route the folder claims belongs to another project.
    #[error("{key} belongs to project `{project}`")]
    Taken {
        key: String,
        /// The project that holds it.
        project: String,
    },
}

/// Compares the folder with `current`: the cloud's live and deleted records under
/// `/projects/<id>/`, and those of `/domains/` and `/http/` that the folder claims or that
/// belong to the project. The project's secrets, and its git operation's records (repositories,
/// grants, jobs, what is deployed), are not the folder's: a push never deletes them.
pub fn plan(
    compiled: &Compiled,
    current: &[Record],
    writer: &WriterKey,
) -> Result<Plan, PlanError> {
    let current: HashMap<&str, &Record> =
        current.iter().filter(|r| !r.is_tombstone()).map(|r| (r.key.as_str(), r)).collect();
    let mut plan = Plan::default();
    let mut desired = BTreeSet::new();
    for draft in &compiled.drafts {
        desired.insert(draft.key.as_str());
        match current.get(draft.key.as_str()) {
            Some(record) if record.scope != compiled.id => {
                return Err(PlanError::Taken {
                    key: draft.key.clone(),
                    project: record.scope.clone(),
                });
            }
            Some(record) if record.value == draft.value && record.writer == *writer => {
                plan.unchanged += 1
            }
            _ => plan.writes.push(draft.clone()),
        }
    }
    let root = keys::project(&compiled.id);
    let mut stale: Vec<&&Record> = current
        .values()
        .filter(|r| {
            r.scope == compiled.id
                && r.key != root
                && keys::parse_secret(&r.key).is_none()
                && !tau_proto::git::is_operation_key(&r.key)
                && !keys::parse_branch_key(&r.key)
                    .is_some_and(|(_, branch)| compiled.branches.iter().any(|b| b == branch))
                && !desired.contains(r.key.as_str())
        })
        .collect();
    stale.sort_by(|a, b| a.key.cmp(&b.key));
    plan.deletes = stale
        .into_iter()
        .map(|r| Draft { key: r.key.clone(), scope: r.scope.clone(), value: None })
        .collect();
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;

    use super::*;

    fn compiled(keys_values: &[(&str, &[u8])]) -> Compiled {
        Compiled {
            id: "shop".into(),
            drafts: keys_values
                .iter()
                .map(|(k, v)| Draft {
                    key: k.to_string(),
                    scope: "shop".into(),
                    value: Some(v.to_vec()),
                })
                .collect(),
            sources: Vec::new(),
            branches: Vec::new(),
        }
    }

    fn signed(draft: &Draft, key: &Keypair) -> Record {
        draft.clone().sign(5, key).unwrap()
    }

    #[test]
    fn a_second_push_of_the_same_folder_writes_nothing() {
        let owner = Keypair::generate_ed25519();
        let writer = WriterKey::of(&owner).unwrap();
        let folder =
            compiled(&[("/projects/shop/config", b"c"), ("/projects/shop/functions/a", b"a")]);
        let first = plan(&folder, &[], &writer).unwrap();
        assert_eq!(first.writes.len(), 2);
        let current: Vec<Record> = first.writes.iter().map(|d| signed(d, &owner)).collect();
        let second = plan(&folder, &current, &writer).unwrap();
        assert_eq!(second, Plan { writes: vec![], deletes: vec![], unchanged: 2 });
    }

    #[test]
    fn a_removed_function_is_deleted_and_a_changed_one_rewritten() {
        let owner = Keypair::generate_ed25519();
        let writer = WriterKey::of(&owner).unwrap();
        let old = compiled(&[
            ("/projects/shop/functions/a", b"a"),
            ("/projects/shop/functions/b", b"b"),
            ("/http/x.tau/GET/b", b"r"),
        ]);
        let mut current: Vec<Record> = old.drafts.iter().map(|d| signed(d, &owner)).collect();
        // The operator's project record is never the owner's to delete.
        current.push(signed(
            &Draft {
                key: "/projects/shop".into(),
                scope: "shop".into(),
                value: Some(b"o".to_vec()),
            },
            &Keypair::generate_ed25519(),
        ));
        // Nor are its secrets, which no folder names.
        current.push(signed(
            &Draft {
                key: keys::secret("shop", "db"),
                scope: "shop".into(),
                value: Some(b"ciphertext".to_vec()),
            },
            &owner,
        ));
        let new = compiled(&[("/projects/shop/functions/a", b"a2")]);
        let plan = plan(&new, &current, &writer).unwrap();
        assert_eq!(
            plan.writes.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(),
            ["/projects/shop/functions/a"]
        );
        assert_eq!(
            plan.deletes.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(),
            ["/http/x.tau/GET/b", "/projects/shop/functions/b"]
        );
        assert!(plan.deletes.iter().all(|d| d.value.is_none()));
    }

    #[test]
    fn a_push_keeps_the_versions_of_mapped_branches_and_deletes_the_others() {
        let owner = Keypair::generate_ed25519();
        let writer = WriterKey::of(&owner).unwrap();
        let staging = "/projects/shop/branches/staging/functions/a";
        let old = "/projects/shop/branches/old/functions/a";
        let current: Vec<Record> = compiled(&[(staging, b"s"), (old, b"o")])
            .drafts
            .iter()
            .map(|d| signed(d, &owner))
            .collect();
        let mut folder = compiled(&[("/projects/shop/functions/a", b"a")]);
        folder.branches = vec!["staging".into()];
        let deploy = plan(&folder, &current, &writer).unwrap();
        assert_eq!(deploy.deletes.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(), [old]);
        // A branch's own push replaces its records, and only those.
        let branch = compiled(&[("/projects/shop/functions/b", b"b")]).for_branch("staging");
        let ours: Vec<Record> = current.iter().filter(|r| r.key == staging).cloned().collect();
        let push = plan(&branch, &ours, &writer).unwrap();
        assert_eq!(
            push.writes.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(),
            ["/projects/shop/branches/staging/functions/b"]
        );
        assert_eq!(push.deletes.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(), [staging]);
    }

    #[test]
    fn a_domain_of_another_project_is_refused() {
        let owner = Keypair::generate_ed25519();
        let theirs = Draft {
            key: "/domains/x.tau".into(),
            scope: "other".into(),
            value: Some(b"o".to_vec()),
        };
        let current = vec![signed(&theirs, &Keypair::generate_ed25519())];
        let folder = compiled(&[("/domains/x.tau", b"d")]);
        let err = plan(&folder, &current, &WriterKey::of(&owner).unwrap()).unwrap_err();
        assert_eq!(err, PlanError::Taken { key: "/domains/x.tau".into(), project: "other".into() });
    }
}
