//! The logs view: a node's log or a function's output (from every substrate node), followed
//! live. It keeps the newest [`MAX_KEPT`] lines; a line the node's buffer let go before it was
//! read shows as a gap (`─── N lines lost here ───`), as does a node that restarted, and the
//! filter never hides a gap. Following, paused, wrapped and timestamps are toggled with keys;
//! drawing takes only the lines that fit, so a burst never holds up the keys.

use std::collections::VecDeque;

use libp2p::PeerId;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use serde::Serialize;
use tau_proto::logs::{Level, LogLine, LogPage, LogSource};
use tau_proto::text::printable;

use super::action::Action;
use super::component::Component;
use super::format::short_peer;

/// The most lines the view keeps; older ones are let go, and the title says how many.
pub const MAX_KEPT: usize = 20_000;

/// What the view reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    /// The node's own log, or a function's output.
    pub source: LogSource,
    /// The node to read: required for a node's log; for a function, `None` reads every
    /// substrate node.
    pub node: Option<PeerId>,
}

impl std::fmt::Display for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.source, &self.node) {
            (LogSource::Node, Some(node)) => write!(f, "node {node}"),
            (source, Some(node)) => write!(f, "{source} on {node}"),
            (source, None) => write!(f, "{source} on every substrate node"),
        }
    }
}

/// One line of the view.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Entry {
    Line {
        #[serde(serialize_with = "peer_id")]
        node: PeerId,
        #[serde(flatten)]
        line: LogLine,
    },
    Gap {
        #[serde(serialize_with = "peer_id")]
        node: PeerId,
        lost: u64,
    },
    Restarted {
        #[serde(serialize_with = "peer_id")]
        node: PeerId,
    },
    Note {
        text: String,
    },
}

fn peer_id<S: serde::Serializer>(peer: &PeerId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&peer.to_string())
}

impl Entry {
    /// Gaps and restarts are shown whatever the filter.
    fn always_shown(&self) -> bool {
        matches!(self, Entry::Gap { .. } | Entry::Restarted { .. })
    }

    fn matches(&self, filter: &str) -> bool {
        match self {
            Entry::Line { line, .. } => {
                line.text.to_lowercase().contains(filter)
                    || line.origin.to_lowercase().contains(filter)
                    || line.request.as_deref().is_some_and(|r| r.to_lowercase().contains(filter))
            }
            Entry::Note { text } => text.to_lowercase().contains(filter),
            _ => true,
        }
    }
}

/// The logs view.
pub struct LogsView {
    target: Option<LogTarget>,
    /// Bumped whenever the target changes: pages of an older one are not taken.
    generation: u64,
    /// Several nodes are read: each line says which.
    several: bool,
    entries: VecDeque<Entry>,
    /// The absolute number of `entries[0]`: lines let go from the front so far.
    let_go: u64,
    /// When not following: the absolute number of the last line shown.
    bottom: u64,
    follow: bool,
    /// While paused nothing moves on screen; new lines are kept and counted.
    paused: Option<u64>,
    wrap: bool,
    timestamps: bool,
    /// The filter, lowercased.
    filter: String,
    /// The last error per node, so that a node that stays down is said once.
    errors: Vec<(PeerId, String)>,
    height: usize,
    /// Entries the filter keeps, kept up to date as lines come and go.
    shown: usize,
}

impl Default for LogsView {
    fn default() -> Self {
        Self {
            target: None,
            generation: 0,
            several: false,
            entries: VecDeque::new(),
            let_go: 0,
            bottom: 0,
            follow: true,
            paused: None,
            wrap: false,
            timestamps: true,
            filter: String::new(),
            errors: Vec::new(),
            height: 10,
            shown: 0,
        }
    }
}

impl LogsView {
    /// What the view reads now, and its generation.
    pub fn target(&self) -> Option<(u64, &LogTarget)> {
        self.target.as_ref().map(|t| (self.generation, t))
    }

    /// Reads `target` from now on (the lines of the one before are cleared); its generation.
    pub fn set_target(&mut self, target: LogTarget) -> u64 {
        self.generation += 1;
        self.several = target.node.is_none();
        self.target = Some(target);
        self.entries.clear();
        self.shown = 0;
        self.errors.clear();
        self.let_go = 0;
        self.bottom = 0;
        self.follow = true;
        self.paused = None;
        self.generation
    }

    /// The absolute number after the last entry.
    fn end(&self) -> u64 {
        self.let_go + self.entries.len() as u64
    }

