//! `tau-node vault`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use tau_proto::keyfile::write_secret_file;
use tau_proto::vault;

/// The vault's threshold key set.
#[derive(Debug, Args)]
pub(crate) struct Vault {
    #[command(subcommand)]
    command: VaultCommand,
}

#[derive(Debug, Subcommand)]
enum VaultCommand {
    /// Deal a cloud's vault key set: N secret key shares, any T+1 of which decrypt.
    ///
    /// Writes OUT/keyset.yaml (public: the key set id, threshold and public key set, for every
    /// vault node and for TNS) and OUT/share-<i>.yaml for i in 0..N (each mode 0600, for vault
    /// node i only). Give each vault node one share and never keep them together afterwards:
    /// any T+1 of them can read every secret. Existing files are never overwritten.
    Deal {
        /// How many shares (one per vault node), at most 255.
        #[arg(long)]
        shares: u32,
        /// Threshold T: any T+1 shares decrypt, T shares reveal nothing.
        #[arg(long)]
        threshold: u32,
        /// The folder to write the files into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Print the key set's id, threshold and files as JSON.
        #[arg(long)]
        json: bool,
    },
}

impl Vault {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        match self.command {
            VaultCommand::Deal { shares, threshold, out, json } => {
                let (keyset, files) = vault::deal(shares, threshold)?;
                std::fs::create_dir_all(&out)
                    .with_context(|| format!("cannot create {}", out.display()))?;
                let public = out.join("keyset.yaml");
                let mut written = vec![public.clone()];
                let paths: Vec<PathBuf> =
                    (0..shares).map(|i| out.join(format!("share-{i}.yaml"))).collect();
                for path in std::iter::once(&public).chain(&paths) {
                    if path.exists() {
                        anyhow::bail!(
                            "{} already exists: deal into an empty folder",
                            path.display()
                        );
                    }
                }
                std::fs::write(&public, serde_yaml_ng::to_string(&keyset)?)
                    .with_context(|| format!("cannot write {}", public.display()))?;
                for (file, path) in files.iter().zip(&paths) {
                    let text = serde_yaml_ng::to_string(file)?;
                    write_secret_file(path, text.as_bytes())
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    written.push(path.clone());
                }
                if json {
                    let files: Vec<String> =
                        written.iter().map(|p| p.display().to_string()).collect();
                    let report = serde_json::json!({
                        "id": keyset.id,
                        "shares": keyset.shares,
                        "threshold": keyset.threshold,
                        "files": files,
                    });
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    println!(
                        "dealt key set {}: {} shares, any {} decrypt",
                        keyset.id,
                        keyset.shares,
                        keyset.threshold + 1
                    );
                    for path in written {
                        println!("  {}", path.display());
                    }
                }
                Ok(())
            }
        }
    }
}
