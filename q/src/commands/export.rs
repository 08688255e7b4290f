use std::path::PathBuf;

use q::events::Customers;
use q::period::Period;
use q::report::{Format, ReportError, export_events, export_records, export_totals};
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
    /// csv or json (totals, or records with --records); cloudevents, stripe or lago: every
    /// record's usage events, one per additive figure, with ids a receiver deduplicates by
    /// (needs --customers).
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
    /// For cloudevents, stripe and lago: each project's customer (the CloudEvents subject, the
    /// Stripe customer) or subscription (Lago) id, as `projects: {<project>: <id>}`.
    #[arg(long)]
    customers: Option<PathBuf>,
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
        let Self { period, project, format, customers, records, out, db } = self;
        let customers = match (format.shape(), &customers) {
            (Some(_), Some(path)) => Some(Customers::load(path)?),
            (Some(shape), None) => anyhow::bail!(ReportError::NeedsCustomers(shape.name())),
            (None, _) => None,
        };
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
        let count = if let (Some(customers), Some(shape)) = (&customers, format.shape()) {
            export_events(&store, period, project, shape, customers, &mut sink).await?
        } else if records {
            export_records(&store, period, project, format, &mut sink).await?
        } else {
            export_totals(&store, period, project, format, &mut sink).await? as u64
        };
        drop(sink);
        if let Some(path) = &out {
            std::fs::rename(temp_beside(path), path)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            let what = match (&customers, records) {
                (Some(_), _) => "events",
                (None, true) => "records",
                (None, false) => "line items",
            };
            eprintln!("q: wrote {count} {what} to {}", path.display());
        }
        Ok(())
    }
}