    fn push(&mut self, entry: Entry) {
        self.shown += usize::from(self.keeps(&entry));
        self.entries.push_back(entry);
        while self.entries.len() > MAX_KEPT {
            if let Some(first) = self.entries.pop_front() {
                self.shown -= usize::from(self.keeps(&first));
            }
            self.let_go += 1;
        }
    }

    /// Whether the filter keeps `entry`.
    fn keeps(&self, entry: &Entry) -> bool {
        self.filter.is_empty() || entry.always_shown() || entry.matches(&self.filter)
    }

    /// Takes a page read from `node` for `generation` (or why it could not be read).
    pub fn take(&mut self, generation: u64, node: PeerId, page: Result<LogPage, String>) {
        if generation != self.generation {
            return;
        }
        let page = match page {
            Ok(page) => page,
            Err(error) => {
                let known = self.errors.iter().any(|(n, e)| *n == node && *e == error);
                if !known {
                    self.errors.retain(|(n, _)| *n != node);
                    self.errors.push((node, error.clone()));
                    let text =
                        format!("{}: {} (trying again)", short_peer(&node), printable(&error));
                    self.push(Entry::Note { text });
                }
                return;
            }
        };
        self.errors.retain(|(n, _)| *n != node);
        if page.restarted {
            self.push(Entry::Restarted { node });
        }
        if page.dropped > 0 {
            self.push(Entry::Gap { node, lost: page.dropped });
        }
        for line in page.lines {
            self.push(Entry::Line { node, line });
        }
    }

    /// The entries the filter keeps at or before `at` (absolute numbers), newest first: a
    /// frame or a scroll walks only as far back as it needs, never the whole view.
    fn kept_back(&self, at: u64) -> impl Iterator<Item = u64> + '_ {
        let last = at.min(self.end().saturating_sub(1));
        (self.let_go..=last).rev().filter(|n| self.entry(*n).is_some_and(|e| self.keeps(e)))
    }

    /// The entries the filter keeps from `first` on, oldest first.
    fn kept_from(&self, first: u64) -> impl Iterator<Item = u64> + '_ {
        (first.max(self.let_go)..self.end())
            .filter(|n| self.entry(*n).is_some_and(|e| self.keeps(e)))
    }

    /// The entries the filter keeps after `at`, oldest first.
    fn kept_after(&self, at: u64) -> impl Iterator<Item = u64> + '_ {
        self.kept_from(at.saturating_add(1))
    }

    /// The absolute number of the last line on screen: the newest when following, where the
    /// view was when paused or scrolled.
    fn anchor(&self) -> u64 {
        match (self.paused, self.follow) {
            (Some(at), _) => at,
            (None, true) => self.end().saturating_sub(1),
            (None, false) => self.bottom.max(self.let_go),
        }
    }

    fn entry(&self, at: u64) -> Option<&Entry> {
        self.entries.get(at.checked_sub(self.let_go)? as usize)
    }

    fn render(&self, entry: &Entry) -> Line<'static> {
        let time = |ms: u64| {
            let secs = ms / 1000;
            format!(
                "{:02}:{:02}:{:02}.{:03} ",
                (secs / 3600) % 24,
                (secs / 60) % 60,
                secs % 60,
                ms % 1000
            )
        };
        let node = |node: &PeerId| match self.several {
            true => format!("{} ", short_peer(node)),
            false => String::new(),
        };
        match entry {
            Entry::Line { node: from, line } => {
                let mut spans = Vec::new();
                if self.timestamps {
                    spans.push(Span::from(time(line.time_ms)).dim());
                }
                if self.several {
                    spans.push(Span::from(node(from)).fg(Color::Cyan));
                }
                let level_style = match line.level {
                    Level::Error => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
                    Level::Warn => Style::default().fg(Color::Yellow),
                    Level::Info => Style::default().fg(Color::Green),
                    _ => Style::default().add_modifier(Modifier::DIM),
                };
                match &line.request {
                    Some(request) => {
                        spans.push(Span::styled(format!("{:<6} ", line.origin), level_style));
                        spans.push(Span::from(format!("{} ", printable(request))).dim());
                    }
                    None => {
                        let level = line.level.as_str().to_uppercase();
                        spans.push(Span::styled(format!("{level:<5} "), level_style));
                        spans.push(Span::from(format!("{} ", printable(&line.origin))).dim());
                    }
                }
                spans.push(Span::from(printable(&line.text).into_owned()));
                Line::from(spans)
            }
            Entry::Gap { node: from, lost } => Line::from(
                format!(
                    "─── {}{lost} lines lost here: the node's buffer let them go before they were read ───",
                    node(from)
                )
                .red()
                .bold(),
            ),
            Entry::Restarted { node: from } => Line::from(
                format!("─── {}the node restarted: its lines from then on ───", node(from))
                    .yellow()
                    .bold(),
            ),
            Entry::Note { text } => Line::from(text.clone().dim().italic()),
        }
    }

    fn title(&self) -> String {
        let target = match &self.target {
            Some(target) => target.to_string(),
            None => "nothing chosen".into(),
        };
        let mut flags = Vec::new();
        match self.paused {
            Some(at) => {
                let new = self.end().saturating_sub(at + 1);
                flags.push(format!("PAUSED, {new} new lines"));
            }
            None if self.follow => flags.push("following".into()),
            None => flags.push("scrolled (G follows)".into()),
        }
        if self.wrap {
            flags.push("wrap".into());
        }
        if self.let_go > 0 {
            flags.push(format!("{} older lines let go from the view", self.let_go));
        }
        format!(" logs: {target} · {} · f follow  p pause  w wrap  t time ", flags.join(" · "))
    }

    fn step(&mut self, rows: i64) {
        let anchor = self.anchor();
        let current = self.kept_back(anchor).next().or_else(|| self.kept_after(anchor).next());
        let Some(current) = current else { return };
        let n = rows.unsigned_abs() as usize;
        let to = match rows < 0 {
            true => self.kept_back(current).take(n + 1).last().unwrap_or(current),
            false => self.kept_after(current).take(n).last().unwrap_or(current),
        };
        self.bottom = to;
        self.paused = None;
        self.follow = rows > 0 && self.kept_after(to).next().is_none();
    }
}

