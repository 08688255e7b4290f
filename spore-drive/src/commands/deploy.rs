use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use spore_drive::Playbook;
use spore_drive::deploy;
use spore_drive::host::Desired;
use spore_drive::playbook::Host;
use spore_drive::playbook::Transport;
use spore_drive::progress::Progress;
use spore_drive::secrets::Layout;
use spore_drive::state::{self, HostReport, Outcome};

use super::{Common, confirm};

/// Install or update the node on every host: upload the binary when it differs, write config
/// and secrets, (re)start the node, wait until it answers and sees its peers, roll a host back
/// when it does not. Then publish the vault key set and write the cloud profile (`cloud.yaml`,
/// beside the secrets folder).
///
/// Hosts added to the playbook are deployed and join the running cloud; the others stay
/// unchanged (no restart). Hosts deployed before and taken out of the playbook are removed with
/// --prune: drained, their replicas handed to the others, stopped and cleaned up (see
/// `spore-drive remove`). A vault host taken out and replaced in the same deploy by a new host
/// of a vault shape hands it its share.
///
/// With --batch N, hosts are deployed N at a time in playbook order; with --max-failed K, once
/// more than K hosts failed, the batch in progress is put back (its healthy hosts too) and the
/// later batches are not touched.
///
/// Exit status: 0 when every host succeeded, 1 when any failed, 2 when nothing could start.
///
/// When the SSH user is not root, commands run with sudo: without a password (`sudo -n`), or
/// with the one in the environment variable SPORE_DRIVE_SUDO_PASSWORD, given to sudo on stdin
/// and never on a command line.
#[derive(Debug, clap::Args)]
pub(crate) struct Deploy {
    /// The playbook (YAML: the cloud and its hosts).
    playbook: PathBuf,
    /// Do not ask before changing hosts over SSH.
    #[arg(long)]
    yes: bool,
    /// Only the hosts that failed (or were rolled back) in the last deploy.
    #[arg(long, conflicts_with = "host")]
    retry_failed: bool,
    /// Seconds a started node has to answer and see its peers before it is rolled back.
    #[arg(long, default_value_t = 30)]
    health_timeout: u64,
    /// Remove the hosts deployed before that the playbook no longer lists.
    #[arg(long)]
    prune: bool,
    /// With --prune: remove even when something would be lost (said first: pins that stay
    /// below their factor, a vault share retired).
    #[arg(long, requires = "prune")]
    force: bool,
    /// With --prune: seconds to wait for every pin to reach its factor without the leaving
    /// hosts.
    #[arg(long, default_value_t = 600, requires = "prune")]
    drain_timeout: u64,
    /// Deploy this many hosts at a time, in playbook order (all at once by default).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    batch: Option<u16>,
    /// Stop once more than this many hosts failed: the batch in progress is put back and the
    /// later ones are not touched.
    #[arg(long)]
    max_failed: Option<u16>,
    #[command(flatten)]
    common: Common,
}

