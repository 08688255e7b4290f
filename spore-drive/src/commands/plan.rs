use std::path::PathBuf;
use std::process::ExitCode;

use spore_drive::deploy::FileAction;

use super::Common;

/// Show, per host, what a deploy would change (binary, config, secrets, service); changes
/// nothing on any host.
#[derive(Debug, clap::Args)]
pub(crate) struct Plan {
    /// The playbook (YAML: the cloud and its hosts).
    playbook: PathBuf,
    #[command(flatten)]
    common: Common,
}

impl Plan {
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        let common = &self.common;
        let (run, bundle) = common.prepare(&self.playbook, common.selection())?;
        let plans = run.each(|d| run.plan_host(d, &bundle)).await;
        let failed = plans.iter().any(|p| p.error.is_some());
        if common.json {
            println!("{}", serde_json::to_string_pretty(&plans)?);
            return Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS });
        }
        println!(
            "plan for cloud {} ({} hosts, node binary sha256 {}…, {} MiB, {}):",
            run.playbook().cloud.name,
            plans.len(),
            &bundle.sha256[..12],
            bundle.size() >> 20,
            bundle.arch
        );
        for plan in &plans {
            if let Some(e) = &plan.error {
                println!("  {}: cannot plan: {e}", plan.host);
                continue;
            }
            if !plan.changes_anything() {
                println!("  {}: no change", plan.host);
                continue;
            }
            println!("  {} ({}, {:?}):", plan.host, plan.arch, plan.service);
            println!("    binary   {}", plan.binary);
            for (file, action) in &plan.files {
                if *action != FileAction::Unchanged {
                    println!("    {file:<24} {action}");
                }
            }
            println!("    node     {}", plan.node);
        }
        let changing = plans.iter().filter(|p| p.changes_anything() && p.error.is_none()).count();
        println!("{changing} of {} hosts would change; nothing was changed", plans.len());
        Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
    }
}
