//! What the benchmark programs (`src/bin/tau-*-bench.rs`) share: finding the binaries built
//! beside them, and running a command that must succeed, timed.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::Result;

/// The workspace binary `name` built beside the running benchmark (`scripts/bench` builds them
/// all in release).
pub fn beside(name: &str) -> Result<PathBuf> {
    let bin = std::env::current_exe()?.with_file_name(name);
    if !bin.exists() {
        return Err(format!("{} is missing: build the release binaries", bin.display()).into());
    }
    Ok(bin)
}

/// Runs `command` to completion (no stdin), failing with its output unless it succeeds; its
/// output and how long it took.
pub fn timed(what: &str, command: &mut Command) -> Result<(Output, Duration)> {
    let start = Instant::now();
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run {command:?}: {e}"))?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok((out, took))
}
