//! A project's git repositories (issue 24, in progress): where they are, which branch deploys,
//! and the record that says so (`/projects/<id>/repos/<config|code>`, signed by the owner).
//!
//! A repository URL and a branch name end up as arguments of `git`, so they are checked
//! strictly here, before anything stores them: only `ssh://[user@]host[:port]/path` URLs (no
//! `ext::`, `file://` or scp-like forms, nothing that starts with `-`), and branch names under
//! a subset of git's own ref rules.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::tns::keys;

/// The longest URL taken.
pub const MAX_URL: usize = 512;
/// The longest branch name taken.
pub const MAX_BRANCH: usize = 200;

/// Which of a project's two repositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoKind {
    /// The YAML of the project's resources (`config.yaml`, `functions/*.yaml`, ...).
    Config,
    /// The functions' sources, or built `.wasm` files.
    Code,
}

impl RepoKind {
    /// Both, config first.
    pub const ALL: [RepoKind; 2] = [RepoKind::Config, RepoKind::Code];

    /// `config` or `code`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Code => "code",
        }
    }
}

impl fmt::Display for RepoKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The TNS key of project `id`'s `kind` repository.
pub fn key(id: &str, kind: RepoKind) -> String {
    format!("{}/repos/{kind}", keys::project(id))
}

/// Why a URL or branch was refused: the field, the value (cut) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} `{value}`: {reason}")]
pub struct GitError {
    /// The field at fault (`--config-repo`, `branch`, ...).
    pub field: String,
    /// The value, cut to 100 characters.
    pub value: String,
    /// Why.
    pub reason: &'static str,
}

impl GitError {
    fn new(field: &str, value: &str, reason: &'static str) -> Self {
        Self { field: field.to_string(), value: value.chars().take(100).collect(), reason }
    }
}

/// A checked `ssh://` repository URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoUrl {
    /// The SSH user (`git` when the URL names none).
    pub user: String,
    /// The host name or IP address.
    pub host: String,
    /// The SSH port (22 when the URL names none).
    pub port: u16,
    /// The path on the host, with its leading `/`.
    pub path: String,
}

impl RepoUrl {
    /// Checks `url`; errors name `field`.
    pub fn parse(field: &str, url: &str) -> Result<Self, GitError> {
        let bad = |reason| Err(GitError::new(field, url, reason));
        if url.len() > MAX_URL {
            return bad("longer than 512 bytes");
        }
        if !url.bytes().all(|b| b.is_ascii_graphic()) {
            return bad("only printable ASCII without spaces");
        }
        let Some(rest) = url.strip_prefix("ssh://") else {
            return bad("expected ssh://[user@]host[:port]/path (the deploy key is an SSH key)");
        };
        let Some((authority, path)) = rest.split_once('/') else {
            return bad("no path after the host");
        };
        let path = format!("/{path}");
        let (user, host_port) = match authority.split_once('@') {
            Some((user, host_port)) => (user, host_port),
            None => ("git", authority),
        };
        let user_ok = !user.is_empty()
            && user.len() <= 32
            && !user.starts_with('-')
            && user.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !user_ok {
            return bad("the user is 1-32 of a-z, 0-9, `.`, `_`, `-`");
        }
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => match port.parse::<u16>() {
                Ok(port) if port > 0 => (host, port),
                _ => return bad("the port is 1-65535"),
            },
            _ => (host_port, 22),
        };
        let host_ok = keys::is_fqdn(host)
            || host.parse::<std::net::IpAddr>().is_ok()
            || (keys::is_name(host) && !host.starts_with('-'));
        if !host_ok {
            return bad("the host is a domain name or an IP address");
        }
        let path_ok = path.len() > 1
            && !path.split('/').any(|s| s == ".." || s.starts_with('-'))
            && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-~".contains(&b));
        if !path_ok {
            return bad("the path is made of a-z, 0-9, `/`, `.`, `_`, `-`, `~`, without `..`");
        }
        Ok(Self { user: user.to_string(), host: host.to_ascii_lowercase(), port, path })
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ssh://{}@{}:{}{}", self.user, self.host, self.port, self.path)
    }
}

impl TryFrom<String> for RepoUrl {
    type Error = GitError;
    fn try_from(url: String) -> Result<Self, GitError> {
        Self::parse("url", &url)
    }
}

impl From<RepoUrl> for String {
    fn from(url: RepoUrl) -> String {
        url.to_string()
    }
}

