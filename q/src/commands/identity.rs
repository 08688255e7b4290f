use std::path::PathBuf;

use super::q_identity;

/// Prints the peer id of q's identity (made on first use): the one the operator admits so that
/// nodes take q's acknowledgements (`tau-node nodes admit PEER --service q`).
#[derive(Debug, clap::Args)]
pub(crate) struct Identity {
    /// q's peer identity.
    #[arg(long, default_value = "q-identity.key", env = "Q_IDENTITY")]
    identity: PathBuf,
}

impl Identity {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        println!("{}", q_identity(&self.identity)?.public().to_peer_id());
        Ok(())
    }
}
