//! The node's recent log lines and its functions' output, kept in bounded buffers and served
//! over the admin protocol ([`tau_proto::logs`]: `tau-node logs`, taucorder's Logs view).
//!
//! - The node's own log: [`layer`] is a `tracing` layer that copies every event the node logs
//!   (at the level its filter lets through) into one buffer of [`NODE_LINES`] lines.
//! - Functions: substrate hands each invocation a [`FunctionLog`] for its stdout and stderr;
//!   every line lands in that function's buffer ([`FUNCTION_LINES`] lines, [`FUNCTION_BYTES`]
//!   bytes), tagged with the request and the time. At most [`MAX_FUNCTIONS`] functions have a
//!   buffer; the one written to longest ago makes room for a new one.
//!
//! There is one [`Logs`] per process, as there is one tracing subscriber ([`global`]). A full
//! buffer lets its oldest lines go and counts them: a reader whose cursor points before the
//! oldest line held is told how many it lost ([`tau_proto::logs::LogPage::dropped`]). Nothing
//! here blocks a writer on a reader: a follower that falls behind loses lines, never the node.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tau_proto::logs::{
    Level, LogLine, LogPage, LogQuery, LogSource, MAX_PAGE_BYTES, MAX_PAGE_LINES, MAX_WAIT_MS,
    bounded,
};
use tokio::sync::watch;

/// Lines the node's own buffer keeps.
pub const NODE_LINES: usize = 20_000;
/// Bytes the node's own buffer keeps (text, plus [`LINE_OVERHEAD`] per line).
pub const NODE_BYTES: usize = 8 << 20;
/// Lines a function's buffer keeps.
pub const FUNCTION_LINES: usize = 10_000;
/// Bytes a function's buffer keeps (text, plus [`LINE_OVERHEAD`] per line).
pub const FUNCTION_BYTES: usize = 1 << 20;
/// Functions with a buffer at once.
pub const MAX_FUNCTIONS: usize = 128;
/// What a line costs besides its text, for the byte budgets.
const LINE_OVERHEAD: usize = 64;

/// One bounded buffer: lines numbered from 1, the oldest let go when it is full.
#[derive(Debug)]
struct Ring {
    lines: VecDeque<LogLine>,
    bytes: usize,
    /// The number the next line gets.
    next_seq: u64,
    max_lines: usize,
    max_bytes: usize,
    /// When it was last written to (for choosing which function buffer to let go).
    touched: u64,
}

fn cost(line: &LogLine) -> usize {
    line.text.len() + line.origin.len() + LINE_OVERHEAD
}

impl Ring {
    fn new(max_lines: usize, max_bytes: usize) -> Self {
        Self { lines: VecDeque::new(), bytes: 0, next_seq: 1, max_lines, max_bytes, touched: 0 }
    }

    fn push(&mut self, mut line: LogLine) {
        line.seq = self.next_seq;
        self.next_seq += 1;
        self.touched = line.seq;
        self.bytes += cost(&line);
        self.lines.push_back(line);
        while self.lines.len() > self.max_lines || self.bytes > self.max_bytes {
            match self.lines.pop_front() {
                Some(gone) => self.bytes -= cost(&gone),
                None => break,
            }
        }
    }

    /// The number of the oldest line held (`next_seq` when empty).
    fn first(&self) -> u64 {
        self.lines.front().map_or(self.next_seq, |l| l.seq)
    }

    fn read(&self, query: &LogQuery) -> LogPage {
        let limit = query.limit.clamp(1, MAX_PAGE_LINES) as usize;
        let first = self.first();
        // A cursor past the newest line: the buffer is not the one the reader read before.
        let restarted = query.after.is_some_and(|after| after >= self.next_seq);
        let after = if restarted { None } else { query.after };
        let start = match after {
            _ if restarted => first,
            Some(after) => after.saturating_add(1),
            None if query.since_ms.is_some() => first,
            None => self.next_seq.saturating_sub(limit as u64).max(first),
        };
        let dropped = match after {
            Some(_) => first.saturating_sub(start),
            None => 0,
        };
        let mut page =
            LogPage { lines: Vec::new(), dropped, next: start.max(first) - 1, restarted };
        let skip = start.saturating_sub(first) as usize;
        let mut bytes = 0;
        for line in self.lines.iter().skip(skip) {
            if page.lines.len() >= limit || bytes >= MAX_PAGE_BYTES {
                break;
            }
            page.next = line.seq;
            let wanted = query.level.is_none_or(|at_least| line.level.passes(at_least))
                && query.since_ms.is_none_or(|since| line.time_ms >= since);
            if wanted {
                bytes += line.text.len();
                page.lines.push(line.clone());
            }
        }
        page
    }
}

