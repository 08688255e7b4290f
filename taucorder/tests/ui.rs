//! Snapshot tests of the terminal UI: the real app and main loop, fed fixed sample data and
//! injected key presses, drawn into ratatui's `TestBackend`; insta compares each screen with
//! the one committed under `tests/snapshots/`.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use taucorder::ui::fetch::{Act, Request};
use taucorder::ui::sample::{self, NOW_MS};
use taucorder::ui::{App, Update, run_loop};
use tokio::sync::mpsc;

/// Key presses: characters as typed, `<Enter>`, `<Esc>`, `<Down>` for named keys.
fn keys(spec: &str) -> Vec<KeyEvent> {
    let mut out = Vec::new();
    let mut rest = spec;
    while let Some(c) = rest.chars().next() {
        if c == '<'
            && let Some(end) = rest.find('>')
        {
            let code = match &rest[1..end] {
                "Enter" => KeyCode::Enter,
                "Esc" => KeyCode::Esc,
                "Down" => KeyCode::Down,
                "Up" => KeyCode::Up,
                "Tab" => KeyCode::Tab,
                "Backspace" => KeyCode::Backspace,
                other => panic!("no key <{other}>"),
            };
            out.push(KeyEvent::new(code, KeyModifiers::NONE));
            rest = &rest[end + 1..];
            continue;
        }
        let modifiers =
            if c.is_ascii_uppercase() { KeyModifiers::SHIFT } else { KeyModifiers::NONE };
        out.push(KeyEvent::new(KeyCode::Char(c), modifiers));
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The sample cloud as the network task would report it: connected, 30 rounds of heartbeats
/// (for the sparklines), and one answer to every other question.
fn sample_updates() -> Vec<Update> {
    let mut updates = vec![Update::Connected { entry: sample::peer(0) }];
    for round in 1..=30 {
        updates.push(Update::Nodes(Ok(sample::nodes(5, round))));
    }
    updates.extend([
        Update::Peers(Ok(sample::peers(4))),
        Update::Tns(Ok(sample::records(40))),
        Update::Hoarder(Ok(sample::pins(12))),
        Update::Vault(Ok(sample::vault(4))),
        Update::Usage(Ok(sample::usage())),
        Update::Stores(Ok(sample::stores())),
        Update::Round { at_ms: NOW_MS },
    ]);
    updates
}

/// Runs the app's main loop over `updates` then `keys`, and returns the last screen drawn.
fn screen_with(updates: Vec<Update>, spec: &str) -> (TestBackend, App) {
    let (screen, app, _) = run_app(updates, spec);
    (screen, app)
}

/// [`screen_with`], and whether the loop asked the network task for a refresh.
fn run_app(updates: Vec<Update>, spec: &str) -> (TestBackend, App, bool) {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let mut terminal = Terminal::new(TestBackend::new(120, 30)).expect("a test terminal");
        let mut app = App::new("sample", false);
        let (tx, rx) = mpsc::channel(updates.len().max(1));
        for update in updates {
            tx.try_send(update).expect("room for every update");
        }
        drop(tx);
        let (refresh, mut refreshes) = mpsc::channel(1);
        let events = futures::stream::iter(keys(spec).into_iter().map(|k| Ok(Event::Key(k))));
        run_loop(&mut terminal, &mut app, events, rx, refresh)
            .await
            .expect("the loop ends cleanly");
        let refreshed = matches!(refreshes.try_recv(), Ok(taucorder::ui::fetch::Request::Refresh));
        (terminal.backend().clone(), app, refreshed)
    })
}

fn screen(spec: &str) -> TestBackend {
    screen_with(sample_updates(), spec).0
}

#[test]
fn peers_view() {
    insta::assert_snapshot!(screen(""));
}

#[test]
fn nodes_view_shows_health_and_sparklines() {
    let screen = screen("2");
    insta::assert_snapshot!(screen);
}

#[test]
fn tns_view_shows_the_tree_and_the_selected_record() {
    // Only the ping functions, and the last of them selected: its decoded record beside.
    insta::assert_snapshot!(screen("3/functions/ping<Enter>G"));
}

#[test]
fn tns_branches_fold() {
    // Fold /domains and /http, then /projects/example; a second h goes up to /projects.
    insta::assert_snapshot!(screen("3hjhjjhh"));
}

