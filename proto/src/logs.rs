//! Logs over the admin protocol: a node's own recent log lines and its functions' output, each
//! kept in a bounded buffer on the node and read page by page with a cursor.
//!
//! Every line a buffer takes gets the next sequence number of that buffer. A reader asks for the
//! lines after the last one it saw; when the buffer has since let go of some of them (it was
//! full), the page says how many were lost in [`LogPage::dropped`], so a reader shows a gap as
//! a gap instead of silently skipping it. A follower asks with [`LogQuery::wait_ms`]: the node
//! answers as soon as a line arrives, or empty once the wait is over (a long poll).
//!
//! Who may read: the operator (a client whose identity is the operator key). A node without an
//! operator key answers anyone, as it admits anyone.

use serde::{Deserialize, Serialize};

/// The most lines in one page.
pub const MAX_PAGE_LINES: u32 = 2000;

/// The most bytes of line text in one page (well under the admin protocol's response limit).
pub const MAX_PAGE_BYTES: usize = 1 << 20;

/// The longest wait a follower may ask for, ms (well under the admin protocol's timeout).
pub const MAX_WAIT_MS: u32 = 5000;

/// The longest line kept, bytes: a longer one is cut there and ends with `…`.
pub const MAX_LINE_BYTES: usize = 4096;

/// How bad a line is, most severe first (as `tracing` orders them).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Something failed.
    Error,
    /// Something may be wrong.
    Warn,
    /// What happened.
    #[default]
    Info,
    /// Detail for whoever debugs.
    Debug,
    /// Everything.
    Trace,
}

impl Level {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }

    /// Whether a line of this level passes a filter asking for `at_least` (warn passes a filter
    /// of info; debug does not).
    pub fn passes(self, at_least: Level) -> bool {
        self <= at_least
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Level {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "error" => Ok(Self::Error),
            "warn" | "warning" => Ok(Self::Warn),
            "info" => Ok(Self::Info),
            "debug" => Ok(Self::Debug),
            "trace" => Ok(Self::Trace),
            _ => Err(format!("`{text}` is not a level: error, warn, info, debug or trace")),
        }
    }
}

/// Which buffer to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LogSource {
    /// The node's own log.
    Node,
    /// A function's stdout and stderr, every invocation on this node.
    Function {
        /// The project's name.
        project: String,
        /// The function's name.
        function: String,
    },
}

impl LogSource {
    /// `project/function`, parsed.
    pub fn function(text: &str) -> Result<Self, String> {
        match text.split_once('/') {
            Some((project, function))
                if !project.is_empty() && !function.is_empty() && !function.contains('/') =>
            {
                Ok(Self::Function { project: project.into(), function: function.into() })
            }
            _ => Err(format!("`{text}` is not PROJECT/FUNCTION, such as example/ping")),
        }
    }
}

impl std::fmt::Display for LogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Node => f.write_str("node"),
            Self::Function { project, function } => write!(f, "{project}/{function}"),
        }
    }
}

/// A read of one buffer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogQuery {
    /// The buffer.
    pub source: LogSource,
    /// The sequence number of the last line already seen: lines after it are wanted. `None`:
    /// the newest `limit` lines.
    pub after: Option<u64>,
    /// Only lines at or after this Unix time, ms.
    pub since_ms: Option<u64>,
    /// Only lines of this level or worse.
    pub level: Option<Level>,
    /// The most lines wanted (capped at [`MAX_PAGE_LINES`]).
    pub limit: u32,
    /// When no line is there yet, wait this long for one, ms (capped at [`MAX_WAIT_MS`]).
    pub wait_ms: u32,
}

/// One line of a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Its sequence number in its buffer.
    pub seq: u64,
    /// When it was written, Unix ms.
    pub time_ms: u64,
    /// Its level (a function's stdout is info, its stderr warn).
    pub level: Level,
    /// Where it came from: the module that logged it, or `stdout`/`stderr` for a function.
    pub origin: String,
    /// The request whose invocation wrote it (a function's lines only): the `x-tau-request`
    /// header of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The text, without its line end; at most [`MAX_LINE_BYTES`].
    pub text: String,
}

/// A page of lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    /// The lines, oldest first.
    pub lines: Vec<LogLine>,
    /// Lines after the cursor that the buffer no longer held (it was full): a gap before the
    /// first line of this page.
    pub dropped: u64,
    /// The cursor to ask after next time (the last line looked at, filtered out or not).
    pub next: u64,
    /// The cursor was past every line the buffer ever took: the node restarted (its buffers
    /// start empty), and this page starts from its oldest line.
    #[serde(default)]
    pub restarted: bool,
}

/// `text` cut to at most [`MAX_LINE_BYTES`] at a character boundary, marked with `…` when cut.
pub fn bounded(text: &str) -> String {
    if text.len() <= MAX_LINE_BYTES {
        return text.to_string();
    }
    let mut end = MAX_LINE_BYTES - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_filter_and_parse() {
        assert!(Level::Warn.passes(Level::Info));
        assert!(Level::Error.passes(Level::Warn));
        assert!(!Level::Debug.passes(Level::Info));
        assert_eq!("WARNING".parse::<Level>(), Ok(Level::Warn));
        assert!("loud".parse::<Level>().is_err());
    }

    #[test]
    fn a_function_is_project_slash_name() {
        assert_eq!(
            LogSource::function("example/ping"),
            Ok(LogSource::Function { project: "example".into(), function: "ping".into() })
        );
        for bad in ["ping", "/ping", "example/", "a/b/c"] {
            assert!(LogSource::function(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_LINE_BYTES);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_LINE_BYTES);
        assert!(cut.ends_with('…'));
        assert_eq!(bounded("short"), "short");
    }
}
