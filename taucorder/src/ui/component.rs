//! What every view does: take keys and actions, draw itself, and hand out the selected item
//! for the details and raw popups.

use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::Rect;

use super::action::Action;
use super::keymap;

/// A view of the app.
pub trait Component {
    /// The action a key press asks for (the shared key map unless a view says otherwise).
    fn handle_key_event(&mut self, key: &KeyEvent) -> Option<Action> {
        keymap::action_for(key)
    }

    /// Carries out a navigation or sort action; others are the app's.
    fn update(&mut self, action: &Action);

    /// Keeps only the rows that match `filter` (case-insensitive; empty keeps all).
    fn set_filter(&mut self, filter: &str);

    /// Draws the view into `area`.
    fn draw(&mut self, frame: &mut Frame<'_>, area: Rect);

    /// The selected item for people (YAML), if any.
    fn details(&self) -> Option<String>;

    /// The selected item as scripts get it (JSON), if any.
    fn raw(&self) -> Option<String>;

    /// Rows shown (after the filter) and rows loaded.
    fn counts(&self) -> (usize, usize);
}

/// A selection in a list of rows and the window of rows that fits on screen: what every view
/// moves with the navigation keys, and what keeps a frame to the rows it shows.
#[derive(Debug, Clone, Copy)]
pub struct Cursor {
    /// Index of the selected row, in the order shown.
    pub selected: usize,
    offset: usize,
    height: usize,
}

impl Default for Cursor {
    fn default() -> Self {
        Self { selected: 0, offset: 0, height: 10 }
    }
}

impl Cursor {
    /// Moves the selection for a navigation action over `len` rows; false for other actions.
    pub fn step(&mut self, action: &Action, len: usize) -> bool {
        let last = len.saturating_sub(1);
        let half = (self.height / 2).max(1);
        self.selected = match action {
            Action::Down => (self.selected + 1).min(last),
            Action::Up => self.selected.saturating_sub(1),
            Action::PageDown => (self.selected + half).min(last),
            Action::PageUp => self.selected.saturating_sub(half),
            Action::Top => 0,
            Action::Bottom => last,
            _ => return false,
        };
        true
    }

    /// Keeps the selection within `len` rows.
    pub fn clamp(&mut self, len: usize) {
        self.selected = self.selected.min(len.saturating_sub(1));
    }

    /// The rows to draw when `height` rows fit: the window scrolls just enough to show the
    /// selection.
    pub fn window(&mut self, height: usize, len: usize) -> std::ops::Range<usize> {
        self.height = height.max(1);
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + self.height {
            self.offset = self.selected + 1 - self.height;
        }
        self.offset = self.offset.min(len.saturating_sub(self.height));
        self.offset..(self.offset + self.height).min(len)
    }
}

/// An item as YAML, for the details popup.
pub fn yaml<T: serde::Serialize>(item: Option<&T>) -> Option<String> {
    item.and_then(|item| serde_yaml_ng::to_string(item).ok())
}

/// An item as pretty JSON, for the raw popup.
pub fn json<T: serde::Serialize>(item: Option<&T>) -> Option<String> {
    item.and_then(|item| serde_json::to_string_pretty(item).ok())
}
