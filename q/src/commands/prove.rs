use std::path::PathBuf;

use q::period::Period;
use q::proof::{Pricing, ProofFile, Request};
use q::store::Store;

use super::{signing_key, write_atomically};

/// Writes a usage proof for a period: per (project, function) totals of the collected records,
/// priced with a rate card when one is given, a Merkle sum tree over them, and the statement
/// (period, project, root, totals, charge) signed by q's key as EIP-712 typed data, with one
/// inclusion proof per line item.
///
/// Records that reach q after a period was proven (late records; `q status` counts them) are
/// proven with --amend: an amendment of the earlier proof, holding only those records and
/// naming the root it amends.
#[derive(Debug, clap::Args)]
pub(crate) struct Prove {
    /// The period, FROM..TO (window start times; dates, RFC 3339 times, `now` or
    /// milliseconds; an end left out is open).
    #[arg(long, default_value = "..", conflicts_with = "amend")]
    period: Period,
    /// Only this project's functions.
    #[arg(long, conflicts_with = "amend")]
    project: Option<String>,
    /// Price every line item with this rate card (rates.yaml): each carries its charge per
    /// meter, the statement the total, currency and the card's digest.
    #[arg(long)]
    rates: Option<PathBuf>,
    /// Amend this earlier proof (made from this database) with the records of its period
    /// stored after it; its period, project and chain are kept, and its rate card must be
    /// given again with --rates if it was priced.
    #[arg(long, value_name = "OLD_PROOF")]
    amend: Option<PathBuf>,
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
    #[arg(long, default_value_t = 1, conflicts_with = "amend")]
    chain_id: u64,
    /// Print a summary as JSON.
    #[arg(long)]
    json: bool,
}

impl Prove {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let Self { period, project, rates, amend, out, db, key, chain_id, json } = self;
        let key = signing_key(&key)?;
        let pricing = rates.as_deref().map(Pricing::load).transpose()?;
        let store = Store::open(&db).await?;
        let proof = match &amend {
            None => {
                let request = Request {
                    period,
                    project: project.as_deref(),
                    chain_id,
                    pricing: pricing.as_ref(),
                };
                q::proof::prove(&store, request, &key).await?
            }
            Some(old) => {
                let text = std::fs::read_to_string(old)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", old.display()))?;
                let me = format!("{}", key.address()).to_lowercase();
                q::proof::verify(&text, None, &[&me]).map_err(|e| {
                    anyhow::anyhow!(
                        "{} cannot be amended: it does not verify as q's: {e}",
                        old.display()
                    )
                })?;
                let old_file: ProofFile = serde_json::from_str(&text)?;
                q::proof::amend(&store, &old_file, pricing.as_ref(), &key)
                    .await
                    .map_err(|e| anyhow::anyhow!("{} cannot be amended: {e}", old.display()))?
            }
        };
        write_atomically(&out, proof.render().as_bytes())?;
        let s = &proof.statement;
        if json {
            let summary = serde_json::json!({
                "out": out,
                "signer": proof.signer,
                "root": s.root,
                "amends": amend.is_some().then_some(&s.amends),
                "line_items": proof.line_items.len(),
                "totals": s.totals,
                "currency": (!s.currency.is_empty()).then_some(&s.currency),
                "charge": (!s.currency.is_empty()).then(|| s.charge_text()),
            });
            println!("{summary}");
        } else {
            let period = Period { from_ms: s.period_start_ms, to_ms: s.period_end_ms };
            let what =
                if amend.is_some() { format!("amendment of {}", s.amends) } else { "proof".into() };
            println!(
                "wrote {} ({what}): {period}, {} line items, {} invocations ({} errors) in {} records, charge {}, root {}, signed by {}",
                out.display(),
                proof.line_items.len(),
                s.totals.invocations,
                s.totals.errors,
                s.totals.records,
                s.charge_text(),
                s.root,
                proof.signer
            );
        }
        Ok(())
    }
}
