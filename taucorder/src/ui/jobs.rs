//! The jobs view: the build jobs of git-operated projects, newest first (read from the registry
//! taucorder already lists: `/jobs/<project>/<commit>`), and each ended job's log (fetched from
//! hoarder by the network task) in its details.

use std::collections::HashMap;

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use serde::Serialize;
use tau_proto::client::registry::{RecordView, Value};
use tau_proto::git::{self, Job, JobState};
use tau_proto::hoarder::BlobId;

use super::action::Action;
use super::component::{Component, json, yaml};
use super::format::{clock, short_id};
use super::table::{Column, Rowable, SortKey, TableView, column};

use Constraint::{Fill, Length};

/// The most lines of a log the details show: the end, where a compiler's error is.
const LOG_LINES: usize = 400;

/// One job.
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    /// `/jobs/<project>/<commit>[.<branch>]`.
    pub key: String,
    /// Its project.
    pub project: String,
    /// The job as its record holds it.
    #[serde(flatten)]
    pub job: Job,
}

impl JobRow {
    /// The jobs among `records` (tombstones and records that do not decode left out), newest
    /// first.
    pub fn from_records(records: &[RecordView]) -> Vec<JobRow> {
        let mut rows: Vec<JobRow> = records
            .iter()
            .filter(|r| !r.deleted)
            .filter_map(|r| {
                let (project, _) = git::parse_job_key(&r.key)?;
                let Some(Value::Job(job)) = &r.value else { return None };
                Some(JobRow { key: r.key.clone(), project: project.to_string(), job: *job.clone() })
            })
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.job.queued_at));
        rows
    }

    /// How long it ran, once it ended, milliseconds.
    fn took_ms(&self) -> Option<u64> {
        match &self.job.state {
            JobState::Done(f) | JobState::Failed(f) => {
                Some(f.finished_at.saturating_sub(f.started_at))
            }
            _ => None,
        }
    }

    /// Its log's blob, once it ended.
    pub fn log(&self) -> Option<BlobId> {
        match &self.job.state {
            JobState::Done(f) | JobState::Failed(f) => f.log,
            _ => None,
        }
    }
}

impl Rowable for JobRow {
    fn columns() -> &'static [Column] {
        const C: &[Column] = &[
            column("PROJECT", Fill(1)),
            column("COMMIT", Length(12)),
            column("REPO", Length(6)),
            column("BRANCH", Length(10)),
            column("STATE", Length(8)),
            column("MONKEY", Length(12)),
            column("TOOK", Length(8)),
            column("QUEUED", Length(8)),
            column("WHAT", Fill(3)),
        ];
        C
    }

    fn cells(&self) -> Vec<String> {
        let (monkey, what) = match &self.job.state {
            JobState::Queued => (String::new(), String::new()),
            JobState::Building { monkey, attempt, .. } => {
                (short_id(monkey), format!("attempt {attempt}"))
            }
            JobState::Done(f) | JobState::Failed(f) => (short_id(&f.monkey), f.summary.clone()),
            JobState::Skipped { reason } => (String::new(), reason.clone()),
        };
        vec![
            self.project.clone(),
            self.job.commit.chars().take(12).collect(),
            self.job.repo.to_string(),
            self.job.branch.clone(),
            self.job.state.name().to_string(),
            monkey,
            self.took_ms().map_or("-".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0)),
            clock(self.job.queued_at),
            what,
        ]
    }

    fn sort_key(&self, column: usize) -> SortKey {
        match column {
            6 => SortKey::Num(self.took_ms().map_or(-1.0, |ms| ms as f64)),
            7 => SortKey::Num(self.job.queued_at as f64),
            _ => SortKey::Text(self.cells().swap_remove(column)),
        }
    }

    fn id(&self) -> String {
        self.key.clone()
    }

    fn style(&self) -> Style {
        match self.job.state {
            JobState::Failed(_) => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            JobState::Building { .. } | JobState::Queued => Style::new().fg(Color::Yellow),
            _ => Style::default(),
        }
    }
}

/// The jobs table, and the logs fetched so far (or why one could not be).
pub struct JobsView {
    table: TableView<JobRow>,
    logs: HashMap<BlobId, Result<String, String>>,
}

impl Default for JobsView {
    fn default() -> Self {
        Self { table: TableView::new("jobs: newest first"), logs: HashMap::new() }
    }
}

impl JobsView {
    /// Takes a fresh read of the registry in.
    pub fn set_records(&mut self, records: &[RecordView]) {
        let rows = JobRow::from_records(records);
        // A log no job names any more is dropped.
        self.logs.retain(|cid, _| rows.iter().any(|r| r.log() == Some(*cid)));
        self.table.set_items(rows);
    }

    /// Takes a fetched log in.
    pub fn set_log(&mut self, cid: BlobId, log: Result<String, String>) {
        self.logs.insert(cid, log);
    }

    /// The jobs, as loaded.
    pub fn rows(&self) -> &[JobRow] {
        self.table.items()
    }
}

impl Component for JobsView {
    fn update(&mut self, action: &Action) {
        self.table.update(action);
    }

    fn set_filter(&mut self, filter: &str) {
        self.table.set_filter(filter);
    }

    fn draw(&mut self, frame: &mut Frame<'_>, area: Rect) {
        self.table.draw(frame, area);
    }

    /// The job, then the end of its log.
    fn details(&self) -> Option<String> {
        let row = self.table.selected_item()?;
        let mut text = yaml(Some(row))?;
        let log = match (row.log(), row.log().and_then(|cid| self.logs.get(&cid))) {
            (None, _) => "no log yet: the job has not ended".to_string(),
            (Some(cid), None) => format!("log {cid}: being fetched"),
            (Some(cid), Some(Err(e))) => format!("log {cid}: cannot fetch it: {e}"),
            (Some(_), Some(Ok(log))) => {
                let lines: Vec<&str> = log.lines().collect();
                let skipped = lines.len().saturating_sub(LOG_LINES);
                let mut shown = String::new();
                if skipped > 0 {
                    shown.push_str(&format!(
                        "({skipped} lines above; `tau-node jobs logs {}` prints it all)\n",
                        row.job.commit
                    ));
                }
                shown.push_str(&lines[skipped..].join("\n"));
                shown
            }
        };
        text.push_str("log:\n");
        text.push_str(&log);
        Some(text)
    }

    fn raw(&self) -> Option<String> {
        json(self.table.selected_item())
    }

    fn counts(&self) -> (usize, usize) {
        self.table.counts()
    }
}