/// Checks a branch name (without `refs/heads/`) under a subset of `git check-ref-format`'s
/// rules; errors name `field`.
pub fn check_branch(field: &str, branch: &str) -> Result<(), GitError> {
    let bad = |reason| Err(GitError::new(field, branch, reason));
    if branch.is_empty() || branch.len() > MAX_BRANCH {
        return bad("a branch name is 1-200 bytes");
    }
    if !branch.bytes().all(|b| b.is_ascii_graphic() && !b"~^:?*[\\".contains(&b)) {
        return bad("no spaces, control characters or any of ~^:?*[\\");
    }
    let segments_ok = branch.split('/').all(|s| {
        !s.is_empty() && !s.starts_with('.') && !s.ends_with(".lock") && !s.starts_with('-')
    });
    if !segments_ok || branch.contains("..") || branch.contains("@{") || branch.ends_with('.') {
        return bad("not a git branch name (see git check-ref-format)");
    }
    Ok(())
}

/// The value of `/projects/<id>/repos/<kind>`: one of a project's repositories, as its owner
/// registered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    /// Which one.
    pub kind: RepoKind,
    /// Where it is.
    pub url: RepoUrl,
    /// The branch the cloud deploys.
    pub branch: String,
    /// The git host's SSH host key, pinned at registration (an OpenSSH public key line).
    pub host_key: String,
    /// The public half of the repository's read-only deploy key (an OpenSSH public key line);
    /// the private half is a vault secret.
    pub deploy_key: String,
}

impl Repository {
    /// Checks a decoded record: the URL (already checked when decoded), the branch, and that
    /// both keys are single OpenSSH public key lines of a known type.
    pub fn check(&self) -> Result<(), GitError> {
        check_branch("branch", &self.branch)?;
        for (field, line) in [("host_key", &self.host_key), ("deploy_key", &self.deploy_key)] {
            let mut parts = line.split(' ');
            let kind_ok = parts.next().is_some_and(|k| {
                ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ssh-rsa"]
                    .contains(&k)
            });
            let body_ok = parts.next().is_some_and(|b| {
                !b.is_empty() && b.bytes().all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c))
            });
            if !kind_ok || !body_ok || line.len() > 4096 || line.contains(['\n', '\r']) {
                return Err(GitError::new(field, line, "not an OpenSSH public key line"));
            }
        }
        Ok(())
    }
}

/// The role the operator names for the nodes that build and deploy projects (patrick and
/// monkey run on them).
pub const CI_ROLE: &str = "ci";

/// What a project's owner lets nodes of a role do over the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Right {
    /// Read the repositories' deploy keys and webhook secrets ([`granted_secret`]), and no
    /// other secret.
    Secrets,
    /// Write what a deploy writes ([`deployable`]): the project's config, functions, domains
    /// and routes, its jobs and what is deployed.
    Deploy,
}

/// The value of `/projects/<id>/grants`, signed by the owner: the rights each role has over the
/// project. A role not named has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// Role (as the operator's admission records name it) to its rights.
    pub roles: std::collections::BTreeMap<String, Vec<Right>>,
}

impl Grants {
    /// What a registration with repositories grants: `ci` reads the repository secrets and
    /// deploys.
    pub fn ci() -> Self {
        Self { roles: [(CI_ROLE.to_string(), vec![Right::Secrets, Right::Deploy])].into() }
    }

    /// Whether a node admitted for `roles` has `right`.
    pub fn allows<'a>(&self, roles: impl IntoIterator<Item = &'a String>, right: Right) -> bool {
        roles.into_iter().any(|role| self.roles.get(role).is_some_and(|r| r.contains(&right)))
    }
}

/// `/projects/<id>/grants`.
pub fn grants_key(id: &str) -> String {
    format!("{}/grants", keys::project(id))
}

/// The vault secret holding `kind`'s private deploy key.
pub fn deploy_key_secret(kind: RepoKind) -> String {
    format!("{kind}-deploy-key")
}

/// The vault secret holding `kind`'s webhook secret.
pub fn webhook_secret(kind: RepoKind) -> String {
    format!("{kind}-webhook-secret")
}

/// Whether [`Right::Secrets`] covers the secret `name`: the repositories' deploy keys and
/// webhook secrets only.
pub fn granted_secret(name: &str) -> bool {
    RepoKind::ALL
        .iter()
        .any(|&kind| name == deploy_key_secret(kind) || name == webhook_secret(kind))
}

