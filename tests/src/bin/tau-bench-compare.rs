//! `tau-bench-compare`: puts the figures of two builds side by side (`scripts/bench-compare`).
//!
//! `tau-bench-compare --before FILE --after FILE [--limit 10]`: each FILE holds the figures of
//! one build (one JSON line each, see `tau_proto::bench`), from several rounds run alternately
//! with the other build's, so that a machine that is slower for a while is slower for both. Per
//! figure it prints the median of each build, the spread of its rounds, and after/before; a
//! figure is worse beyond the limit when it grew by more than `--limit` percent (times) or
//! shrank by more than that (rates, units ending in `/s`). Exit status 1 when any did.

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

/// Each figure's unit and every round's value, by `bench: what`.
type Rounds = BTreeMap<String, (String, Vec<f64>)>;

/// Every round's value of each figure, and the figures in the order they first appear.
fn rounds(figures: &[Figure]) -> (Vec<String>, Rounds) {
    let mut order = Vec::new();
    let mut values = Rounds::new();
    for figure in figures {
        let key = format!("{}: {}", figure.bench, figure.what);
        let entry = values.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            (figure.unit.clone(), Vec::new())
        });
        // A figure printed beside two baselines is appended twice per round: keep one.
        if entry.1.last() != Some(&figure.value) {
            entry.1.push(figure.value);
        }
    }
    (order, values)
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
    println!(
        "{:<70} {:>10} {:>10} {:>7}   rounds (before | after)",
        "figure (median of the rounds)", "before", "after", "ratio"
    );
    let mut worse = false;
    for key in &order {
        let (unit, was) = &before[key];
        let Some((_, now)) = after.get(key) else {
            println!("{key:<70} {:>10.1} {:>10} {:>7}", median(was), "missing", "");
            worse = true;
            continue;
        };
        let (was_m, now_m) = (median(was), median(now));
        let ratio = now_m / was_m;
        let rate = unit.ends_with("/s");
        let beyond =
            if rate { ratio < 1.0 - args.limit / 100.0 } else { ratio > 1.0 + args.limit / 100.0 };
        worse |= beyond;
        println!(
            "{:<70} {:>7.1} {:<2} {:>7.1} {:<2} {:>6.2}x{}  {} | {}",
            format!("{key} ({})", if rate { "higher is better" } else { "lower is better" }),
            was_m,
            unit,
            now_m,
            unit,
            ratio,
            if beyond { " !" } else { "  " },
            spread(was),
            spread(now),
        );
    }
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
