use std::path::PathBuf;

use q::period::Period;
use q::proof::Pricing;
use q::store::Store;

use super::{signing_key, write_atomically};

/// Writes an invoice people read: one HTML page for a project and period with a line per
/// function and meter (quantity, unit price, amount), the total, a usage chart, and the root
/// and signer of the priced proof its amounts come from; the proof is written beside it
/// (--proof-out), so the customer can check every amount with `q verify-proof`.
#[derive(Debug, clap::Args)]
pub(crate) struct Invoice {
    /// The period, FROM..TO (window start times; dates, RFC 3339 times, `now` or
    /// milliseconds).
    #[arg(long)]
    period: Period,
    /// The project billed.
    #[arg(long)]
    project: String,
    /// The rate card (rates.yaml).
    #[arg(long)]
    rates: PathBuf,
    /// Where to write the page.
    #[arg(long, default_value = "invoice.html")]
    out: PathBuf,
    /// Where to write the priced proof (default: beside the page, NAME.proof.json).
    #[arg(long)]
    proof_out: Option<PathBuf>,
    /// The database: a SQLite file, or a postgres:// URL.
    #[arg(long, default_value = "q.db", env = "Q_DB")]
    db: String,
    /// q's signing key (secp256k1, made on first use with mode 0600).
    #[arg(long, default_value = "q.key", env = "Q_KEY")]
    key: PathBuf,
    /// The chain id in the proof's EIP-712 domain.
    #[arg(long, default_value_t = 1)]
    chain_id: u64,
    /// Print a summary (lines, total, proof) as JSON.
    #[arg(long)]
    json: bool,
}

impl Invoice {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let Self { period, project, rates, out, proof_out, db, key, chain_id, json } = self;
        let key = signing_key(&key)?;
        let pricing = Pricing::load(&rates)?;
        let store = Store::open(&db).await?;
        let invoice =
            q::invoice::invoice(&store, period, &project, &pricing, &key, chain_id).await?;
        let proof_out = proof_out.unwrap_or_else(|| out.with_extension("proof.json"));
        write_atomically(&proof_out, invoice.proof.render().as_bytes())?;
        write_atomically(&out, invoice.html.as_bytes())?;
        if json {
            let summary = serde_json::json!({
                "out": out,
                "proof": proof_out,
                "total": invoice.total,
                "lines": invoice.lines,
                "root": invoice.proof.statement.root,
                "signer": invoice.proof.signer,
            });
            println!("{summary}");
        } else {
            println!(
                "wrote {} ({} lines, total {}) and its proof {} (root {}, signed by {})",
                out.display(),
                invoice.lines.len(),
                invoice.total,
                proof_out.display(),
                invoice.proof.statement.root,
                invoice.proof.signer
            );
        }
        Ok(())
    }
}
