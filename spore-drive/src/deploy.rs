//! The phases of a deploy, run on every host with bounded parallelism: connect and check facts,
//! upload the node binary when its sha256 differs, write config and secrets, install and start
//! the service, wait until the node answers and sees its peers; roll a host back to its previous
//! binary and config when it fails that check. Then publish the vault key set and write the
//! cloud profile. `plan` runs the first phase only and changes nothing.
//!
//! - [`Run`] (here): what a run shares between hosts, connecting, reading facts, and running
//!   work on every host at once ([`Run::each`]).
//! - [`bundle`]: the node binary; [`facts`]: what a host says about itself.
//! - [`plan`], [`apply`] (with [`health`]), [`status`], [`destroy`]: one host's phase each.
//! - [`vault`]: publishing the vault key set; [`profile`]: the cloud profile, built in one place.
//! - [`recap`]: the table a run ends with. What a run leaves for the next is [`crate::state`].

mod admit;
mod apply;
mod bundle;
mod destroy;
mod facts;
mod health;
mod plan;
mod profile;
mod recap;
mod remove;
mod status;
mod vault;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;

pub use bundle::{Bundle, BundleError};
pub use plan::{BinaryAction, FileAction, HostPlan, NodeAction};
pub use recap::{kinds, recap};
pub use remove::{Removal, RemoveError, vault_removal};
pub use status::HostStatus;
pub use vault::VaultPublishError;

use crate::host::{self, Desired, DesiredError};
use crate::playbook::{HostKeys, Playbook, Transport};
use crate::script::{Output, ShellError, Stdin};
use crate::secrets::{Layout, SecretsError};
use crate::shell::Conn;
use crate::ssh;
use facts::Facts;

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Hosts worked on at once.
    pub concurrency: usize,
    /// Connecting (TCP, key exchange, login) may take this long.
    pub connect_timeout: Duration,
    /// Each command may take this long (the upload gets ten times as long).
    pub command_timeout: Duration,
    /// A started node must answer and see its peers within this long.
    pub health_timeout: Duration,
    /// Only these hosts (`--retry-failed`, `--host`); all when `None`.
    pub only: Option<BTreeSet<String>>,
    /// The sudo password for users that are not root.
    pub sudo_password: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            concurrency: 10,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(60),
            health_timeout: Duration::from_secs(30),
            only: None,
            sudo_password: None,
        }
    }
}

/// Why a run could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The playbook's secrets could not be made or read.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// What a host should hold could not be worked out.
    #[error(transparent)]
    Desired(#[from] DesiredError),
}

/// Everything a run shares between hosts.
pub struct Run {
    playbook: Playbook,
    options: Options,
    layout: Layout,
    desired: Vec<Desired>,
    /// Hosts deployed once and no longer in the playbook, to remove.
    leaving: Vec<Desired>,
    /// Hosts whose node is known to run (found running, or healthy after a start).
    up: Mutex<BTreeSet<String>>,
    /// False while the new hosts' admissions are being written: no node starts until they are
    /// (the rest of a host's deploy goes on meanwhile).
    may_start: tokio::sync::watch::Sender<bool>,
}

/// A host that failed: why, and whether its previous node runs again.
struct Failure {
    reason: String,
    rolled_back: bool,
}

impl From<ShellError> for Failure {
    fn from(e: ShellError) -> Self {
        Self { reason: strip_host(&e.to_string()), rolled_back: false }
    }
}

/// Errors name their host; the recap already does.
fn strip_host(message: &str) -> String {
    message.split_once(": ").map(|(_, rest)| rest.to_string()).unwrap_or_else(|| message.into())
}

fn fail(reason: impl Into<String>) -> Failure {
    Failure { reason: reason.into(), rolled_back: false }
}

/// Runs `script` and fails with its last line of stderr when it fails.
async fn run(
    conn: &Conn,
    what: &str,
    script: &str,
    stdin: Stdin,
    timeout: Duration,
) -> Result<Output, Failure> {
    let output = conn.run(script, stdin, timeout).await?;
    if !output.success() {
        return Err(fail(format!("{what}: {}", output.reason())));
    }
    Ok(output)
}

