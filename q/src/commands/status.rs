use std::path::PathBuf;

use q::store::Store;
use tau_proto::text::printable;

use super::connect;

/// Shows the cloud's nodes (healthy or not, CPUs, load, memory, disk, requests now) and, per
/// substrate node, how many counter records q has not collected yet; and every proven period
/// that records reached after its proof (late records, for `q prove --amend`).
#[derive(Debug, clap::Args)]
pub(crate) struct Status {
    /// The cloud profile: swarm key path and bootstrap addresses.
    #[arg(long, default_value = "cloud.yaml")]
    cloud: PathBuf,
    /// The database: a SQLite file, or a postgres:// URL.
    #[arg(long, default_value = "q.db", env = "Q_DB")]
    db: String,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
}

impl Status {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let client = connect(&self.cloud, None).await?;
        let store = Store::open(&self.db).await?;
        let status = q::status::status(&client, &store).await?;
        if self.json {
            println!("{}", serde_json::to_string(&status)?);
        } else {
            print_status(&status);
        }
        Ok(())
    }
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

fn print_status(status: &q::status::Status) {
    println!(
        "{:<54} {:<9} {:>4} {:>6} {:>6} {:>13} {:>13} {:>5} {:>8}",
        "NODE", "HEALTH", "CPUS", "CPU%", "LOAD1", "MEM GiB", "DISK FREE", "REQS", "LAG"
    );
    for n in &status.nodes {
        let health = match (n.healthy, n.beat_age_ms) {
            (true, _) => "healthy".to_string(),
            (false, Some(age)) => format!("silent {}s", age / 1000),
            (false, None) => "unknown".to_string(),
        };
        let lag = match (&n.lag, &n.error) {
            (Some(lag), _) => lag.to_string(),
            (None, Some(_)) => "?".to_string(),
            (None, None) => "-".to_string(),
        };
        println!(
            "{:<54} {:<9} {:>4} {:>6.1} {:>6.2} {:>6.1}/{:<6.1} {:>6.1}/{:<6.1} {:>5} {:>8}",
            n.node,
            health,
            n.cpus,
            n.cpu_percent,
            n.load[0],
            gib(n.memory[0]),
            gib(n.memory[1]),
            gib(n.disk[0]),
            gib(n.disk[1]),
            n.active_requests,
            lag
        );
        if let Some(e) = &n.error {
            println!("  {} did not answer for its counters: {}", n.node, printable(e));
        }
    }
    println!(
        "{} nodes, {} healthy; {} records not collected yet",
        status.nodes.len(),
        status.healthy,
        status.lag
    );
    for late in &status.late {
        let period = q::period::Period { from_ms: late.period_start_ms, to_ms: late.period_end_ms };
        let project = if late.project.is_empty() { "every project" } else { &late.project };
        println!(
            "late: {} records of {period} ({project}) arrived after its proof {}: prove them with `q prove --amend` on that proof",
            late.records, late.root
        );
    }
}