impl Component for LogsView {
    fn update(&mut self, action: &Action) {
        let half = (self.height / 2).max(1) as i64;
        match action {
            Action::Up => self.step(-1),
            Action::Down => self.step(1),
            Action::PageUp => self.step(-half),
            Action::PageDown => self.step(half),
            Action::Top => {
                self.paused = None;
                self.follow = false;
                let screen = self.kept_from(self.let_go).take(self.height).last();
                self.bottom = screen.unwrap_or(self.let_go);
            }
            Action::Bottom => {
                self.paused = None;
                self.follow = true;
            }
            Action::Follow => {
                self.paused = None;
                self.follow = !self.follow;
                self.bottom = self.end().saturating_sub(1);
            }
            Action::Pause => {
                self.paused = match self.paused {
                    Some(_) => None,
                    None => Some(self.anchor()),
                };
            }
            Action::Wrap => self.wrap = !self.wrap,
            Action::Timestamps => self.timestamps = !self.timestamps,
            _ => {}
        }
    }

    fn set_filter(&mut self, filter: &str) {
        self.filter = filter.to_lowercase();
        self.shown = self.entries.iter().filter(|e| self.keeps(e)).count();
    }

    fn draw(&mut self, frame: &mut Frame<'_>, area: Rect) {
        let block = Block::bordered().title(self.title());
        let inner = block.inner(area);
        self.height = usize::from(inner.height).max(1);
        let width = usize::from(inner.width).max(1);
        let anchor = self.anchor();
        // From the anchor up, as many lines as fill the screen (wrapped lines take more rows).
        let mut lines = Vec::new();
        let mut rows = 0usize;
        for at in self.kept_back(anchor) {
            let Some(entry) = self.entry(at) else { continue };
            let line = self.render(entry);
            rows += match self.wrap {
                true => line.width().div_ceil(width).max(1),
                false => 1,
            };
            lines.push(line);
            if rows >= self.height {
                break;
            }
        }
        lines.reverse();
        let mut paragraph = Paragraph::new(lines).block(block);
        if self.wrap {
            let over = rows.saturating_sub(self.height) as u16;
            paragraph = paragraph.wrap(Wrap { trim: false }).scroll((over, 0));
        }
        if self.target.is_none() {
            paragraph = Paragraph::new(
                "choose what to read: L on a node (nodes or peers view) or a function (usage \
                 view), or :logs PEER_ID, :logs PROJECT/FUNCTION",
            )
            .block(Block::bordered().title(self.title()));
        }
        frame.render_widget(paragraph, area);
    }

    fn details(&self) -> Option<String> {
        super::component::yaml(self.entry(self.anchor()))
    }