/// The process's log buffers. See the module's documentation.
pub struct Logs {
    node: Mutex<Ring>,
    functions: Mutex<HashMap<LogSource, Ring>>,
    /// Bumped on every line: followers wait on it.
    written: watch::Sender<u64>,
}

impl Default for Logs {
    fn default() -> Self {
        Self {
            node: Mutex::new(Ring::new(NODE_LINES, NODE_BYTES)),
            functions: Mutex::new(HashMap::new()),
            written: watch::channel(0).0,
        }
    }
}

/// The process's buffers.
pub fn global() -> &'static Arc<Logs> {
    static LOGS: OnceLock<Arc<Logs>> = OnceLock::new();
    LOGS.get_or_init(Arc::default)
}

/// Unix time now, ms.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Logs {
    fn wake(&self) {
        self.written.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Adds a line to the node's own buffer.
    pub fn node_line(&self, level: Level, origin: &str, text: &str) {
        let line = LogLine {
            seq: 0,
            time_ms: now_ms(),
            level,
            origin: origin.to_string(),
            request: None,
            text: bounded(text),
        };
        if let Ok(mut ring) = self.node.lock() {
            ring.push(line);
        }
        self.wake();
    }

    /// Adds lines to a function's buffer (making one, and letting the stalest go, if needed).
    fn function_lines(&self, source: &LogSource, lines: Vec<LogLine>) {
        if lines.is_empty() {
            return;
        }
        if let Ok(mut functions) = self.functions.lock() {
            if !functions.contains_key(source) && functions.len() >= MAX_FUNCTIONS {
                let stalest = functions.iter().min_by_key(|(_, r)| r.touched).map(|(k, _)| k);
                if let Some(stalest) = stalest.cloned() {
                    functions.remove(&stalest);
                }
            }
            let ring = functions
                .entry(source.clone())
                .or_insert_with(|| Ring::new(FUNCTION_LINES, FUNCTION_BYTES));
            for line in lines {
                ring.push(line);
            }
        }
        self.wake();
    }

    /// A page of `query`'s buffer, at once. A function with no buffer (it never wrote a line
    /// here) reads as empty.
    pub fn read(&self, query: &LogQuery) -> LogPage {
        match &query.source {
            LogSource::Node => self.node.lock().map(|r| r.read(query)).unwrap_or_default(),
            function => self
                .functions
                .lock()
                .ok()
                .and_then(|f| f.get(function).map(|r| r.read(query)))
                .unwrap_or_else(|| LogPage {
                    next: query.after.unwrap_or(0),
                    ..LogPage::default()
                }),
        }
    }

    /// A page of `query`'s buffer; when it has no line yet, waits up to `query.wait_ms` for one.
    pub async fn follow(&self, query: &LogQuery) -> LogPage {
        let mut written = self.written.subscribe();
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(u64::from(query.wait_ms.min(MAX_WAIT_MS)));
        let mut query = query.clone();
        loop {
            written.borrow_and_update();
            let page = self.read(&query);
            if !page.lines.is_empty()
                || page.dropped > 0
                || page.restarted
                || tokio::time::Instant::now() >= deadline
            {
                return page;
            }
            // Lines the filter left out still move the cursor.
            query.after = Some(page.next);
            if tokio::time::timeout_at(deadline, written.changed()).await.is_err() {
                return page;
            }
        }
    }
}

/// One invocation's stdout or stderr: bytes split into lines, each line tagged with the request
/// and the time and added to the function's buffer. A line without its end is added when the
/// writer is dropped (the invocation ended).
pub struct FunctionLog {
    logs: Arc<Logs>,
    source: LogSource,
    request: String,
    origin: &'static str,
    level: Level,
    partial: Vec<u8>,
}

