//! One job, start to end: read the repositories and their deploy keys, fetch both branches (for
//! a mapped branch's push, that branch, and the other repository's branch of the same name or
//! else its deployed one), check out the pushed commit (and the other repository's tip), refuse
//! to go back in history, build the code repository in the sandbox, compile the config
//! repository with the same code as `project push`, store the components in hoarder, and write
//! the records. Every step before the records are written may fail without changing anything
//! that serves.

use std::path::{Path, PathBuf};

use tau_proto::cbor;
use tau_proto::git::{self, Deployed, DeployedBranch, Job, RepoKind, Repository};
use tau_proto::hoarder::{BlobId, DEFAULT_REPLICAS, transfer};
use tau_proto::identity::WriterKey;
use tau_proto::tns::values::ProjectConfig;
use tau_proto::tns::{Draft, Record, keys};

use super::Monkey;
use super::checkout::{Checkout, KeyFiles};
use super::log::Log;
use crate::patrick::secrets;
use crate::project;

/// How a job ended.
#[derive(Debug)]
pub enum Outcome {
    /// Deployed (or nothing to change): what, in one line.
    Done {
        /// One line.
        summary: String,
        /// The commits built.
        config_commit: String,
        /// See `config_commit`.
        code_commit: String,
    },
    /// Not built, and why.
    Skipped(String),
    /// Failed, and why in one line (the log has the rest).
    Failed {
        /// One line.
        summary: String,
        /// The commits, as far as known.
        config_commit: Option<String>,
        /// See `config_commit`.
        code_commit: Option<String>,
    },
}

/// Whether the monkey's claim on the job held: known once it was read back.
pub struct Held(pub tokio::sync::watch::Receiver<Option<bool>>);

impl Held {
    /// Waits until it is known.
    pub async fn wait(&self) -> bool {
        let mut held = self.0.clone();
        match held.wait_for(Option::is_some).await {
            Ok(known) => known.unwrap_or(false),
            // The confirming task is gone without an answer.
            Err(_) => false,
        }
    }
}

/// A failure in one line.
#[derive(Debug)]
pub struct Stop(pub String);

impl<E: std::fmt::Display> From<E> for Stop {
    fn from(e: E) -> Self {
        Stop(e.to_string())
    }
}

/// Runs `job` of `project` in `work` (a folder of its own, removed by the caller); writes
/// nothing unless the claim `held`.
pub async fn run(
    monkey: &Monkey,
    project: &str,
    job: &Job,
    work: &Path,
    held: &Held,
    log: &mut Log,
) -> Outcome {
    let mut commits = (None, None);
    match steps(monkey, project, job, work, held, log, &mut commits).await {
        Ok(outcome) => outcome,
        Err(Stop(summary)) => {
            log.line(&format!("failed: {summary}"));
            Outcome::Failed { summary, config_commit: commits.0, code_commit: commits.1 }
        }
    }
}

