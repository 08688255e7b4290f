//! `tau-node swarm-key`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tau_proto::SwarmKey;
use tau_proto::keyfile::write_secret_file;

/// Make a new swarm key: the pre-shared key that every node and client of one cloud holds.
///
/// Prints the key in the standard file format (`/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex
/// digits), or writes it to a new file with mode 0600.
#[derive(Debug, Args)]
pub(crate) struct SwarmKeyCmd {
    /// Write the key to this new file (mode 0600) instead of printing it.
    #[arg(long, short)]
    out: Option<PathBuf>,
}

impl SwarmKeyCmd {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let key = SwarmKey::generate();
        match self.out {
            None => print!("{}", key.to_file_format()),
            Some(path) => {
                write_secret_file(&path, key.to_file_format().as_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("wrote swarm key {} to {}", key.fingerprint(), path.display());
            }
        }
        Ok(())
    }
}
