//! The list views: what each column of peers, nodes, pins, vault shares and usage shows, and
//! the nodes view's sparklines.

use std::collections::{HashMap, VecDeque};

use libp2p::PeerId;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Block, Sparkline};
use serde::Serialize;
use tau_proto::admin::PeerInfo;
use tau_proto::client::secrets::{NodeShare, VaultReport};
use tau_proto::hoarder::{PinInfo, PinState};
use tau_proto::seer::NodeStatus;

use super::action::Action;
use super::component::Component;
use super::format::{bytes, clock, duration, millis, percent, short_id, short_peer, sparkline};
use super::table::{Column, Rowable, SortKey, TableView, column};
use crate::query::StoreRow;
use crate::usage::UsageRow;

use Constraint::{Fill, Length, Min};

const BAD: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
const WARN: Style = Style::new().fg(Color::Yellow);

impl Rowable for PeerInfo {
    fn columns() -> &'static [Column] {
        const C: &[Column] = &[
            column("PEER", Length(12)),
            column("ADDRESSES", Fill(2)),
            column("SERVICES", Fill(2)),
            column("RTT", Length(9)),
            column("CONNECTED", Length(10)),
            column("AGENT", Fill(1)),
        ];
        C
    }

    fn cells(&self) -> Vec<String> {
        vec![
            short_peer(&self.peer_id),
            self.addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
            self.services.join(","),
            self.rtt_micros.map_or("-".into(), millis),
            duration(self.connected_secs),
            self.agent.clone(),
        ]
    }

    fn sort_key(&self, column: usize) -> SortKey {
        match column {
            3 => SortKey::Num(self.rtt_micros.map_or(f64::MAX, |r| r as f64)),
            4 => SortKey::Num(self.connected_secs as f64),
            0 => SortKey::Text(self.peer_id.to_string()),
            _ => SortKey::Text(self.cells().swap_remove(column)),
        }
    }

    fn id(&self) -> String {
        self.peer_id.to_string()
    }
}

/// A node as the nodes view shows it: seer's status, and its CPU over the last minutes.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    /// What seer says.
    #[serde(flatten)]
    pub status: NodeStatus,
    /// CPU use of the last samples, oldest first.
    #[serde(skip)]
    pub cpu: Vec<f64>,
}

impl NodeRow {
    fn memory_percent(&self) -> f64 {
        let r = &self.status.heartbeat.resources;
        if r.memory_total == 0 { 0.0 } else { r.memory_used as f64 * 100.0 / r.memory_total as f64 }
    }

    fn disk_used(&self) -> u64 {
        let r = &self.status.heartbeat.resources;
        r.disk_total.saturating_sub(r.disk_available)
    }
}

impl Rowable for NodeRow {
    fn columns() -> &'static [Column] {
        const C: &[Column] = &[
            column("NODE", Length(12)),
            column("HEALTH", Length(9)),
            column("VERSION", Length(8)),
            column("SERVICES", Min(16)),
            column("CPU", Length(5)),
            column("CPU (last minutes)", Length(20)),
            column("MEM", Length(5)),
            column("DISK", Length(5)),
            column("LOAD", Length(5)),
            column("REQS", Length(5)),
            column("LOCATION", Length(10)),
            column("BEAT", Length(7)),
        ];
        C
    }

    fn cells(&self) -> Vec<String> {
        let beat = &self.status.heartbeat;
        let r = &beat.resources;
        vec![
            short_peer(&beat.peer),
            if self.status.healthy { "healthy" } else { "UNHEALTHY" }.into(),
            beat.version.clone(),
            beat.services.join(","),
            format!("{:.0}%", r.cpu_percent),
            sparkline(&self.cpu, 20, 100.0),
            format!("{:.0}%", self.memory_percent()),
            percent(self.disk_used(), r.disk_total),
            format!("{:.2}", r.load[0]),
            beat.active_requests.to_string(),
            beat.location.as_ref().map_or("-".into(), |l| l.region.clone()),
            duration(self.status.age_ms / 1_000),
        ]
    }

    fn sort_key(&self, column: usize) -> SortKey {
        let r = &self.status.heartbeat.resources;
        match column {
            1 => SortKey::Num(f64::from(u8::from(self.status.healthy))),
            4 | 5 => SortKey::Num(f64::from(r.cpu_percent)),
            6 => SortKey::Num(self.memory_percent()),
            7 => SortKey::Num(self.disk_used() as f64 / r.disk_total.max(1) as f64),
            8 => SortKey::Num(r.load[0]),
            9 => SortKey::Num(self.status.heartbeat.active_requests as f64),
            11 => SortKey::Num(self.status.age_ms as f64),
            _ => SortKey::Text(self.cells().swap_remove(column)),
        }
    }

    fn id(&self) -> String {
        self.status.heartbeat.peer.to_string()
    }

    fn style(&self) -> Style {
        if self.status.healthy { Style::default() } else { BAD }
    }
}

