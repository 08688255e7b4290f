//! `tau-node jobs`: the build jobs of git-operated projects, and their logs.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use tau_proto::cbor;
use tau_proto::git::{self, Job, JobState};
use tau_proto::tns::Record;

use super::output::{self, ServiceArgs};
use super::tns::tns_node;

/// Build jobs: one per pushed commit of a git-operated project, newest first.
///
/// A job is queued by patrick when a git host's push webhook checks out, taken by one monkey
/// (a `ci` node) under a lease, and ends done (deployed), failed (nothing that serves changed)
/// or skipped (an older commit, or one a newer push superseded).
#[derive(Debug, Args)]
pub(crate) struct Jobs {
    #[command(subcommand)]
    command: Option<JobsCommand>,
    /// Only this project's jobs.
    #[arg(long)]
    project: Option<String>,
    #[command(flatten)]
    args: ServiceArgs,
}

#[derive(Debug, Subcommand)]
enum JobsCommand {
    /// Print a job's log (the monkey's steps and the build's own output).
    Logs {
        /// The job: its commit (or a unique prefix of it), or its key `/jobs/<project>/<commit>`.
        job: String,
    },
}

/// One job as listed.
#[derive(Debug, Serialize)]
struct Row {
    key: String,
    project: String,
    commit: String,
    repo: String,
    branch: String,
    /// queued, building, done, failed or skipped.
    state: &'static str,
    queued_at: u64,
    /// The state's details.
    detail: JobState,
    #[serde(skip)]
    job: Job,
}

impl Jobs {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        if let Some(project) = &self.project
            && !tau_proto::tns::keys::is_name(project)
        {
            bail!("`{project}` is not a project id");
        }
        let client = output::connect(&self.args.cloud).await?;
        let node = tns_node(&client, self.args.node).await?;
        let prefix = match &self.project {
            Some(project) => format!("{}{project}/", git::JOBS),
            None => git::JOBS.to_string(),
        };
        let records = client.tns_list(node, &prefix, false).await?;
        let mut rows: Vec<Row> = records.into_iter().filter_map(row).collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.job.queued_at));
        match self.command {
            None => self.list(&rows),
            Some(JobsCommand::Logs { job }) => {
                let found: Vec<&Row> = rows
                    .iter()
                    .filter(|r| r.key == job || (job.len() >= 4 && r.job.commit.starts_with(&job)))
                    .collect();
                let row = match found.as_slice() {
                    [row] => *row,
                    [] => bail!("no job {job}{}", in_project(&self.project)),
                    _ => bail!("{job} names {} jobs: give more of the commit", found.len()),
                };
                let log = match &row.job.state {
                    JobState::Done(f) | JobState::Failed(f) => f.log,
                    _ => None,
                };
                let Some(cid) = log else {
                    bail!("{} has no log yet ({})", row.key, row.job.state.name());
                };
                let text = client
                    .fetch_blob(cid, git::MAX_LOG)
                    .await
                    .with_context(|| format!("cannot fetch the log {cid}"))?;
                print!("{}", String::from_utf8_lossy(&text));
                Ok(())
            }
        }
    }

    fn list(&self, rows: &[Row]) -> anyhow::Result<()> {
        if self.args.json {
            return output::print_json(&rows);
        }
        if rows.is_empty() {
            println!("no jobs{}", in_project(&self.project));
            return Ok(());
        }
        let now = tau_node::patrick::unix_ms();
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let (monkey, took, what) = match &r.job.state {
                    JobState::Queued => (String::new(), ago(now, r.job.queued_at), String::new()),
                    JobState::Building { monkey, started_at, attempt, .. } => (
                        short(monkey),
                        seconds(now.saturating_sub(*started_at)),
                        format!("attempt {attempt}"),
                    ),
                    JobState::Done(f) | JobState::Failed(f) => (
                        short(&f.monkey),
                        seconds(f.finished_at.saturating_sub(f.started_at)),
                        f.summary.clone(),
                    ),
                    JobState::Skipped { reason } => (String::new(), String::new(), reason.clone()),
                };
                vec![
                    r.project.clone(),
                    r.job.commit.chars().take(12).collect(),
                    r.job.repo.to_string(),
                    r.job.branch.clone(),
                    r.job.state.name().to_string(),
                    monkey,
                    took,
                    what,
                ]
            })
            .collect();
        println!(
            "{}",
            output::table(
                &["PROJECT", "COMMIT", "REPO", "BRANCH", "STATE", "MONKEY", "TIME", "WHAT"],
                &table
            )
        );
        Ok(())
    }
}

fn in_project(project: &Option<String>) -> String {
    project.as_ref().map(|p| format!(" in project {p}")).unwrap_or_default()
}

fn row(record: Record) -> Option<Row> {
    let (project, _) = git::parse_job_key(&record.key)?;
    let job: Job = cbor::from_slice(record.value.as_deref()?).ok()?;
    Some(Row {
        project: project.to_string(),
        key: record.key.clone(),
        commit: job.commit.clone(),
        repo: job.repo.to_string(),
        branch: job.branch.clone(),
        state: job.state.name(),
        queued_at: job.queued_at,
        detail: job.state.clone(),
        job,
    })
}

fn short(peer: &str) -> String {
    let tail: String = peer.chars().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
    format!("…{tail}")
}

fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn ago(now: u64, at: u64) -> String {
    format!("{} ago", seconds(now.saturating_sub(at)))
}
