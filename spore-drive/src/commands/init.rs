use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::ValueEnum;
use spore_drive::playbook::Transport;

/// Scaffold DIR/playbook.yaml and generate the cloud's secrets in DIR/secrets (swarm key,
/// operator key, one identity per host, the vault key set and shares), each file mode 0600.
///
/// Never overwrites a playbook or a secret.
#[derive(Debug, clap::Args)]
pub(crate) struct Init {
    /// The folder to create (or fill, keeping what is there).
    dir: PathBuf,
    /// The cloud's name.
    #[arg(long, default_value = "my-cloud")]
    name: String,
    /// How many hosts to start from.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=250))]
    hosts: u16,
    /// How hosts are reached.
    #[arg(long, value_enum, default_value_t = TransportArg::Ssh)]
    transport: TransportArg,
    /// Print JSON (the files written, never their contents).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TransportArg {
    Ssh,
    Local,
}

impl Init {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let Self { dir, name, hosts, transport, json } = self;
        if !tau_proto::tns::keys::is_name(&name) {
            bail!("cloud name `{name}`: 1-63 of a-z, 0-9 and -");
        }
        let transport = match transport {
            TransportArg::Ssh => Transport::Ssh,
            TransportArg::Local => Transport::Local,
        };
        let (playbook, made) = spore_drive::init::init(&dir, &name, usize::from(hosts), transport)?;
        if json {
            let report = serde_json::json!({
                "playbook": playbook,
                "created": made.created,
                "kept": made.kept,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!("wrote {}", playbook.display());
        for path in &made.created {
            println!("created {} (mode 0600)", path.display());
        }
        println!("next: edit the hosts, then `spore-drive deploy {}`", playbook.display());
        Ok(ExitCode::SUCCESS)
    }
}
