//! The TNS view: the registry's key paths as a tree, and the selected record decoded beside it.
//!
//! The records are kept sorted by path segments, so that a branch's records are contiguous; the
//! tree's rows are built from them again only when the records, the filter or a fold change,
//! never per frame, and a frame builds only the rows that fit.

use std::cmp::Ordering;
use std::collections::HashSet;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use tau_proto::client::registry::RecordView;
use tau_proto::text::printable;

use super::action::Action;
use super::component::{Component, Cursor, json, yaml};
use super::format::short_id;

/// One row of the tree: a path segment, and the record at that path if there is one. The
/// path is a prefix of a record's key (`records[prefix_of].key[..end]`), so that building the
/// tree allocates no strings.
#[derive(Debug, Clone)]
struct TreeRow {
    depth: usize,
    prefix_of: usize,
    end: usize,
    record: Option<usize>,
    has_children: bool,
}

fn segments(key: &str) -> impl Iterator<Item = &str> {
    key.trim_start_matches('/').split('/')
}

/// Sorts records into the tree's order. The network task does it, so that the UI thread only
/// checks it.
pub fn sort_for_tree(records: &mut [RecordView]) {
    // Nodes list keys in byte order, which is nearly the tree's: check before sorting.
    if !records.is_sorted_by(|a, b| tree_order(&a.key, &b.key).is_le()) {
        records.sort_unstable_by(|a, b| tree_order(&a.key, &b.key));
    }
}

/// Whether `haystack` contains `needle`, ignoring ASCII case (`needle` is lowercase already);
/// allocates nothing, for a filter over many keys per keystroke.
pub fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    if !needle.is_ascii() {
        return haystack.to_lowercase().contains(needle);
    }
    h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// The order of the tree: by path segments, which is byte order with `/` below every other
/// byte (so `/a/b` comes before `/a-b`, keeping a branch's records together).
fn tree_order(a: &str, b: &str) -> Ordering {
    let f = |c: u8| if c == b'/' { 0 } else { c };
    a.bytes().map(f).cmp(b.bytes().map(f))
}

/// The registry as a tree.
#[derive(Default)]
pub struct TnsView {
    records: Vec<RecordView>,
    rows: Vec<TreeRow>,
    collapsed: HashSet<String>,
    filter: String,
    /// Records that match the filter (folded ones included).
    matched: usize,
    cursor: Cursor,
}

impl TnsView {
    /// Replaces the records (the live registry), keeping the selected path selected.
    pub fn set_records(&mut self, mut records: Vec<RecordView>) {
        sort_for_tree(&mut records);
        self.records = records;
        self.rebuild();
    }

    /// The records, sorted by path.
    pub fn records(&self) -> &[RecordView] {
        &self.records
    }

    fn path(&self, row: &TreeRow) -> &str {
        &self.records[row.prefix_of].key[..row.end]
    }

    fn label(&self, row: &TreeRow) -> &str {
        self.path(row).rsplit('/').next().unwrap_or("")
    }

    fn selected_path(&self) -> Option<String> {
        self.rows.get(self.cursor.selected).map(|r| self.path(r).to_string())
    }

    fn rebuild(&mut self) {
        let keep = self.selected_path();
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<TreeRow> = Vec::new();
        let mut prev: Vec<&str> = Vec::new();
        // The depth of a folded row whose subtree the keys are in now.
        let mut hidden_below: Option<usize> = None;
        let mut matched = 0;
        for (i, record) in self.records.iter().enumerate() {
            if !contains_ignore_case(&record.key, &needle) {
                continue;
            }
            matched += 1;
            let key = record.key.as_str();
            let lead = key.len() - key.trim_start_matches('/').len();
            let segs: Vec<&str> = segments(key).collect();
            let common = prev.iter().zip(&segs).take_while(|(a, b)| a == b).count();
            if hidden_below.is_some_and(|d| common <= d) {
                hidden_below = None;
            }
            // Where each segment ends in the key.
            let mut end = lead;
            for (depth, seg) in segs.iter().enumerate() {
                end += seg.len() + usize::from(depth > 0);
                if depth < common {
                    continue;
                }
                if hidden_below.is_some_and(|d| depth > d) {
                    break;
                }
                let folded = !self.collapsed.is_empty() && self.collapsed.contains(&key[..end]);
                rows.push(TreeRow {
                    depth,
                    prefix_of: i,
                    end,
                    record: (depth + 1 == segs.len()).then_some(i),
                    has_children: folded,
                });
                if folded {
                    hidden_below = Some(depth);
                }
            }
            prev = segs;
        }
        for i in 0..rows.len().saturating_sub(1) {
            if rows[i + 1].depth > rows[i].depth {
                rows[i].has_children = true;
            }
        }
        self.rows = rows;
        self.matched = matched;
        if let Some(at) = keep.and_then(|path| self.rows.iter().position(|r| self.path(r) == path))
        {
            self.cursor.selected = at;
        }
        self.cursor.clamp(self.rows.len());
    }