/// The samples kept per node: five minutes of one-second heartbeats.
const HISTORY: usize = 300;

/// One sample of a node's resources.
#[derive(Debug, Clone, Copy)]
struct Sample {
    beat: (u64, u64),
    cpu: f64,
    memory: f64,
    load: f64,
}

/// The nodes view: the table, and the selected node's CPU, memory and load over time.
pub struct NodesView {
    table: TableView<NodeRow>,
    history: HashMap<PeerId, VecDeque<Sample>>,
}

impl Default for NodesView {
    fn default() -> Self {
        Self { table: TableView::new("nodes"), history: HashMap::new() }
    }
}

impl NodesView {
    /// Takes seer's latest answer in; a new heartbeat adds a sample to its node's history.
    pub fn set_nodes(&mut self, nodes: Vec<NodeStatus>) {
        let rows = nodes
            .into_iter()
            .map(|status| {
                let beat = &status.heartbeat;
                let r = &beat.resources;
                let history = self.history.entry(beat.peer).or_default();
                let id = (beat.started_ms, beat.seq);
                if history.back().is_none_or(|s| s.beat != id) {
                    let memory = if r.memory_total == 0 {
                        0.0
                    } else {
                        r.memory_used as f64 * 100.0 / r.memory_total as f64
                    };
                    history.push_back(Sample {
                        beat: id,
                        cpu: f64::from(r.cpu_percent),
                        memory,
                        load: r.load[0],
                    });
                    if history.len() > HISTORY {
                        history.pop_front();
                    }
                }
                let cpu = history.iter().map(|s| s.cpu).collect();
                NodeRow { status, cpu }
            })
            .collect();
        self.table.set_items(rows);
    }

    /// The selected node's peer id.
    pub fn selected_peer(&self) -> Option<PeerId> {
        self.table.selected_item().map(|row| row.status.heartbeat.peer)
    }

    /// The nodes, as loaded.
    pub fn rows(&self) -> &[NodeRow] {
        self.table.items()
    }

    fn draw_history(&self, frame: &mut Frame<'_>, area: Rect) {
        let Some(node) = self.table.selected_item() else { return };
        let beat = &node.status.heartbeat;
        let samples: Vec<Sample> =
            self.history.get(&beat.peer).map(|h| h.iter().copied().collect()).unwrap_or_default();
        let width = usize::from(area.width.saturating_sub(2));
        let tail = &samples[samples.len().saturating_sub(width)..];
        let [cpu, memory, load] = Layout::vertical([Fill(1); 3]).areas(area);
        let series = |f: fn(&Sample) -> f64, scale: f64| -> Vec<u64> {
            tail.iter().map(|s| (f(s) * scale).round().max(0.0) as u64).collect()
        };
        let last = tail.last();
        let chart = |title: String, data: Vec<u64>, max: Option<u64>, color: Color| {
            let mut spark = Sparkline::default()
                .block(Block::bordered().title(title))
                .data(data)
                .style(Style::default().fg(color));
            if let Some(max) = max {
                spark = spark.max(max);
            }
            spark
        };
        let who = short_peer(&beat.peer);
        frame.render_widget(
            chart(
                format!(" {who} CPU {:.0}% ", last.map_or(0.0, |s| s.cpu)),
                series(|s| s.cpu, 1.0),
                Some(100),
                Color::Green,
            ),
            cpu,
        );
        frame.render_widget(
            chart(
                format!(" memory {:.0}% ", last.map_or(0.0, |s| s.memory)),
                series(|s| s.memory, 1.0),
                Some(100),
                Color::Cyan,
            ),
            memory,
        );
        frame.render_widget(
            chart(
                format!(" load {:.2} ", last.map_or(0.0, |s| s.load)),
                series(|s| s.load, 100.0),
                None,
                Color::Magenta,
            ),
            load,
        );
    }
}