/// Whether [`Right::Deploy`] covers writing `key` (its scope being the project): the project's
/// `config`, `functions/*` and `deployed`, its jobs (`/jobs/<id>/*`), and its domains and
/// routes. Never the project's root, grants, repositories or secrets.
pub fn deployable(key: &str) -> bool {
    let segments: Vec<&str> = key.split('/').skip(1).collect();
    matches!(
        segments.as_slice(),
        ["projects", _, "config" | "deployed"]
            | ["projects", _, "functions", _]
            | ["projects", _, "databases" | "storages", _]
            | ["projects", _, "branches", _, "functions", _]
            | ["jobs", _, _]
            | ["domains", ..]
            | ["http", ..]
    )
}

/// Whether `key` belongs to the project's git operation (repositories, grants, jobs, what is
/// deployed) rather than to its folder: `project push` never deletes these.
pub fn is_operation_key(key: &str) -> bool {
    let segments: Vec<&str> = key.split('/').skip(1).collect();
    matches!(
        segments.as_slice(),
        ["projects", _, "grants" | "deployed"] | ["projects", _, "repos", _]
    )
}

/// The largest job log a monkey stores (its first 64 KiB and last 448 KiB, and a line between
/// them that says how much was left out): what a reader fetches at most.
pub const MAX_LOG: u64 = 513 * 1024;

/// The longest reason a job record keeps.
pub const MAX_REASON: usize = 2000;

/// The prefix of every job: `/jobs/<project>/<commit>`, so that monkeys and `tau-node jobs`
/// list every project's jobs with one prefix.
pub const JOBS: &str = "/jobs/";

/// `/jobs/<id>/<commit>`: the build of one pushed commit of project `id` (scope `id`) for its
/// deployed branch; `/jobs/<id>/<commit>.<branch>` for a mapped branch (`branch` is `Some`), so
/// that a commit pushed to `staging` and later to `main` is built for each.
pub fn job_key(id: &str, commit: &str, branch: Option<&str>) -> String {
    match branch {
        None => format!("{JOBS}{id}/{commit}"),
        Some(branch) => format!("{JOBS}{id}/{commit}.{branch}"),
    }
}

/// `(project, commit)` of a job key.
pub fn parse_job_key(key: &str) -> Option<(&str, &str)> {
    let (project, job) = key.strip_prefix(JOBS)?.split_once('/')?;
    let commit = match job.split_once('.') {
        Some((commit, branch)) => keys::is_name(branch).then_some(commit)?,
        None => job,
    };
    (keys::is_name(project) && is_commit(commit)).then_some((project, commit))
}

/// `/projects/<id>/deployed`: what each branch serves.
pub fn deployed_key(id: &str) -> String {
    format!("{}/deployed", keys::project(id))
}

/// Whether `commit` is a full commit id: 40 (SHA-1) or 64 (SHA-256) lower-case hex digits.
pub fn is_commit(commit: &str) -> bool {
    matches!(commit.len(), 40 | 64)
        && commit.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The value of `/jobs/<id>/<commit>`: one job per (project, commit), written by the
/// `ci` nodes as it moves on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The repository the commit was pushed to.
    pub repo: RepoKind,
    /// Its branch.
    pub branch: String,
    /// The pushed commit.
    pub commit: String,
    /// When patrick queued it, Unix milliseconds.
    pub queued_at: u64,
    /// Where it is.
    pub state: JobState,
}

/// Where a job is. (Externally tagged: an internally tagged enum is buffered by serde, which
/// then reads a `BlobId` as if from a human-readable format.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a monkey.
    Queued,
    /// A monkey holds it until `lease_until` (Unix milliseconds), renewing while it works;
    /// another takes it over once the lease ran out.
    Building {
        /// The monkey's peer id.
        monkey: String,
        /// When this monkey started, Unix milliseconds.
        started_at: u64,
        /// Until when the lease holds, Unix milliseconds.
        lease_until: u64,
        /// 1 for the first monkey, one more for each takeover.
        attempt: u32,
    },
    /// Built and deployed, or found to change nothing.
    Done(Finished),
    /// The clone, build or check failed: nothing that serves changed.
    Failed(Finished),
    /// Not built: a newer commit is already deployed, or the branch is not deployed.
    Skipped {
        /// Why.
        reason: String,
    },
}

impl JobState {
    /// The state in one word: queued, building, done, failed or skipped.
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Building { .. } => "building",
            JobState::Done(_) => "done",
            JobState::Failed(_) => "failed",
            JobState::Skipped { .. } => "skipped",
        }
    }
}