    /// How many records lie under `path` (itself included).
    fn records_under(&self, path: &str) -> usize {
        let prefix: Vec<&str> = segments(path).collect();
        let position = |r: &RecordView| -> Ordering {
            let segs: Vec<&str> = segments(&r.key).take(prefix.len()).collect();
            segs.cmp(&prefix)
        };
        let start = self.records.partition_point(|r| position(r) == Ordering::Less);
        let end = self.records.partition_point(|r| position(r) != Ordering::Greater);
        end.saturating_sub(start)
    }

    fn selected_record(&self) -> Option<&RecordView> {
        self.rows.get(self.cursor.selected).and_then(|r| r.record).map(|i| &self.records[i])
    }

    fn draw_tree(&mut self, frame: &mut Frame<'_>, area: Rect) {
        let (shown, total) = self.counts();
        let records = if total == 1 { "record" } else { "records" };
        let title = if shown == total {
            format!(" tns ({total} {records}) ")
        } else {
            format!(" tns ({shown} of {total} {records}) ")
        };
        let mut block = Block::bordered().title(title.bold());
        if !self.filter.is_empty() {
            block = block.title(Line::from(format!(" /{} ", self.filter)).right_aligned());
        }
        let window =
            self.cursor.window(usize::from(area.height.saturating_sub(2)), self.rows.len());
        let lines: Vec<Line<'_>> = window
            .map(|i| {
                let row = &self.rows[i];
                let marker = match (row.has_children, self.collapsed.contains(self.path(row))) {
                    (true, true) => "▸ ",
                    (true, false) => "▾ ",
                    (false, _) => "  ",
                };
                let style = if row.record.is_some() {
                    Style::default()
                } else {
                    Style::default().fg(Color::Blue).add_modifier(Modifier::BOLD)
                };
                let mut line = Line::from(vec![
                    Span::raw("  ".repeat(row.depth)),
                    Span::raw(marker),
                    Span::styled(printable(self.label(row)).into_owned(), style),
                ]);
                if i == self.cursor.selected {
                    line = line.patch_style(Style::default().add_modifier(Modifier::REVERSED));
                }
                line
            })
            .collect();
        frame.render_widget(Paragraph::new(lines).block(block), area);
    }

    fn draw_record(&self, frame: &mut Frame<'_>, area: Rect) {
        let block = Block::bordered().title(" record ".bold());
        let Some(row) = self.rows.get(self.cursor.selected) else {
            frame.render_widget(Paragraph::new("no records").block(block), area);
            return;
        };
        let mut lines =
            vec![Line::from(vec!["key      ".dim(), self.path(row).to_string().into()])];
        match self.selected_record() {
            Some(record) => {
                lines.push(Line::from(vec!["scope    ".dim(), record.scope.clone().into()]));
                lines.push(Line::from(vec!["version  ".dim(), record.version.to_string().into()]));
                lines.push(Line::from(vec!["writer   ".dim(), short_id(&record.writer).into()]));
                lines.push(Line::from("value".dim()));
                let value = record
                    .value
                    .as_ref()
                    .and_then(|v| serde_yaml_ng::to_string(v).ok())
                    .unwrap_or_else(|| "(none)".into());
                lines.extend(value.lines().map(|l| Line::from(format!("  {}", printable(l)))));
            }
            None => {
                let n = self.records_under(self.path(row));
                let records = if n == 1 { "record" } else { "records" };
                lines.push(Line::from(format!("a branch: {n} {records} under it")));
            }
        }
        frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), area);
    }
}