impl Deploy {
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        let path = &self.playbook;
        let common = &self.common;
        let playbook = Playbook::load(path)?;
        let only = if self.retry_failed {
            let layout = Layout { dir: playbook.secrets_dir() };
            let failed = state::failed_last_time(&layout.state())?;
            if failed.is_empty() {
                println!("no host failed in the last deploy: nothing to retry");
                return Ok(ExitCode::SUCCESS);
            }
            Some(failed)
        } else {
            common.selection()
        };
        if playbook.transport == Transport::Ssh && !self.yes {
            if !std::io::stdin().is_terminal() {
                bail!(
                    "deploying changes hosts over SSH: pass --yes (no terminal to ask on); \
                     `spore-drive plan {}` shows what would change",
                    path.display()
                );
            }
            let question = format!(
                "deploy cloud {} to {} hosts over SSH? (`spore-drive plan` shows what changes)",
                playbook.cloud.name,
                only.as_ref().map(BTreeSet::len).unwrap_or(playbook.hosts.len())
            );
            if !confirm(&question)? {
                eprintln!("nothing was changed");
                return Ok(ExitCode::from(1));
            }
        }
        // Hosts deployed before and no longer in the playbook.
        let layout = Layout { dir: playbook.secrets_dir() };
        let gone: Vec<Host> = state::deployed(&layout.state())
            .into_iter()
            .filter(|h| !playbook.hosts.iter().any(|p| p.name == h.name))
            .collect();
        let takeovers = if gone.is_empty() {
            Vec::new()
        } else {
            spore_drive::secrets::take_over_shares(&playbook, &gone)?
        };
        for t in &takeovers {
            eprintln!("{} takes over the vault share of {}", t.to, t.from);
        }
        let leaving = if self.prune { gone.clone() } else { Vec::new() };
        if !self.prune && !gone.is_empty() {
            let names: Vec<&str> = gone.iter().map(|h| h.name.as_str()).collect();
            eprintln!(
                "{} deployed before and no longer in the playbook: `deploy --prune` removes them",
                names.join(", ")
            );
        }
        let vault = deploy::vault_removal(&playbook, &leaving);
        if !vault.problems.is_empty() && !self.force {
            return refuse(common.json, &vault.problems);
        }
        let (mut run, bundle) = common.prepare_leaving(path, only, &leaving)?;
        run.set_health_timeout(Duration::from_secs(self.health_timeout));
        let started = Instant::now();
        let mut problems = Vec::new();
        let client = if leaving.is_empty() {
            None
        } else {
            let client = run.operator_client().await?;
            let removal = run.removal(&client).await;
            if !removal.problems.is_empty() && !self.force {
                return refuse(common.json, &removal.problems);
            }
            for problem in vault.problems.iter().chain(&removal.problems) {
                eprintln!("--force: {problem}");
                problems.push(format!("forced: {problem}"));
            }
            Some(client)
        };
        let names: Vec<String> = run
            .selected()
            .iter()
            .chain(run.leaving().iter().collect::<Vec<_>>().iter())
            .map(|d| d.host.name.clone())
            .collect();
        let progress =
            Progress::new(common.json, &names.iter().map(String::as_str).collect::<Vec<_>>());
        // New hosts are admitted before they start, so that they join as nodes: meanwhile every
        // host goes as far as starting its node (connect, facts, upload, stop). `join!` polls the
        // admission first, so no start comes before it holds the starts back.
        // A cloud that does not run yet (nothing deployed healthy so far) cannot be reached: its
        // nodes' health checks admit the hosts once one runs.
        let admit = async {
            if let Err(e) = run.admit_ahead().await {
                progress.println(&format!(
                    "the hosts were not admitted before they start ({e}): their health checks \
                     admit them"
                ));
            }
        };
        let deploy = async {
            let selected = run.selected();
            let size = self.batch.map_or(selected.len().max(1), usize::from);
            let batches: Vec<Vec<&Desired>> = selected.chunks(size).map(<[_]>::to_vec).collect();
            let mut reports: Vec<HostReport> = Vec::new();
            let mut failed = 0usize;
            let mut stopped = false;
            for (i, batch) in batches.iter().enumerate() {
                if stopped {
                    for d in batch {
                        let why = "not touched: an earlier batch failed past --max-failed";
                        progress.host(&d.host.name).finish(&format!("skipped: {why}"));
                        reports.push(HostReport::new(
                            &d.host.name,
                            Outcome::Skipped,
                            0.0,
                            Some(why.into()),
                        ));
                    }
                    continue;
                }
                if batches.len() > 1 {
                    let hosts: Vec<&str> = batch.iter().map(|d| d.host.name.as_str()).collect();
                    progress.println(&format!(
                        "batch {} of {}: {}",
                        i + 1,
                        batches.len(),
                        hosts.join(", ")
                    ));
                }
                let mut done: Vec<HostReport> = run
                    .each_of(batch.clone(), |d| {
                        let line = progress.host(&d.host.name);
                        let run = &run;
                        let bundle = &bundle;
                        async move { run.deploy_host(d, bundle, &line).await }
                    })
                    .await;
                failed += done
                    .iter()
                    .filter(|r| matches!(r.result, Outcome::Failed | Outcome::RolledBack))
                    .count();
                if self.max_failed.is_some_and(|most| failed > usize::from(most)) {
                    stopped = true;
                    let most = self.max_failed.unwrap_or_default();
                    for (report, d) in done.iter_mut().zip(batch) {
                        if report.result != Outcome::Changed || report.activated.is_empty() {
                            continue;
                        }
                        let line = progress.host(&d.host.name);
                        let put_back = run.put_back(d, &report.activated, &line).await;
                        report.result = Outcome::RolledBack;
                        report.error = Some(match put_back {
                            Ok(()) => format!(
                                "healthy, put back with its batch: {failed} hosts failed, more than \
                                 --max-failed {most}"
                            ),
                            Err(e) => format!("its batch failed; putting it back failed too: {e}"),
                        });
                        report.activated.clear();
                        line.finish(report.error.as_deref().unwrap_or(""));
                    }
                }
                reports.extend(done);
            }
            (reports, failed, stopped)
        };
        let ((), (mut reports, failed, stopped)) = tokio::join!(admit, deploy);
        // Removing the leaving hosts, once the others (their replacements too) are deployed.
        let mut removed = Vec::new();
        if let Some(client) = &client {
            let line = progress.host(&run.leaving()[0].host.name);
            let ready = match (stopped, failed) {
                (false, 0) => {
                    run.drain_leaving(client, Duration::from_secs(self.drain_timeout), &line).await
                }
                _ => Err("not removed: the deploy of the other hosts failed".to_string()),
            };
            match ready {
                Ok(()) => {
                    for t in &vault.retired_shares {
                        spore_drive::secrets::retire_share(run.playbook(), t)?;
                    }
                    let leaving: Vec<&Desired> = run.leaving().iter().collect();
                    let gone = run
                        .each_of(leaving, |d| {
                            let line = progress.host(&d.host.name);
                            let run = &run;
                            async move { run.remove_host(client, d, &line).await }
                        })
                        .await;
                    removed = gone
                        .iter()
                        .filter(|r| r.result == Outcome::Removed)
                        .map(|r| r.host.clone())
                        .collect();
                    reports.extend(gone);
                }
                Err(e) => {
                    line.finish(&e);
                    for d in run.leaving() {
                        reports.push(HostReport::new(
                            &d.host.name,
                            Outcome::Failed,
                            0.0,
                            Some(e.clone()),
                        ));
                    }
                }
            }
        }
        let seeds = spore_drive::host::seeds(run.playbook(), run.layout())?;
        spore_drive::host::record_seeds(run.layout(), &seeds)?;
        let kept: Vec<HostReport> =
            reports.iter().filter(|r| r.result != Outcome::Removed).cloned().collect();
        state::record(&run.layout().state(), &kept)?;
        if !removed.is_empty() {
            state::forget(&run.layout().state(), &removed)?;
            for name in &removed {
                // Its identity goes: a host added later under this name is a new node.
                let _ = std::fs::remove_dir_all(run.layout().dir.join("hosts").join(name));
            }
        }
        let ok = |r: &HostReport| {
            matches!(r.result, Outcome::Changed | Outcome::Unchanged | Outcome::Removed)
        };
        let published = if reports.iter().any(ok) {
            match run.publish_vault().await {
                Ok(n) => n,
                Err(e) => {
                    problems.push(format!("the vault key set was not published: {e:#}"));
                    0
                }
            }
        } else {
            0
        };
        let profile = run.write_profile()?;
        let seconds = started.elapsed().as_secs_f64();
        let all_ok = reports.iter().all(ok) && problems.is_empty();
        if common.json {
            let report = serde_json::json!({
                "cloud": run.playbook().cloud.name,
                "ok": all_ok,
                "seconds": seconds,
                "hosts": reports,
                "vault_records_published": published,
                "problems": problems,
                "profile": profile,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        println!("\n{}", deploy::recap(&reports));
        let count = |r: Outcome| reports.iter().filter(|x| x.result == r).count();
        let mut summary = format!(
            "{} changed, {} unchanged, {} failed, {} rolled back",
            count(Outcome::Changed),
            count(Outcome::Unchanged),
            count(Outcome::Failed),
            count(Outcome::RolledBack)
        );
        for (outcome, word) in [(Outcome::Skipped, "skipped"), (Outcome::Removed, "removed")] {
            if count(outcome) > 0 {
                summary.push_str(&format!(", {} {word}", count(outcome)));
            }
        }
        println!("{summary} in {seconds:.1}s");
        if !takeovers.is_empty() {
            for t in &takeovers {
                println!("{} took over the vault share of {}", t.to, t.from);
            }
        }
        if reports.iter().all(|r| r.result == Outcome::Unchanged) {
            println!("nothing changed: every host already runs this node and config");
        }
        if published > 0 {
            println!("published the vault key set and registrars ({published} TNS records)");
        }
        for problem in &problems {
            println!("problem: {problem}");
        }
        if !reports.iter().all(ok) {
            println!(
                "retry the failed hosts with `spore-drive deploy {} --retry-failed`",
                path.display()
            );
        }
        println!("cloud profile: {}", profile.display());
        println!("inspect it with:");
        // The very binaries used here, so that the commands work as printed.
        let node = bundle.path.display();
        let spore = std::env::args().next().unwrap_or_else(|| "spore-drive".into());
        println!("  {node} status --cloud {}", profile.display());
        println!("  {node} nodes  --cloud {}", profile.display());
        println!("  {spore} status {}", path.display());
        // The rest of the toolkit, where it was built beside Spore Drive.
        let beside = |name: &str| {
            std::env::current_exe().ok().map(|exe| exe.with_file_name(name)).filter(|p| p.exists())
        };
        if let Some(taucorder) = beside("taucorder") {
            println!("  {} --cloud {}", taucorder.display(), profile.display());
        }
        if let Some(q) = beside("q") {
            println!("  {} collect --cloud {} --db usage.db", q.display(), profile.display());
        }
        Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
    }
}

/// Prints why removing hosts was refused (nothing changed) and returns exit status 1.
pub(super) fn refuse(json: bool, problems: &[String]) -> anyhow::Result<ExitCode> {
    if json {
        let report = serde_json::json!({"ok": false, "refused": problems});
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for problem in problems {
            eprintln!("refused: {problem}");
        }
        eprintln!("nothing was changed (--force removes anyway, losing what is said above)");
    }
    Ok(ExitCode::from(1))
}
