//! `tau-node vault`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use libp2p::PeerId;
use tau_proto::keyfile::write_secret_file;
use tau_proto::vault::{self, KeySet};

use super::output;

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
    /// Publish the key set in TNS (`/vault/keyset`) and name the vault nodes that may register
    /// projects (`/registrars/<peer id>`), signed with the operator key.
    ///
    /// Clients encrypt secrets to the published key set; a vault node creates projects only
    /// once it is named here. Writes only what TNS does not hold already.
    Publish {
        /// The key set file (`keyset.yaml` from `vault deal`).
        #[arg(long)]
        keyset: PathBuf,
        /// A vault node's peer id that may register projects; repeat for several.
        #[arg(long)]
        registrar: Vec<PeerId>,
        /// The cloud profile (`cloud.yaml`).
        #[arg(long, default_value = "cloud.yaml")]
        cloud: PathBuf,
        /// The operator key file [default: the profile's operator_key].
        #[arg(long)]
        operator_key: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Each vault node's share index, key set, threshold and secrets held (never a share), and
    /// whether enough shares are reachable to read a secret now.
    Shares {
        /// The cloud profile (`cloud.yaml`).
        #[arg(long, default_value = "cloud.yaml")]
        cloud: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl Vault {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        match self.command {
            VaultCommand::Publish { keyset, registrar, cloud, operator_key, json } => {
                publish(keyset, registrar, cloud, operator_key, json).await
            }
            VaultCommand::Shares { cloud, json } => shares(cloud, json).await,
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

async fn publish(
    keyset_path: PathBuf,
    registrars: Vec<PeerId>,
    cloud: PathBuf,
    operator_key: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let keyset: KeySet = tau_proto::yaml::load(&keyset_path)?;
    keyset.validate().with_context(|| format!("{}", keyset_path.display()))?;
    let operator = output::operator_key(&cloud, operator_key)?;
    let client = output::connect(&cloud).await?;
    let written = client.publish_vault(&keyset, &registrars, &operator).await?;
    if json {
        return output::print_json(&serde_json::json!({
            "keyset": keyset.id,
            "registrars": registrars.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "written": written,
        }));
    }
    if written.is_empty() {
        println!("key set {} and its registrars were already published", keyset.id);
    }
    for key in written {
        println!("wrote {key}");
    }
    Ok(())
}

async fn shares(cloud: PathBuf, json: bool) -> anyhow::Result<()> {
    let client = output::connect(&cloud).await?;
    let report = client.vault_report().await?;
    if report.nodes.is_empty() {
        bail!("no node of this cloud runs vault");
    }
    if json {
        return output::print_json(&report);
    }
    let rows = &report.nodes;
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| match &r.info {
            Some(i) => vec![
                r.node.clone(),
                i.index.to_string(),
                i.keyset.clone(),
                format!("{} of {}", i.threshold + 1, i.shares),
                i.secrets.to_string(),
            ],
            None => vec![
                r.node.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                r.error.clone().unwrap_or_default(),
            ],
        })
        .collect();
    println!("{}", output::table(&["NODE", "SHARE", "KEY SET", "NEEDED", "SECRETS"], &table));
    match (&report.keyset, report.needed) {
        (Some(id), Some(n)) => println!(
            "key set {id} in tns: {} distinct shares reachable, {n} needed: secrets are {}",
            report.reachable,
            if report.readable { "readable" } else { "NOT readable" }
        ),
        _ => println!("no key set published in tns (/vault/keyset): run `tau-node vault publish`"),
    }
    Ok(())
}
