use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Checks a proof file offline: the signature, every line item's path to the signed root and
/// totals, and that not one byte was changed; and that q's key signed it. Anyone can sign a
/// well-formed proof, so it is trusted only when its signer is named with --signer (q's
/// address, from `q key`) or listed in --trusted-signers.
///
/// Exit status: 0 when it verifies and the signer is trusted; 1 when it does not verify, or
/// verifies but no trusted signer was named (the output says `trusted: false`).
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyProof {
    /// A proof file written by `q prove`.
    file: PathBuf,
    /// Check only this line item, PROJECT/FUNCTION.
    #[arg(long)]
    line: Option<String>,
    /// A signer to trust (0x address); repeat for several.
    #[arg(long)]
    signer: Vec<String>,
    /// A file of signers to trust: one 0x address per line; blank lines and lines starting
    /// with # are skipped.
    #[arg(long)]
    trusted_signers: Option<PathBuf>,
    /// Print the result as JSON (with `trusted`).
    #[arg(long)]
    json: bool,
}

/// The addresses in a trusted-signers file, each checked for form.
fn trusted_signers(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut signers = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let hex = line.strip_prefix("0x").unwrap_or("");
        if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            anyhow::bail!(
                "{} line {}: `{line}` is not an address (0x and 40 hex digits)",
                path.display(),
                i + 1
            );
        }
        signers.push(line.to_string());
    }
    if signers.is_empty() {
        anyhow::bail!("{} lists no signer", path.display());
    }
    Ok(signers)
}

impl VerifyProof {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let Self { file, line, mut signer, trusted_signers: list, json } = self;
        if let Some(list) = &list {
            signer.extend(trusted_signers(list)?);
        }
        let text = std::fs::read_to_string(&file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        let trusted: Vec<&str> = signer.iter().map(String::as_str).collect();
        let verified = q::proof::verify(&text, line.as_deref(), &trusted)
            .map_err(|e| anyhow::anyhow!("{} does not verify: {e}", file.display()))?;
        let status = if verified.trusted { ExitCode::SUCCESS } else { ExitCode::FAILURE };
        if json {
            println!("{}", serde_json::to_string(&verified)?);
            return Ok(status);
        }
        let s = &verified.statement;
        println!(
            "{} verifies: {} line items checked against root {} signed by {}; {} invocations, {} errors, {} records, charge {}",
            file.display(),
            verified.lines.len(),
            s.root,
            verified.signer,
            s.totals.invocations,
            s.totals.errors,
            s.totals.records,
            s.charge_text()
        );
        if s.amends.bytes().any(|b| !matches!(b, b'0' | b'x')) {
            println!(
                "it amends the proof with root {}: it holds only records stored after that one was made",
                s.amends
            );
        }
        if !verified.trusted {
            println!(
                "not trusted: name q's address (`q key`) with --signer or --trusted-signers; \
                 anyone can sign a well-formed proof"
            );
        }
        Ok(status)
    }
}
