//! A sortable, filterable table that builds only the rows it shows, shared by the views whose
//! data is a list: peers, nodes, hoarder pins, vault shares, usage.

use std::cmp::Ordering;

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Row, Table, TableState};
use serde::Serialize;
use tau_proto::text::printable;

use super::action::Action;
use super::component::{Component, Cursor, json, yaml};
use super::tns::contains_ignore_case;

/// A column: its header and its width.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// The header, also the key `s` sorts by.
    pub name: &'static str,
    /// How wide it is.
    pub width: Constraint,
}

/// Shorthand for a column.
pub const fn column(name: &'static str, width: Constraint) -> Column {
    Column { name, width }
}

/// What a column sorts by.
#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    /// Text, compared as is.
    Text(String),
    /// Sorted numerically.
    Num(f64),
}

impl SortKey {
    fn compare(&self, other: &SortKey) -> Ordering {
        match (self, other) {
            (SortKey::Num(a), SortKey::Num(b)) => a.total_cmp(b),
            (SortKey::Text(a), SortKey::Text(b)) => a.cmp(b),
            (SortKey::Num(_), SortKey::Text(_)) => Ordering::Less,
            (SortKey::Text(_), SortKey::Num(_)) => Ordering::Greater,
        }
    }
}

/// An item a table can show.
pub trait Rowable: Serialize {
    /// Header and width of every column, in order.
    fn columns() -> &'static [Column];
    /// The cells, one per column.
    fn cells(&self) -> Vec<String>;
    /// What column `column` sorts by.
    fn sort_key(&self, column: usize) -> SortKey;
    /// A stable identity, so that the selection stays on its item across refreshes.
    fn id(&self) -> String;
    /// How the row stands out (unhealthy, under-replicated).
    fn style(&self) -> Style {
        Style::default()
    }
}

/// A table of `T`s.
pub struct TableView<T> {
    title: &'static str,
    items: Vec<T>,
    /// Indices of the items shown, in the order shown.
    shown: Vec<usize>,
    filter: String,
    sort: Option<(usize, bool)>,
    cursor: Cursor,
    /// A line above the table (the vault's summary).
    summary: Option<Line<'static>>,
}

impl<T: Rowable> TableView<T> {
    /// An empty table titled `title`; rows come with `set`.
    pub fn new(title: &'static str) -> Self {
        Self {
            title,
            items: Vec::new(),
            shown: Vec::new(),
            filter: String::new(),
            sort: None,
            cursor: Cursor::default(),
            summary: None,
        }
    }

    /// Replaces the items, keeping the selection on the same item if it is still there.
    pub fn set_items(&mut self, items: Vec<T>) {
        let selected = self.selected_item().map(Rowable::id);
        self.items = items;
        self.rebuild(selected);
    }

    /// Sets the line shown above the table.
    pub fn set_summary(&mut self, summary: Option<Line<'static>>) {
        self.summary = summary;
    }

    /// The item under the cursor, in the order shown (filtered and sorted).
    pub fn selected_item(&self) -> Option<&T> {
        self.shown.get(self.cursor.selected).map(|&i| &self.items[i])
    }

    /// The items, as loaded.
    pub fn items(&self) -> &[T] {
        &self.items
    }

    fn rebuild(&mut self, keep: Option<String>) {
        let needle = self.filter.to_lowercase();
        self.shown = (0..self.items.len())
            .filter(|&i| {
                needle.is_empty()
                    || self.items[i].cells().iter().any(|c| contains_ignore_case(c, &needle))
            })
            .collect();
        if let Some((column, descending)) = self.sort {
            let items = &self.items;
            self.shown.sort_by(|&a, &b| {
                let order = items[a].sort_key(column).compare(&items[b].sort_key(column));
                if descending { order.reverse() } else { order }
            });
        }
        if let Some(at) =
            keep.and_then(|id| self.shown.iter().position(|&i| self.items[i].id() == id))
        {
            self.cursor.selected = at;
        }
        self.cursor.clamp(self.shown.len());
    }

