//! The key map: one table that both turns key presses into [`Action`]s and writes the help
//! screen, so the two cannot disagree.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::action::{Action, ViewKind};

/// A key, as the map names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable character (Shift included: `G` is `Char('G')`).
    Char(char),
    /// Control and a letter.
    Ctrl(char),
    /// A named key: arrows, Enter, Esc, Tab, Page Up/Down, Home, End.
    Code(KeyCode),
}

impl Key {
    /// Whether a key press is this key.
    pub fn matches(self, event: &KeyEvent) -> bool {
        let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
        match (self, event.code) {
            (Key::Char(c), KeyCode::Char(pressed)) => !ctrl && c == pressed,
            (Key::Ctrl(c), KeyCode::Char(pressed)) => ctrl && c == pressed.to_ascii_lowercase(),
            (Key::Code(code), pressed) => code == pressed,
            _ => false,
        }
    }

    /// How the help screen writes the key.
    pub fn label(self) -> String {
        match self {
            Key::Char(c) => c.to_string(),
            Key::Ctrl(c) => format!("Ctrl-{c}"),
            Key::Code(code) => match code {
                KeyCode::Up => "↑".into(),
                KeyCode::Down => "↓".into(),
                KeyCode::Left => "←".into(),
                KeyCode::Right => "→".into(),
                KeyCode::PageUp => "PgUp".into(),
                KeyCode::PageDown => "PgDn".into(),
                KeyCode::BackTab => "Shift-Tab".into(),
                other => other.to_string(),
            },
        }
    }
}

/// Keys, what they do, and how the help screen explains it.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The keys (any of them).
    pub keys: &'static [Key],
    /// What they do.
    pub action: Action,
    /// The help screen's words for it.
    pub help: &'static str,
}

const fn bind(keys: &'static [Key], action: Action, help: &'static str) -> Binding {
    Binding { keys, action, help }
}

use Key::{Char, Code, Ctrl};

/// Every binding of the normal mode, in the help screen's order.
pub const BINDINGS: &[Binding] = &[
    bind(&[Char('1')], Action::Show(ViewKind::Peers), "peers view (also :peers)"),
    bind(&[Char('2')], Action::Show(ViewKind::Nodes), "nodes view (also :nodes)"),
    bind(&[Char('3')], Action::Show(ViewKind::Tns), "TNS view (also :tns)"),
    bind(&[Char('4')], Action::Show(ViewKind::Hoarder), "hoarder view (also :hoarder)"),
    bind(&[Char('5')], Action::Show(ViewKind::Vault), "vault view (also :vault)"),
    bind(&[Char('6')], Action::Show(ViewKind::Usage), "usage view (also :usage)"),
    bind(&[Char('7')], Action::Show(ViewKind::Jobs), "build jobs view (also :jobs)"),
    bind(&[Char('8')], Action::Show(ViewKind::Stores), "key-value stores view (also :stores)"),
    bind(
        &[Char('9')],
        Action::Show(ViewKind::Logs),
        "logs view (also :logs, :logs PEER, :logs P/F)",
    ),
    bind(&[Code(KeyCode::Tab)], Action::NextView, "next view"),
    bind(&[Code(KeyCode::BackTab)], Action::PrevView, "previous view"),
    bind(&[Char('j'), Code(KeyCode::Down)], Action::Down, "down one row"),
    bind(&[Char('k'), Code(KeyCode::Up)], Action::Up, "up one row"),
    bind(&[Ctrl('d'), Code(KeyCode::PageDown)], Action::PageDown, "down half a screen"),
    bind(&[Ctrl('u'), Code(KeyCode::PageUp)], Action::PageUp, "up half a screen"),
    bind(&[Char('g'), Code(KeyCode::Home)], Action::Top, "first row"),
    bind(&[Char('G'), Code(KeyCode::End)], Action::Bottom, "last row"),
    bind(&[Char('s')], Action::SortNext, "sort by the next column"),
    bind(&[Char('S')], Action::SortReverse, "reverse the sort order"),
    bind(&[Char('h'), Code(KeyCode::Left)], Action::Collapse, "TNS: fold a branch"),
    bind(&[Char('l'), Code(KeyCode::Right)], Action::Expand, "TNS: unfold a branch"),
    bind(&[Code(KeyCode::Enter)], Action::Details, "details of the selected row"),
    bind(&[Char('y')], Action::Raw, "the selected row as JSON (what --json prints)"),
    bind(&[Char('/')], Action::StartFilter, "filter rows (Enter keeps it, Esc clears it)"),
    bind(&[Char(':')], Action::StartCommand, "command: :peers :nodes :tns ... :help :q"),
    bind(&[Char('r')], Action::Refresh, "ask the cloud now"),
    bind(&[Char('L')], Action::LogsOf, "logs of the selected node or function"),
    bind(&[Char('f')], Action::Follow, "logs: follow the newest lines, or stop"),
    bind(&[Char('p')], Action::Pause, "logs: pause (lines are kept) or go on"),
    bind(&[Char('w')], Action::Wrap, "logs: wrap long lines, or cut them"),
    bind(&[Char('t')], Action::Timestamps, "logs: show times, or not"),
    bind(&[Char('D')], Action::Drain, "nodes: drain the selected node (asks first)"),
    bind(
        &[Char('A')],
        Action::AntiEntropy,
        "nodes: anti-entropy on the selected node now (asks first)",
    ),
    bind(&[Char('R')], Action::Repair, "hoarder: repair the selected pin now (asks first)"),
    bind(&[Char('?')], Action::Help, "this help"),
    bind(&[Code(KeyCode::Esc)], Action::Back, "close details, help or filter"),
    bind(&[Char('q'), Ctrl('c')], Action::Quit, "quit"),
];

/// The action a key press asks for in the normal mode.
pub fn action_for(event: &KeyEvent) -> Option<Action> {
    BINDINGS.iter().find(|b| b.keys.iter().any(|k| k.matches(event))).map(|b| b.action.clone())
}

/// The help screen's lines: keys, then what they do.
pub fn help_lines() -> Vec<(String, &'static str)> {
    BINDINGS
        .iter()
        .map(|b| (b.keys.iter().map(|k| k.label()).collect::<Vec<_>>().join(" / "), b.help))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn keys_map_to_actions() {
        assert_eq!(action_for(&press(KeyCode::Char('j'), KeyModifiers::NONE)), Some(Action::Down));
        assert_eq!(action_for(&press(KeyCode::Down, KeyModifiers::NONE)), Some(Action::Down));
        assert_eq!(
            action_for(&press(KeyCode::Char('G'), KeyModifiers::SHIFT)),
            Some(Action::Bottom)
        );
        assert_eq!(
            action_for(&press(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(
            action_for(&press(KeyCode::Char('d'), KeyModifiers::CONTROL)),
            Some(Action::PageDown)
        );
        assert_eq!(action_for(&press(KeyCode::Char('x'), KeyModifiers::NONE)), None);
    }

    #[test]
    fn no_key_is_bound_twice() {
        let keys: Vec<Key> = BINDINGS.iter().flat_map(|b| b.keys.iter().copied()).collect();
        for (i, a) in keys.iter().enumerate() {
            assert!(!keys[i + 1..].contains(a), "{a:?} is bound twice");
        }
    }

    #[test]
    fn help_names_every_binding() {
        let help = help_lines();
        assert_eq!(help.len(), BINDINGS.len());
        assert!(help.iter().any(|(keys, what)| keys == "q / Ctrl-c" && *what == "quit"));
    }
}
