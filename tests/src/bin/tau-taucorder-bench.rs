//! `tau-taucorder-bench`: how fast taucorder shows a cloud, each figure beside a baseline
//! measured in the same run.
//!
//! 1. First frame: the real `taucorder` binary in a real pseudo-terminal against a 5-node
//!    `tau-node dev` cloud, its output read through a terminal emulator (vt100): the time from
//!    spawning it to the first frame on screen, to the first full frame (the peers view with the
//!    cloud's 4 peers), and to every view loaded. Baseline: `taucorder peers --json`, the same
//!    process start, connection and question without a UI.
//! 2. One frame with 10,000 peers and 100,000 TNS keys loaded (sample data), drawn by the real
//!    app into a 200x50 `TestBackend`, the selection moving each frame. Baselines: a frame of
//!    the same size that is one plain paragraph (what any full-screen ratatui frame costs), and
//!    a ratatui `Table` given all 10,000 rows (what taucorder avoids by building only the
//!    visible ones).
//!
//! Run by `scripts/bench taucorder`, with `tau-node` and `taucorder` (release) beside it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::pty::{Winsize, openpty};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Constraint;
use ratatui::widgets::{Paragraph, Row, Table};
use tau_proto::bench::Figure;
use tau_tests::bench::beside;
use tau_tests::harness::Result;
use taucorder::ui::sample;
use taucorder::ui::tns::sort_for_tree;
use taucorder::ui::{App, Update};

const NODES: usize = 5;
const RUNS: usize = 5;
const FRAMES: usize = 300;
const WIDTH: u16 = 200;
const HEIGHT: u16 = 50;

/// A `tau-node dev` cloud; stopped on drop.
struct DevCloud {
    child: Child,
    profile: PathBuf,
}