impl FunctionLog {
    /// The stdout (`stderr: false`, level info) or stderr (level warn) of one invocation of
    /// `project/function` for `request`.
    pub fn new(logs: Arc<Logs>, source: LogSource, request: &str, stderr: bool) -> Self {
        Self {
            logs,
            source,
            request: request.to_string(),
            origin: if stderr { "stderr" } else { "stdout" },
            level: if stderr { Level::Warn } else { Level::Info },
            partial: Vec::new(),
        }
    }

    /// Takes what the guest wrote.
    pub fn write(&mut self, bytes: &[u8]) {
        let mut lines = Vec::new();
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            self.partial.extend_from_slice(&rest[..end]);
            lines.push(self.line());
            rest = &rest[end + 1..];
        }
        // A line that never ends is cut where a line is cut anyway.
        let room = tau_proto::logs::MAX_LINE_BYTES + 4 - self.partial.len().min(4100);
        self.partial.extend_from_slice(&rest[..rest.len().min(room)]);
        self.logs.function_lines(&self.source, lines);
    }

    fn line(&mut self) -> LogLine {
        let raw = std::mem::take(&mut self.partial);
        let text = String::from_utf8_lossy(&raw);
        LogLine {
            seq: 0,
            time_ms: now_ms(),
            level: self.level,
            origin: self.origin.to_string(),
            request: Some(self.request.clone()),
            text: bounded(text.trim_end_matches('\r')),
        }
    }
}

impl Drop for FunctionLog {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let line = self.line();
            self.logs.function_lines(&self.source, vec![line]);
        }
    }
}

/// The `tracing` layer that copies the node's log events into [`global`]'s node buffer.
pub fn layer<S: tracing::Subscriber>() -> impl tracing_subscriber::Layer<S> {
    NodeLayer { logs: global().clone() }
}

struct NodeLayer {
    logs: Arc<Logs>,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for NodeLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let metadata = event.metadata();
        let level = match *metadata.level() {
            tracing::Level::ERROR => Level::Error,
            tracing::Level::WARN => Level::Warn,
            tracing::Level::INFO => Level::Info,
            tracing::Level::DEBUG => Level::Debug,
            tracing::Level::TRACE => Level::Trace,
        };
        let mut text = Text::default();
        event.record(&mut text);
        self.logs.node_line(level, metadata.target(), &text.finish());
    }
}

/// An event's message first, then its other fields as `name=value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn finish(self) -> String {
        match (self.message.is_empty(), self.fields.is_empty()) {
            (_, true) => self.message,
            (true, false) => self.fields,
            (false, false) => format!("{} {}", self.message, self.fields),
        }
    }
}

impl tracing::field::Visit for Text {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let _ = write!(self.fields, "{}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(source: LogSource, after: Option<u64>, limit: u32) -> LogQuery {
        LogQuery { source, after, since_ms: None, level: None, limit, wait_ms: 0 }
    }

    #[test]
    fn a_reader_that_fell_behind_is_told_how_many_lines_it_lost() {
        let mut ring = Ring::new(100, 1 << 20);
        for i in 0..250 {
            ring.push(LogLine {
                seq: 0,
                time_ms: i,
                level: Level::Info,
                origin: "t".into(),
                request: None,
                text: format!("line {i}"),
            });
        }
        // Lines 151..=250 are held; a reader that saw line 120 lost 121..=150.
        let page = ring.read(&query(LogSource::Node, Some(120), 10));
        assert_eq!(page.dropped, 30);
        assert_eq!(page.lines.first().map(|l| l.seq), Some(151));
        assert_eq!(page.next, 160);
        let page = ring.read(&query(LogSource::Node, Some(page.next), 2000));
        assert_eq!((page.dropped, page.lines.len(), page.next), (0, 90, 250));
        // Without a cursor: the newest lines, no gap claimed.
        let page = ring.read(&query(LogSource::Node, None, 5));
        assert_eq!(page.lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [246, 247, 248, 249, 250]);
        assert_eq!(page.dropped, 0);
        // Caught up: nothing, and the cursor stays.
        let page = ring.read(&query(LogSource::Node, Some(250), 5));
        assert_eq!((page.lines.len(), page.next, page.dropped), (0, 250, 0));
        assert!(!page.restarted);
        // A cursor from before a restart: said so, and read from the oldest line.
        let mut fresh = Ring::new(100, 1 << 20);
        fresh.push(ring.lines[0].clone());
        let page = fresh.read(&query(LogSource::Node, Some(250), 5));
        assert!(page.restarted);
        assert_eq!((page.lines.len(), page.next, page.dropped), (1, 1, 0));
    }

