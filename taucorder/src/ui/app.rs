//! The app: its views, its modes (normal, typing a filter, typing a command), its popups
//! (details, raw, help) and its status line; how a key press or an update from the network
//! task changes it, and how it is drawn.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use libp2p::PeerId;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Table, Tabs, Wrap};
use tau_proto::admin::PeerInfo;
use tau_proto::client::registry::RecordView;
use tau_proto::client::secrets::{NodeShare, VaultReport};
use tau_proto::hoarder::{BlobId, PinInfo};
use tau_proto::seer::NodeStatus;

use super::action::{Action, ViewKind};
use super::component::Component;
use super::fetch::{Act, Request};
use super::format::{clock, short_peer};
use super::jobs::JobsView;
use super::keymap::{self, help_lines};
use super::logs::{LogTarget, LogsView};
use super::table::TableView;
use super::tns::TnsView;
use super::views::{NodesView, vault_summary};
use crate::query::StoreRow;
use crate::usage::UsageRow;

/// What the network task tells the app.
#[derive(Debug, Clone)]
pub enum Update {
    /// Not connected; trying (again). `error` is why the last attempt failed.
    Connecting {
        /// Attempts so far.
        attempt: u32,
        /// Why the last one failed.
        error: Option<String>,
    },
    /// Joined the cloud through `entry`.
    Connected {
        /// The node taucorder joined through.
        entry: PeerId,
    },
    /// The entry node's peers.
    Peers(Result<Vec<PeerInfo>, String>),
    /// Seer's view of the nodes.
    Nodes(Result<Vec<NodeStatus>, String>),
    /// A fresh read of the registry, or why it failed.
    Tns(Result<Vec<RecordView>, String>),
    /// Hoarder's pins.
    Hoarder(Result<Vec<PinInfo>, String>),
    /// The vault's shares.
    Vault(Result<VaultReport, String>),
    /// The latest counter windows.
    Usage(Result<Vec<UsageRow>, String>),
    /// The key-value stores, from the database nodes.
    Stores(Result<Vec<StoreRow>, String>),
    /// A job's log, fetched from hoarder, or why it could not be.
    JobLog {
        /// The log's blob.
        cid: BlobId,
        /// Its text.
        log: Result<String, String>,
    },
    /// A page of log lines read from `node` for the logs view's `generation`, or why not.
    Logs {
        /// The target it was read for.
        generation: u64,
        /// The node read.
        node: PeerId,
        /// The page.
        page: Result<tau_proto::logs::LogPage, String>,
    },
    /// What an action did, or why it failed.
    Acted(Result<String, String>),
    /// A round of questions finished at this Unix time (milliseconds).
    Round {
        /// When.
        at_ms: u64,
    },
}

/// Where the connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Link {
    Connecting { attempt: u32, error: Option<String> },
    Connected { entry: PeerId },
}

/// What the keyboard is typing into.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Normal,
    Filter(String),
    Command(String),
}

/// A popup over the view.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Popup {
    Text {
        title: String,
        text: String,
        scroll: u16,
    },
    Help {
        scroll: u16,
    },
    /// An action that changes the cloud, waiting for `y`.
    Confirm {
        question: String,
        act: Act,
    },
}

/// How many views there are.
const VIEWS: usize = ViewKind::ALL.len();

/// Everything the UI shows and the state of its views; drawn by `draw`, changed only by `apply` and `update`.
pub struct App {
    cloud: String,
    view: ViewKind,
    peers: TableView<PeerInfo>,
    nodes: NodesView,
    tns: TnsView,
    hoarder: TableView<PinInfo>,
    vault: TableView<NodeShare>,
    usage: TableView<UsageRow>,
    jobs: JobsView,
    stores: TableView<StoreRow>,
    logs: LogsView,
    /// Started with `--readonly`: every action that changes the cloud is refused.
    readonly: bool,
    /// Per view, the filter in force.
    filters: [String; VIEWS],
    /// Per view, why its data could not be read last time.
    errors: [Option<String>; VIEWS],
    /// Per view, whether data has arrived.
    loaded: [bool; VIEWS],
    mode: Mode,
    popup: Option<Popup>,
    link: Link,
    updated_ms: Option<u64>,
    message: Option<String>,
    /// What the network task is asked next.
    requests: Vec<Request>,
    quit: bool,
}

