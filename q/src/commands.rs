//! One module per subcommand; each is a clap `Args` struct with `async fn run(self)`. What
//! several share (connecting to a cloud, q's signing key, writing a file whole) is here.

mod collect;
mod export;
mod identity;
mod invoice;
mod key;
mod plot;
mod prove;
mod push;
mod status;
mod verify_proof;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use tau_proto::client::ConnectOptions;
use tau_proto::{Client, CloudProfile};

/// One variant per subcommand; each variant's doc comment is its help text.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    Collect(collect::Collect),
    Prove(prove::Prove),
    VerifyProof(verify_proof::VerifyProof),
    Export(export::Export),
    Push(push::Push),
    Invoice(invoice::Invoice),
    Plot(plot::Plot),
    Status(status::Status),
    Key(key::Key),
    Identity(identity::Identity),
}

impl Command {
    /// Runs the subcommand; its exit status when it has one of its own.
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        let done = match self {
            Self::Collect(cmd) => cmd.run().await,
            Self::Prove(cmd) => cmd.run().await,
            Self::VerifyProof(cmd) => return cmd.run(),
            Self::Export(cmd) => cmd.run().await,
            Self::Push(cmd) => cmd.run().await,
            Self::Invoice(cmd) => cmd.run().await,
            Self::Plot(cmd) => cmd.run().await,
            Self::Status(cmd) => cmd.run().await,
            Self::Key(cmd) => cmd.run(),
            Self::Identity(cmd) => cmd.run(),
        };
        done.map(|()| ExitCode::SUCCESS)
    }
}

/// q's signing key, made (and announced) on first use.
fn signing_key(path: &Path) -> anyhow::Result<q::key::SigningKey> {
    let (key, created) = q::key::load_or_create(path)?;
    if created {
        eprintln!("q: made a new signing key {} (address {})", path.display(), key.address());
    }
    Ok(key)
}

/// Connects to the cloud a profile names, as q's own identity when one is given.
async fn connect(cloud: &Path, identity: Option<&Path>) -> anyhow::Result<Client> {
    let profile = CloudProfile::load(cloud)
        .map_err(|e| anyhow::anyhow!("cannot read the cloud profile {}: {e}", cloud.display()))?;
    let identity = identity.map(q_identity).transpose()?;
    let options = ConnectOptions { identity, ..ConnectOptions::default() };
    Ok(Client::connect_with(&profile, options).await?)
}

/// q's peer identity (ed25519, mode 0600), made (and announced) on first use: the nodes take
/// q's acknowledgements of counter records, which let them prune, only from an identity the
/// operator admitted for the `q` role.
fn q_identity(path: &Path) -> anyhow::Result<libp2p::identity::Keypair> {
    let (keypair, created) = tau_proto::keyfile::read_or_create(path)?;
    if created {
        let peer = keypair.public().to_peer_id();
        eprintln!(
            "q: made a new identity {} (peer id {peer}); nodes take q's acknowledgements once \
             the operator runs `tau-node nodes admit {peer} --service q`",
            path.display()
        );
    }
    Ok(keypair)
}

/// A temporary name beside `path` (`.NAME.tmp`), renamed over it once complete.
fn temp_beside(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Writes `bytes` to `path` through a temporary file in the same folder, so a crash leaves the
/// old file or the new one, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = temp_beside(path);
    let fail = |e: std::io::Error| anyhow::anyhow!("cannot write {}: {e}", path.display());
    std::fs::write(&tmp, bytes).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}
