//! monkey, the other half of the `ci` service: builds and deploys the jobs patrick queues.
//!
//! Jobs are TNS records (`/jobs/<project>/<commit>`). A monkey looks at them when TNS tells it
//! one changed (its own registry's changes, on a tns node) and every [`POLL`] otherwise. It
//! takes a job that no monkey works on (queued, or whose lease ran out) by writing itself into
//! the job with a lease of [`LEASE`], renewed every [`RENEW`] while it works: a monkey that dies
//! loses the job once the lease runs out, and another takes it over. Monkeys race fairly: the
//! first choice for a project is the `ci` node ranked first by `BLAKE3(project ‖ peer id)`
//! among the connected ones (so a project's builds keep finding their warm target folder); the
//! others wait [`OTHERS_WAIT`] before they take one. After writing its claim a monkey starts the job
//! (fetching and building change nothing that serves) and reads the job back once its claim
//! had time to spread: when two claimed at once, TNS's last-writer-wins keeps one claim
//! everywhere, and the other monkey lets go before it writes anything. One project has
//! one job running at a time, oldest first, and each monkey runs one job at a time.
//!
//! - [`job`]: one job, from fetching to writing the records;
//! - [`checkout`]: git with the deploy key and the pinned host key;
//! - [`sandbox`]: the build in bubblewrap;
//! - [`log`]: the job's bounded log, stored in hoarder when the job ends.

pub mod checkout;
pub mod job;
pub mod log;
pub mod sandbox;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use libp2p::identity::Keypair;
use tau_proto::cbor;
use tau_proto::git::{self, Finished, Job, JobState};
use tau_proto::hoarder::BlobId;
use tau_proto::tns::{Draft, Record};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::p2p;
use crate::patrick::unix_ms;
use crate::tns::{self, Registry, RegistryError};

/// How long a claim holds without renewal, ms.
pub const LEASE: u64 = 15_000;
/// How often a working monkey renews its lease.
pub const RENEW: Duration = Duration::from_secs(5);
/// How often jobs are looked at without news.
pub const POLL: Duration = Duration::from_secs(2);
/// How long the monkeys that are not a project's first choice leave a claimable job to it, ms.
pub const OTHERS_WAIT: u64 = 3_000;
/// How long a claim is given to spread before it is read back.
const SETTLE: Duration = Duration::from_millis(150);
/// Ended jobs kept per project; older ones are deleted.
const KEEP_ENDED: usize = 50;

/// What a monkey needs from the node.
pub struct Parts {
    /// The p2p core.
    pub handle: p2p::Handle,
    /// The node's key: signs claims, records and vault requests.
    pub keypair: Keypair,
    /// Where jobs and projects are read and written.
    pub registry: Registry,
    /// The node's own registry, when it runs tns (its changes wake the monkey at once).
    pub local: Option<tns::Local>,
    /// The node's own vault, when it runs one.
    pub vault: Option<crate::vault::Local>,
    /// The node's data folder (`monkey/` inside holds work and target folders).
    pub data_dir: PathBuf,
    /// The build sandbox's settings.
    pub config: tau_proto::node_config::CiConfig,
    /// The node's signed counters: each job is counted under its project's
    /// [`tau_proto::counters::BUILDS`].
    pub counters: Option<Arc<crate::substrate::counters::Counters>>,
}

/// What a monkey's tasks share.
pub struct Monkey {
    handle: p2p::Handle,
    keypair: Keypair,
    registry: Registry,
    vault: Option<crate::vault::Local>,
    me: PeerId,
    /// The sandbox, or why there is none on this node (jobs that need a build fail with it).
    sandbox: Result<sandbox::Sandbox, String>,
    /// `<data>/monkey/work`: one folder per running job, removed when it ends.
    work: PathBuf,
    /// `<data>/monkey/projects/<project>`: each project's repositories (`config.git`,
    /// `code.git`), their work trees (`config`, `code`) and cargo target folder (`target`),
    /// kept between jobs so that a push builds only what it changed.
    projects: PathBuf,
    counters: Option<Arc<crate::substrate::counters::Counters>>,
}

/// Starts the monkey.
pub fn start(parts: Parts, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
    let sandbox = sandbox::Sandbox::from_config(&parts.config);
    if let Err(e) = &sandbox {
        tracing::warn!("no build sandbox: {e}; jobs that need a cargo build will fail");
    }
    let base = parts.data_dir.join("monkey");
    let work = base.join("work");
    // What a killed job left behind (its key files among it) goes at start.
    let _ = std::fs::remove_dir_all(&work);
    let monkey = Arc::new(Monkey {
        me: parts.handle.peer_id(),
        handle: parts.handle,
        keypair: parts.keypair,
        registry: parts.registry,
        vault: parts.vault,
        sandbox,
        work,
        projects: base.join("projects"),
        counters: parts.counters,
    });
    vec![tokio::spawn(run(monkey, parts.local, shutdown))]
}

