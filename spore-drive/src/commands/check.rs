use std::path::PathBuf;
use std::process::ExitCode;

use spore_drive::Playbook;

/// Check a playbook and print it as Spore Drive reads it (defaults filled in).
#[derive(Debug, clap::Args)]
pub(crate) struct Check {
    /// The playbook (YAML: the cloud and its hosts).
    playbook: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl Check {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let loaded = Playbook::load(&self.playbook)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&loaded)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "{}: cloud {}, {} hosts over {:?}",
            self.playbook.display(),
            loaded.cloud.name,
            loaded.hosts.len(),
            loaded.transport
        );
        for host in &loaded.hosts {
            let services = loaded.shape_of(host).map(|s| s.services.join(",")).unwrap_or_default();
            println!("  {:<16} {:<16} {services}", host.name, host.address.to_string());
        }
        Ok(ExitCode::SUCCESS)
    }
}
