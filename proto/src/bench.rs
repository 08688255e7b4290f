//! Benchmark figures, for the report `scripts/bench` writes (`BENCHMARKS.md`). Every benchmark
//! prints its own table; when the environment variable [`FIGURES_ENV`] names a file, each figure
//! is also appended to it as one JSON line: what was measured, its value, the baseline measured
//! in the same run, and the target with whether it was met.

use std::io::Write;

use serde::{Deserialize, Serialize};

/// The environment variable that names the file figures are appended to.
pub const FIGURES_ENV: &str = "TAU_BENCH_FIGURES";

/// One measured figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// The benchmark it belongs to (`hoarder`, `q`, ...).
    pub bench: String,
    /// What was measured.
    pub what: String,
    /// The value, in `unit`.
    pub value: f64,
    /// Its unit (`ms`, `MB/s`, `records/s`).
    pub unit: String,
    /// The baseline measured in the same run, in the same unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    /// The target, as its issue states it (`>= 0.6x`, `< 10 s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Whether the target was met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
}

/// What a figure is measured against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// What the baseline is (`native hyper`, `raw BLAKE3`).
    pub what: String,
    /// Its value, in the figure's unit.
    pub value: f64,
}

impl Figure {
    /// A figure with no baseline and no target.
    pub fn new(bench: &str, what: &str, value: f64, unit: &str) -> Self {
        Self {
            bench: bench.into(),
            what: what.into(),
            value,
            unit: unit.into(),
            baseline: None,
            target: None,
            met: None,
        }
    }

    /// Measured beside `what`, which came to `value`.
    pub fn beside(mut self, what: &str, value: f64) -> Self {
        self.baseline = Some(Baseline { what: what.into(), value });
        self
    }

    /// Its target, and whether it was met.
    pub fn target(mut self, target: &str, met: bool) -> Self {
        self.target = Some(target.into());
        self.met = Some(met);
        self
    }

    /// The value over the baseline's.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline.as_ref().filter(|b| b.value != 0.0).map(|b| self.value / b.value)
    }

    /// Appends the figure to the file [`FIGURES_ENV`] names, if it names one. A file that cannot
    /// be written is said on stderr: the benchmark's printed table still stands.
    pub fn record(&self) {
        let Some(path) = std::env::var_os(FIGURES_ENV) else { return };
        let written = serde_json::to_string(self).map_err(std::io::Error::other).and_then(|line| {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
            writeln!(file, "{line}")
        });
        if let Err(e) = written {
            eprintln!("cannot add a figure to {}: {e}", std::path::Path::new(&path).display());
        }
    }
}

/// Reads the figures a run appended to `path`, in order.
pub fn read(path: &std::path::Path) -> std::io::Result<Vec<Figure>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| {
                std::io::Error::other(format!("{} line {}: {e}", path.display(), i + 1))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_round_trip_through_the_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("figures.jsonl");
        let a = Figure::new("q", "ingest into SQLite", 73_034.0, "records/s")
            .beside("batched ed25519", 81_641.0)
            .target(">= 0.6x", true);
        let b = Figure::new("q", "prove, SQLite", 7.52, "s").target("< 10 s", true);
        for figure in [&a, &b] {
            let line = serde_json::to_string(figure)?;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| writeln!(f, "{line}"))?;
        }
        assert_eq!(read(&path)?, vec![a.clone(), b]);
        let ratio = a.ratio().ok_or("no ratio")?;
        assert!((ratio - 73_034.0 / 81_641.0).abs() < 1e-9);
        std::fs::write(&path, "{\"bench\": 1}\n")?;
        let error = read(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("line 1"), "{error}");
        Ok(())
    }
}