    #[test]
    fn filters_skip_lines_but_move_the_cursor() {
        let mut ring = Ring::new(100, 1 << 20);
        for (i, level) in [Level::Info, Level::Warn, Level::Debug, Level::Error].iter().enumerate()
        {
            ring.push(LogLine {
                seq: 0,
                time_ms: i as u64 * 1000,
                level: *level,
                origin: "t".into(),
                request: None,
                text: format!("{level}"),
            });
        }
        let mut q = query(LogSource::Node, Some(0), 100);
        q.level = Some(Level::Warn);
        let page = ring.read(&q);
        assert_eq!(
            page.lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            ["warn", "error"]
        );
        assert_eq!(page.next, 4);
        let mut q = query(LogSource::Node, None, 100);
        q.since_ms = Some(2000);
        let page = ring.read(&q);
        assert_eq!(page.lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [3, 4]);
    }

    #[test]
    fn the_byte_budget_bounds_a_buffer_of_long_lines() {
        let mut ring = Ring::new(1_000_000, 100_000);
        for _ in 0..1000 {
            ring.push(LogLine {
                seq: 0,
                time_ms: 0,
                level: Level::Info,
                origin: String::new(),
                request: None,
                text: "x".repeat(4000),
            });
        }
        assert!(ring.bytes <= 100_000);
        assert_eq!(ring.lines.len(), 100_000 / (4000 + LINE_OVERHEAD));
    }

    #[test]
    fn a_function_writes_lines_tagged_with_its_request_and_a_last_line_without_its_end() {
        let logs = Arc::new(Logs::default());
        let source = LogSource::function("p/f").unwrap_or(LogSource::Node);
        {
            let mut out = FunctionLog::new(logs.clone(), source.clone(), "r1", false);
            out.write(b"one\ntw");
            out.write(b"o\r\nthree");
        }
        let page = logs.read(&query(source.clone(), Some(0), 100));
        let texts: Vec<&str> = page.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["one", "two", "three"]);
        assert!(page.lines.iter().all(|l| l.request.as_deref() == Some("r1")));
        let other =
            logs.read(&query(LogSource::function("p/g").unwrap_or(LogSource::Node), Some(0), 100));
        assert!(other.lines.is_empty());
    }

    #[test]
    fn a_line_that_never_ends_is_cut_at_the_line_limit() {
        let logs = Arc::new(Logs::default());
        let source = LogSource::function("p/f").unwrap_or(LogSource::Node);
        {
            let mut out = FunctionLog::new(logs.clone(), source.clone(), "r", false);
            for _ in 0..100 {
                out.write(&[b'x'; 1000]);
            }
            assert!(out.partial.len() <= tau_proto::logs::MAX_LINE_BYTES + 4);
        }
        let page = logs.read(&query(source, Some(0), 100));
        assert_eq!(page.lines.len(), 1);
        let text = &page.lines[0].text;
        assert!(
            text.len() <= tau_proto::logs::MAX_LINE_BYTES && text.ends_with('…'),
            "{}",
            text.len()
        );
    }

    #[test]
    fn a_stale_function_buffer_makes_room_for_a_new_one() {
        let logs = Arc::new(Logs::default());
        for i in 0..=MAX_FUNCTIONS {
            let source = LogSource::Function { project: "p".into(), function: format!("f{i}") };
            FunctionLog::new(logs.clone(), source, "r", false).write(b"x\n");
        }
        let held = logs.functions.lock().map(|f| f.len()).unwrap_or(0);
        assert_eq!(held, MAX_FUNCTIONS);
    }

    #[tokio::test]
    async fn a_follower_wakes_when_a_line_arrives() {
        let logs = Arc::new(Logs::default());
        let writer = logs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            writer.node_line(Level::Info, "t", "late");
        });
        let mut q = query(LogSource::Node, Some(0), 10);
        q.wait_ms = 4000;
        let started = std::time::Instant::now();
        let page = logs.follow(&q).await;
        assert_eq!(page.lines.len(), 1);
        assert!(started.elapsed() < Duration::from_secs(3));
        q.after = Some(page.next);
        q.wait_ms = 200;
        let page = logs.follow(&q).await;
        assert!(page.lines.is_empty());
        assert_eq!(page.next, 1);
    }
}
