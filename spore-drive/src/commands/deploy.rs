use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use spore_drive::Playbook;
use spore_drive::deploy;
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
        let (mut run, bundle) = common.prepare(path, only)?;
        run.set_health_timeout(Duration::from_secs(self.health_timeout));
        let started = Instant::now();
        let names: Vec<String> = run.selected().iter().map(|d| d.host.name.clone()).collect();
        let progress =
            Progress::new(common.json, &names.iter().map(String::as_str).collect::<Vec<_>>());
        let reports: Vec<HostReport> = run
            .each(|d| {
                let line = progress.host(&d.host.name);
                let run = &run;
                let bundle = &bundle;
                async move { run.deploy_host(d, bundle, &line).await }
            })
            .await;
        state::record(&run.layout().state(), &reports)?;
        let ok = |r: &HostReport| matches!(r.result, Outcome::Changed | Outcome::Unchanged);
        let mut problems = Vec::new();
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
        println!(
            "{} changed, {} unchanged, {} failed, {} rolled back in {seconds:.1}s",
            count(Outcome::Changed),
            count(Outcome::Unchanged),
            count(Outcome::Failed),
            count(Outcome::RolledBack)
        );
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
