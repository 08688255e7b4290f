//! patrick, half of the `ci` service: takes push webhooks from a project's git host and queues
//! one build job per pushed commit, for the monkeys ([`crate::monkey`]) to build.
//!
//! A webhook is `POST <endpoint>/<project>/<config|code>` on the node's webhook port, which seer
//! answers as `patrick.tau.<domain>`. In order: a body over 1 MiB is 413; a project without that
//! repository is 404; a signature that is not the HMAC of the body under the repository's
//! webhook secret (read from the vault, as this node's granted role) is 401; a push to a branch
//! the project neither deploys nor maps to nodes (`branches:` in its config) is 202 with nothing
//! queued; otherwise the job `/jobs/<project>/<commit>` (`<commit>.<branch>` for a mapped
//! branch) is written to TNS (202), unless it exists (200): one job per (project, commit,
//! branch), however often the webhook comes. TNS is the queue: replicated, so a job
//! outlives the patrick node that queued it.
//!
//! - [`webhook`]: the checks on one webhook;
//! - [`server`]: the HTTP endpoint;
//! - [`secrets`]: reading a repository's secret from the vault;
//! - [`deploy_key`], [`host_key`]: what registration makes and pins.

pub mod deploy_key;
pub mod host_key;
pub mod secrets;
pub mod server;
pub mod webhook;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use tau_proto::cbor;
use tau_proto::git::{
    self, Job, JobState, PatrickProtocol, PatrickRequest, PatrickResponse, RepoKind, Repository,
};
use tau_proto::tns::values::CloudNames;
use tau_proto::tns::{Draft, keys};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::p2p;
use crate::tns::Registry;

/// How long a repository and its webhook secret are kept in memory before they are read again.
const CACHE_FOR: Duration = Duration::from_secs(60);
/// How long "no such repository" is remembered.
const UNKNOWN_FOR: Duration = Duration::from_secs(2);
/// The most repositories remembered; past it the memory starts over.
const MAX_CACHED: usize = 10_000;
/// A signature that fails against a secret read this long ago reads the secret again once (the
/// owner may have changed it).
const REREAD_AFTER: Duration = Duration::from_secs(10);

/// Why patrick could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PatrickError {
    /// The webhook port could not be bound.
    #[error("cannot listen for webhooks on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The p2p task stopped.
    #[error(transparent)]
    Stopped(#[from] p2p::Stopped),
}

/// What patrick needs from the node.
pub struct Parts {
    /// The p2p core.
    pub handle: p2p::Handle,
    /// The node's key: signs the jobs it queues and its vault requests.
    pub keypair: Keypair,
    /// Where repositories, secrets and jobs are read and jobs written.
    pub registry: Registry,
    /// The node's own vault, when it runs one.
    pub vault: Option<crate::vault::Local>,
    /// Where to listen for webhooks.
    pub listen: Vec<SocketAddr>,
}

/// A started patrick.
pub struct Started {
    /// Its tasks.
    pub tasks: Vec<JoinHandle<()>>,
    /// Where it listens.
    pub addrs: Vec<SocketAddr>,
}

/// A repository as patrick last read it.
enum Cached {
    Known { repo: Box<Repository>, secret: Zeroizing<Vec<u8>>, read: Instant },
    Unknown { read: Instant },
}

/// What the endpoint's requests share.
pub struct Patrick {
    handle: p2p::Handle,
    keypair: Keypair,
    registry: Registry,
    vault: Option<crate::vault::Local>,
    port: u16,
    repos: Mutex<HashMap<(String, RepoKind), Cached>>,
}