    /// Draws the table into `area`, building only the rows that fit.
    pub fn draw_table(&mut self, frame: &mut Frame<'_>, area: Rect) {
        let columns = T::columns();
        let (shown, total) = self.counts();
        let mut title = format!(" {} ({shown}", self.title);
        if shown != total {
            title.push_str(&format!(" of {total}"));
        }
        title.push_str(") ");
        let mut block = Block::bordered().title(title.bold());
        if !self.filter.is_empty() {
            block = block.title(Line::from(format!(" /{} ", self.filter)).right_aligned());
        }
        if let Some(summary) = &self.summary {
            block = block.title_bottom(summary.clone());
        }
        // Border (2) and header (1) take three lines.
        let window =
            self.cursor.window(usize::from(area.height.saturating_sub(3)), self.shown.len());
        let header = Row::new(columns.iter().enumerate().map(|(i, c)| {
            let mark = match self.sort {
                Some((column, false)) if column == i => "▲",
                Some((column, true)) if column == i => "▼",
                _ => "",
            };
            Cell::from(format!("{}{mark}", c.name))
        }))
        .style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
        let first = window.start;
        let rows = self.shown[window].iter().map(|&i| {
            let item = &self.items[i];
            // What a node sent is shown escaped: ratatui drops control characters, but not
            // bidirectional overrides, and a dropped character hides what the value holds.
            let cells = item.cells().into_iter().map(|c| printable(&c).into_owned());
            Row::new(cells).style(item.style())
        });
        let table = Table::new(rows, columns.iter().map(|c| c.width))
            .header(header)
            .block(block)
            .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
        let mut state = TableState::default();
        if !self.shown.is_empty() {
            state.select(Some(self.cursor.selected - first));
        }
        frame.render_stateful_widget(table, area, &mut state);
    }
}

impl<T: Rowable> Component for TableView<T> {
    fn update(&mut self, action: &Action) {
        if self.cursor.step(action, self.shown.len()) {
            return;
        }
        match action {
            Action::SortNext => {
                let next = match self.sort {
                    None => 0,
                    Some((column, _)) => (column + 1) % T::columns().len(),
                };
                self.sort = Some((next, false));
                let keep = self.selected_item().map(Rowable::id);
                self.rebuild(keep);
            }
            Action::SortReverse => {
                let (column, descending) = self.sort.unwrap_or((0, false));
                self.sort = Some((column, !descending));
                let keep = self.selected_item().map(Rowable::id);
                self.rebuild(keep);
            }
            _ => {}
        }
    }

    fn set_filter(&mut self, filter: &str) {
        if self.filter != filter {
            self.filter = filter.to_string();
            let keep = self.selected_item().map(Rowable::id);
            self.rebuild(keep);
        }
    }

    fn draw(&mut self, frame: &mut Frame<'_>, area: Rect) {
        self.draw_table(frame, area);
    }

    fn details(&self) -> Option<String> {
        yaml(self.selected_item())
    }

    fn raw(&self) -> Option<String> {
        json(self.selected_item())
    }

    fn counts(&self) -> (usize, usize) {
        (self.shown.len(), self.items.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Item(String, f64);

    impl Rowable for Item {
        fn columns() -> &'static [Column] {
            const COLUMNS: &[Column] =
                &[column("NAME", Constraint::Length(8)), column("N", Constraint::Length(4))];
            COLUMNS
        }
        fn cells(&self) -> Vec<String> {
            vec![self.0.clone(), self.1.to_string()]
        }
        fn sort_key(&self, column: usize) -> SortKey {
            match column {
                0 => SortKey::Text(self.0.clone()),
                _ => SortKey::Num(self.1),
            }
        }
        fn id(&self) -> String {
            self.0.clone()
        }
    }

    fn table() -> TableView<Item> {
        let mut t = TableView::new("items");
        t.set_items(vec![Item("b".into(), 10.0), Item("a".into(), 2.0), Item("c".into(), 5.0)]);
        t
    }

    fn names(t: &TableView<Item>) -> Vec<&str> {
        t.shown.iter().map(|&i| t.items[i].0.as_str()).collect()
    }

    #[test]
    fn sorting_and_filtering_keep_the_selection() {
        let mut t = table();
        t.update(&Action::Down); // "a"
        t.update(&Action::SortNext); // by name
        assert_eq!(names(&t), ["a", "b", "c"]);
        assert_eq!(t.selected_item().map(|i| i.0.as_str()), Some("a"));
        t.update(&Action::SortNext); // by number
        t.update(&Action::SortReverse);
        assert_eq!(names(&t), ["b", "c", "a"]);
        t.set_filter("C");
        assert_eq!(names(&t), ["c"]);
        assert_eq!(t.counts(), (1, 3));
        t.set_filter("");
        t.update(&Action::Bottom);
        t.set_items(vec![Item("a".into(), 1.0), Item("z".into(), 0.0)]);
        assert_eq!(t.selected_item().map(|i| i.0.as_str()), Some("a"), "the item stays selected");
    }
}