impl DevCloud {
    fn start(dir: &Path) -> Result<Self> {
        let mut child = Command::new(beside("tau-node")?)
            .args(["dev", "--nodes", &NODES.to_string(), "--dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        for line in BufReader::new(stdout).lines() {
            if let Some(profile) = line?.strip_prefix("ready ") {
                return Ok(Self { child, profile: PathBuf::from(profile) });
            }
        }
        Err("tau-node dev exited before it was ready".into())
    }
}

impl Drop for DevCloud {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// When each milestone of one taucorder start showed on screen.
struct Start {
    first_frame: Duration,
    full_frame: Duration,
    all_views: Duration,
}

/// Whether the tab line shows a count for every view (every view has its data).
fn all_views_loaded(screen: &str) -> bool {
    let tabs = screen.lines().next().unwrap_or("");
    ["1 peers", "2 nodes", "3 tns", "4 hoarder", "5 vault", "6 usage"].iter().all(|tab| {
        tabs.split(tab)
            .nth(1)
            .is_some_and(|rest| rest.trim_start().starts_with(|c: char| c.is_ascii_digit()))
    })
}

/// Starts taucorder on a fresh pseudo-terminal and reads its screen until every view is loaded.
fn start_taucorder(taucorder: &Path, profile: &Path) -> Result<Start> {
    let size = Winsize { ws_row: HEIGHT, ws_col: WIDTH, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = openpty(&size, None)?;
    let mut master = std::fs::File::from(pty.master);
    let mut reader = master.try_clone()?;
    let started = Instant::now();
    // setsid --ctty makes the pty the process's controlling terminal, as a login shell's is.
    let mut child = Command::new("setsid")
        .arg("--ctty")
        .arg(taucorder)
        .arg("--cloud")
        .arg(profile)
        .env("TERM", "xterm-256color")
        .stdin(Stdio::from(pty.slave.try_clone()?))
        .stdout(Stdio::from(pty.slave.try_clone()?))
        .stderr(Stdio::from(pty.slave))
        .spawn()?;
    let (bytes, chunks) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 65536];
        while let Ok(n) = reader.read(&mut buffer) {
            if n == 0 || bytes.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut parser = vt100::Parser::new(HEIGHT, WIDTH, 0);
    let (mut first_frame, mut full_frame) = (None, None);
    let deadline = started + Duration::from_secs(30);
    let all_views = loop {
        let chunk = chunks
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| {
                format!(
                    "taucorder did not load every view within 30 s:\n{}",
                    parser.screen().contents()
                )
            })?;
        let now = started.elapsed();
        parser.process(&chunk);
        let screen = parser.screen().contents();
        if first_frame.is_none() && screen.contains("taucorder · ") {
            first_frame = Some(now);
        }
        if full_frame.is_none() && screen.contains(&format!("peers ({})", NODES - 1)) {
            full_frame = Some(now);
        }
        if all_views_loaded(&screen) {
            break now;
        }
    };
    master.write_all(b"q")?;
    let waited = Instant::now();
    while child.try_wait()?.is_none() {
        if waited.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            return Err("taucorder did not quit on q".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(Start {
        first_frame: first_frame.ok_or("no first frame")?,
        full_frame: full_frame.ok_or("no full frame")?,
        all_views,
    })
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn percentile(values: &[Duration], p: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1_000.0)
}

/// `d` in milliseconds.
fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn first_frame() -> Result<Vec<String>> {
    let taucorder = beside("taucorder")?;
    let tmp = std::env::temp_dir().join(format!("tau-taucorder-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let cloud = DevCloud::start(&tmp)?;
    // Let the mesh form and every node beat once, as a running cloud would have.
    std::thread::sleep(Duration::from_secs(3));
    let mut json = Vec::new();
    let mut starts = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let out = Command::new(&taucorder)
            .args(["peers", "--json", "--cloud"])
            .arg(&cloud.profile)
            .output()?;
        json.push(t.elapsed());
        if !out.status.success() {
            return Err(format!("taucorder peers: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        starts.push(start_taucorder(&taucorder, &cloud.profile)?);
    }
    drop(cloud);
    let _ = std::fs::remove_dir_all(&tmp);
    let json = median(json);
    let first = median(starts.iter().map(|s| s.first_frame).collect());
    let full = median(starts.iter().map(|s| s.full_frame).collect());
    let all = median(starts.iter().map(|s| s.all_views).collect());
    let ratio = |d: Duration| format!("{:.2}x", d.as_secs_f64() / json.as_secs_f64());
    let baseline = "`taucorder peers --json`";
    Figure::new("taucorder", "first frame on screen", millis(first), "ms").record();
    Figure::new("taucorder", "first full frame (peers view)", millis(full), "ms")
        .beside(baseline, millis(json))
        .target("< 300 ms", full < Duration::from_millis(300))
        .record();
    Figure::new("taucorder", "every view loaded", millis(all), "ms")
        .beside(baseline, millis(json))
        .record();
    Ok(vec![
        format!(
            "First frame: taucorder in a {WIDTH}x{HEIGHT} pseudo-terminal, {NODES}-node local cloud, median of {RUNS}"
        ),
        format!("                                          taucorder    baseline      ratio"),
        format!("  first frame on screen               {:>13}", ms(first)),
        format!(
            "  first full frame (peers view)       {:>13} {:>11}   {:>7}   (target < 300 ms)",
            ms(full),
            ms(json),
            ratio(full)
        ),
        format!(
            "  every view loaded                   {:>13} {:>11}   {:>7}",
            ms(all),
            ms(json),
            ratio(all)
        ),
        "  baseline: `taucorder peers --json` (same start, connection and question, no UI)".into(),
    ])
}

fn press(app: &mut App, c: char) {
    app.handle_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
}

/// Draws `FRAMES` frames of the app's current view, moving the selection each frame.
fn frames(terminal: &mut Terminal<TestBackend>, app: &mut App) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(FRAMES);
    for i in 0..FRAMES + 20 {
        press(app, if (i / 40) % 2 == 0 { 'j' } else { 'k' });
        let t = Instant::now();
        terminal.draw(|frame| app.draw(frame))?;
        if i >= 20 {
            times.push(t.elapsed());
        }
    }
    Ok(times)
}

fn frame_render() -> Result<Vec<String>> {
    let peers = 10_000;
    let keys = 100_000;
    let mut app = App::new("bench", false);
    let mut terminal = Terminal::new(TestBackend::new(WIDTH, HEIGHT))?;
    app.apply(Update::Connected { entry: sample::peer(0) });
    app.apply(Update::Peers(Ok(sample::peers(peers))));
    app.apply(Update::Nodes(Ok(sample::nodes(NODES, 1))));
    // As the network task does: list, then sort into the tree's order; the UI builds the tree.
    let mut records = sample::records(keys);
    let t = Instant::now();
    sort_for_tree(&mut records);
    let sort_tns = t.elapsed();
    let t = Instant::now();
    app.apply(Update::Tns(Ok(records)));
    let load_tns = t.elapsed();
    app.apply(Update::Hoarder(Ok(sample::pins(1_000))));
    app.apply(Update::Vault(Ok(sample::vault(NODES))));
    app.apply(Update::Usage(Ok(sample::usage())));

    press(&mut app, '1');
    let peer_frames = frames(&mut terminal, &mut app)?;
    press(&mut app, '3');
    let tns_frames = frames(&mut terminal, &mut app)?;
    // A filter keystroke on 100,000 keys, then clearing it.
    press(&mut app, '/');
    let t = Instant::now();
    press(&mut app, 'p');
    terminal.draw(|frame| app.draw(frame))?;
    let keystroke = t.elapsed();

    // Baseline 1: a full-screen paragraph.
    let text: String = (0..HEIGHT).map(|i| format!("{:>200}\n", i)).collect();
    let mut plain = Vec::new();
    let mut base = Terminal::new(TestBackend::new(WIDTH, HEIGHT))?;
    for i in 0..FRAMES + 20 {
        let t = Instant::now();
        base.draw(|frame| {
            frame.render_widget(
                Paragraph::new(text.as_str()).scroll(((i % 2) as u16, 0)),
                frame.area(),
            )
        })?;
        if i >= 20 {
            plain.push(t.elapsed());
        }
    }
    // Baseline 2: a ratatui Table given every row.
    let all_peers = sample::peers(peers);
    let mut naive = Vec::new();
    for i in 0..FRAMES / 10 + 2 {
        let t = Instant::now();
        base.draw(|frame| {
            let rows = all_peers.iter().map(|p| {
                Row::new(vec![
                    p.peer_id.to_string(),
                    p.addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
                    p.services.join(","),
                    format!("{:?}", p.rtt_micros),
                    p.connected_secs.to_string(),
                    p.agent.clone(),
                ])
            });
            let mut state =
                ratatui::widgets::TableState::default().with_selected(Some(i * 97 % peers));
            frame.render_stateful_widget(
                Table::new(rows, [Constraint::Fill(1); 6]),
                frame.area(),
                &mut state,
            );
        })?;
        if i >= 2 {
            naive.push(t.elapsed());
        }
    }
    let plain_median = median(plain.clone());
    let ratio = |d: Duration| format!("{:.1}x", d.as_secs_f64() / plain_median.as_secs_f64());
    let row = |what: &str, times: &[Duration], target: &str| {
        let m = median(times.to_vec());
        format!(
            "  {what:<36}{:>11} {:>11}   {:>7} {:>11}   {target}",
            ms(m),
            ms(plain_median),
            ratio(m),
            ms(percentile(times, 0.99))
        )
    };
    let plain = "one full-screen paragraph";
    for (what, times, target) in [
        ("frame, peers view (10,000 rows)", &peer_frames, Some("< 5 ms")),
        ("frame, TNS view (100,000 keys)", &tns_frames, Some("< 5 ms")),
        ("frame, naive Table of all 10,000 rows", &naive, None),
    ] {
        let m = median(times.to_vec());
        let figure =
            Figure::new("taucorder", what, millis(m), "ms").beside(plain, millis(plain_median));
        match target {
            Some(target) => figure.target(target, m < Duration::from_millis(5)).record(),
            None => figure.record(),
        }
    }
    for (what, took) in [
        ("sorting 100,000 TNS records", sort_tns),
        ("building the tree of 100,000 keys", load_tns),
        ("a filter keystroke over 100,000 keys, with its frame", keystroke),
    ] {
        Figure::new("taucorder", what, millis(took), "ms").record();
    }
    Ok(vec![
        format!(
            "One frame, {WIDTH}x{HEIGHT}, 10,000 peers and 100,000 TNS keys loaded (median of {FRAMES}, selection moving)"
        ),
        "                                          frame    baseline     ratio         p99".into(),
        row("peers view (10,000 rows)", &peer_frames, "(target < 5 ms)"),
        row("TNS view (100,000 keys)", &tns_frames, "(target < 5 ms)"),
        row("naive Table of all 10,000 rows", &naive, "(what building only visible rows avoids)"),
        "  baseline: one full-screen paragraph of the same size".into(),
        format!("  sorting 100,000 TNS records (network task, once per change): {}", ms(sort_tns)),
        format!("  building their tree (UI thread, once per change):            {}", ms(load_tns)),
        format!("  a filter keystroke over 100,000 keys, with its frame:        {}", ms(keystroke)),
    ])
}

fn main() -> ExitCode {
    let mut lines = Vec::new();
    for section in [frame_render as fn() -> Result<Vec<String>>, first_frame] {
        match section() {
            Ok(section) => {
                lines.extend(section);
                lines.push(String::new());
            }
            Err(e) => {
                eprintln!("tau-taucorder-bench: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{}", lines.join("\n").trim_end());
    ExitCode::SUCCESS
}