impl Component for NodesView {
    fn update(&mut self, action: &Action) {
        self.table.update(action);
    }

    fn set_filter(&mut self, filter: &str) {
        self.table.set_filter(filter);
    }

    fn draw(&mut self, frame: &mut Frame<'_>, area: Rect) {
        if area.height < 16 {
            self.table.draw(frame, area);
            return;
        }
        let [table, history] = Layout::vertical([Fill(1), Length(12)]).areas(area);
        self.table.draw(frame, table);
        self.draw_history(frame, history);
    }

    fn details(&self) -> Option<String> {
        self.table.details()
    }

    fn raw(&self) -> Option<String> {
        self.table.raw()
    }

    fn counts(&self) -> (usize, usize) {
        self.table.counts()
    }
}

impl Rowable for PinInfo {
    fn columns() -> &'static [Column] {
        const C: &[Column] = &[
            column("CID", Length(12)),
            column("SIZE", Length(10)),
            column("REPLICAS", Length(9)),
            column("FACTOR", Length(7)),
            column("STATE", Length(16)),
            column("HOLDERS", Fill(1)),
        ];
        C
    }

    fn cells(&self) -> Vec<String> {
        vec![
            short_id(&self.cid.to_string()),
            bytes(self.size),
            format!("{}/{}", self.holders.len(), self.target),
            self.factor.to_string(),
            match self.state {
                PinState::Ok => "ok",
                PinState::UnderReplicated => "UNDER-REPLICATED",
                PinState::Repairing => "repairing",
            }
            .into(),
            self.holders.iter().map(short_peer).collect::<Vec<_>>().join(" "),
        ]
    }

    fn sort_key(&self, column: usize) -> SortKey {
        match column {
            0 => SortKey::Text(self.cid.to_string()),
            1 => SortKey::Num(self.size as f64),
            2 => SortKey::Num(self.holders.len() as f64 / f64::from(self.target.max(1))),
            3 => SortKey::Num(f64::from(self.factor)),
            _ => SortKey::Text(self.cells().swap_remove(column)),
        }
    }

    fn id(&self) -> String {
        self.cid.to_string()
    }

    fn style(&self) -> Style {
        match self.state {
            PinState::Ok => Style::default(),
            PinState::UnderReplicated => BAD,
            PinState::Repairing => WARN,
        }
    }
}

impl Rowable for NodeShare {
    fn columns() -> &'static [Column] {
        const C: &[Column] = &[
            column("NODE", Length(12)),
            column("SHARE", Length(6)),
            column("KEY SET", Length(12)),
            column("THRESHOLD", Length(10)),
            column("SECRETS", Length(8)),
            column("STATE", Fill(1)),
        ];
        C
    }

    fn cells(&self) -> Vec<String> {
        match &self.info {
            Some(info) => vec![
                short_id(&self.node),
                info.index.to_string(),
                short_id(&info.keyset),
                format!("t={} n={}", info.threshold, info.shares),
                info.secrets.to_string(),
                "answering".into(),
            ],
            None => vec![
                short_id(&self.node),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("NOT ANSWERING: {}", self.error.as_deref().unwrap_or("no answer")),
            ],
        }
    }

    fn sort_key(&self, column: usize) -> SortKey {
        match (column, &self.info) {
            (1, Some(info)) => SortKey::Num(f64::from(info.index)),
            (4, Some(info)) => SortKey::Num(info.secrets as f64),
            (0, _) => SortKey::Text(self.node.clone()),
            _ => SortKey::Text(self.cells().swap_remove(column)),
        }
    }

    fn id(&self) -> String {
        self.node.clone()
    }

    fn style(&self) -> Style {
        if self.info.is_some() { Style::default() } else { BAD }
    }
}

