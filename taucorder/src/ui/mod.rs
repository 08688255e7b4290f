//! The terminal UI: the app ([`App`]), its views, the key map, and the main loop that ties a
//! terminal, key events and the network task together.
//!
//! The main loop is generic over the ratatui backend and over the stream of terminal events, so
//! that tests run the real app into a `TestBackend` with injected keys and snapshot what it
//! drew. The network runs in its own task ([`fetch::watch`]); the loop takes its updates between
//! key presses, so typing never waits on the cloud.

pub mod action;
pub mod app;
pub mod component;
pub mod fetch;
pub mod format;
pub mod jobs;
pub mod keymap;
pub mod logs;
pub mod sample;
pub mod table;
pub mod tns;
pub mod views;

use std::io;
use std::path::Path;
use std::time::Duration;

use crossterm::event::{Event, EventStream};
use futures::{Stream, StreamExt};
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::sync::mpsc;

pub use action::{Action, ViewKind};
pub use app::{App, Update};

/// How often the network task asks the cloud.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// Why the UI stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UiError {
    /// There is no terminal to draw on.
    #[error(
        "taucorder's UI needs a terminal ({0}); for scripts use its commands, such as `taucorder nodes --json`"
    )]
    NoTerminal(io::Error),
    /// Drawing or reading the terminal failed.
    #[error("the terminal failed: {0}")]
    Terminal(String),
}

/// Runs the app on `terminal` until the user quits or `events` ends: draws at once, then after
/// every key press and every batch of updates. `requests` takes what the app asks of the
/// network (a refresh, logs to follow, a confirmed action).
pub async fn run_loop<B, E>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    mut events: E,
    mut updates: mpsc::Receiver<Update>,
    requests: mpsc::Sender<fetch::Request>,
) -> Result<(), UiError>
where
    B: Backend,
    E: Stream<Item = io::Result<Event>> + Unpin,
{
    let draw = |terminal: &mut Terminal<B>, app: &mut App| {
        terminal
            .draw(|frame| app.draw(frame))
            .map(drop)
            .map_err(|e| UiError::Terminal(e.to_string()))
    };
    draw(terminal, app)?;
    let mut network = true;
    loop {
        tokio::select! {
            biased;
            update = updates.recv(), if network => match update {
                Some(update) => {
                    app.apply(update);
                    // Take everything that is waiting, then draw once.
                    while let Ok(update) = updates.try_recv() {
                        app.apply(update);
                    }
                }
                None => network = false,
            },
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) => app.handle_key(key),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(UiError::Terminal(e.to_string())),
                None => return Ok(()),
            },
        }
        if app.should_quit() {
            return Ok(());
        }
        for request in app.take_requests() {
            // A refresh already waiting is as good as a second one; the others are few (keys).
            match request {
                fetch::Request::Refresh => {
                    let _ = requests.try_send(request);
                }
                other => {
                    if requests.send(other).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        draw(terminal, app)?;
    }
}

/// Runs taucorder's UI in this terminal against the cloud at `profile`, connected as
/// `identity` (the operator's key, which logs and actions need); `readonly` refuses every
/// action that changes the cloud. The terminal is restored when it returns, on Ctrl-C (a key
/// press in raw mode) and on a panic.
pub async fn run(
    profile: &Path,
    cloud_name: &str,
    identity: Option<libp2p::identity::Keypair>,
    readonly: bool,
) -> Result<(), UiError> {
    let mut terminal = ratatui::try_init().map_err(UiError::NoTerminal)?;
    let (update_tx, update_rx) = mpsc::channel(64);
    let (request_tx, request_rx) = mpsc::channel(16);
    let network = tokio::spawn(fetch::watch(
        profile.to_path_buf(),
        identity,
        REFRESH_EVERY,
        update_tx,
        request_rx,
    ));
    let mut app = App::new(cloud_name, readonly);
    let result = run_loop(&mut terminal, &mut app, EventStream::new(), update_rx, request_tx).await;
    ratatui::restore();
    network.abort();
    result
}