#[test]
fn hoarder_view_marks_under_replicated_pins() {
    insta::assert_snapshot!(screen("4"));
}

#[test]
fn vault_view_says_whether_secrets_are_readable() {
    insta::assert_snapshot!(screen(":vault<Enter>"));
}

#[test]
fn usage_view() {
    insta::assert_snapshot!(screen("6"));
}

#[test]
fn stores_view_lists_each_store_with_its_holders() {
    insta::assert_snapshot!(screen(":stores<Enter>"));
}

/// The sample cloud with build jobs among its records, and the logs of the first two.
fn updates_with_jobs() -> Vec<Update> {
    let mut records = sample::records(40);
    records.extend(sample::jobs());
    let mut updates = sample_updates();
    updates.push(Update::Tns(Ok(records)));
    for i in 0..2 {
        let log = sample::job_log(i);
        let cid = tau_proto::hoarder::BlobId::of(log.as_bytes());
        updates.push(Update::JobLog { cid, log: Ok(log) });
    }
    updates
}

#[test]
fn jobs_view_lists_every_state_newest_first() {
    let (screen, _) = screen_with(updates_with_jobs(), "7");
    insta::assert_snapshot!(screen);
}

#[test]
fn a_failed_jobs_details_end_with_its_log() {
    // The second newest is building, then skipped, then the failed one.
    let (screen, _) = screen_with(updates_with_jobs(), ":jobs<Enter>jjj<Enter>");
    insta::assert_snapshot!(screen);
}

#[test]
fn filter_keeps_matching_rows() {
    insta::assert_snapshot!(screen("4/under<Enter>"));
}

#[test]
fn sort_by_size_descending() {
    // s: by CID, s: by size, S: descending.
    insta::assert_snapshot!(screen("4ssS"));
}

#[test]
fn enter_shows_details_and_esc_goes_back() {
    insta::assert_snapshot!("details", screen("4jjj<Enter>"));
    // Esc closes the popup, a second Esc clears the filter: back to the whole table, with the
    // selection still on the pin it was on (the first under-replicated one, the fourth row).
    assert_eq!(screen("4/under<Enter><Enter><Esc><Esc>"), screen("4jjj"));
    assert_ne!(screen("4jjj"), screen("4"));
}

#[test]
fn y_shows_the_raw_record() {
    insta::assert_snapshot!(screen("3/example/functions/echo<Enter>Gy"));
}

#[test]
fn help_is_the_key_map() {
    insta::assert_snapshot!(screen("?"));
}

#[test]
fn unknown_commands_are_named() {
    insta::assert_snapshot!(screen(":nope<Enter>"));
}

#[test]
fn unreachable_cloud_shows_in_the_status_line() {
    let mut updates = sample_updates();
    updates.push(Update::Connecting {
        attempt: 3,
        error: Some("no bootstrap node answered within 5s".into()),
    });
    insta::assert_snapshot!(screen_with(updates, "").0);
}

#[test]
fn before_the_first_answer_it_says_so() {
    let (screen, app) = screen_with(vec![], "");
    assert!(!app.view_loaded());
    insta::assert_snapshot!(screen);
}

#[test]
fn quit_and_refresh_keys() {
    let (_, app) = screen_with(sample_updates(), "jq");
    assert!(app.should_quit());
    let (_, app) = screen_with(sample_updates(), ":q<Enter>");
    assert!(app.should_quit());
    let (_, app, refreshed) = run_app(sample_updates(), "j");
    assert!(!app.should_quit());
    assert!(!refreshed, "no refresh without r");
    let (screen, _, refreshed) = run_app(sample_updates(), "r");
    assert!(refreshed, "r asks the network task at once");
    assert!(format!("{screen}").contains("refreshing…"));
    let (_, _, refreshed) = run_app(sample_updates(), ":refresh<Enter>");
    assert!(refreshed);
}

#[test]
fn navigation_stays_in_bounds() {
    // Far past the last row and back above the first: the selection stops at the ends.
    let down = "j".repeat(50);
    let (bottom, _) = screen_with(sample_updates(), &format!("4{down}"));
    let (end, _) = screen_with(sample_updates(), "4G");
    assert_eq!(bottom, end);
    let (top, _) = screen_with(sample_updates(), &format!("4G{}", "k".repeat(50)));
    let (home, _) = screen_with(sample_updates(), "4");
    assert_eq!(top, home);
}