/// How long a stop script may take: it waits up to 75 s for a draining node to leave.
fn stop_timeout(command_timeout: Duration) -> Duration {
    command_timeout.max(Duration::from_secs(90))
}

impl Run {
    /// Prepares a run: the playbook's secrets must exist (they are created when missing).
    pub fn new(playbook: Playbook, options: Options) -> Result<Self, RunError> {
        crate::secrets::ensure(&playbook)?;
        let layout = Layout { dir: playbook.secrets_dir() };
        let desired = host::desired(&playbook)?;
        let leaving = Vec::new();
        Ok(Self {
            playbook,
            options,
            layout,
            desired,
            leaving,
            up: Mutex::new(BTreeSet::new()),
            may_start: tokio::sync::watch::channel(true).0,
        })
    }

    /// Prepares a run that also removes `leaving`: hosts deployed once, no longer in the
    /// playbook (their identities are still in the secrets folder).
    pub fn with_leaving(
        playbook: Playbook,
        leaving: &[crate::playbook::Host],
        options: Options,
    ) -> Result<Self, RunError> {
        let mut run = Self::new(playbook, options)?;
        run.leaving = host::leaving(&run.playbook, leaving)?;
        Ok(run)
    }

    /// Changes how long a started node has to become healthy.
    pub fn set_health_timeout(&mut self, timeout: Duration) {
        self.options.health_timeout = timeout;
    }

    /// The playbook this run was loaded from.
    pub fn playbook(&self) -> &Playbook {
        &self.playbook
    }

    /// Where the cloud's files are: secrets, state, profile.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The hosts this run works on.
    pub fn selected(&self) -> Vec<&Desired> {
        self.desired
            .iter()
            .filter(|d| self.options.only.as_ref().is_none_or(|only| only.contains(&d.host.name)))
            .collect()
    }

    /// Connects to a host (once more when the first try failed for a passing reason; never
    /// again after a host key or login was refused).
    async fn connect(&self, desired: &Desired, dry_run: bool) -> Result<Conn, ShellError> {
        let host = &desired.host;
        if self.playbook.transport == Transport::Local {
            return Ok(Conn::Local { host: host.name.clone() });
        }
        let ssh = self.playbook.ssh_of(host);
        let target = ssh::Target {
            host: host.name.clone(),
            address: host.address,
            port: ssh.port,
            user: ssh.user,
            key: ssh.key,
            known_hosts: self.playbook.resolve(&self.playbook.known_hosts),
            host_keys: match (self.playbook.host_keys, dry_run) {
                (HostKeys::AcceptNew, true) => HostKeys::Strict,
                (keys, _) => keys,
            },
            connect_timeout: self.options.connect_timeout,
            sudo_password: self.options.sudo_password.clone(),
        };
        match ssh::Session::connect(target.clone()).await {
            Ok(session) => Ok(Conn::Ssh(session)),
            Err(e) if e.is_transient() => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                ssh::Session::connect(target).await.map(Conn::Ssh)
            }
            Err(e) => Err(e),
        }
    }

    async fn facts(&self, conn: &Conn, desired: &Desired) -> Result<Facts, Failure> {
        let script = desired.facts_script(self.playbook.transport);
        let output =
            run(conn, "reading facts", &script, Stdin::Null, self.options.command_timeout).await?;
        Ok(Facts::parse(&output.text()))
    }

    /// Runs `work` on every selected host, at most `concurrency` at once, in playbook order.
    pub async fn each<'a, F, Fut, T>(&'a self, work: F) -> Vec<T>
    where
        F: Fn(&'a Desired) -> Fut,
        Fut: std::future::Future<Output = T> + 'a,
    {
        self.each_of(self.selected(), work).await
    }

    /// Runs `work` on each of `hosts`, at most `concurrency` at once; results in their order.
    pub async fn each_of<'a, F, Fut, T>(&'a self, selected: Vec<&'a Desired>, work: F) -> Vec<T>
    where
        F: Fn(&'a Desired) -> Fut,
        Fut: std::future::Future<Output = T> + 'a,
    {
        let mut results: Vec<(usize, T)> = futures::stream::iter(selected.into_iter().enumerate())
            .map(|(i, d)| {
                let fut = work(d);
                async move { (i, fut.await) }
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, t)| t).collect()
    }
}
