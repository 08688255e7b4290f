//! The phases of a deploy, run on every host with bounded parallelism: connect and check facts,
//! upload the node binary when its sha256 differs, write config and secrets, install and start
//! the service, wait until the node answers and sees its peers; roll a host back to its previous
//! binary and config when it fails that check. Then publish the vault key set and write the
//! cloud profile. `plan` runs the first phase only and changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tau_proto::client::{Client, ConnectOptions};
use tau_proto::profile::CloudProfile;

use crate::host::{self, Desired, File, Kind, Service};
use crate::playbook::{HostKeys, Playbook, Transport};
use crate::progress::HostProgress;
use crate::script::{Output, ShellError, Stdin};
use crate::secrets::Layout;
use crate::shell::Conn;
use crate::ssh;

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

/// The node binary to install.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Its path here.
    pub path: PathBuf,
    /// Its sha256, hex.
    pub sha256: String,
    /// The machine it is built for (`uname -m` names).
    pub arch: &'static str,
    /// Its contents.
    pub bytes: std::sync::Arc<Vec<u8>>,
}

impl Bundle {
    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Reads `path` into memory (every host gets the same bytes), hashes it, and reads the
    /// machine it is built for.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        use sha2::Digest;
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("node binary {}: {e}", path.display()))?;
        let arch = host::elf_arch(&bytes[..bytes.len().min(64)])
            .map_err(|e| anyhow::anyhow!("node binary {}: {e}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            sha256: hex::encode(sha2::Sha256::digest(&bytes)),
            arch,
            bytes: std::sync::Arc::new(bytes),
        })
    }
}

/// What a host ended as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Result_ {
    /// Something was changed and the node is healthy.
    Changed,
    /// Nothing needed changing.
    Unchanged,
    /// It failed; nothing was changed, or the change could not be undone.
    Failed,
    /// The new node failed its health check; the previous binary and config run again.
    RolledBack,
}

/// One host's line of the recap.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostReport {
    /// The host.
    pub host: String,
    /// How it ended.
    pub result: Result_,
    /// What changed (or would change, for `plan`).
    pub changes: Vec<Kind>,
    /// Seconds spent on it.
    pub seconds: f64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `plan` found for one host.
#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    /// The host.
    pub host: String,
    /// The node binary: `upload` or `unchanged`.
    pub binary: &'static str,
    /// Config, secrets and service files: each `create`, `update` or `unchanged`.
    pub files: BTreeMap<String, &'static str>,
    /// `start`, `restart` or `none`.
    pub node: &'static str,
    /// How the node is kept running there.
    pub service: Service,
    /// The host's machine.
    pub arch: String,
    /// Why the host cannot be planned (unreachable, refused...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HostPlan {
    /// Whether a deploy would change anything.
    pub fn changes_anything(&self) -> bool {
        self.binary != "unchanged"
            || self.node != "none"
            || self.files.values().any(|a| *a != "unchanged")
    }
}

/// A host's facts.
#[derive(Debug, Default)]
struct Facts {
    arch: String,
    systemd: bool,
    free_kb: u64,
    running: bool,
    sha: BTreeMap<String, Option<String>>,
}

impl Facts {
    fn parse(text: &str) -> Self {
        let mut facts = Self::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("sha ") {
                if let Some((path, hash)) = rest.rsplit_once(' ') {
                    let hash = (hash != "-").then(|| hash.to_string());
                    facts.sha.insert(path.to_string(), hash);
                }
            } else if let Some((key, value)) = line.split_once('=') {
                match key {
                    "arch" => facts.arch = value.trim().to_string(),
                    "systemd" => facts.systemd = value.trim() == "1",
                    "free_kb" => facts.free_kb = value.trim().parse().unwrap_or(0),
                    "running" => facts.running = value.trim() == "1",
                    _ => {}
                }
            }
        }
        facts
    }

    fn has(&self, path: &str, sha256: &str) -> bool {
        self.sha.get(path).and_then(|h| h.as_deref()) == Some(sha256)
    }

    fn exists(&self, path: &str) -> bool {
        self.sha.get(path).is_some_and(|h| h.is_some())
    }
}