/// How a job that ran ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finished {
    /// The monkey's peer id.
    pub monkey: String,
    /// When it started and finished, Unix milliseconds.
    pub started_at: u64,
    /// See `started_at`.
    pub finished_at: u64,
    /// The config and code commits it built.
    pub config_commit: Option<String>,
    /// See `config_commit`.
    pub code_commit: Option<String>,
    /// What it did or why it failed, in one line ([`MAX_REASON`] at most).
    pub summary: String,
    /// The job's log (the build's own output) in hoarder.
    pub log: Option<crate::hoarder::BlobId>,
}

impl Job {
    /// Whether no monkey works on it now: queued, or its lease ran out by `now` (Unix ms).
    pub fn claimable(&self, now: u64) -> bool {
        match &self.state {
            JobState::Queued => true,
            JobState::Building { lease_until, .. } => *lease_until <= now,
            _ => false,
        }
    }

    /// Whether it has ended (done, failed or skipped).
    pub fn ended(&self) -> bool {
        matches!(self.state, JobState::Done(_) | JobState::Failed(_) | JobState::Skipped { .. })
    }
}

/// The value of `/projects/<id>/deployed`: per branch, the commits it serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployed {
    /// Branch to what it serves.
    pub branches: std::collections::BTreeMap<String, DeployedBranch>,
}

/// What one branch serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployedBranch {
    /// The config repository's commit.
    pub config_commit: String,
    /// The code repository's commit.
    pub code_commit: String,
    /// The job that deployed it.
    pub job: String,
    /// When, Unix milliseconds.
    pub at: u64,
}

/// `/tau/patrick/1`: what a `ci` node's patrick tells a client.
pub struct PatrickProtocol;

impl crate::protocol::Protocol for PatrickProtocol {
    const NAME: &'static str = "/tau/patrick/1";
    const MAX_REQUEST: u64 = 1024;
    const MAX_RESPONSE: u64 = 64 * 1024;
    type Request = PatrickRequest;
    type Response = PatrickResponse;

    fn refusal(response: &PatrickResponse) -> Option<&str> {
        match response {
            PatrickResponse::Error(message) => Some(message),
            _ => None,
        }
    }
}

/// A request to patrick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PatrickRequest {
    /// Where git hosts send push webhooks.
    Endpoint,
}

