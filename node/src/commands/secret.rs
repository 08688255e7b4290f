//! `tau-node secret`.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use tau_proto::keyfile;
use tau_proto::vault::MAX_SECRET;

use super::output;

/// A project's secrets, encrypted to the vault so that no single node can read them.
#[derive(Debug, Args)]
pub(crate) struct Secret {
    #[command(subcommand)]
    command: SecretCommand,
}

#[derive(Debug, Subcommand)]
enum SecretCommand {
    /// Encrypt a value to the vault's key set and store it as a secret of a project.
    ///
    /// The value comes from --from-file or from standard input, never from the command line
    /// (which other users of the host can see). Every reachable vault node checks it.
    Put {
        /// The project id the secret belongs to.
        project: String,
        /// The secret's name (1-63 of a-z, 0-9 and -).
        name: String,
        /// Read the value from this file [default: standard input].
        #[arg(long)]
        from_file: Option<PathBuf>,
        #[command(flatten)]
        owner: OwnerArgs,
        /// Print JSON (never the value).
        #[arg(long)]
        json: bool,
    },
    /// Read a secret: each vault node gives its decryption share, and the value is put together
    /// here and written to standard output, exactly as stored.
    Get {
        /// The project id the secret belongs to.
        project: String,
        /// The secret's name.
        name: String,
        #[command(flatten)]
        owner: OwnerArgs,
    },
}

#[derive(Debug, Args)]
struct OwnerArgs {
    /// The cloud profile (`cloud.yaml`).
    #[arg(long, default_value = "cloud.yaml")]
    cloud: PathBuf,
    /// The project owner's key file.
    #[arg(long)]
    key: PathBuf,
}

impl Secret {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        match self.command {
            SecretCommand::Put { project, name, from_file, owner, json } => {
                let value = match &from_file {
                    Some(path) => std::fs::read(path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                    None => {
                        let mut value = Vec::new();
                        std::io::stdin()
                            .take(MAX_SECRET as u64 + 1)
                            .read_to_end(&mut value)
                            .context("cannot read the value from standard input")?;
                        value
                    }
                };
                if value.is_empty() {
                    bail!("the value is empty: give it on standard input or with --from-file");
                }
                let key = keyfile::read(&owner.key)?;
                let client = output::connect(&owner.cloud).await?;
                let stored = client
                    .put_secret(&project, &name, &value, &key)
                    .await
                    .with_context(|| format!("cannot store secret `{name}` of `{project}`"))?;
                for failure in &stored.failures {
                    eprintln!("warning: {failure}");
                }
                if json {
                    return output::print_json(&stored);
                }
                println!(
                    "stored {} (key set {}, checked by {} vault nodes)",
                    stored.key,
                    stored.keyset,
                    stored.nodes.len()
                );
                Ok(())
            }
            SecretCommand::Get { project, name, owner } => {
                let key = keyfile::read(&owner.key)?;
                let client = output::connect(&owner.cloud).await?;
                let revealed = client
                    .get_secret(&project, &name, &key)
                    .await
                    .with_context(|| format!("cannot read secret `{name}` of `{project}`"))?;
                for failure in &revealed.failures {
                    eprintln!("warning: {failure}");
                }
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(&revealed.plaintext)?;
                stdout.flush()?;
                Ok(())
            }
        }
    }
}
