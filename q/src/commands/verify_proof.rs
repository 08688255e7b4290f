use std::path::PathBuf;

/// Checks a proof file offline: the signature, every line item's path to the signed root and
/// totals, and that not one byte was changed. Exits 1 with the reason if anything fails.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyProof {
    /// A proof file written by `q prove`.
    file: PathBuf,
    /// Check only this line item, PROJECT/FUNCTION.
    #[arg(long)]
    line: Option<String>,
    /// Require this signer (0x address); without it the file's own signer is reported.
    #[arg(long)]
    signer: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl VerifyProof {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let Self { file, line, signer, json } = self;
        let text = std::fs::read_to_string(&file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        let verified = q::proof::verify(&text, line.as_deref(), signer.as_deref())
            .map_err(|e| anyhow::anyhow!("{} does not verify: {e}", file.display()))?;
        if json {
            println!("{}", serde_json::to_string(&verified)?);
            return Ok(());
        }
        let s = &verified.statement;
        println!(
            "{} verifies: {} line items checked against root {} signed by {}; {} invocations, {} errors, {} records",
            file.display(),
            verified.lines.len(),
            s.root,
            verified.signer,
            s.totals.invocations,
            s.totals.errors,
            s.totals.records
        );
        if signer.is_none() {
            println!("  (trust it only if {} is q's address: see `q key`)", verified.signer);
        }
        Ok(())
    }
}