async fn steps(
    monkey: &Monkey,
    project: &str,
    job: &Job,
    work: &Path,
    held: &Held,
    log: &mut Log,
    commits: &mut (Option<String>, Option<String>),
) -> Result<Outcome, Stop> {
    let mut repos = Vec::new();
    for kind in RepoKind::ALL {
        let key = git::key(project, kind);
        let repo = monkey
            .registry
            .get(&key)
            .await?
            .and_then(|r| cbor::from_slice::<Repository>(r.value.as_deref()?).ok())
            .filter(|r| r.kind == kind && r.check().is_ok())
            .ok_or_else(|| Stop(format!("project `{project}` has no readable {key}")))?;
        repos.push(repo);
    }
    // A push to a branch other than the deployed one is built only if the project's config
    // (as its deployed branch has it) maps that branch to nodes.
    let pushed_repo = if job.repo == RepoKind::Config { &repos[0] } else { &repos[1] };
    let mapped = (job.branch != pushed_repo.branch).then_some(job.branch.as_str());
    if let Some(branch) = mapped
        && !read_config(monkey, project).await?.is_some_and(|c| c.branches.contains_key(branch))
    {
        return Ok(Outcome::Skipped(format!(
            "branch `{branch}` is not deployed, and the project's config.yaml maps no branch of \
             that name to nodes (branches:)"
        )));
    }
    let deployed = read_deployed(monkey, project).await?;
    let current = deployed.branches.get(&job.branch);

    // Fetch both branches at once, each with its own deploy key (0600 files, deleted as soon as
    // its fetch is done), into the project's kept repositories. The repository not pushed is
    // taken at the commit the branch serves when the kept repository has it: a push to it is
    // a job of its own, which takes this one's commit in turn. Otherwise (nothing served yet)
    // at its tip. The second value is that served commit, when taken so.
    let kept = monkey.projects.join(project);
    let start = log.start();
    let serving = |kind: RepoKind| {
        current.map(|c| match kind {
            RepoKind::Config => c.config_commit.clone(),
            RepoKind::Code => c.code_commit.clone(),
        })
    };
    let fetch = |repo: &Repository| {
        let (kept, work) = (kept.clone(), work.to_path_buf());
        let repo = repo.clone();
        async move {
            let mut log = Log::since(start);
            let kind = repo.kind;
            let fetched = async {
                let git_dir = kept.join(format!("{kind}.git"));
                let tree = kept.join(kind.as_str());
                // A mapped branch's push takes the other repository's branch of the same
                // name if it has one, else its deployed branch.
                let branch = mapped.unwrap_or(&repo.branch);
                if kind != job.repo
                    && let Some(commit) = serving(kind)
                    && let Some(checkout) = Checkout::kept(&git_dir, &tree, &work, branch, &commit)
                        .await
                        .map_err(|e| Stop(format!("cannot read the kept {kind} repository: {e}")))?
                {
                    log.line(&format!("{kind} repository: the served {commit}, already here"));
                    return Ok((checkout, Some(commit)));
                }
                let name = git::deploy_key_secret(kind);
                let private = secrets::read(&monkey.reader(), project, &name)
                    .await
                    .map_err(|e| Stop(format!("cannot read the {kind} deploy key: {e}")))?;
                let keys = KeyFiles::write(&work.join("ssh").join(kind.as_str()), &repo, &private)
                    .map_err(|e| Stop(format!("cannot write the {kind} deploy key: {e}")))?;
                drop(private);
                log.line(&format!("{kind} deploy key read from the vault"));
                let or_deployed = kind != job.repo;
                Checkout::fetch(&git_dir, &tree, &work, &repo, branch, or_deployed, &keys, &mut log)
                    .await
                    .map(|checkout| (checkout, None))
                    .map_err(|e| Stop(format!("cannot fetch the {kind} repository: {e}")))
            }
            .await;
            (fetched, log)
        }
    };
    let ((config, config_log), (code, code_log)) =
        futures::join!(fetch(&repos[0]), fetch(&repos[1]));
    log.append(&config_log);
    log.append(&code_log);
    let checkouts = [config?, code?];
    log.line("fetched");
    let [(config, config_served), (code, code_served)] = [&checkouts[0], &checkouts[1]];

    // The pushed commit must be on the branch.
    let pushed = if job.repo == RepoKind::Config { config } else { code };
    let tip = pushed.tip(log).await?;
    match pushed.is_ancestor(&job.commit, &tip, log).await? {
        Some(true) => {}
        Some(false) => {
            return Ok(Outcome::Skipped(format!(
                "commit {} is no longer on branch {} (its tip is {tip})",
                job.commit, job.branch
            )));
        }
        None => {
            return Err(Stop(format!(
                "commit {} is not in the {} repository",
                job.commit, job.repo
            )));
        }
    }
    if tip != job.commit && monkey.job_pending(project, &tip, mapped).await {
        return Ok(Outcome::Skipped(format!("superseded by {tip}, queued after it")));
    }
    let config_commit = match (job.repo, config_served) {
        (RepoKind::Config, _) => job.commit.clone(),
        (RepoKind::Code, Some(served)) => served.clone(),
        (RepoKind::Code, None) => config.tip(log).await?,
    };
    let code_commit = match (job.repo, code_served) {
        (RepoKind::Code, _) => job.commit.clone(),
        (RepoKind::Config, Some(served)) => served.clone(),
        (RepoKind::Config, None) => code.tip(log).await?,
    };
    *commits = (Some(config_commit.clone()), Some(code_commit.clone()));
    // Never back in history: a replayed webhook of an older commit changes nothing.
    if let Some(current) = current {
        let deployed_commit = if job.repo == RepoKind::Config {
            &current.config_commit
        } else {
            &current.code_commit
        };
        if pushed.is_ancestor(&job.commit, deployed_commit, log).await? == Some(true) {
            return Ok(Outcome::Skipped(format!(
                "commit {} is already deployed, or older than {deployed_commit}, which is",
                job.commit
            )));
        }
    }
    config.checkout(&config_commit, log).await?;
    code.checkout(&code_commit, log).await?;
    log.line(&format!(
        "config at {config_commit} ({}), code at {code_commit} ({})",
        config.branch(),
        code.branch()
    ));

    // Build, if the code repository is a cargo project.
    let code_dir = kept.join("code");
    let built = kept.join("target");
    if code_dir.join("Cargo.toml").is_file() {
        let sandbox = monkey.sandbox.as_ref().map_err(|e| Stop(e.clone()))?;
        sandbox.cargo_build(&code_dir, &built, log).await?;
        log.line("built");
    }
    let release = built.join("wasm32-wasip2/release");
    // Only a file inside the code tree or the build's output: the sandbox may have left a
    // symlink there that leads anywhere on the host; such a source reads as missing.
    let inside = |path: PathBuf, root: &Path| -> Option<PathBuf> {
        let real = path.canonicalize().ok()?;
        (real.starts_with(root.canonicalize().ok()?) && real.is_file()).then_some(real)
    };
    let resolve = |source: &str| -> PathBuf {
        inside(code_dir.join(source), &code_dir)
            .or_else(|| {
                inside(release.join(Path::new(source).file_name().unwrap_or_default()), &built)
            })
            .unwrap_or_else(|| code_dir.join(source))
    };
    let compiled = project::compile_with(&kept.join("config"), &resolve)?;
    if compiled.id != project {
        return Err(Stop(format!(
            "the config repository's config.yaml names project `{}`, not `{project}`",
            compiled.id
        )));
    }
    // A mapped branch's version is its functions only, served by the nodes the deployed
    // branch's config names; its own `branches:` are not read.
    let compiled = match mapped {
        Some(branch) => compiled.for_branch(branch),
        None => compiled,
    };
    log.line(&format!(
        "compiled: {} records, {} components",
        compiled.drafts.len(),
        compiled.sources.len()
    ));

    // The components first: a record never names a blob the cloud lacks.
    for (file, cid) in &compiled.sources {
        store(monkey, file, *cid).await?;
        log.line(&format!("stored {} as {cid}", file.display()));
    }
    let me =
        WriterKey::of(&monkey.keypair).ok_or_else(|| Stop("the node key is not ed25519".into()))?;
    let current_records = match mapped {
        Some(branch) => monkey.registry.list(&keys::branch_prefix(project, branch)).await?,
        None => {
            let mut records = monkey.registry.list(&format!("{}/", keys::project(project))).await?;
            for prefix in ["/domains/", "/http/"] {
                let listed = monkey.registry.list(prefix).await?;
                let claimed = |r: &Record| {
                    r.scope == compiled.id || compiled.drafts.iter().any(|d| d.key == r.key)
                };
                records.extend(listed.into_iter().filter(claimed));
            }
            records
        }
    };
    let plan = project::plan(&compiled, &current_records, &me)?;
    let mut drafts: Vec<Draft> = plan.drafts().cloned().collect();
    let mut deployed = deployed;
    deployed.branches.insert(
        job.branch.clone(),
        DeployedBranch {
            config_commit: config_commit.clone(),
            code_commit: code_commit.clone(),
            job: git::job_key(project, &job.commit, mapped),
            at: crate::patrick::unix_ms(),
        },
    );
    drafts.push(Draft {
        key: git::deployed_key(project),
        scope: project.to_string(),
        value: Some(cbor::to_vec(&deployed)?),
    });
    if !held.wait().await {
        return Err(Stop("another monkey took the job".into()));
    }
    monkey.write(drafts).await?;
    let summary = format!(
        "deployed: {} written, {} deleted, {} unchanged",
        plan.writes.len(),
        plan.deletes.len(),
        plan.unchanged
    );
    log.line(&summary);
    Ok(Outcome::Done { summary, config_commit, code_commit })
}

