//! A job's log: what the monkey did and the build's own output, bounded: the first
//! [`HEAD`] bytes and the last [`TAIL`] are kept (a compiler's error is at the end), with a line
//! that says how much was left out between them.

/// Bytes kept from the start.
pub const HEAD: usize = 64 * 1024;
/// Bytes kept from the end.
pub const TAIL: usize = 448 * 1024;
const _: () = assert!((HEAD + TAIL) as u64 + 1024 <= tau_proto::git::MAX_LOG);

/// A bounded log.
#[derive(Debug)]
pub struct Log {
    head: String,
    tail: std::collections::VecDeque<u8>,
    dropped: u64,
    /// When the job started: the monkey's lines say how long after.
    start: std::time::Instant,
}

impl Default for Log {
    fn default() -> Self {
        Self::since(std::time::Instant::now())
    }
}

impl Log {
    /// An empty log whose lines are timed from `start` (a job's parts log apart, then join).
    pub fn since(start: std::time::Instant) -> Self {
        Self { head: String::new(), tail: Default::default(), dropped: 0, start }
    }

    /// When its lines are timed from.
    pub fn start(&self) -> std::time::Instant {
        self.start
    }

    /// Appends one line of the monkey's own, with the seconds since the job started.
    pub fn line(&mut self, line: &str) {
        let at = self.start.elapsed().as_secs_f64();
        self.text(&format!("monkey: {at:6.2} s: {line}\n"));
    }

    /// Appends text as it came (a command's output).
    pub fn text(&mut self, text: &str) {
        let mut rest = text;
        if self.head.len() < HEAD {
            let mut room = HEAD - self.head.len();
            while !rest.is_char_boundary(room.min(rest.len())) {
                room -= 1;
            }
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.head.push_str(now);
            rest = later;
        }
        self.tail.extend(rest.as_bytes());
        while self.tail.len() > TAIL {
            let over = self.tail.len() - TAIL;
            self.tail.drain(..over);
            self.dropped += over as u64;
        }
    }

    /// Appends another log, as kept.
    pub fn append(&mut self, other: &Log) {
        self.text(&other.contents());
    }

    /// The log as kept.
    pub fn contents(&self) -> String {
        let mut out = self.head.clone();
        if self.dropped > 0 {
            out.push_str(&format!("\n[... {} bytes left out ...]\n", self.dropped));
        }
        let (a, b) = self.tail.as_slices();
        let mut tail = a.to_vec();
        tail.extend_from_slice(b);
        out.push_str(&String::from_utf8_lossy(&tail));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_log_keeps_its_start_and_its_end() {
        let mut log = Log::default();
        log.line("start");
        for i in 0..100_000 {
            log.text(&format!("line {i}\n"));
        }
        log.text("error[E0308]: mismatched types\n");
        let text = log.contents();
        assert!(text.starts_with("monkey:   0.00 s: start\nline 0\n"), "{}", &text[..40]);
        assert!(text.ends_with("error[E0308]: mismatched types\n"));
        assert!(text.contains("bytes left out"));
        assert!(text.len() <= HEAD + TAIL + 64, "{}", text.len());
        let mut short = Log::default();
        short.text("héllo\n");
        assert_eq!(short.contents(), "héllo\n");
    }
}