/// The line above the vault table: the key set, and whether secrets can be read right now.
pub fn vault_summary(report: &VaultReport) -> Line<'static> {
    let keyset = report.keyset.as_deref().map_or("none published".into(), short_id);
    match report.needed {
        Some(needed) => {
            let verdict = if report.readable {
                " secrets readable ".fg(Color::Green).bold()
            } else {
                " SECRETS NOT READABLE ".fg(Color::Red).bold()
            };
            Line::from(vec![
                format!(
                    " key set {keyset}: reading takes {needed} shares, {} reachable ·",
                    report.reachable
                )
                .into(),
                verdict,
            ])
        }
        None => Line::from(format!(" key set {keyset} ")),
    }
}

impl Rowable for UsageRow {
    fn columns() -> &'static [Column] {
        const C: &[Column] = &[
            column("PROJECT", Fill(1)),
            column("FUNCTION", Fill(1)),
            column("WINDOW (UTC)", Length(16)),
            column("CALLS", Length(8)),
            column("ERRORS", Length(7)),
            column("WALL", Length(10)),
            column("AVG", Length(10)),
            column("CPU", Length(10)),
            column("NODES", Length(5)),
            column("TOTAL CALLS", Length(11)),
            column("SINCE", Length(8)),
        ];
        C
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.project.clone(),
            self.function.clone(),
            format!("{} +{}", clock(self.window_start_ms), duration(self.window_ms / 1_000)),
            self.usage.invocations.to_string(),
            self.usage.errors.to_string(),
            millis(self.usage.wall_micros),
            millis(self.usage.wall_micros / self.usage.invocations.max(1)),
            millis(self.usage.cpu_micros),
            self.nodes.to_string(),
            self.total_invocations.to_string(),
            clock(self.since_ms),
        ]
    }

    fn sort_key(&self, column: usize) -> SortKey {
        match column {
            2 => SortKey::Num(self.window_start_ms as f64),
            3 => SortKey::Num(self.usage.invocations as f64),
            4 => SortKey::Num(self.usage.errors as f64),
            5 => SortKey::Num(self.usage.wall_micros as f64),
            6 => SortKey::Num(self.usage.wall_micros as f64 / self.usage.invocations.max(1) as f64),
            7 => SortKey::Num(self.usage.cpu_micros as f64),
            8 => SortKey::Num(self.nodes as f64),
            9 => SortKey::Num(self.total_invocations as f64),
            10 => SortKey::Num(self.since_ms as f64),
            _ => SortKey::Text(self.cells().swap_remove(column)),
        }
    }

    fn id(&self) -> String {
        format!("{}/{}", self.project, self.function)
    }

    fn style(&self) -> Style {
        if self.usage.errors > 0 { WARN } else { Style::default() }
    }
}

impl Rowable for StoreRow {
    fn columns() -> &'static [Column] {
        const C: &[Column] = &[
            column("PROJECT", Length(20)),
            column("STORE", Length(20)),
            column("KEYS", Length(10)),
            column("SIZE", Length(10)),
            column("HOLDERS", Length(8)),
            column("NODES", Fill(1)),
        ];
        C
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.project.clone(),
            self.store.clone(),
            self.keys.to_string(),
            bytes(self.bytes),
            self.nodes.len().to_string(),
            self.nodes.iter().map(short_peer).collect::<Vec<_>>().join(" "),
        ]
    }

    fn sort_key(&self, column: usize) -> SortKey {
        match column {
            2 => SortKey::Num(self.keys as f64),
            3 => SortKey::Num(self.bytes as f64),
            4 => SortKey::Num(self.nodes.len() as f64),
            _ => SortKey::Text(self.cells().swap_remove(column)),
        }
    }

    fn id(&self) -> String {
        format!("{}/{}", self.project, self.store)
    }
}
