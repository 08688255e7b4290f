use std::path::PathBuf;

use q::period::Period;
use q::store::Store;

use super::{signing_key, write_atomically};

/// Writes a usage proof for a period: per (project, function) totals of the collected records,
/// a Merkle sum tree over them, and the statement (period, project, root, totals) signed by q's
/// key as EIP-712 typed data, with one inclusion proof per line item.
#[derive(Debug, clap::Args)]
pub(crate) struct Prove {
    /// The period, FROM..TO (window start times; dates, RFC 3339 times, `now` or
    /// milliseconds; an end left out is open).
    #[arg(long, default_value = "..")]
    period: Period,
    /// Only this project's functions.
    #[arg(long)]
    project: Option<String>,
    /// Where to write the proof.
    #[arg(long, default_value = "proof.json")]
    out: PathBuf,
    /// The database: a SQLite file, or a postgres:// URL.
    #[arg(long, default_value = "q.db", env = "Q_DB")]
    db: String,
    /// q's signing key (secp256k1, made on first use with mode 0600).
    #[arg(long, default_value = "q.key", env = "Q_KEY")]
    key: PathBuf,
    /// The chain id in the EIP-712 domain: the chain whose contracts may accept the proof.
    #[arg(long, default_value_t = 1)]
    chain_id: u64,
    /// Print a summary as JSON.
    #[arg(long)]
    json: bool,
}

impl Prove {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let Self { period, project, out, db, key, chain_id, json } = self;
        let key = signing_key(&key)?;
        let store = Store::open(&db).await?;
        let proof = q::proof::prove(&store, period, project.as_deref(), &key, chain_id).await?;
        write_atomically(&out, proof.render().as_bytes())?;
        let totals = proof.statement.totals;
        if json {
            let summary = serde_json::json!({
                "out": out,
                "signer": proof.signer,
                "root": proof.statement.root,
                "line_items": proof.line_items.len(),
                "totals": totals,
            });
            println!("{summary}");
        } else {
            println!(
                "wrote {}: {period}, {} line items, {} invocations ({} errors) in {} records, root {}, signed by {}",
                out.display(),
                proof.line_items.len(),
                totals.invocations,
                totals.errors,
                totals.records,
                proof.statement.root,
                proof.signer
            );
        }
        Ok(())
    }
}