/// `/projects/<id>/config`, if the project has one that reads.
async fn read_config(monkey: &Monkey, project: &str) -> Result<Option<ProjectConfig>, Stop> {
    Ok(monkey
        .registry
        .get(&keys::project_config(project))
        .await?
        .and_then(|r| cbor::from_slice::<ProjectConfig>(r.value.as_deref()?).ok()))
}

/// `/projects/<id>/deployed`, or nothing deployed yet.
async fn read_deployed(monkey: &Monkey, project: &str) -> Result<Deployed, Stop> {
    Ok(monkey
        .registry
        .get(&git::deployed_key(project))
        .await?
        .and_then(|r| cbor::from_slice::<Deployed>(r.value.as_deref()?).ok())
        .unwrap_or_default())
}

/// Stores `file` in hoarder through the first hoarder node that takes it.
pub async fn store(monkey: &Monkey, file: &Path, cid: BlobId) -> Result<(), Stop> {
    let manifest = transfer::manifest_of(file).await?;
    if manifest.cid != cid {
        return Err(Stop(format!("{} changed while it was being stored", file.display())));
    }
    let nodes = monkey.handle.nodes("hoarder").await?;
    let mut last = String::from("no hoarder node is known");
    for node in nodes {
        match transfer::upload(
            &monkey.handle,
            node.peer,
            file,
            &manifest,
            DEFAULT_REPLICAS,
            &|_| {},
        )
        .await
        {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(Stop(format!("cannot store {} in hoarder: {last}", file.display())))
}
