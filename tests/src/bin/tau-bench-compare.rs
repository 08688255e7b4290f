//! `tau-bench-compare`: puts the figures of two builds side by side (`scripts/bench-compare`).
//!
//! `tau-bench-compare --before FILE --after FILE [--limit 10]`: each FILE holds the figures of
//! one build (one JSON line each, see `tau_proto::bench`), from several rounds run alternately
//! with the other build's, so that a machine that is slower for a while is slower for both. Per
//! figure it prints the median of each build, the spread of its rounds, and after/before, and
//! where the figure has a baseline measured in the same run, the same for figure/baseline (a
//! ratio holds on a noisy machine). A figure is worse beyond the limit when it grew by more than
//! `--limit` percent (times) or shrank by more than that (rates, units ending in `/s`), both as
//! measured and beside its baseline. Exit status 1 when any is.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use tau_proto::bench::{Figure, read};

struct Args {
    before: PathBuf,
    after: PathBuf,
    limit: f64,
}

const USAGE: &str = "usage: tau-bench-compare --before FILE --after FILE [--limit PERCENT]";

fn args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut before, mut after, mut limit) = (None, None, 10.0);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--before" => before = Some(PathBuf::from(value()?)),
            "--after" => after = Some(PathBuf::from(value()?)),
            "--limit" => {
                let text = value()?;
                limit = text.parse().map_err(|_| format!("--limit `{text}` is not a number"))?;
            }
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}` ({USAGE})")),
        }
    }
    Ok(Args {
        before: before.ok_or("--before FILE is required")?,
        after: after.ok_or("--after FILE is required")?,
        limit,
    })
}

/// One figure across the rounds of one build.
#[derive(Default)]
struct Series {
    unit: String,
    /// The first baseline it was printed beside, if any.
    baseline: Option<String>,
    /// Each round's value, and the baseline's value in the same round.
    values: Vec<(f64, Option<f64>)>,
}

impl Series {
    fn raw(&self) -> Vec<f64> {
        self.values.iter().map(|(v, _)| *v).collect()
    }

    /// Each round's value divided by its own round's baseline: what the machine's pace cancels
    /// out of.
    fn normalized(&self) -> Option<Vec<f64>> {
        self.values.iter().map(|(v, b)| b.map(|b| v / b)).collect()
    }
}

/// Every figure's series by `bench: what`, and the figures in the order they first appear.
fn rounds(figures: &[Figure]) -> (Vec<String>, BTreeMap<String, Series>) {
    let mut order = Vec::new();
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    for figure in figures {
        let key = format!("{}: {}", figure.bench, figure.what);
        let entry = series.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            Series {
                unit: figure.unit.clone(),
                baseline: figure.baseline.as_ref().map(|b| b.what.clone()),
                values: Vec::new(),
            }
        });
        // A figure printed beside two baselines is appended twice per round: keep the first.
        if entry.values.last().is_some_and(|(v, _)| *v == figure.value) {
            continue;
        }
        let baseline = figure
            .baseline
            .as_ref()
            .filter(|b| Some(&b.what) == entry.baseline.as_ref())
            .map(|b| b.value);
        entry.values.push((figure.value, baseline));
    }
    (order, series)
}

/// Whether after/before `raw` (and `beside`, the same for figure/baseline, where there is a
/// baseline) is more than `limit` percent worse. Worse only when it is worse both ways: a slow
/// stretch of the machine moves the first and not the second, a baseline that itself moved (a
/// Tau figure, or a bimodal one) the second and not the first.
fn worse_beyond(raw: f64, beside: Option<f64>, rate: bool, limit: f64) -> bool {
    let worse = |ratio: f64| {
        if rate { ratio < 1.0 - limit / 100.0 } else { ratio > 1.0 + limit / 100.0 }
    };
    worse(raw) && beside.is_none_or(worse)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 }
}

fn spread(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.1}-{max:.1}")
}

fn run(args: &Args) -> Result<bool, String> {
    let load = |path: &PathBuf| read(path).map_err(|e| format!("{}: {e}", path.display()));
    let (before, after) = (load(&args.before)?, load(&args.after)?);
    let (order, before) = rounds(&before);
    let (_, after) = rounds(&after);
    println!("Each figure: the median of its rounds per build, and after/before; where it has a");
    println!(
        "baseline measured in the same run, figure/baseline too. `!`: more than {}% worse",
        args.limit
    );
    println!("both as measured and (where there is one) beside its baseline.");
    let mut worse = false;
    for key in &order {
        let was = &before[key];
        let rate = was.unit.ends_with("/s");
        println!();
        println!(
            "{key} ({}, {})",
            was.unit,
            if rate { "higher is better" } else { "lower is better" }
        );
        let Some(now) = after.get(key) else {
            println!("  missing after");
            worse = true;
            continue;
        };
        let (was_raw, now_raw) = (was.raw(), now.raw());
        let raw_ratio = median(&now_raw) / median(&was_raw);
        let normalized = was.normalized().zip(now.normalized());
        let beside = normalized.as_ref().map(|(w, n)| median(n) / median(w));
        let beyond = worse_beyond(raw_ratio, beside, rate, args.limit);
        worse |= beyond;
        println!(
            "  value                 {:>10.1} -> {:>10.1}   {:>5.2}x{}   rounds {} | {}",
            median(&was_raw),
            median(&now_raw),
            raw_ratio,
            if beyond { " !" } else { "" },
            spread(&was_raw),
            spread(&now_raw),
        );
        if let (Some((w, n)), Some(baseline)) = (&normalized, &was.baseline) {
            println!(
                "  / {:<19} {:>10.3} -> {:>10.3}   {:>5.2}x{}   rounds {} | {}",
                baseline.chars().take(19).collect::<String>(),
                median(w),
                median(n),
                median(n) / median(w),
                if beyond { " !" } else { "" },
                spread(w),
                spread(n),
            );
        }
    }
    println!();
    println!(
        "{}",
        if worse {
            format!("at least one figure (!) is more than {}% worse after", args.limit)
        } else {
            format!("every figure is within {}% of before, or better", args.limit)
        }
    );
    Ok(!worse)
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("tau-bench-compare: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("tau-bench-compare: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_is_worse_only_when_worse_as_measured_and_beside_its_baseline() {
        // Times: higher is worse.
        assert!(worse_beyond(1.52, Some(1.24), false, 10.0));
        assert!(!worse_beyond(1.12, Some(0.95), false, 10.0), "the machine was slower");
        assert!(!worse_beyond(0.99, Some(2.19), false, 10.0), "the baseline moved");
        assert!(!worse_beyond(1.09, None, false, 10.0));
        assert!(worse_beyond(1.11, None, false, 10.0));
        // Rates: lower is worse.
        assert!(worse_beyond(0.63, Some(0.85), true, 10.0));
        assert!(!worse_beyond(1.25, Some(0.75), true, 10.0));
    }

    #[test]
    fn a_figure_beside_two_baselines_counts_once_per_round() {
        let figure = |value: f64, baseline: &str, base: f64| Figure {
            bench: "substrate".into(),
            what: "ping".into(),
            value,
            unit: "req/s".into(),
            baseline: Some(tau_proto::bench::Baseline { what: baseline.into(), value: base }),
            target: None,
            met: None,
        };
        let figures = [
            figure(10.0, "wasmtime serve", 5.0),
            figure(10.0, "native", 40.0),
            figure(12.0, "wasmtime serve", 4.0),
            figure(12.0, "native", 48.0),
        ];
        let (order, series) = rounds(&figures);
        let ping = &series[&order[0]];
        assert_eq!(ping.raw(), [10.0, 12.0]);
        assert_eq!(ping.normalized(), Some(vec![2.0, 3.0]), "beside the first baseline");
    }
}