/// Starts patrick: binds the webhook port, serves `/tau/patrick/1`.
pub async fn start(parts: Parts, shutdown: CancellationToken) -> Result<Started, PatrickError> {
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for addr in parts.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| PatrickError::Bind { addr, source })?;
        let bound = listener.local_addr().map_err(|source| PatrickError::Bind { addr, source })?;
        tracing::info!(address = %bound, "patrick listening for webhooks");
        addrs.push(bound);
        listeners.push(listener);
    }
    let patrick = Arc::new(Patrick {
        handle: parts.handle.clone(),
        keypair: parts.keypair,
        registry: parts.registry,
        vault: parts.vault,
        port: addrs.first().map_or(0, |a| a.port()),
        repos: Mutex::new(HashMap::new()),
    });
    let mut tasks: Vec<JoinHandle<()>> = listeners
        .into_iter()
        .map(|listener| tokio::spawn(server::serve(patrick.clone(), listener, shutdown.clone())))
        .collect();
    let (inbox, mut requests) = tokio::sync::mpsc::channel(64);
    parts.handle.serve::<PatrickProtocol>(inbox).await?;
    tasks.push(tokio::spawn(async move {
        loop {
            let inbound = tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(inbound) = requests.recv() => inbound,
                else => break,
            };
            let patrick = patrick.clone();
            tokio::spawn(async move {
                let response = match inbound.request {
                    PatrickRequest::Endpoint => match patrick.endpoint().await {
                        Ok(url) => PatrickResponse::Endpoint { url },
                        Err(e) => PatrickResponse::Error(e),
                    },
                    _ => PatrickResponse::Error("unsupported patrick request".into()),
                };
                let _ = inbound.reply.send(response);
            });
        }
    }));
    Ok(Started { tasks, addrs })
}

/// What patrick answered a webhook: the HTTP status and a one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// Said in the body's `message`.
    pub message: String,
    /// The job, when one is named.
    pub job: Option<String>,
}

impl Answer {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), job: None }
    }
}

impl Patrick {
    /// `http://patrick.tau.<domain>:<port>`, from the operator's `/cloud` record.
    async fn endpoint(&self) -> Result<String, String> {
        let record = self
            .registry
            .get(keys::CLOUD)
            .await
            .map_err(|e| format!("cannot read {} from tns: {e}", keys::CLOUD))?;
        let names: CloudNames =
            record.and_then(|r| cbor::from_slice(r.value.as_deref()?).ok()).ok_or_else(|| {
                format!("the operator has not written the cloud's names ({})", keys::CLOUD)
            })?;
        Ok(format!("http://patrick.tau.{}:{}", names.domain, self.port))
    }