impl Component for TnsView {
    fn update(&mut self, action: &Action) {
        if self.cursor.step(action, self.rows.len()) {
            return;
        }
        match action {
            Action::Collapse => {
                let Some(row) = self.rows.get(self.cursor.selected) else { return };
                let path = self.path(row).to_string();
                if row.has_children && !self.collapsed.contains(&path) {
                    self.collapsed.insert(path);
                    self.rebuild();
                } else {
                    // Go up to the parent.
                    let depth = row.depth;
                    if let Some(parent) =
                        self.rows[..self.cursor.selected].iter().rposition(|r| r.depth < depth)
                    {
                        self.cursor.selected = parent;
                    }
                }
            }
            Action::Expand => {
                if let Some(path) = self.selected_path()
                    && self.collapsed.remove(&path)
                {
                    self.rebuild();
                }
            }
            _ => {}
        }
    }

    fn set_filter(&mut self, filter: &str) {
        if self.filter != filter {
            self.filter = filter.to_string();
            self.rebuild();
        }
    }

    fn draw(&mut self, frame: &mut Frame<'_>, area: Rect) {
        let [tree, record] =
            Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)])
                .areas(area);
        self.draw_tree(frame, tree);
        self.draw_record(frame, record);
    }

    fn details(&self) -> Option<String> {
        yaml(self.selected_record())
    }

    fn raw(&self) -> Option<String> {
        json(self.selected_record())
    }

    fn counts(&self) -> (usize, usize) {
        (self.matched, self.records.len())
    }
}

#[cfg(test)]
mod tests {
    use tau_proto::client::registry::Value;

    use super::*;

    fn record(key: &str) -> RecordView {
        RecordView {
            key: key.into(),
            scope: "operator".into(),
            version: 1,
            writer: "w".into(),
            deleted: false,
            value: Some(Value::Raw(vec![1])),
        }
    }

    fn tree(view: &TnsView) -> Vec<String> {
        view.rows
            .iter()
            .map(|r| {
                format!(
                    "{}{}{}",
                    "  ".repeat(r.depth),
                    view.label(r),
                    if r.record.is_some() { "*" } else { "" }
                )
            })
            .collect()
    }

    #[test]
    fn keys_become_a_tree_and_fold() {
        let mut view = TnsView::default();
        view.set_records(vec![
            record("/projects/p/functions/ping"),
            record("/projects/p"),
            record("/projects/p-2"),
            record("/projects/p/functions/echo"),
            record("/domains/x.tau"),
        ]);
        assert_eq!(
            tree(&view),
            [
                "domains",
                "  x.tau*",
                "projects",
                "  p*",
                "    functions",
                "      echo*",
                "      ping*",
                "  p-2*"
            ]
        );
        assert_eq!(view.records_under("/projects/p"), 3);
        assert_eq!(view.records_under("/projects"), 4);
        view.cursor.selected = 3; // p
        view.update(&Action::Collapse);
        assert_eq!(tree(&view), ["domains", "  x.tau*", "projects", "  p*", "  p-2*"]);
        assert_eq!(view.counts(), (5, 5), "folded records still count as shown");
        view.update(&Action::Collapse); // folded already: up to its parent
        assert_eq!(view.selected_path().as_deref(), Some("/projects"));
        view.cursor.selected = 3;
        view.update(&Action::Expand);
        assert_eq!(tree(&view).len(), 8);
        assert!(contains_ignore_case("/Projects/X", "projects/x"));
        assert!(!contains_ignore_case("/projects", "projects/"));
        assert!(contains_ignore_case("/Été", "été"));
        view.set_filter("ECHO");
        assert_eq!(tree(&view), ["projects", "  p", "    functions", "      echo*"]);
    }
}