impl App {
    /// A new app for the cloud named `cloud`, showing the peers view, nothing loaded yet;
    /// `readonly` refuses every action that changes the cloud.
    pub fn new(cloud: &str, readonly: bool) -> Self {
        Self {
            cloud: cloud.to_string(),
            view: ViewKind::Peers,
            peers: TableView::new("peers"),
            nodes: NodesView::default(),
            tns: TnsView::default(),
            hoarder: TableView::new("hoarder pins"),
            vault: TableView::new("vault shares"),
            usage: TableView::new("usage: latest window per function"),
            jobs: JobsView::default(),
            stores: TableView::new("key-value stores"),
            logs: LogsView::default(),
            readonly,
            filters: Default::default(),
            errors: Default::default(),
            loaded: [false; VIEWS],
            mode: Mode::Normal,
            popup: None,
            link: Link::Connecting { attempt: 0, error: None },
            updated_ms: None,
            message: None,
            requests: Vec::new(),
            quit: false,
        }
    }

    /// Whether the user asked to leave.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// What the network task should do, asked since the last call (and forgets it).
    pub fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.requests)
    }

    /// The message on the status line, if any.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The view on screen.
    pub fn view(&self) -> ViewKind {
        self.view
    }

    /// Whether the shown view has its data (the first full frame).
    pub fn view_loaded(&self) -> bool {
        self.loaded[self.view.index()]
    }

    fn component(&mut self, view: ViewKind) -> &mut dyn Component {
        match view {
            ViewKind::Peers => &mut self.peers,
            ViewKind::Nodes => &mut self.nodes,
            ViewKind::Tns => &mut self.tns,
            ViewKind::Hoarder => &mut self.hoarder,
            ViewKind::Vault => &mut self.vault,
            ViewKind::Usage => &mut self.usage,
            ViewKind::Jobs => &mut self.jobs,
            ViewKind::Stores => &mut self.stores,
            ViewKind::Logs => &mut self.logs,
        }
    }

    fn counts(&self, view: ViewKind) -> (usize, usize) {
        match view {
            ViewKind::Peers => self.peers.counts(),
            ViewKind::Nodes => self.nodes.counts(),
            ViewKind::Tns => self.tns.counts(),
            ViewKind::Hoarder => self.hoarder.counts(),
            ViewKind::Vault => self.vault.counts(),
            ViewKind::Usage => self.usage.counts(),
            ViewKind::Jobs => self.jobs.counts(),
            ViewKind::Stores => self.stores.counts(),
            ViewKind::Logs => self.logs.counts(),
        }
    }

    /// Takes what the network task found in.
    pub fn apply(&mut self, update: Update) {
        fn take<T>(
            app: &mut App,
            view: ViewKind,
            result: Result<T, String>,
            set: impl FnOnce(&mut App, T),
        ) {
            let i = view.index();
            match result {
                Ok(data) => {
                    set(app, data);
                    app.errors[i] = None;
                    app.loaded[i] = true;
                }
                Err(e) => app.errors[i] = Some(e),
            }
        }
        match update {
            Update::Connecting { attempt, error } => {
                self.link = Link::Connecting { attempt, error }
            }
            Update::Connected { entry } => self.link = Link::Connected { entry },
            Update::Peers(r) => take(self, ViewKind::Peers, r, |a, d| a.peers.set_items(d)),
            Update::Nodes(r) => take(self, ViewKind::Nodes, r, |a, d| a.nodes.set_nodes(d)),
            Update::Tns(r) => {
                // The jobs are records too: the jobs view follows the same read.
                let jobs = r.as_ref().map(|_| ()).map_err(Clone::clone);
                take(self, ViewKind::Tns, r, |a, d| {
                    a.jobs.set_records(&d);
                    a.tns.set_records(d);
                });
                take(self, ViewKind::Jobs, jobs, |_, ()| {});
            }
            Update::Hoarder(r) => take(self, ViewKind::Hoarder, r, |a, d| a.hoarder.set_items(d)),
            Update::Vault(r) => take(self, ViewKind::Vault, r, |a, report| {
                a.vault.set_summary(Some(vault_summary(&report)));
                a.vault.set_items(report.nodes);
            }),
            Update::Usage(r) => take(self, ViewKind::Usage, r, |a, d| a.usage.set_items(d)),
            Update::Stores(r) => take(self, ViewKind::Stores, r, |a, d| a.stores.set_items(d)),
            Update::JobLog { cid, log } => self.jobs.set_log(cid, log),
            Update::Logs { generation, node, page } => {
                self.logs.take(generation, node, page);
                self.loaded[ViewKind::Logs.index()] = true;
            }
            Update::Acted(result) => {
                self.message = Some(match result {
                    Ok(done) => done,
                    Err(e) => format!("failed: {e}"),
                })
            }
            Update::Round { at_ms } => self.updated_ms = Some(at_ms),
        }
    }

    /// Takes a key press in.
    pub fn handle_key(&mut self, key: KeyEvent) {
        if key.kind != KeyEventKind::Press {
            return;
        }
        self.message = None;
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return;
        }
        if let Some(Popup::Confirm { act, .. }) = &self.popup {
            let act = act.clone();
            self.popup = None;
            self.message = Some(match key.code {
                KeyCode::Char('y') => {
                    let what = act.to_string();
                    self.requests.push(Request::Act(act));
                    format!("{what}…")
                }
                _ => "cancelled: nothing changed".into(),
            });
            return;
        }
        match self.mode.clone() {
            Mode::Filter(text) => self.type_filter(key, text),
            Mode::Command(text) => self.type_command(key, text),
            Mode::Normal => {
                let action = match &self.popup {
                    Some(_) => keymap::action_for(&key),
                    None => self.component(self.view).handle_key_event(&key),
                };
                if let Some(action) = action {
                    self.update(action);
                }
            }
        }
    }

    fn type_filter(&mut self, key: KeyEvent, mut text: String) {
        match key.code {
            KeyCode::Enter => self.mode = Mode::Normal,
            KeyCode::Esc => {
                self.mode = Mode::Normal;
                self.set_filter(String::new());
            }
            KeyCode::Backspace => {
                text.pop();
                self.set_filter(text.clone());
                self.mode = Mode::Filter(text);
            }
            KeyCode::Char(c) => {
                text.push(c);
                self.set_filter(text.clone());
                self.mode = Mode::Filter(text);
            }
            _ => {}
        }
    }

    fn set_filter(&mut self, filter: String) {
        let view = self.view;
        self.component(view).set_filter(&filter);
        self.filters[view.index()] = filter;
    }

    fn type_command(&mut self, key: KeyEvent, mut text: String) {
        match key.code {
            KeyCode::Enter => {
                self.mode = Mode::Normal;
                self.run_command(text.trim());
            }
            KeyCode::Esc => self.mode = Mode::Normal,
            KeyCode::Backspace => {
                text.pop();
                self.mode = Mode::Command(text);
            }
            KeyCode::Char(c) => {
                text.push(c);
                self.mode = Mode::Command(text);
            }
            _ => {}
        }
    }

    fn run_command(&mut self, command: &str) {
        match command {
            "q" | "q!" | "quit" => self.update(Action::Quit),
            "help" | "h" => self.update(Action::Help),
            "refresh" | "r" => self.update(Action::Refresh),
            "" => {}
            logs if logs.starts_with("logs ") => {
                let what = logs["logs ".len()..].trim();
                let target = match what.parse::<PeerId>() {
                    Ok(node) => {
                        Ok(LogTarget { source: tau_proto::logs::LogSource::Node, node: Some(node) })
                    }
                    Err(_) => tau_proto::logs::LogSource::function(what)
                        .map(|source| LogTarget { source, node: None })
                        .map_err(|e| {
                            format!(":logs takes a node's peer id or PROJECT/FUNCTION: {e}")
                        }),
                };
                match target {
                    Ok(target) => self.show_logs(target),
                    Err(e) => self.message = Some(e),
                }
            }
            name => match ViewKind::from_name(name) {
                Some(view) => self.update(Action::Show(view)),
                None => {
                    self.message = Some(format!(
                        "unknown command :{name} (try :peers :nodes :tns :hoarder :vault :usage :jobs :stores :logs :help :q)"
                    ))
                }
            },
        }
    }

    /// Carries out an action.
    pub fn update(&mut self, action: Action) {
        if let Some(popup) = &mut self.popup {
            let scroll = match popup {
                Popup::Text { scroll, .. } | Popup::Help { scroll } => scroll,
                // Answered in handle_key.
                Popup::Confirm { .. } => return,
            };
            match action {
                Action::Down => *scroll = scroll.saturating_add(1),
                Action::Up => *scroll = scroll.saturating_sub(1),
                Action::PageDown => *scroll = scroll.saturating_add(10),
                Action::PageUp => *scroll = scroll.saturating_sub(10),
                Action::Top => *scroll = 0,
                Action::Quit => self.quit = true,
                Action::Back | Action::Details | Action::Raw | Action::Help => self.popup = None,
                _ => {}
            }
            return;
        }
        if action.changes_the_cloud() && self.readonly {
            self.message =
                Some("read-only: taucorder was started with --readonly and changes nothing".into());
            return;
        }
        match action {
            Action::Quit => self.quit = true,
            Action::Show(ViewKind::Logs) => {
                self.view = ViewKind::Logs;
                // The entry node's log until something else is chosen.
                if self.logs.target().is_none()
                    && let Link::Connected { entry } = &self.link
                {
                    let target =
                        LogTarget { source: tau_proto::logs::LogSource::Node, node: Some(*entry) };
                    self.show_logs(target);
                }
            }
            Action::Show(view) => self.view = view,
            Action::LogsOf => {
                match self.selected_target() {
                    Some(target) => self.show_logs(target),
                    None => self.message = Some(
                        "L shows the logs of the node selected in the nodes or peers view, or of \
                         the function selected in the usage view"
                            .into(),
                    ),
                }
            }
            Action::Drain | Action::AntiEntropy | Action::Repair => self.confirm(&action),
            Action::NextView => {
                self.view = ViewKind::ALL[(self.view.index() + 1) % ViewKind::ALL.len()];
            }
            Action::PrevView => {
                let n = ViewKind::ALL.len();
                self.view = ViewKind::ALL[(self.view.index() + n - 1) % n];
            }
            Action::Details | Action::Raw => {
                let view = self.view;
                let component = self.component(view);
                let (text, kind) = if action == Action::Details {
                    (component.details(), "details")
                } else {
                    (component.raw(), "raw (JSON)")
                };
                match text {
                    Some(text) => {
                        let title = format!(" {} {kind} (Esc closes, j/k scroll) ", view.name());
                        self.popup = Some(Popup::Text { title, text, scroll: 0 });
                    }
                    None => self.message = Some("nothing selected".into()),
                }
            }
            Action::Help => self.popup = Some(Popup::Help { scroll: 0 }),
            Action::Back => {
                if !self.filters[self.view.index()].is_empty() {
                    self.set_filter(String::new());
                }
            }
            Action::Refresh => {
                self.requests.push(Request::Refresh);
                self.message = Some("refreshing…".into());
            }
            Action::StartFilter => {
                self.mode = Mode::Filter(self.filters[self.view.index()].clone());
            }
            Action::StartCommand => self.mode = Mode::Command(String::new()),
            Action::SortNext | Action::SortReverse if self.view == ViewKind::Tns => {
                self.message = Some("the TNS tree is in key order".into());
            }
            other => {
                let view = self.view;
                self.component(view).update(&other);
            }
        }
    }

    /// Reads `target` in the logs view, and shows it.
    fn show_logs(&mut self, target: LogTarget) {
        let generation = self.logs.set_target(target.clone());
        self.requests.push(Request::Logs(generation, target));
        self.view = ViewKind::Logs;
    }

    /// What `L` reads: the selected node or function.
    fn selected_target(&self) -> Option<LogTarget> {
        let node = |node| LogTarget { source: tau_proto::logs::LogSource::Node, node: Some(node) };
        match self.view {
            ViewKind::Nodes => self.nodes.selected_peer().map(node),
            ViewKind::Peers => self.peers.selected_item().map(|p| node(p.peer_id)),
            ViewKind::Usage => self.usage.selected_item().map(|row| LogTarget {
                source: tau_proto::logs::LogSource::Function {
                    project: row.project.clone(),
                    function: row.function.clone(),
                },
                node: None,
            }),
            _ => None,
        }
    }

    /// Asks before an action that changes the cloud.
    fn confirm(&mut self, action: &Action) {
        let act = match (action, self.view) {
            (Action::Drain, ViewKind::Nodes) => self.nodes.selected_peer().map(Act::Drain),
            (Action::AntiEntropy, ViewKind::Nodes) => {
                self.nodes.selected_peer().map(Act::AntiEntropy)
            }
            (Action::Repair, ViewKind::Hoarder) => {
                self.hoarder.selected_item().map(|pin| Act::Repair(pin.cid))
            }
            _ => None,
        };
        let Some(act) = act else {
            self.message = Some(match action {
                Action::Repair => "R repairs the pin selected in the hoarder view".into(),
                _ => {
                    "D drains and A runs anti-entropy on the node selected in the nodes view".into()
                }
            });
            return;
        };
        let question =
            format!("{}?\n\n{}\n\ny: go ahead · any other key: cancel", act, act.consequence());
        self.popup = Some(Popup::Confirm { question, act });
    }

    /// Draws the whole screen.
    pub fn draw(&mut self, frame: &mut Frame<'_>) {
        let [tabs, body, status] =
            Layout::vertical([Constraint::Length(1), Constraint::Fill(1), Constraint::Length(1)])
                .areas(frame.area());
        self.draw_tabs(frame, tabs);
        self.draw_body(frame, body);
        self.draw_status(frame, status);
        match &self.popup {
            Some(Popup::Text { title, text, scroll }) => {
                let area = popup_area(body, 80, 80);
                frame.render_widget(Clear, area);
                frame.render_widget(
                    Paragraph::new(text.as_str())
                        .block(Block::bordered().title(title.clone().bold()))
                        .wrap(Wrap { trim: false })
                        .scroll((*scroll, 0)),
                    area,
                );
            }
            Some(Popup::Help { scroll }) => {
                let area = popup_area(body, 70, 90);
                frame.render_widget(Clear, area);
                let rows = help_lines()
                    .into_iter()
                    .skip(usize::from(*scroll))
                    .map(|(keys, what)| Row::new([Cell::from(keys.bold()), Cell::from(what)]));
                let table = Table::new(rows, [Constraint::Length(20), Constraint::Fill(1)]).block(
                    Block::bordered().title(" keys (Esc closes) ".bold()).title_bottom(
                        " in a filter or a command: type, Backspace, Enter keeps, Esc cancels ",
                    ),
                );
                frame.render_widget(table, area);
            }
            Some(Popup::Confirm { question, .. }) => {
                let area = popup_area(body, 60, 40);
                frame.render_widget(Clear, area);
                frame.render_widget(
                    Paragraph::new(question.as_str())
                        .block(Block::bordered().title(" confirm ".bold()).red())
                        .wrap(Wrap { trim: false }),
                    area,
                );
            }
            None => {}
        }
    }

    fn draw_tabs(&self, frame: &mut Frame<'_>, area: Rect) {
        let titles: Vec<Line<'_>> = ViewKind::ALL
            .iter()
            .enumerate()
            .map(|(i, view)| {
                let (shown, _) = self.counts(*view);
                let count = if self.loaded[i] { format!(" {shown}") } else { String::new() };
                let title = format!("{} {}{count}", i + 1, view.name());
                if self.errors[i].is_some() { Line::from(title.red()) } else { Line::from(title) }
            })
            .collect();
        // Each tab is padded by a column on each side, and divided from the next by one.
        let tabs_width: usize = titles.iter().map(|t| t.width() + 3).sum();
        let tabs = Tabs::new(titles)
            .select(self.view.index())
            .highlight_style(Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD))
            .divider("│");
        // The tabs first; the cloud's name takes what is left (at most 32 columns), shortened to
        // the name alone, or left out, when it does not fit.
        let room = usize::from(area.width).saturating_sub(tabs_width);
        let name = [format!("taucorder · {}", self.cloud), self.cloud.clone()]
            .into_iter()
            .find(|name| name.chars().count() < room.min(32));
        let width = name.as_ref().map_or(0, |n| n.chars().count() + 1) as u16;
        let [left, right] =
            Layout::horizontal([Constraint::Fill(1), Constraint::Length(width)]).areas(area);
        frame.render_widget(tabs, left);
        if let Some(name) = name {
            frame.render_widget(Line::from(name).right_aligned().bold(), right);
        }
    }

    fn draw_body(&mut self, frame: &mut Frame<'_>, area: Rect) {
        let i = self.view.index();
        if !self.loaded[i] {
            let text = match (&self.errors[i], &self.link) {
                (Some(e), _) => format!("{}: {e}", self.view.name()),
                (None, Link::Connecting { .. }) => "connecting to the cloud…".into(),
                (None, Link::Connected { .. }) => {
                    format!("asking the cloud for {}…", self.view.name())
                }
            };
            frame.render_widget(
                Paragraph::new(text)
                    .block(Block::bordered().title(format!(" {} ", self.view.name()))),
                area,
            );
            return;
        }
        let view = self.view;
        self.component(view).draw(frame, area);
    }

    fn draw_status(&self, frame: &mut Frame<'_>, area: Rect) {
        let mut spans: Vec<Span<'_>> = match &self.link {
            Link::Connecting { attempt: 0, .. } => vec!["connecting…".yellow()],
            Link::Connecting { attempt, error } => vec![
                " UNREACHABLE ".white().on_red().bold(),
                format!(
                    " {} · reconnecting (attempt {attempt})",
                    error.as_deref().unwrap_or("no answer")
                )
                .red(),
            ],
            Link::Connected { entry } => {
                let mut spans = vec![
                    " connected ".black().on_green(),
                    format!(" via {}", short_peer(entry)).into(),
                ];
                if let Some(at) = self.updated_ms {
                    spans.push(format!(" · updated {} UTC", clock(at)).into());
                }
                spans
            }
        };
        if self.readonly {
            spans.push(" · read-only".bold());
        }
        if let Some(e) = &self.errors[self.view.index()]
            && self.loaded[self.view.index()]
        {
            spans.push(format!(" · {}: {e}", self.view.name()).red());
        }
        let left = match &self.mode {
            Mode::Filter(text) => Line::from(vec!["/".bold(), text.clone().into(), "█".into()]),
            Mode::Command(text) => Line::from(vec![":".bold(), text.clone().into(), "█".into()]),
            Mode::Normal => match &self.message {
                Some(message) => Line::from(message.clone().fg(Color::Yellow)),
                None => Line::from(spans),
            },
        };
        // A message takes the whole line; otherwise the keys to start with are on the right.
        if self.mode == Mode::Normal && self.message.is_some() {
            frame.render_widget(left, area);
            return;
        }
        let [l, r] = Layout::horizontal([Constraint::Fill(1), Constraint::Length(40)]).areas(area);
        frame.render_widget(left, l);
        frame.render_widget(
            Line::from("? help  / filter  : command  q quit".dim()).right_aligned(),
            r,
        );
    }
}

/// A rectangle of `w`% by `h`% in the middle of `area`.
fn popup_area(area: Rect, w: u16, h: u16) -> Rect {
    let [_, middle, _] = Layout::vertical([
        Constraint::Percentage((100 - h) / 2),
        Constraint::Percentage(h),
        Constraint::Fill(1),
    ])
    .areas(area);
    let [_, center, _] = Layout::horizontal([
        Constraint::Percentage((100 - w) / 2),
        Constraint::Percentage(w),
        Constraint::Fill(1),
    ])
    .areas(middle);
    center
}
