//! Taking hosts out of a running cloud (`deploy --prune`, `remove`): check that what remains
//! holds every pin at its factor and the vault's threshold, drain the leaving nodes (seer sends
//! them no client; hoarder hands their replicas to the others), wait until every pin is at its
//! factor without them, then stop each, remove its files and revoke its admission.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tau_proto::Client;
use tau_proto::client::ConnectOptions;
use tau_proto::hoarder::PinInfo;
use tau_proto::vault::KeySet;

use super::Run;
use crate::host::Desired;
use crate::playbook::{Host, Playbook};
use crate::progress::HostProgress;
use crate::secrets::Layout;
use crate::state::{HostReport, Outcome};

/// What removing the leaving hosts would cost, found before anything changes.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Removal {
    /// Why removing them would lose something (refused without `--force`).
    pub problems: Vec<String>,
    /// Vault hosts among them whose share no host takes over (retired with `--force`).
    pub retired_shares: Vec<String>,
}

/// The vault's side of removing `leaving` from `playbook` (the hosts that stay), read from the
/// secrets folder alone, before anything changes: a leaving host that still has its share (no
/// host took it over, [`crate::secrets::take_over_shares`]) would take the share offline.
pub fn vault_removal(playbook: &Playbook, leaving: &[Host]) -> Removal {
    let layout = Layout { dir: playbook.secrets_dir() };
    let losing: Vec<String> = leaving
        .iter()
        .filter(|h| layout.vault_share(&h.name).exists())
        .map(|h| h.name.clone())
        .collect();
    let mut removal = Removal::default();
    if losing.is_empty() {
        return removal;
    }
    let keyset: Option<KeySet> = tau_proto::yaml::load(&layout.vault_keyset()).ok();
    let online = playbook.hosts_running("vault").len();
    let (threshold, shares) = keyset.map_or((0, 0), |k| (k.threshold, k.shares));
    let lost = losing.join(", ");
    // Any `threshold + 1` shares decrypt.
    let needed = threshold + 1;
    removal.problems.push(if (online as u32) < needed {
        format!(
            "{lost} hold vault shares no host takes over: {online} of {shares} shares would \
             stay online, under the threshold of {needed}, and no secret could be read. Add a \
             host of a vault shape to the playbook to take each share over"
        )
    } else {
        format!(
            "{lost} hold vault shares no host takes over: {online} of {shares} shares would \
             stay online ({needed} decrypt), fewer to lose before secrets become unreadable. \
             Add a host of a vault shape to the playbook to take each share over, or pass \
             --force to retire it (kept in the secrets folder for a vault host added later)"
        )
    });
    removal.retired_shares = losing;
    removal
}

/// Why a removal could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoveError {
    /// The cloud could not be reached as the operator.
    #[error("cannot reach the cloud as the operator: {0}")]
    Connect(String),
}

impl Run {
    /// The hosts leaving the cloud.
    pub fn leaving(&self) -> &[Desired] {
        &self.leaving
    }

    /// A client of the cloud with the operator key as its identity (drains need it).
    pub async fn operator_client(&self) -> Result<Client, RemoveError> {
        let operator = tau_proto::keyfile::read(&self.layout.operator_key())
            .map_err(|e| RemoveError::Connect(e.to_string()))?;
        let options = ConnectOptions { identity: Some(operator), ..ConnectOptions::default() };
        let client = Client::connect_with(&self.operator_profile(), options)
            .await
            .map_err(|e| RemoveError::Connect(e.to_string()))?;
        for d in self.desired.iter().chain(&self.leaving) {
            let _ = client.add_address(d.peer_id, d.p2p_addr.clone()).await;
        }
        Ok(client)
    }

    /// The hosts that stay and run `service`.
    fn staying(&self, service: &str) -> Vec<&Desired> {
        self.desired
            .iter()
            .filter(|d| {
                self.playbook
                    .shape_of(&d.host)
                    .is_some_and(|s| s.services.iter().any(|x| x == service))
            })
            .collect()
    }

    /// Every pin, as the first staying hoarder node that answers sees it.
    async fn pins(&self, client: &Client) -> Result<Vec<PinInfo>, String> {
        let mut last = "no host that stays runs hoarder".to_string();
        for d in self.staying("hoarder") {
            match client.hoarder_pins(d.peer_id).await {
                Ok(pins) => return Ok(pins),
                Err(e) => last = format!("{}: {e}", d.host.name),
            }
        }
        Err(last)
    }