/// The app fed the sample cloud, then `spec`'s keys, without the main loop: what it asks of
/// the network task is left in it ([`App::take_requests`]).
fn app_after(readonly: bool, spec: &str) -> App {
    let mut app = App::new("sample", readonly);
    for update in sample_updates() {
        app.apply(update);
    }
    for key in keys(spec) {
        app.handle_key(key);
    }
    app
}

fn draw(app: &mut App) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(120, 30)).expect("a test terminal");
    terminal.draw(|frame| app.draw(frame)).expect("drawn");
    terminal.backend().clone()
}

#[test]
fn logs_view_follows_the_entry_node_and_shows_gaps_as_gaps() {
    use tau_proto::logs::{Level, LogLine, LogPage};
    let mut app = app_after(false, "9");
    let requests = app.take_requests();
    let Some(Request::Logs(generation, target)) = requests.first() else {
        panic!("9 asks for the entry node's log: {requests:?}");
    };
    assert_eq!(target.node, Some(sample::peer(0)));
    let line = |seq: u64, level, text: &str| LogLine {
        seq,
        time_ms: NOW_MS + seq * 1000,
        level,
        origin: "tau_node::hoarder".into(),
        request: None,
        text: text.into(),
    };
    let page = |lines: Vec<LogLine>, dropped| LogPage {
        next: lines.last().map_or(0, |l| l.seq + 1),
        lines,
        dropped,
        restarted: false,
    };
    let node = sample::peer(0);
    app.apply(Update::Logs {
        generation: *generation,
        node,
        page: Ok(page(vec![line(1, Level::Info, "node started"), line(2, Level::Warn, "slow")], 0)),
    });
    app.apply(Update::Logs {
        generation: *generation,
        node,
        page: Ok(page(vec![line(40, Level::Error, "disk \u{1b}[2Jfull")], 37)),
    });
    // A page for an older target is not taken.
    app.apply(Update::Logs {
        generation: generation + 7,
        node,
        page: Ok(page(vec![line(41, Level::Info, "not this one")], 0)),
    });
    insta::assert_snapshot!(draw(&mut app));
}

#[test]
fn an_action_asks_first_and_goes_only_on_y() {
    let peer = |app: &App| match app.message() {
        Some(m) => m.to_string(),
        None => String::new(),
    };
    // n (or any key but y) cancels: nothing asked of the network.
    let mut app = app_after(false, "2Dn");
    assert!(app.take_requests().is_empty());
    assert_eq!(peer(&app), "cancelled: nothing changed");
    // The question, then y: the drain goes to the network task.
    let mut app = app_after(false, "2D");
    let question = format!("{}", draw(&mut app));
    assert!(question.contains("drain node") && question.contains("y: go ahead"), "{question}");
    app.handle_key(KeyEvent::new(KeyCode::Char('y'), KeyModifiers::NONE));
    let requests = app.take_requests();
    assert!(matches!(requests.as_slice(), [Request::Act(Act::Drain(_))]), "y drains: {requests:?}");
    // R in the hoarder view repairs the selected pin; A in the nodes view runs anti-entropy.
    let mut app = app_after(false, "4Ry");
    assert!(matches!(app.take_requests().as_slice(), [Request::Act(Act::Repair(_))]));
    let mut app = app_after(false, "2Ay");
    assert!(matches!(app.take_requests().as_slice(), [Request::Act(Act::AntiEntropy(_))]));
    // Outside their views they say where they work.
    let mut app = app_after(false, "1D");
    assert!(app.take_requests().is_empty());
    assert!(peer(&app).contains("nodes view"), "{}", peer(&app));
}

#[test]
fn readonly_refuses_every_action_and_asks_nothing() {
    for spec in ["2D", "2A", "4R"] {
        let mut app = app_after(true, spec);
        assert!(app.take_requests().is_empty(), "{spec}");
        assert_eq!(
            app.message(),
            Some("read-only: taucorder was started with --readonly and changes nothing"),
            "{spec}"
        );
        // No question was asked, so a y after it does nothing either.
        app.handle_key(KeyEvent::new(KeyCode::Char('y'), KeyModifiers::NONE));
        assert!(app.take_requests().is_empty(), "{spec}y");
    }
    let mut app = app_after(true, "2");
    assert!(format!("{}", draw(&mut app)).contains("read-only"), "the status line says so");
}
