use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use spore_drive::playbook::Transport;
use spore_drive::progress::Progress;

use super::{Common, confirm};

/// Stop the node on every host and remove everything Spore Drive put there (the secrets
/// folder here is kept).
#[derive(Debug, clap::Args)]
pub(crate) struct Destroy {
    /// The playbook (YAML: the cloud and its hosts).
    playbook: PathBuf,
    /// Do not ask first.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    common: Common,
}

impl Destroy {
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        let run = self.common.prepare_run(&self.playbook, self.common.selection())?;
        if !self.yes && run.playbook().transport == Transport::Ssh {
            if !std::io::stdin().is_terminal() {
                bail!(
                    "destroy stops and removes the node on every host: pass --yes (no terminal \
                     to ask on)"
                );
            }
            if !confirm(&format!(
                "stop and remove the node on {} hosts of cloud {}?",
                run.selected().len(),
                run.playbook().cloud.name
            ))? {
                eprintln!("nothing was changed");
                return Ok(ExitCode::from(1));
            }
        }
        let names: Vec<String> = run.selected().iter().map(|d| d.host.name.clone()).collect();
        let progress =
            Progress::new(self.common.json, &names.iter().map(String::as_str).collect::<Vec<_>>());
        let reports = run
            .each(|d| {
                let line = progress.host(&d.host.name);
                let run = &run;
                async move { run.destroy_host(d, &line).await }
            })
            .await;
        let all_ok = reports.iter().all(|r| r.error.is_none());
        if all_ok && run.selected().len() == run.playbook().hosts.len() {
            for file in [run.layout().state(), run.layout().profile(), run.layout().seeds()] {
                let _ = std::fs::remove_file(file);
            }
            if run.playbook().transport == Transport::Local {
                // The hosts' folders are gone; their parent goes too when nothing else is in it.
                let _ = std::fs::remove_dir(run.playbook().resolve(&run.playbook().install_dir));
            }
        }
        if self.common.json {
            let report = serde_json::json!({"ok": all_ok, "hosts": reports});
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            for r in &reports {
                match &r.error {
                    None => println!("{}: node stopped and removed", r.host),
                    Some(e) => println!("{}: FAILED: {e}", r.host),
                }
            }
            if all_ok {
                println!("the secrets in {} are kept", run.playbook().secrets_dir().display());
            }
        }
        Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
    }
}
