//! Progress of work on many hosts: a live line per host on a terminal (indicatif), plain
//! `host: phase` lines on stderr otherwise, nothing with `--json`.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
    plain: bool,
    width: usize,
}

impl Progress {
    /// Live bars on a terminal, plain lines without one, nothing when `quiet`.
    pub fn new(quiet: bool, names: &[&str]) -> Self {
        let width = names.iter().map(|n| n.len()).max().unwrap_or(4);
        if quiet {
            return Self { multi: None, plain: false, width };
        }
        if std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            return Self { multi: Some(multi), plain: false, width };
        }
        Self { multi: None, plain: true, width }
    }

    /// The line of one host.
    pub fn host(&self, name: &str) -> HostProgress {
        let bar = self.multi.as_ref().map(|multi| {
            let style = ProgressStyle::with_template(&format!(
                "{{prefix:>{}}} {{spinner}} {{elapsed:>3}} {{wide_msg}}",
                self.width
            ))
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
            let bar = multi.add(ProgressBar::new_spinner().with_style(style));
            bar.set_prefix(name.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        HostProgress { bar, name: name.into(), plain: self.plain }
    }

    /// Prints a line above the bars (or on stderr).
    pub fn println(&self, line: &str) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(line);
            }
            None if self.plain => eprintln!("{line}"),
            None => {}
        }
    }
}

/// One host's line.
#[derive(Debug, Clone)]
pub struct HostProgress {
    bar: Option<ProgressBar>,
    name: String,
    plain: bool,
}

impl HostProgress {
    /// The host is now doing `what`.
    pub fn phase(&self, what: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(what.to_string());
        } else if self.plain {
            eprintln!("{}: {what}", self.name);
        }
    }

    /// The host is done: its line stays with `what`.
    pub fn finish(&self, what: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_with_message(what.to_string());
        } else if self.plain {
            eprintln!("{}: {what}", self.name);
        }
    }
}
