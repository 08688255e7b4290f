use std::path::PathBuf;

use q::period::Period;
use q::report::{Format, export_records, export_totals};
use q::store::Store;

use super::temp_beside;

/// Exports a period's per-function totals (or, with --records, every raw record) for a
/// billing system.
#[derive(Debug, clap::Args)]
pub(crate) struct Export {
    /// The period, FROM..TO.
    #[arg(long, default_value = "..")]
    period: Period,
    /// Only this project.
    #[arg(long)]
    project: Option<String>,
    /// csv or json.
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
    /// Every record (node, seq, counters, signature, hash) instead of the totals.
    #[arg(long)]
    records: bool,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The database: a SQLite file, or a postgres:// URL.
    #[arg(long, default_value = "q.db", env = "Q_DB")]
    db: String,
}

impl Export {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let Self { period, project, format, records, out, db } = self;
        let store = Store::open(&db).await?;
        let mut sink: Box<dyn std::io::Write> = match &out {
            // Through a temporary file: a failed export leaves no half file behind.
            Some(path) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(temp_beside(path))
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
            )),
            None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        };
        let project = project.as_deref();
        let count = if records {
            export_records(&store, period, project, format, &mut sink).await?
        } else {
            export_totals(&store, period, project, format, &mut sink).await? as u64
        };
        drop(sink);
        if let Some(path) = &out {
            std::fs::rename(temp_beside(path), path)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            let what = if records { "records" } else { "line items" };
            eprintln!("q: wrote {count} {what} to {}", path.display());
        }
        Ok(())
    }
}
