//! A real terminal for the terminal UI's tests: a tmux server of its own, keys sent to it and
//! its screen read back.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::harness::{Result, run, wait_for};

/// Tells the servers of one test process apart.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A tmux server of its own (its own socket) with one pane of `width` x `height`; killed on
/// drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts the server and its pane.
    pub fn start(width: u16, height: u16) -> Result<Self> {
        let tmux = Self {
            socket: format!(
                "tau-tmux-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        };
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "bash --norc --noprofile",
        ])?;
        Ok(tmux)
    }

    /// Runs a tmux command against this server; its output.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = run(
            Command::new("tmux").args(["-L", &self.socket]).args(args),
            Duration::from_secs(10),
        )?;
        if !out.status.success() {
            return Err(format!("tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Presses `keys` (tmux key names: `Enter`, `Escape`, `C-c`, `2`).
    pub fn keys(&self, keys: &[&str]) -> Result {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend(keys);
        self.run(&args).map(drop)
    }

    /// Types `text` as it is.
    pub fn text(&self, text: &str) -> Result {
        self.run(&["send-keys", "-t", "t", "-l", text]).map(drop)
    }

    /// What the pane shows now.
    pub fn screen(&self) -> Result<String> {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    /// Waits until the screen satisfies `check`; the last screen in the error otherwise.
    pub fn wait(&self, what: &str, check: impl Fn(&str) -> bool) -> Result<String> {
        let mut last = String::new();
        let found = wait_for(Duration::from_secs(45), what, || {
            last = self.screen()?;
            Ok(check(&last).then(|| last.clone()))
        });
        found.map(|(screen, _)| screen).map_err(|e| format!("{e}; the screen:\n{last}").into())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).output();
    }
}

/// The line of the screen that mentions `text`.
pub fn line_with<'a>(screen: &'a str, text: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.contains(text))
}
