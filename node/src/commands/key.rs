//! `tau-node key`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use libp2p::identity::Keypair;
use tau_proto::identity::WriterKey;
use tau_proto::keyfile;

/// Signing keys: the operator's, a project owner's.
#[derive(Debug, Args)]
pub(crate) struct Key {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Make a new ed25519 key in a new file (mode 0600) and print its public half.
    Generate {
        /// The new key file.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Print the public half of a key file (ed25519:<hex>), to give to an operator.
    Public {
        /// A key file made by `tau-node key generate`.
        file: PathBuf,
    },
}

impl Key {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let keypair = match self.command {
            KeyCommand::Generate { out } => {
                let keypair = Keypair::generate_ed25519();
                keyfile::write_new(&out, &keypair)?;
                keypair
            }
            KeyCommand::Public { file } => keyfile::read(&file)?,
        };
        let public = WriterKey::of(&keypair).context("not an ed25519 key")?;
        println!("{public}");
        Ok(())
    }
}
