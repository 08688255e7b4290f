use std::path::PathBuf;
use std::process::ExitCode;

use tau_proto::text::printable;

use super::Common;

/// Each host: reachable, node version, running, answering, peers seen.
#[derive(Debug, clap::Args)]
pub(crate) struct Status {
    /// The playbook (YAML: the cloud and its hosts).
    playbook: PathBuf,
    #[command(flatten)]
    common: Common,
}

impl Status {
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        let run = self.common.prepare_run(&self.playbook, self.common.selection())?;
        let statuses = run.each(|d| run.status_host(d)).await;
        if self.common.json {
            println!("{}", serde_json::to_string_pretty(&statuses)?);
        } else {
            let width = statuses.iter().map(|s| s.host.len()).max().unwrap_or(4).max(4);
            println!(
                "{:<width$}  {:<15}  {:<9}  {:<16}  {:<7}  {:<8}  {:>5}",
                "host", "address", "reachable", "version", "running", "answers", "peers"
            );
            for s in &statuses {
                let yes_no = |b: bool| if b { "yes" } else { "no" };
                println!(
                    "{:<width$}  {:<15}  {:<9}  {:<16}  {:<7}  {:<8}  {:>5}{}",
                    s.host,
                    s.address,
                    yes_no(s.reachable),
                    printable(s.version.as_deref().unwrap_or("-")),
                    yes_no(s.running),
                    yes_no(s.healthy),
                    s.peers.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                    s.error.as_deref().map(|e| format!("  {}", printable(e))).unwrap_or_default()
                );
            }
        }
        let healthy = statuses.iter().all(|s| s.healthy);
        Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::from(1) })
    }
}
