//! What a key press asks for. The key map ([`super::keymap`]) turns keys into actions; the app
//! ([`super::App`]) and its views carry them out.

/// The views, in the order of their number keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViewKind {
    /// Connected peers of the entry node.
    Peers,
    /// Every node's health and resources, as seer sees them.
    Nodes,
    /// The registry as a tree of key paths.
    Tns,
    /// Hoarder's pins.
    Hoarder,
    /// The vault's shares.
    Vault,
    /// The latest counter windows per function.
    Usage,
    /// The build jobs of git-operated projects.
    Jobs,
    /// The projects' key-value stores.
    Stores,
    /// A node's log or a function's output, followed live.
    Logs,
}

impl ViewKind {
    /// Every view, in tab order.
    pub const ALL: [ViewKind; 9] = [
        ViewKind::Peers,
        ViewKind::Nodes,
        ViewKind::Tns,
        ViewKind::Hoarder,
        ViewKind::Vault,
        ViewKind::Usage,
        ViewKind::Jobs,
        ViewKind::Stores,
        ViewKind::Logs,
    ];

    /// The view's name, as its `:` command and its tab say it.
    pub fn name(self) -> &'static str {
        match self {
            ViewKind::Peers => "peers",
            ViewKind::Nodes => "nodes",
            ViewKind::Tns => "tns",
            ViewKind::Hoarder => "hoarder",
            ViewKind::Vault => "vault",
            ViewKind::Usage => "usage",
            ViewKind::Jobs => "jobs",
            ViewKind::Stores => "stores",
            ViewKind::Logs => "logs",
        }
    }

    /// The view a `:` command names.
    pub fn from_name(name: &str) -> Option<ViewKind> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }

    /// Its position in [`ViewKind::ALL`].
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }
}

/// Something the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Leave taucorder.
    Quit,
    /// Switch to a view.
    Show(ViewKind),
    /// Show the next view (Tab).
    NextView,
    /// Show the previous view (Shift-Tab).
    PrevView,
    /// Move the selection down one row.
    Down,
    /// Move the selection up one row.
    Up,
    /// Move the selection down half a screen.
    PageDown,
    /// Move the selection up half a screen.
    PageUp,
    /// Select the first row (g, Home).
    Top,
    /// Select the last row (G, End).
    Bottom,
    /// Sort by the next column.
    SortNext,
    /// Reverse the sort order.
    SortReverse,
    /// Fold the selected branch of a tree (or go to its parent).
    Collapse,
    /// Unfold the selected branch of a tree.
    Expand,
    /// Show the selected item whole.
    Details,
    /// Show the selected item as the JSON scripts get.
    Raw,
    /// Close what is open (details, help, filter), one at a time.
    Back,
    /// Show the key map.
    Help,
    /// Ask the cloud now instead of at the next tick.
    Refresh,
    /// Start typing a filter.
    StartFilter,
    /// Start typing a `:` command.
    StartCommand,
    /// Logs: follow the newest lines, or stop following.
    Follow,
    /// Logs: freeze the screen (new lines are kept and counted), or go on.
    Pause,
    /// Logs: wrap long lines, or cut them.
    Wrap,
    /// Logs: show each line's time, or not.
    Timestamps,
    /// Show the logs of the selected node (nodes, peers) or function (usage).
    LogsOf,
    /// Drain the selected node (after a confirmation).
    Drain,
    /// Run anti-entropy on the selected node now (after a confirmation).
    AntiEntropy,
    /// Repair the selected pin now (after a confirmation).
    Repair,
}

impl Action {
    /// Whether it changes the cloud (refused with `--readonly`).
    pub fn changes_the_cloud(&self) -> bool {
        matches!(self, Action::Drain | Action::AntiEntropy | Action::Repair)
    }
}