/// patrick's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PatrickResponse {
    /// The base URL of the webhook endpoint (`http://patrick.tau.<domain>:<port>`); a
    /// repository's webhook is `<url>/<project>/<config|code>`.
    Endpoint {
        /// The base URL.
        url: String,
    },
    /// The request failed.
    Error(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls_are_taken_with_their_defaults() {
        let url = RepoUrl::parse("--code-repo", "ssh://git@git.example.com:2222/owner/code.git");
        let url = url.unwrap();
        assert_eq!(
            (url.user.as_str(), url.host.as_str(), url.port),
            ("git", "git.example.com", 2222)
        );
        assert_eq!(url.path, "/owner/code.git");
        let short = RepoUrl::parse("--code-repo", "ssh://10.0.0.5/srv/git/code.git").unwrap();
        assert_eq!(short.to_string(), "ssh://git@10.0.0.5:22/srv/git/code.git");
        assert_eq!(RepoUrl::parse("url", &short.to_string()).unwrap(), short);
    }

    #[test]
    fn urls_git_could_take_as_options_or_other_transports_are_refused() {
        for url in [
            "git@github.com:owner/code.git",
            "https://github.com/owner/code.git",
            "ext::sh -c touch% /tmp/pwned",
            "file:///etc",
            "ssh://-oProxyCommand=touch/x",
            "ssh://git@host/-upload-pack=touch",
            "ssh://git@host/../../etc/passwd",
            "ssh://git@host",
            "ssh://git@host:0/a.git",
            "ssh://git@host:99999/a.git",
            "ssh://git@host/a b.git",
            "ssh://git@host/a.git\n",
            "ssh://-git@host/a.git",
        ] {
            let error = RepoUrl::parse("--code-repo", url).unwrap_err();
            assert_eq!(error.field, "--code-repo", "{url}");
        }
    }

    #[test]
    fn branch_names_follow_gits_rules() {
        for good in ["main", "staging", "release/1.2", "feature-x_y"] {
            check_branch("--branch", good).unwrap();
        }
        for bad in
            ["", "-x", "a..b", "a b", "a~1", "x.lock", ".hidden", "a//b", "a/", "a@{1}", "a:b"]
        {
            assert!(check_branch("--branch", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_deploy_grant_covers_what_a_deploy_writes_and_nothing_else() {
        for key in [
            "/projects/shop/config",
            "/projects/shop/functions/ping",
            "/projects/shop/branches/staging/functions/ping",
            "/projects/shop/databases/notes",
            "/projects/shop/storages/files",
            "/jobs/shop/0123456789abcdef0123456789abcdef01234567",
            "/jobs/shop/0123456789abcdef0123456789abcdef01234567.staging",
            "/projects/shop/deployed",
            "/domains/ping.shop.tau",
            "/http/ping.shop.tau/GET/ping",
        ] {
            assert!(deployable(key), "{key}");
        }
        for key in [
            "/projects/shop",
            "/projects/shop/grants",
            "/projects/shop/repos/code",
            "/projects/shop/secrets/code-deploy-key",
            "/projects/shop/functions",
            "/projects/shop/functions/a/b",
            "/projects/shop/branches/staging/secrets/x",
            "/projects/shop/branches/staging",
            "/nodes/x",
            "/vault/keyset",
        ] {
            assert!(!deployable(key), "{key}");
        }
        assert!(is_operation_key("/projects/shop/repos/config"));
        assert!(is_operation_key("/projects/shop/grants"));
        assert!(!is_operation_key("/projects/shop/functions/ping"));
        let names: Vec<String> =
            RepoKind::ALL.iter().flat_map(|&k| [deploy_key_secret(k), webhook_secret(k)]).collect();
        assert!(names.iter().all(|n| granted_secret(n) && keys::is_name(n)), "{names:?}");
        assert!(!granted_secret("stripe-api-key") && !granted_secret("deploy-key"));
        let grants = Grants::ci();
        let ci = [CI_ROLE.to_string()];
        assert!(grants.allows(&ci, Right::Secrets) && grants.allows(&ci, Right::Deploy));
        assert!(!grants.allows(&["substrate".to_string()], Right::Secrets));
        assert!(is_commit(&"ab".repeat(20)) && is_commit(&"0f".repeat(32)));
        assert!(!is_commit(&"AB".repeat(20)) && !is_commit("abc") && !is_commit(&"g".repeat(40)));
        let commit = "ab".repeat(20);
        for branch in [None, Some("staging")] {
            let key = job_key("shop", &commit, branch);
            assert_eq!(parse_job_key(&key), Some(("shop", commit.as_str())), "{key}");
        }
        assert_eq!(parse_job_key(&format!("/jobs/shop/{commit}.Not/a")), None);
        assert_eq!(parse_job_key(&format!("/jobs/shop/{commit}.")), None);
    }

    #[test]
    fn a_job_round_trips_in_every_state() {
        let finished = Finished {
            monkey: "12D3KooW".into(),
            started_at: 1,
            finished_at: 2,
            config_commit: Some("ab".repeat(20)),
            code_commit: None,
            summary: "deployed".into(),
            log: Some(crate::hoarder::BlobId::of(b"log")),
        };
        for state in [
            JobState::Queued,
            JobState::Building { monkey: "m".into(), started_at: 1, lease_until: 2, attempt: 1 },
            JobState::Done(finished.clone()),
            JobState::Failed(finished),
            JobState::Skipped { reason: "older".into() },
        ] {
            let job = Job {
                repo: RepoKind::Code,
                branch: "main".into(),
                commit: "ab".repeat(20),
                queued_at: 5,
                state,
            };
            let bytes = crate::cbor::to_vec(&job).unwrap();
            assert_eq!(crate::cbor::from_slice::<Job>(&bytes).unwrap(), job);
        }
    }

    #[test]
    fn a_repository_record_round_trips_and_checks_its_keys() {
        let repo = Repository {
            kind: RepoKind::Code,
            url: RepoUrl::parse("url", "ssh://git@host:2222/o/code.git").unwrap(),
            branch: "main".into(),
            host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE4=".into(),
            deploy_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF8= tau deploy".into(),
        };
        repo.check().unwrap();
        let bytes = crate::cbor::to_vec(&repo).unwrap();
        assert_eq!(crate::cbor::from_slice::<Repository>(&bytes).unwrap(), repo);
        assert_eq!(key("shop", RepoKind::Code), "/projects/shop/repos/code");
        let mut bad = repo.clone();
        bad.host_key = "ssh-ed25519 AAAA\nssh-rsa BBBB".into();
        assert_eq!(bad.check().unwrap_err().field, "host_key");
        // A URL that does not check does not decode either.
        let mut raw: serde_json::Value = serde_json::to_value(&repo).unwrap();
        raw["url"] = "ext::sh -c id".into();
        assert!(serde_json::from_value::<Repository>(raw).is_err());
    }
}
