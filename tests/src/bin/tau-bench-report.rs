//! `tau-bench-report`: writes the benchmark report (`BENCHMARKS.md`) from one run of
//! `scripts/bench`: the machine and commit it ran on, a table of every figure beside the
//! baseline measured in the same run with their ratio and the target, then each benchmark's
//! output as it printed it.
//!
//! `tau-bench-report --figures FILE --logs DIR --out FILE`: FILE holds the figures the
//! benchmarks appended (one JSON line each, see `tau_proto::bench`); DIR the printed output of
//! each benchmark, one `.txt` file per program, in name order.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use tau_proto::bench::{Figure, read};

struct Args {
    figures: PathBuf,
    logs: PathBuf,
    out: PathBuf,
}

fn args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut figures, mut logs, mut out) = (None, None, None);
    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "--figures" => &mut figures,
            "--logs" => &mut logs,
            "--out" => &mut out,
            "--help" | "-h" => {
                return Err("usage: tau-bench-report --figures FILE --logs DIR --out FILE".into());
            }
            other => return Err(format!("unknown argument `{other}` (see --help)")),
        };
        *slot = Some(PathBuf::from(args.next().ok_or(format!("{arg} needs a value"))?));
    }
    Ok(Args {
        figures: figures.ok_or("--figures FILE is required")?,
        logs: logs.ok_or("--logs DIR is required")?,
        out: out.ok_or("--out FILE is required")?,
    })
}

/// The first line of a command's output, if it ran.
fn first_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success().then(|| text.lines().next().unwrap_or("").trim().to_string())
}

/// A line about the machine: CPUs, their model, memory, kernel, rustc.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
        .map_or("unknown model".to_string(), |m| m.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = first_line("rustc", &["--version"]).unwrap_or_else(|| "rustc ?".into());
    format!(
        "{cpus} CPUs ({model}), {:.1} GiB of memory, Linux {}, {rustc}",
        kib / 1024.0 / 1024.0,
        kernel.trim()
    )
}

/// The commit the run built, and whether the tree had changes beyond it.
fn commit() -> String {
    let Some(hash) = first_line("git", &["rev-parse", "--short", "HEAD"]) else {
        return "an unknown commit (not a git checkout)".into();
    };
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    match dirty {
        true => format!("commit {hash} with uncommitted changes"),
        false => format!("commit {hash}"),
    }
}

/// A number with as many decimals as it needs to show three or more digits.
fn number(value: f64) -> String {
    let decimals = match value.abs() {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        _ => 2,
    };
    format!("{value:.decimals$}")
}

/// `|` would end a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn summary(figures: &[Figure]) -> String {
    let mut text = String::from(
        "| Benchmark | Figure | Value | Baseline, same run | Ratio | Target | Met |\n\
         |---|---|---:|---|---:|---|---|\n",
    );
    for f in figures {
        let baseline = f.baseline.as_ref().map_or(String::new(), |b| {
            format!("{}: {} {}", cell(&b.what), number(b.value), f.unit)
        });
        let ratio = f.ratio().map_or(String::new(), |r| format!("{r:.2}x"));
        let met = match f.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        let _ = writeln!(
            text,
            "| {} | {} | {} {} | {baseline} | {ratio} | {} | {met} |",
            f.bench,
            cell(&f.what),
            number(f.value),
            f.unit,
            cell(f.target.as_deref().unwrap_or(""))
        );
    }
    let with_target: Vec<&Figure> = figures.iter().filter(|f| f.met.is_some()).collect();
    let missed: Vec<String> = with_target
        .iter()
        .filter(|f| f.met == Some(false))
        .map(|f| format!("{}: {}", f.bench, f.what))
        .collect();
    let _ = writeln!(
        text,
        "\n{} of {} targets met{}",
        with_target.len() - missed.len(),
        with_target.len(),
        match missed.is_empty() {
            true => ".".to_string(),
            false => format!("; missed: {}.", missed.join("; ")),
        }
    );
    text
}

/// Each benchmark's printed output, in file name order.
fn outputs(dir: &Path) -> Result<String, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{}: no benchmark output (*.txt) to report", dir.display()));
    }
    let mut text = String::new();
    for file in files {
        let printed =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
        let name = stem.split_once('-').map_or(stem, |(_, rest)| rest);
        let _ = writeln!(text, "### {name}\n\n```text\n{}\n```\n", printed.trim_end());
    }
    Ok(text)
}

fn report(args: &Args) -> Result<(), String> {
    let figures = read(&args.figures).map_err(|e| format!("{}: {e}", args.figures.display()))?;
    if figures.is_empty() {
        return Err(format!("{}: no figures", args.figures.display()));
    }
    let when = first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
    let text = format!(
        "# Benchmarks\n\n\
         Written by `scripts/bench` (not by hand) on {when}, from {commit}, on {machine}.\n\n\
         Each figure is measured beside its baseline in the same run: on a shared or noisy \
         machine the ratio holds where an absolute time does not. Run `scripts/bench` to \
         measure again; `scripts/bench SECTION...` runs some of them and writes \
         `target/bench/BENCHMARKS.md` instead.\n\n\
         ## Summary\n\n{summary}\n## As each benchmark printed it\n\n{outputs}",
        commit = commit(),
        machine = machine(),
        summary = summary(&figures),
        outputs = outputs(&args.logs)?,
    );
    let tmp = args.out.with_extension("md.tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!("wrote {} ({} figures)", args.out.display(), figures.len());
    Ok(())
}

fn main() -> ExitCode {
    match args().and_then(|args| report(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tau-bench-report: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_shows_ratio_target_and_misses() {
        let figures = [
            Figure::new("q", "ingest into SQLite", 73_034.0, "records/s")
                .beside("raw ed25519 | batched", 81_641.0)
                .target(">= 0.6x", true),
            Figure::new("hoarder", "get 256 MB", 420.0, "MB/s").target(">= 500 MB/s", false),
            Figure::new("taucorder", "first frame", 4.33, "ms"),
        ];
        let text = summary(&figures);
        assert!(text.contains("| q | ingest into SQLite | 73034 records/s | raw ed25519 \\| batched: 81641 records/s | 0.89x | >= 0.6x | yes |"), "{text}");
        assert!(
            text.contains("| hoarder | get 256 MB | 420 MB/s |  |  | >= 500 MB/s | **no** |"),
            "{text}"
        );
        assert!(text.contains("| taucorder | first frame | 4.33 ms |"), "{text}");
        assert!(text.contains("1 of 2 targets met; missed: hoarder: get 256 MB."), "{text}");
    }
}
