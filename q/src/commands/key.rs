use std::path::PathBuf;

use super::signing_key;

/// Prints the address of q's signing key (made on first use): the signer contracts trust.
#[derive(Debug, clap::Args)]
pub(crate) struct Key {
    /// q's signing key.
    #[arg(long, default_value = "q.key", env = "Q_KEY")]
    key: PathBuf,
}

impl Key {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        println!("{}", signing_key(&self.key)?.address());
        Ok(())
    }
}