async fn run(monkey: Arc<Monkey>, local: Option<tns::Local>, shutdown: CancellationToken) {
    let mut changes = local.as_ref().map(|local| local.changes());
    loop {
        if let Err(e) = monkey.clone().round(&shutdown).await {
            tracing::debug!(error = %e, "monkey round failed");
        }
        let changed = async {
            match changes.as_mut() {
                Some(changes) => loop {
                    match changes.recv().await {
                        Ok(keys) if keys.iter().any(|k| k.starts_with(git::JOBS)) => break,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await
                        }
                    }
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = changed => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    tracing::debug!("monkey stopped");
}

/// A job as read from TNS.
#[derive(Debug, Clone)]
struct Listed {
    project: String,
    key: String,
    job: Job,
}

impl Monkey {
    /// Looks at every job once: takes one it should, and runs it to its end.
    async fn round(self: Arc<Self>, shutdown: &CancellationToken) -> Result<(), RegistryError> {
        let jobs = self.jobs().await?;
        let now = unix_ms();
        let busy: Vec<&str> = jobs
            .iter()
            .filter(|j| matches!(j.job.state, JobState::Building { .. }) && !j.job.claimable(now))
            .map(|j| j.project.as_str())
            .collect();
        let mut open: Vec<&Listed> = jobs
            .iter()
            .filter(|j| j.job.claimable(now) && !busy.contains(&j.project.as_str()))
            .collect();
        open.sort_by_key(|j| j.job.queued_at);
        let mut tried: Vec<&str> = Vec::new();
        for listed in open {
            // Oldest first within a project.
            if tried.contains(&listed.project.as_str()) {
                continue;
            }
            tried.push(&listed.project);
            let waited = now.saturating_sub(since(&listed.job));
            if waited < OTHERS_WAIT && !self.first_choice(&listed.project).await {
                continue;
            }
            let attempt = self.claim(listed).await?;
            self.clone().work(listed.clone(), attempt, shutdown).await;
            return Ok(());
        }
        Ok(())
    }

    /// Every job in TNS.
    async fn jobs(&self) -> Result<Vec<Listed>, RegistryError> {
        let records = self.registry.list(git::JOBS).await?;
        Ok(records.into_iter().filter_map(listed).collect())
    }

    /// How this monkey reads a repository's secret.
    fn reader(&self) -> crate::patrick::secrets::Reader<'_> {
        crate::patrick::secrets::Reader {
            handle: &self.handle,
            registry: &self.registry,
            keypair: &self.keypair,
            vault: self.vault.as_ref(),
        }
    }

    /// Whether a job for `commit` of `project` (to its deployed branch, or to the `mapped` one)
    /// waits or runs (not ended).
    async fn job_pending(&self, project: &str, commit: &str, mapped: Option<&str>) -> bool {
        let key = git::job_key(project, commit, mapped);
        let record = self.registry.get(&key).await.ok().flatten();
        record.and_then(listed).is_some_and(|l| !l.job.ended())
    }

    /// Whether this node is the project's first choice among the connected ci nodes.
    async fn first_choice(&self, project: &str) -> bool {
        let rank = |peer: &PeerId| {
            let mut hasher = blake3::Hasher::new();
            hasher.update(project.as_bytes());
            hasher.update(&peer.to_bytes());
            *hasher.finalize().as_bytes()
        };
        let mine = rank(&self.me);
        match self.handle.nodes("ci").await {
            Ok(nodes) => nodes
                .iter()
                .filter(|n| n.connected && n.peer != self.me)
                .all(|n| rank(&n.peer) < mine),
            Err(_) => false,
        }
    }

    /// Writes this monkey's claim on `listed`; its attempt number. Whether the claim holds is
    /// known only after [`SETTLE`] ([`Monkey::confirm`]).
    async fn claim(&self, listed: &Listed) -> Result<u32, RegistryError> {
        let attempt = match &listed.job.state {
            JobState::Building { attempt, .. } => attempt + 1,
            _ => 1,
        };
        let now = unix_ms();
        let state = JobState::Building {
            monkey: self.me.to_string(),
            started_at: now,
            lease_until: now + LEASE,
            attempt,
        };
        self.put_job(listed, state).await?;
        Ok(attempt)
    }

    /// Whether this monkey's claim on `listed` held, read back once it had [`SETTLE`] to spread
    /// (when two monkeys claimed at once, TNS kept one claim everywhere).
    async fn confirm(&self, listed: &Listed) -> bool {
        tokio::time::sleep(SETTLE).await;
        let record = match self.registry.get(&listed.key).await {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(job = listed.key, error = %e, "cannot read the claim back");
                return false;
            }
        };
        let held = matches!(record.and_then(listed_of(&listed.key)),
            Some(l) if matches!(&l.job.state, JobState::Building { monkey, .. } if *monkey == self.me.to_string()));
        if held {
            tracing::info!(job = listed.key, "job claimed");
        } else {
            tracing::info!(job = listed.key, "another monkey took the job");
        }
        held
    }

    /// Runs a claimed job, renewing the lease, and writes how it ended. The job starts at once
    /// (fetching and building change nothing that serves) while the claim is confirmed; nothing
    /// is written, neither records nor how the job ended, unless it held.
    async fn work(self: Arc<Self>, listed: Listed, attempt: u32, shutdown: &CancellationToken) {
        let started_at = unix_ms();
        let (held_tx, held) = tokio::sync::watch::channel(None);
        let confirming = {
            let (this, listed) = (self.clone(), listed.clone());
            tokio::spawn(async move {
                let _ = held_tx.send(Some(this.confirm(&listed).await));
            })
        };
        let held = job::Held(held);
        let (started, cpu_before) = (std::time::Instant::now(), children_cpu_micros());
        let lost = CancellationToken::new();
        let renew = {
            let (this, listed, lost) = (self.clone(), listed.clone(), lost.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RENEW).await;
                    let still = match this.registry.get(&listed.key).await {
                        Ok(Some(record)) => listed_of(&listed.key)(record).is_some_and(|l| {
                            matches!(&l.job.state, JobState::Building { monkey, .. } if *monkey == this.me.to_string())
                        }),
                        Ok(None) => false,
                        // Cannot tell: keep working, the lease says the rest.
                        Err(_) => true,
                    };
                    if !still {
                        lost.cancel();
                        break;
                    }
                    let state = JobState::Building {
                        monkey: this.me.to_string(),
                        started_at,
                        lease_until: unix_ms() + LEASE,
                        attempt,
                    };
                    if let Err(e) = this.put_job(&listed, state).await {
                        tracing::warn!(job = listed.key, error = %e, "cannot renew the lease");
                    }
                }
            })
        };
        let work = self.work.join(format!("{}-{}", listed.project, listed.job.commit));
        let _ = std::fs::remove_dir_all(&work);
        let mut log = log::Log::default();
        log.line(&format!(
            "job {} on {} (attempt {attempt}): {} repository, branch {}, commit {}",
            listed.key, self.me, listed.job.repo, listed.job.branch, listed.job.commit
        ));
        let taken = async {
            if held.wait().await {
                std::future::pending::<()>().await;
            }
        };
        let outcome = tokio::select! {
            outcome = job::run(&self, &listed.project, &listed.job, &work, &held, &mut log) => Some(outcome),
            _ = taken => None,
            _ = lost.cancelled() => None,
            _ = shutdown.cancelled() => None,
        };
        let held = held.wait().await;
        confirming.abort();
        if !held {
            renew.abort();
            let _ = std::fs::remove_dir_all(&work);
            return;
        }
        renew.abort();
        let _ = std::fs::remove_dir_all(&work);
        let Some(outcome) = outcome else {
            tracing::warn!(job = listed.key, "job abandoned (lease lost, or the node is stopping)");
            return;
        };
        if let Some(counters) = &self.counters {
            // Build seconds, for the provider to bill: one job of this monkey at a time, so the
            // CPU its child processes used since the job started is the job's.
            let usage = tau_proto::counters::Usage {
                invocations: 1,
                errors: u64::from(matches!(outcome, job::Outcome::Failed { .. })),
                wall_micros: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                cpu_micros: children_cpu_micros().saturating_sub(cpu_before),
                ..Default::default()
            };
            counters.stats(&listed.project, tau_proto::counters::BUILDS).add(&usage);
        }
        let log_blob = self.store_log(&listed, &log).await;
        let finished = |summary: String, config_commit, code_commit| Finished {
            monkey: self.me.to_string(),
            started_at,
            finished_at: unix_ms(),
            config_commit,
            code_commit,
            summary: summary.chars().take(git::MAX_REASON).collect(),
            log: log_blob,
        };
        let state = match outcome {
            job::Outcome::Done { summary, config_commit, code_commit } => {
                JobState::Done(finished(summary, Some(config_commit), Some(code_commit)))
            }
            job::Outcome::Failed { summary, config_commit, code_commit } => {
                JobState::Failed(finished(summary, config_commit, code_commit))
            }
            job::Outcome::Skipped(reason) => {
                JobState::Skipped { reason: reason.chars().take(git::MAX_REASON).collect() }
            }
        };
        tracing::info!(job = listed.key, state = state.name(), "job ended");
        if let Err(e) = self.put_job(&listed, state).await {
            tracing::warn!(job = listed.key, error = %e, "cannot write how the job ended");
        }
        if let Err(e) = self.forget_old(&listed.project).await {
            tracing::debug!(error = %e, "cannot delete old jobs");
        }
    }

    /// Stores the job's log in hoarder; `None` if it could not be.
    async fn store_log(&self, listed: &Listed, log: &log::Log) -> Option<BlobId> {
        let _ = std::fs::create_dir_all(&self.work);
        let path = self.work.join(format!("{}-{}.log", listed.project, listed.job.commit));
        let text = log.contents();
        let cid = BlobId::of(text.as_bytes());
        let stored = match std::fs::write(&path, text) {
            Ok(()) => job::store(self, &path, cid).await.is_ok(),
            Err(_) => false,
        };
        let _ = std::fs::remove_file(&path);
        stored.then_some(cid)
    }

    /// Deletes the project's ended jobs beyond the newest [`KEEP_ENDED`].
    async fn forget_old(&self, project: &str) -> Result<(), RegistryError> {
        let mut ended: Vec<Listed> = self
            .jobs()
            .await?
            .into_iter()
            .filter(|j| j.project == project && j.job.ended())
            .collect();
        if ended.len() <= KEEP_ENDED {
            return Ok(());
        }
        ended.sort_by_key(|j| std::cmp::Reverse(j.job.queued_at));
        let drafts = ended[KEEP_ENDED..]
            .iter()
            .map(|j| Draft { key: j.key.clone(), scope: j.project.clone(), value: None })
            .collect();
        self.write(drafts).await
    }

    async fn put_job(&self, listed: &Listed, state: JobState) -> Result<(), RegistryError> {
        let job = Job { state, ..listed.job.clone() };
        let value = cbor::to_vec(&job).map_err(|e| RegistryError::Refused(e.to_string()))?;
        let draft =
            Draft { key: listed.key.clone(), scope: listed.project.clone(), value: Some(value) };
        self.write(vec![draft]).await
    }

    /// Signs `drafts` one version above the registry's clock and writes them; any refusal fails.
    async fn write(&self, drafts: Vec<Draft>) -> Result<(), RegistryError> {
        let version = self.registry.clock().await?.saturating_add(1);
        let records: Vec<Record> = drafts
            .into_iter()
            .map(|d| d.sign(version, &self.keypair))
            .collect::<Option<_>>()
            .ok_or_else(|| RegistryError::Refused("the node key cannot sign".into()))?;
        for batch in tau_proto::tns::batches(records, tau_proto::tns::MAX_PAGE_BYTES) {
            let outcome = self.registry.put(batch).await?;
            if let Some((key, why)) = outcome.rejected.first() {
                return Err(RegistryError::Refused(format!("{key}: {why}")));
            }
        }
        Ok(())
    }
}

/// When a job last became claimable: queued, or its lease ran out.
fn since(job: &Job) -> u64 {
    match &job.state {
        JobState::Building { lease_until, .. } => *lease_until,
        _ => job.queued_at,
    }
}

/// The user and system CPU time of this process's finished (waited for) children, microseconds.
fn children_cpu_micros() -> u64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let Ok(usage) = getrusage(UsageWho::RUSAGE_CHILDREN) else { return 0 };
    let micros = |t: nix::sys::time::TimeVal| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec()).unwrap_or(0)
    };
    micros(usage.user_time()) + micros(usage.system_time())
}

fn listed(record: Record) -> Option<Listed> {
    let key = record.key.clone();
    listed_of(&key)(record)
}

fn listed_of(key: &str) -> impl Fn(Record) -> Option<Listed> + '_ {
    move |record| {
        let (project, _) = git::parse_job_key(key)?;
        if record.scope != project || record.key != key {
            return None;
        }
        let job: Job = cbor::from_slice(record.value.as_deref()?).ok()?;
        Some(Listed { project: project.to_string(), key: key.to_string(), job })
    }
}