    /// Handles one webhook for `project`'s `kind` repository.
    pub async fn webhook(
        &self,
        project: &str,
        kind: RepoKind,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Answer {
        if body.len() > webhook::MAX_BODY {
            return Answer::new(413, webhook::Refused::TooLarge(body.len()).to_string());
        }
        let (repo, secret, read) = match self.repository(project, kind).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Answer::new(404, format!("project `{project}` has no {kind} repository"));
            }
            Err(e) => {
                tracing::warn!(project, %kind, error = %e, "cannot read a repository's webhook secret");
                return Answer::new(503, format!("cannot check the webhook now: {e}"));
            }
        };
        let mut checked = webhook::check(headers, body, &secret);
        if checked.as_ref().is_err_and(|e| e.status() == 401) && read.elapsed() > REREAD_AFTER {
            // The owner may have changed the secret since it was read: once more, fresh.
            self.forget(project, kind);
            if let Ok(Some((_, secret, _))) = self.repository(project, kind).await {
                checked = webhook::check(headers, body, &secret);
            }
        }
        let push = match checked {
            Ok(push) => push,
            Err(refused) => {
                tracing::info!(project, %kind, status = refused.status(), "webhook refused: {refused}");
                return Answer::new(refused.status(), refused.to_string());
            }
        };
        let mapped = if push.branch == repo.branch {
            None
        } else {
            match self.mapped_branch(project, &push.branch).await {
                Ok(true) => Some(push.branch.as_str()),
                Ok(false) => {
                    return Answer::new(
                        202,
                        format!(
                            "branch `{}` is not deployed (`{}` is, and config.yaml maps no \
                             other branch of that name to nodes): nothing queued",
                            push.branch, repo.branch
                        ),
                    );
                }
                Err(e) => {
                    tracing::warn!(project, error = %e, "cannot read the project's config");
                    return Answer::new(503, format!("cannot check the branch now: {e}"));
                }
            }
        };
        match self.queue(project, kind, &push, mapped).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(project, commit = push.commit, error = %e, "cannot queue a job");
                Answer::new(503, format!("cannot queue the job now: {e}"))
            }
        }
    }

    /// Whether the project's config (as its deployed branch has it) maps `branch` to nodes.
    async fn mapped_branch(
        &self,
        project: &str,
        branch: &str,
    ) -> Result<bool, crate::tns::RegistryError> {
        let record = self.registry.get(&tau_proto::tns::keys::project_config(project)).await?;
        let config = record.and_then(|r| {
            cbor::from_slice::<tau_proto::tns::values::ProjectConfig>(r.value.as_deref()?).ok()
        });
        Ok(config.is_some_and(|c| c.branches.contains_key(branch)))
    }

    /// Writes the job of `push` (to the deployed branch, or to the `mapped` one) unless it
    /// exists.
    async fn queue(
        &self,
        project: &str,
        kind: RepoKind,
        push: &webhook::Push,
        mapped: Option<&str>,
    ) -> Result<Answer, crate::tns::RegistryError> {
        let key = git::job_key(project, &push.commit, mapped);
        if let Some(existing) = self.registry.get(&key).await? {
            let state = existing
                .value
                .as_deref()
                .and_then(|v| cbor::from_slice::<Job>(v).ok())
                .map_or("unreadable".to_string(), |job| job.state.name().to_string());
            let mut answer = Answer::new(200, format!("job exists ({state}): nothing queued"));
            answer.job = Some(key);
            return Ok(answer);
        }
        let job = Job {
            repo: kind,
            branch: push.branch.clone(),
            commit: push.commit.clone(),
            queued_at: unix_ms(),
            state: JobState::Queued,
        };
        let value =
            cbor::to_vec(&job).map_err(|e| crate::tns::RegistryError::Refused(e.to_string()))?;
        let version = self.registry.clock().await?.saturating_add(1);
        let record = Draft { key: key.clone(), scope: project.to_string(), value: Some(value) }
            .sign(version, &self.keypair)
            .ok_or_else(|| crate::tns::RegistryError::Refused("the node key cannot sign".into()))?;
        let outcome = self.registry.put(vec![record]).await?;
        if let Some((_, why)) = outcome.rejected.first() {
            return Err(crate::tns::RegistryError::Refused(format!("{key}: {why}")));
        }
        tracing::info!(project, %kind, branch = push.branch, commit = push.commit, "job queued");
        let mut answer = Answer::new(202, "job queued");
        answer.job = Some(key);
        Ok(answer)
    }

    fn reader(&self) -> secrets::Reader<'_> {
        secrets::Reader {
            handle: &self.handle,
            registry: &self.registry,
            keypair: &self.keypair,
            vault: self.vault.as_ref(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<(String, RepoKind), Cached>> {
        self.repos.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn forget(&self, project: &str, kind: RepoKind) {
        self.cache().remove(&(project.to_string(), kind));
    }

    /// The repository record and its webhook secret, from memory or read anew; `None` when the
    /// project has no such repository.
    async fn repository(
        &self,
        project: &str,
        kind: RepoKind,
    ) -> Result<Option<(Box<Repository>, Zeroizing<Vec<u8>>, Instant)>, String> {
        let id = (project.to_string(), kind);
        match self.cache().get(&id) {
            Some(Cached::Known { repo, secret, read }) if read.elapsed() < CACHE_FOR => {
                return Ok(Some((repo.clone(), secret.clone(), *read)));
            }
            Some(Cached::Unknown { read }) if read.elapsed() < UNKNOWN_FOR => return Ok(None),
            _ => {}
        }
        let key = git::key(project, kind);
        let record =
            self.registry.get(&key).await.map_err(|e| format!("cannot read {key}: {e}"))?;
        let repo = record
            .and_then(|r| cbor::from_slice::<Repository>(r.value.as_deref()?).ok())
            .filter(|repo| repo.kind == kind && repo.check().is_ok());
        let entry = match repo {
            None => Cached::Unknown { read: Instant::now() },
            Some(repo) => {
                let name = git::webhook_secret(kind);
                let secret = secrets::read(&self.reader(), project, &name)
                    .await
                    .map_err(|e| e.to_string())?;
                Cached::Known { repo: Box::new(repo), secret, read: Instant::now() }
            }
        };
        let found = match &entry {
            Cached::Known { repo, secret, read } => Some((repo.clone(), secret.clone(), *read)),
            Cached::Unknown { .. } => None,
        };
        let mut cache = self.cache();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(id, entry);
        Ok(found)
    }
}

/// Now, Unix milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
