use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use spore_drive::Playbook;
use spore_drive::deploy;
use spore_drive::playbook::Transport;
use spore_drive::progress::Progress;
use spore_drive::state::{self, Outcome};

use super::{Common, confirm};

/// Take hosts out of a running cloud without losing a blob or a request: drain their nodes
/// (seer sends them no more clients; hoarder hands their replicas to the other nodes), wait
/// until every pin is at its factor without them, then stop each node, remove its files and
/// revoke its admission. The host's identity leaves the secrets folder.
///
/// Refused, with the reason and nothing changed, when what stays could not hold every pin at
/// its factor, would leave no tns host, or a vault share would go offline (a host taking its
/// place takes it over: add the replacement and run `deploy --prune` instead). --force removes
/// anyway and says what is lost.
///
/// Take the hosts out of the playbook afterwards: a deploy would put them back as new nodes.
#[derive(Debug, clap::Args)]
pub(crate) struct Remove {
    /// The playbook (YAML: the cloud and its hosts).
    playbook: PathBuf,
    /// The hosts to remove (names in the playbook).
    #[arg(required = true)]
    hosts: Vec<String>,
    /// Do not ask first.
    #[arg(long)]
    yes: bool,
    /// Remove even when something would be lost (said first).
    #[arg(long)]
    force: bool,
    /// Seconds to wait for every pin to reach its factor without the leaving hosts.
    #[arg(long, default_value_t = 600)]
    drain_timeout: u64,
    #[command(flatten)]
    common: Common,
}

impl Remove {
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        let path = &self.playbook;
        let mut playbook = Playbook::load(path)?;
        for name in &self.hosts {
            if !playbook.hosts.iter().any(|h| &h.name == name) {
                bail!("{}: no host named `{name}`", path.display());
            }
        }
        let (leaving, staying): (Vec<_>, Vec<_>) =
            playbook.hosts.drain(..).partition(|h| self.hosts.contains(&h.name));
        playbook.hosts = staying;
        if playbook.transport == Transport::Ssh && !self.yes {
            if !std::io::stdin().is_terminal() {
                bail!("remove drains and removes nodes: pass --yes (no terminal to ask on)");
            }
            if !confirm(&format!(
                "drain and remove {} from cloud {}?",
                self.hosts.join(", "),
                playbook.cloud.name
            ))? {
                eprintln!("nothing was changed");
                return Ok(ExitCode::from(1));
            }
        }
        let vault = deploy::vault_removal(&playbook, &leaving);
        if !vault.problems.is_empty() && !self.force {
            return super::deploy::refuse(self.common.json, &vault.problems);
        }
        let run = self.common.run_of(path, playbook, Some(Default::default()), &leaving)?;
        let client = run.operator_client().await?;
        let removal = run.removal(&client).await;
        if !removal.problems.is_empty() && !self.force {
            return super::deploy::refuse(self.common.json, &removal.problems);
        }
        let forced: Vec<String> = vault.problems.iter().chain(&removal.problems).cloned().collect();
        for problem in &forced {
            eprintln!("--force: {problem}");
        }
        let names: Vec<&str> = self.hosts.iter().map(String::as_str).collect();
        let progress = Progress::new(self.common.json, &names);
        let line = progress.host(names[0]);
        let wait = Duration::from_secs(self.drain_timeout);
        let mut reports = Vec::new();
        match run.drain_leaving(&client, wait, &line).await {
            Ok(()) => {
                for host in &vault.retired_shares {
                    spore_drive::secrets::retire_share(run.playbook(), host)?;
                }
                let leaving: Vec<_> = run.leaving().iter().collect();
                reports = run
                    .each_of(leaving, |d| {
                        let line = progress.host(&d.host.name);
                        let (run, client) = (&run, &client);
                        async move { run.remove_host(client, d, &line).await }
                    })
                    .await;
            }
            Err(e) => {
                line.finish(&e);
                for name in &self.hosts {
                    reports.push(state::HostReport::new(
                        name,
                        Outcome::Failed,
                        0.0,
                        Some(e.clone()),
                    ));
                }
            }
        }
        let removed: Vec<String> = reports
            .iter()
            .filter(|r| r.result == Outcome::Removed)
            .map(|r| r.host.clone())
            .collect();
        state::forget(&run.layout().state(), &removed)?;
        for name in &removed {
            let _ = std::fs::remove_dir_all(run.layout().dir.join("hosts").join(name));
        }
        let all_ok = removed.len() == self.hosts.len();
        if self.common.json {
            let report = serde_json::json!({
                "ok": all_ok,
                "hosts": reports,
                "forced": forced,
                "retired_shares": vault.retired_shares,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("\n{}", deploy::recap(&reports));
            if all_ok {
                println!(
                    "removed {}: take them out of {} (a deploy would put them back as new nodes)",
                    self.hosts.join(", "),
                    path.display()
                );
            }
        }
        Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
    }
}