/// Everything a run shares between hosts.
pub struct Run {
    playbook: Playbook,
    options: Options,
    layout: Layout,
    desired: Vec<Desired>,
    /// Hosts whose node is known to run (found running, or healthy after a start).
    up: Mutex<BTreeSet<String>>,
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

impl Run {
    /// Prepares a run: the playbook's secrets must exist (they are created when missing).
    pub fn new(playbook: Playbook, options: Options) -> anyhow::Result<Self> {
        crate::secrets::ensure(&playbook)?;
        let layout = Layout { dir: playbook.secrets_dir() };
        let desired = host::desired(&playbook)?;
        Ok(Self { playbook, options, layout, desired, up: Mutex::new(BTreeSet::new()) })
    }

    /// Changes how long a started node has to become healthy.
    pub fn set_health_timeout(&mut self, timeout: Duration) {
        self.options.health_timeout = timeout;
    }

    /// The playbook.
    pub fn playbook(&self) -> &Playbook {
        &self.playbook
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

    /// What a deploy would do on one host; changes nothing.
    pub async fn plan_host(&self, desired: &Desired, bundle: &Bundle) -> HostPlan {
        let mut plan = HostPlan {
            host: desired.host.name.clone(),
            binary: "unchanged",
            files: BTreeMap::new(),
            node: "none",
            service: Service::Supervised,
            arch: String::new(),
            error: None,
        };
        let conn = match self.connect(desired, true).await {
            Ok(conn) => conn,
            Err(e) => {
                plan.error = Some(strip_host(&e.to_string()));
                return plan;
            }
        };
        let facts = match self.facts(&conn, desired).await {
            Ok(facts) => facts,
            Err(e) => {
                plan.error = Some(e.reason);
                conn.close().await;
                return plan;
            }
        };
        conn.close().await;
        plan.arch = facts.arch.clone();
        if !host::arch_matches(bundle.arch, &facts.arch) {
            plan.error = Some(arch_error(bundle, &facts.arch));
        }
        plan.service = if facts.systemd { Service::Systemd } else { Service::Supervised };
        if !facts.has("bin/tau-node", &bundle.sha256) {
            plan.binary = "upload";
        }
        let mut changed = plan.binary != "unchanged";
        for file in desired.all_files(plan.service) {
            let action = if facts.has(&file.path, &file.sha256()) {
                "unchanged"
            } else if facts.exists(&file.path) {
                "update"
            } else {
                "create"
            };
            changed |= action != "unchanged";
            plan.files.insert(file.path.clone(), action);
        }
        plan.node = match (changed, facts.running) {
            (true, true) => "restart",
            (_, false) => "start",
            (false, true) => "none",
        };
        plan
    }

    /// Deploys one host.
    pub async fn deploy_host(
        &self,
        desired: &Desired,
        bundle: &Bundle,
        progress: &HostProgress,
    ) -> HostReport {
        let started = Instant::now();
        let mut changes = Vec::new();
        let outcome = self.deploy_inner(desired, bundle, progress, &mut changes).await;
        let seconds = started.elapsed().as_secs_f64();
        let (result, error) = match outcome {
            Ok(()) if changes.is_empty() => (Result_::Unchanged, None),
            Ok(()) => (Result_::Changed, None),
            Err(Failure { reason, rolled_back: true }) => (Result_::RolledBack, Some(reason)),
            Err(Failure { reason, rolled_back: false }) => (Result_::Failed, Some(reason)),
        };
        progress.finish(&match (&result, &error) {
            (Result_::Unchanged, _) => "unchanged".to_string(),
            (Result_::Changed, _) => format!("changed ({})", kinds(&changes)),
            (_, Some(e)) => format!("{}: {e}", result_word(result)),
            (_, None) => result_word(result).to_string(),
        });
        HostReport { host: desired.host.name.clone(), result, changes, seconds, error }
    }

    async fn deploy_inner(
        &self,
        desired: &Desired,
        bundle: &Bundle,
        progress: &HostProgress,
        changes: &mut Vec<Kind>,
    ) -> Result<(), Failure> {
        let timeout = self.options.command_timeout;
        progress.phase("connecting");
        let conn = self.connect(desired, false).await?;
        let result = self.deploy_on(&conn, desired, bundle, progress, changes, timeout).await;
        conn.close().await;
        result
    }

    async fn deploy_on(
        &self,
        conn: &Conn,
        desired: &Desired,
        bundle: &Bundle,
        progress: &HostProgress,
        changes: &mut Vec<Kind>,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let name = &desired.host.name;
        progress.phase("checking facts");
        let facts = self.facts(conn, desired).await?;
        if !host::arch_matches(bundle.arch, &facts.arch) {
            return Err(fail(arch_error(bundle, &facts.arch)));
        }
        if facts.running
            && let Ok(mut up) = self.up.lock()
        {
            up.insert(name.clone());
        }
        let service = if facts.systemd { Service::Systemd } else { Service::Supervised };
        let upload = !facts.has("bin/tau-node", &bundle.sha256);
        let files: Vec<File> = desired
            .all_files(service)
            .into_iter()
            .filter(|f| !facts.has(&f.path, &f.sha256()))
            .collect();
        if !upload && files.is_empty() && facts.running {
            return Ok(());
        }
        if upload {
            changes.push(Kind::Binary);
            // Room for the new binary beside the running one, and some for the node's data.
            let needed_kb = bundle.size() / 1024 + 64 * 1024;
            if facts.free_kb < needed_kb {
                return Err(fail(format!(
                    "not enough disk space for the node: {} MiB free under {}, {} MiB needed",
                    facts.free_kb / 1024,
                    desired.base,
                    needed_kb / 1024
                )));
            }
        }
        for file in &files {
            if !changes.contains(&file.kind) {
                changes.push(file.kind);
            }
        }
        changes.sort();
        // Folders and small files in one command, the binary in a second: each command is a
        // round trip and a shell on the host.
        progress.phase(&if files.is_empty() {
            "preparing folders".to_string()
        } else {
            let mut written: Vec<Kind> = files.iter().map(|f| f.kind).collect();
            written.sort();
            written.dedup();
            format!("writing {}", kinds(&written))
        });
        run(
            conn,
            "writing config and secrets",
            &desired.stage_files_script(&files),
            Stdin::Bytes(Desired::stage_files_input(&files)),
            timeout,
        )
        .await?;
        let mut paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        if upload {
            progress.phase(&format!("uploading tau-node ({} MiB)", bundle.size() >> 20));
            let script = desired.stage_script("bin/tau-node", 0o755, &bundle.sha256);
            run(
                conn,
                "uploading tau-node",
                &script,
                Stdin::Shared(bundle.bytes.clone()),
                timeout * 10,
            )
            .await?;
            paths.push("bin/tau-node".to_string());
        }
        if facts.running {
            progress.phase("stopping the node");
            run(
                conn,
                "stopping the node",
                &desired.stop_script(),
                Stdin::Null,
                stop_timeout(timeout),
            )
            .await?;
        }
        progress.phase("starting the node");
        let start = desired.start_script(service);
        let started = Instant::now();
        // Files in place, then the node started: one command (set -e stops at the first error).
        let activate_and_start = format!("{}{start}", desired.activate_script(&paths));
        let health = match run(
            conn,
            "putting files in place and starting the node",
            &activate_and_start,
            Stdin::Null,
            timeout,
        )
        .await
        {
            Ok(_) => {
                progress.phase("waiting until the node answers and sees its peers");
                self.health(desired, started).await
            }
            Err(e) => Err(e.reason),
        };
        let reason = match health {
            Ok(()) => {
                if let Ok(mut up) = self.up.lock() {
                    up.insert(name.clone());
                }
                return Ok(());
            }
            Err(reason) => reason,
        };
        progress.phase("health check failed: rolling back");
        let log = conn
            .run(&desired.log_tail_script(3), Stdin::Null, timeout)
            .await
            .map(|o| o.text().lines().map(str::trim).collect::<Vec<_>>().join(" | "))
            .unwrap_or_default();
        let reason = if log.is_empty() {
            format!("health check failed: {reason}")
        } else {
            format!("health check failed: {reason} (node log: {log})")
        };
        let stop = stop_timeout(timeout);
        run(conn, "stopping the failed node", &desired.stop_script(), Stdin::Null, stop).await?;
        run(conn, "restoring files", &desired.rollback_script(&paths), Stdin::Null, timeout)
            .await?;
        if !facts.exists("bin/tau-node") {
            return Err(fail(format!(
                "{reason}; no previous version to roll back to, left stopped"
            )));
        }
        let started = Instant::now();
        run(conn, "starting the previous node", &start, Stdin::Null, timeout).await?;
        match self.health(desired, started).await {
            Ok(()) => Err(Failure {
                reason: format!("{reason}; rolled back to the previous binary and config"),
                rolled_back: true,
            }),
            Err(again) => Err(fail(format!(
                "{reason}; rolled back, but the previous node is not healthy either: {again}"
            ))),
        }
    }

    /// Waits until the node started at `started` answers `Info` (and is that process, not an
    /// older one) and sees at least one other node when any other node is known to run.
    async fn health(&self, desired: &Desired, started: Instant) -> Result<(), String> {
        let deadline = started + self.options.health_timeout;
        let profile = CloudProfile {
            name: self.playbook.cloud.name.clone(),
            swarm_key: self.layout.swarm_key(),
            bootstrap: vec![desired.p2p_addr.clone()],
            operator_key: None,
        };
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            let options = ConnectOptions { timeout: Duration::from_secs(3) };
            let client = match Client::connect_with(&profile, options).await {
                Ok(client) => client,
                Err(e) => {
                    last = format!("no answer from {}: {e}", desired.p2p_addr);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
            };
            while Instant::now() < deadline {
                match self.check_once(&client, desired, started).await {
                    Ok(()) => return Ok(()),
                    Err(reason) => last = reason,
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        Err(format!("{last} (after {}s)", self.options.health_timeout.as_secs()))
    }

    async fn check_once(
        &self,
        client: &Client,
        desired: &Desired,
        started: Instant,
    ) -> Result<(), String> {
        let peer = desired.peer_id;
        let info = client.info(peer).await.map_err(|e| format!("Info: {e}"))?;
        if info.uptime_secs > started.elapsed().as_secs() + 2 {
            return Err(format!(
                "an older node process answers (up {}s): the new one did not take its place",
                info.uptime_secs
            ));
        }
        let others =
            self.up.lock().map(|up| up.iter().any(|h| *h != desired.host.name)).unwrap_or(false);
        if !others {
            return Ok(());
        }
        let peers = client.peers(peer).await.map_err(|e| format!("peers: {e}"))?;
        let nodes =
            peers.iter().filter(|p| p.agent.starts_with(tau_proto::NODE_AGENT_PREFIX)).count();
        if nodes == 0 {
            return Err("the node answers but sees no other node yet".into());
        }
        Ok(())
    }

    /// Publishes the vault key set and the vault hosts as registrars (only what TNS lacks).
    pub async fn publish_vault(&self) -> anyhow::Result<usize> {
        let vault_hosts: Vec<&Desired> = self
            .desired
            .iter()
            .filter(|d| {
                self.playbook
                    .shape_of(&d.host)
                    .is_some_and(|s| s.services.iter().any(|x| x == "vault"))
            })
            .collect();
        if vault_hosts.is_empty() || self.playbook.hosts_running("tns").is_empty() {
            return Ok(0);
        }
        let keyset: tau_proto::vault::KeySet = tau_proto::yaml::load(&self.layout.vault_keyset())?;
        let operator = tau_proto::keyfile::read(&self.layout.operator_key())?;
        let profile = self.profile_absolute();
        let client = Client::connect(&profile).await?;
        let registrars: Vec<_> = vault_hosts.iter().map(|d| d.peer_id).collect();
        let mut tries = 0;
        loop {
            match client.publish_vault(&keyset, &registrars, &operator).await {
                Ok(written) => return Ok(written.len()),
                // Right after a start the entry node may not know a tns node yet.
                Err(_) if tries < 10 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The folder of the cloud's profile and state: the secrets folder's parent.
    pub fn cloud_dir(&self) -> PathBuf {
        let secrets = self.layout.dir.clone();
        secrets.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
    }

    fn profile_absolute(&self) -> CloudProfile {
        CloudProfile {
            name: self.playbook.cloud.name.clone(),
            swarm_key: self.layout.swarm_key(),
            bootstrap: self.desired.iter().map(|d| d.p2p_addr.clone()).collect(),
            operator_key: Some(self.layout.operator_key()),
        }
    }

    /// Writes `cloud.yaml` beside the secrets folder (paths relative to it) and returns its path.
    pub fn write_profile(&self) -> anyhow::Result<PathBuf> {
        let dir = self.cloud_dir();
        let secrets = self.layout.dir.file_name().map(PathBuf::from).unwrap_or_default();
        let profile = CloudProfile {
            swarm_key: secrets.join("swarm.key"),
            operator_key: Some(secrets.join("operator.key")),
            ..self.profile_absolute()
        };
        let path = dir.join("cloud.yaml");
        profile.save(&path)?;
        Ok(path)
    }

    /// Where the last deploy's results are kept (for `--retry-failed`).
    pub fn state_path(&self) -> PathBuf {
        self.cloud_dir().join(crate::secrets::STATE)
    }

    /// Stops and removes the node on one host.
    pub async fn destroy_host(&self, desired: &Desired, progress: &HostProgress) -> HostReport {
        let started = Instant::now();
        let outcome = async {
            progress.phase("connecting");
            let conn = self.connect(desired, false).await?;
            progress.phase("stopping the node and removing its files");
            let result = run(
                &conn,
                "removing the node",
                &desired.destroy_script(),
                Stdin::Null,
                stop_timeout(self.options.command_timeout),
            )
            .await;
            conn.close().await;
            result.map(|_| ())
        }
        .await;
        let (result, error) = match outcome {
            Ok(()) => (Result_::Changed, None),
            Err(e) => (Result_::Failed, Some(e.reason)),
        };
        progress.finish(match &error {
            None => "removed",
            Some(e) => e,
        });
        HostReport {
            host: desired.host.name.clone(),
            result,
            changes: Vec::new(),
            seconds: started.elapsed().as_secs_f64(),
            error,
        }
    }

    /// One host's status.
    pub async fn status_host(&self, desired: &Desired) -> HostStatus {
        let mut status = HostStatus {
            host: desired.host.name.clone(),
            address: desired.host.address.to_string(),
            reachable: false,
            version: None,
            running: false,
            healthy: false,
            peers: None,
            error: None,
        };
        let conn = match self.connect(desired, true).await {
            Ok(conn) => conn,
            Err(e) => {
                status.error = Some(strip_host(&e.to_string()));
                return status;
            }
        };
        status.reachable = true;
        match run(
            &conn,
            "status",
            &desired.status_script(),
            Stdin::Null,
            self.options.command_timeout,
        )
        .await
        {
            Ok(output) => {
                for line in output.text().lines() {
                    match line.split_once('=') {
                        Some(("version", v)) if !v.trim().is_empty() => {
                            status.version = Some(v.trim().to_string())
                        }
                        Some(("running", r)) => status.running = r.trim() == "1",
                        _ => {}
                    }
                }
            }
            Err(e) => status.error = Some(e.reason),
        }
        conn.close().await;
        if status.running {
            let profile = CloudProfile {
                name: self.playbook.cloud.name.clone(),
                swarm_key: self.layout.swarm_key(),
                bootstrap: vec![desired.p2p_addr.clone()],
                operator_key: None,
            };
            let options = ConnectOptions { timeout: Duration::from_secs(5) };
            match Client::connect_with(&profile, options).await {
                Ok(client) => match client.peers(desired.peer_id).await {
                    Ok(peers) => {
                        status.healthy = true;
                        status.peers = Some(
                            peers
                                .iter()
                                .filter(|p| p.agent.starts_with(tau_proto::NODE_AGENT_PREFIX))
                                .count(),
                        );
                    }
                    Err(e) => status.error = Some(format!("node does not answer: {e}")),
                },
                Err(e) => status.error = Some(format!("node does not answer: {e}")),
            }
        }
        status
    }

    /// Runs `work` on every selected host, at most `concurrency` at once, in playbook order.
    pub async fn each<'a, F, Fut, T>(&'a self, work: F) -> Vec<T>
    where
        F: Fn(&'a Desired) -> Fut,
        Fut: std::future::Future<Output = T> + 'a,
    {
        let selected = self.selected();
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

/// What `status` reports for one host.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    /// The host.
    pub host: String,
    /// Its address.
    pub address: String,
    /// Whether a connection succeeded.
    pub reachable: bool,
    /// The installed node's version.
    pub version: Option<String>,
    /// Whether its supervisor (or unit) runs.
    pub running: bool,
    /// Whether the node answered.
    pub healthy: bool,
    /// How many other nodes it sees.
    pub peers: Option<usize>,
    /// What went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn arch_error(bundle: &Bundle, host_arch: &str) -> String {
    format!(
        "the node binary {} is built for {}, but the host is {}: build tau-node for {} \
         (cargo build --release --target ...) and pass it with --node-binary",
        bundle.path.display(),
        bundle.arch,
        if host_arch.is_empty() { "of unknown architecture" } else { host_arch },
        if host_arch.is_empty() { "it" } else { host_arch },
    )
}

fn result_word(result: Result_) -> &'static str {
    match result {
        Result_::Changed => "changed",
        Result_::Unchanged => "unchanged",
        Result_::Failed => "failed",
        Result_::RolledBack => "rolled back",
    }
}

/// `binary, config` and the like.
pub fn kinds(kinds: &[Kind]) -> String {
    kinds
        .iter()
        .map(|k| match k {
            Kind::Binary => "binary",
            Kind::Config => "config",
            Kind::Secrets => "secrets",
            Kind::Service => "service",
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The recap table.
pub fn recap(reports: &[HostReport]) -> String {
    let width = reports.iter().map(|r| r.host.len()).max().unwrap_or(4).max(4);
    let mut out = format!("{:<width$}  {:<11}  {:>6}  details\n", "host", "result", "time");
    for r in reports {
        let details = match (&r.error, r.changes.is_empty()) {
            (Some(e), _) => e.clone(),
            (None, true) => String::new(),
            (None, false) => kinds(&r.changes),
        };
        out.push_str(&format!(
            "{:<width$}  {:<11}  {:>5.1}s  {details}\n",
            r.host,
            result_word(r.result),
            r.seconds
        ));
    }
    out
}

/// The hosts that failed or were rolled back in the last deploy recorded at `path`.
pub fn failed_last_time(path: &Path) -> anyhow::Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!("--retry-failed: cannot read {} ({e}): deploy once first", path.display())
    })?;
    let reports: Vec<HostReport> = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("--retry-failed: {}: {e}", path.display()))?;
    Ok(reports
        .into_iter()
        .filter(|r| matches!(r.result, Result_::Failed | Result_::RolledBack))
        .map(|r| r.host)
        .collect())
}

/// Records this deploy's results, merged over the last ones (hosts not deployed keep theirs).
pub fn record(path: &Path, reports: &[HostReport]) -> anyhow::Result<()> {
    let mut all: BTreeMap<String, HostReport> = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<Vec<HostReport>>(&t).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.host.clone(), r))
        .collect();
    for r in reports {
        all.insert(r.host.clone(), r.clone());
    }
    let list: Vec<&HostReport> = all.values().collect();
    std::fs::write(path, serde_json::to_string_pretty(&list)?)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// How long a stop script may take: it waits up to 75 s for a draining node to leave.
fn stop_timeout(command_timeout: Duration) -> Duration {
    command_timeout.max(Duration::from_secs(90))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_parse_every_line() {
        let facts = Facts::parse(
            "arch=x86_64\nsystemd=0\nfree_kb=1234\nrunning=1\nsha bin/tau-node -\nsha node.yaml abcd\n",
        );
        assert_eq!(facts.arch, "x86_64");
        assert!(!facts.systemd && facts.running);
        assert_eq!(facts.free_kb, 1234);
        assert!(!facts.exists("bin/tau-node"));
        assert!(facts.has("node.yaml", "abcd"));
    }

    #[test]
    fn the_recap_names_each_host_and_why() {
        let reports = [
            HostReport {
                host: "a".into(),
                result: Result_::Changed,
                changes: vec![Kind::Binary, Kind::Config],
                seconds: 1.25,
                error: None,
            },
            HostReport {
                host: "bb".into(),
                result: Result_::Failed,
                changes: Vec::new(),
                seconds: 0.5,
                error: Some("unreachable: refused".into()),
            },
        ];
        let text = recap(&reports);
        assert!(text.contains("a     changed        1.2s  binary, config"), "{text}");
        assert!(text.contains("bb    failed         0.5s  unreachable: refused"), "{text}");
    }
}