    fn raw(&self) -> Option<String> {
        super::component::json(self.entry(self.anchor()))
    }

    fn counts(&self) -> (usize, usize) {
        (self.shown, self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, text: &str) -> LogLine {
        LogLine {
            seq,
            time_ms: 1_000 * seq,
            level: Level::Info,
            origin: "stdout".into(),
            request: Some("r1".into()),
            text: text.into(),
        }
    }

    fn page(lines: Vec<LogLine>, dropped: u64) -> LogPage {
        LogPage { next: lines.last().map_or(0, |l| l.seq + 1), lines, dropped, restarted: false }
    }

    #[test]
    fn gaps_are_kept_and_shown_whatever_the_filter() {
        let mut view = LogsView::default();
        let node = PeerId::random();
        let generation = view.set_target(LogTarget {
            source: LogSource::function("p/f").expect("valid"),
            node: Some(node),
        });
        view.take(generation, node, Ok(page(vec![line(1, "one"), line(2, "two")], 0)));
        view.take(generation, node, Ok(page(vec![line(9, "nine")], 6)));
        view.take(generation + 1, node, Ok(page(vec![line(10, "stale")], 0)));
        view.set_filter("nine");
        let mut shown: Vec<&Entry> =
            view.kept_back(u64::MAX).filter_map(|at| view.entry(at)).collect();
        shown.reverse();
        assert_eq!(shown.len(), 2, "the gap and the matching line: {shown:?}");
        assert!(matches!(shown[0], Entry::Gap { lost: 6, .. }));
        assert!(matches!(shown[1], Entry::Line { line, .. } if line.text == "nine"));
    }

    #[test]
    fn a_paused_view_stays_and_counts_new_lines_and_old_ones_are_let_go_with_a_count() {
        let mut view = LogsView::default();
        let node = PeerId::random();
        let generation = view.set_target(LogTarget { source: LogSource::Node, node: Some(node) });
        view.take(generation, node, Ok(page(vec![line(0, "a")], 0)));
        view.update(&Action::Pause);
        let lines: Vec<LogLine> = (1..=MAX_KEPT as u64 + 5).map(|i| line(i, "x")).collect();
        view.take(generation, node, Ok(page(lines, 0)));
        assert_eq!(view.entries.len(), MAX_KEPT);
        assert_eq!(view.let_go, 6);
        assert!(view.title().contains("PAUSED, 20005 new lines"), "{}", view.title());
        assert!(view.title().contains("6 older lines let go"), "{}", view.title());
        view.update(&Action::Pause);
        assert_eq!(view.anchor(), view.end() - 1, "unpaused, it follows again");
    }

    #[test]
    fn scrolling_under_a_filter_moves_by_the_lines_it_keeps() {
        let mut view = LogsView::default();
        let node = PeerId::random();
        let generation = view.set_target(LogTarget { source: LogSource::Node, node: Some(node) });
        let text = |i: u64| if i.is_multiple_of(10) { "tick" } else { "noise" };
        view.take(generation, node, Ok(page((0..100).map(|i| line(i, text(i))).collect(), 0)));
        view.set_filter("tick");
        assert_eq!(view.counts(), (10, 100));
        view.update(&Action::Up);
        assert_eq!(view.anchor(), 80, "one kept line up from the newest kept (90)");
        view.update(&Action::PageUp);
        view.update(&Action::Top);
        view.height = 3;
        view.update(&Action::Top);
        assert_eq!(view.anchor(), 20, "the first screen of kept lines ends at the third");
        view.update(&Action::Down);
        assert_eq!(view.anchor(), 30);
        assert!(!view.follow);
        for _ in 0..20 {
            view.update(&Action::Down);
        }
        assert_eq!(view.anchor(), 99, "down past the last kept line follows again");
        assert!(view.follow);
    }

    #[test]
    fn scrolling_up_stops_following_and_g_follows_again() {
        let mut view = LogsView::default();
        let node = PeerId::random();
        let generation = view.set_target(LogTarget { source: LogSource::Node, node: Some(node) });
        view.take(generation, node, Ok(page((0..50).map(|i| line(i, "x")).collect(), 0)));
        view.update(&Action::Up);
        assert!(!view.follow);
        assert_eq!(view.anchor(), 48);
        view.take(generation, node, Ok(page(vec![line(50, "y")], 0)));
        assert_eq!(view.anchor(), 48, "a scrolled view stays");
        view.update(&Action::Bottom);
        assert_eq!(view.anchor(), 50);
    }
}
