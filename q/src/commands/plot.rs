use std::path::PathBuf;

use q::period::Period;
use q::report::plot;
use q::store::Store;

/// Draws invocations and wall time per function over a period, as PNG or SVG (by the file
/// name's extension).
#[derive(Debug, clap::Args)]
pub(crate) struct Plot {
    /// The period, FROM..TO.
    #[arg(long, default_value = "..")]
    period: Period,
    /// Only this project.
    #[arg(long)]
    project: Option<String>,
    /// The chart: usage.png or usage.svg.
    #[arg(long, default_value = "usage.png")]
    out: PathBuf,
    /// The database: a SQLite file, or a postgres:// URL.
    #[arg(long, default_value = "q.db", env = "Q_DB")]
    db: String,
    /// Print what was drawn as JSON.
    #[arg(long)]
    json: bool,
}

impl Plot {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let store = Store::open(&self.db).await?;
        let chart = plot(&store, self.period, self.project.as_deref(), &self.out).await?;
        if self.json {
            println!("{}", serde_json::to_string(&chart)?);
        } else {
            println!(
                "drew {}: {} functions from {} records, {} s per point",
                self.out.display(),
                chart.functions.len(),
                chart.records,
                chart.bucket_ms / 1000
            );
        }
        Ok(())
    }
}