    /// What removing the leaving hosts would cost in the running cloud: pins whose factor the
    /// staying hoarder hosts cannot hold, no tns host left ([`vault_removal`] is the vault's).
    pub async fn removal(&self, client: &Client) -> Removal {
        let mut removal = Removal::default();
        if self.leaving.is_empty() {
            return removal;
        }
        let names = |ds: &[&Desired]| ds.iter().map(|d| d.host.name.clone()).collect::<Vec<_>>();
        let leaving: Vec<&Desired> = self.leaving.iter().collect();
        if self.staying("tns").is_empty() {
            removal.problems.push(format!(
                "removing {} leaves no host that runs tns: the registry would be lost",
                names(&leaving).join(", ")
            ));
        }
        let hoarders = self.staying("hoarder").len();
        match self.pins(client).await {
            Ok(pins) => {
                let short: Vec<&PinInfo> =
                    pins.iter().filter(|p| usize::from(p.factor) > hoarders).collect();
                if let Some(first) = short.first() {
                    let most = short.iter().map(|p| p.factor).max().unwrap_or(first.factor);
                    removal.problems.push(format!(
                        "{} pins want more replicas than the {hoarders} hoarder hosts that stay \
                         can hold (up to {most}, such as {}): they would stay below their factor",
                        short.len(),
                        first.cid
                    ));
                }
            }
            Err(e) if hoarders == 0 => removal.problems.push(format!(
                "no host that stays runs hoarder: every blob the leaving hosts hold would be \
                 lost ({e})"
            )),
            Err(e) => removal.problems.push(format!("cannot list the pins: {e}")),
        }
        removal
    }

    /// Drains every leaving host (each at once), then waits (at most `wait`) until every pin is
    /// at its factor without them, showing progress on `progress`. Returns why it gave up.
    pub async fn drain_leaving(
        &self,
        client: &Client,
        wait: Duration,
        progress: &HostProgress,
    ) -> Result<(), String> {
        let leaving: BTreeSet<PeerId> = self.leaving.iter().map(|d| d.peer_id).collect();
        for d in &self.leaving {
            progress.phase(&format!("draining {}", d.host.name));
            if let Err(e) = client.drain(d.peer_id).await {
                // A node that is down holds nothing live: its replicas are already repaired.
                progress
                    .phase(&format!("{} did not answer the drain ({e}): going on", d.host.name));
            }
        }
        let hoarders = self.staying("hoarder").len();
        if hoarders == 0 {
            return Ok(());
        }
        let started = Instant::now();
        let mut said = None;
        loop {
            let pins = self.pins(client).await?;
            let short = pins
                .iter()
                .filter(|p| {
                    let staying = p.holders.iter().filter(|h| !leaving.contains(h)).count();
                    staying < usize::from(p.factor).min(hoarders)
                })
                .count();
            if short == 0 {
                return Ok(());
            }
            if started.elapsed() >= wait {
                return Err(format!(
                    "{short} of {} pins are still below their factor without the leaving hosts \
                     after {}s: they are drained but still run; run again to go on waiting",
                    pins.len(),
                    wait.as_secs()
                ));
            }
            if said != Some(short) {
                progress.phase(&format!(
                    "waiting for {short} of {} pins to reach their factor without the leaving \
                     hosts",
                    pins.len()
                ));
                said = Some(short);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Stops a leaving host's node, removes its files and revokes its admission.
    pub async fn remove_host(
        &self,
        client: &Client,
        desired: &Desired,
        progress: &HostProgress,
    ) -> HostReport {
        let started = Instant::now();
        let outcome = async {
            self.remove_files(desired, progress).await?;
            progress.phase("revoking its admission");
            self.revoke(client, desired.peer_id).await.map_err(super::fail)
        }
        .await;
        let (result, error) = match outcome {
            Ok(()) => (Outcome::Removed, None),
            Err(e) => (Outcome::Failed, Some(e.reason)),
        };
        progress.finish(&match &error {
            None => "removed".to_string(),
            Some(e) => format!("failed: {e}"),
        });
        HostReport::new(&desired.host.name, result, started.elapsed().as_secs_f64(), error)
    }

    /// Revokes `peer`'s admission through the first staying tns host that takes it.
    async fn revoke(&self, client: &Client, peer: PeerId) -> Result<(), String> {
        let operator =
            tau_proto::keyfile::read(&self.layout.operator_key()).map_err(|e| e.to_string())?;
        let mut last = "no host that stays runs tns".to_string();
        for tns in self.staying("tns") {
            match client.admit_at(tns.peer_id, &[(peer, None)], &operator).await {
                Ok(_) => return Ok(()),
                Err(e) => last = format!("{}: {e}", tns.host.name),
            }
        }
        Err(format!("cannot revoke its admission: {last}"))
    }
}
