//! What a host should hold after a deploy, and the `sh` scripts that inspect and change it.
//!
//! On each host, under its base folder (`install_dir`; for the `local` transport
//! `install_dir/<host>`):
//!
//! ```text
//! bin/tau-node, bin/tau-node.prev   the node and the version before it
//! node.yaml, node.yaml.prev         its config and the one before it
//! secrets/                          swarm key, identity, vault key set and share (0600)
//! supervise.sh                      keeps tau-node running where systemd does not
//! data/ logs/ run/                  the node's data, its logs, pid files
//! ```
//!
//! Where systemd runs (and the transport is `ssh`), `/etc/systemd/system/tau-node.service`
//! takes the supervisor's place, and the node logs to the journal (`journalctl -u tau-node`)
//! rather than to `logs/node.log`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tau_proto::identity::WriterKey;
use tau_proto::node_config::{NodeConfig, SeerConfig, VaultConfig};

use crate::playbook::{Host, Playbook, Transport};
use crate::script::quote;
use crate::secrets::Layout;

/// The shell function that stages one file from stdin: `stage PATH MODE SIZE SHA256 NAME`.
const STAGE_FUNCTION: &str = r#"umask 077
stage() {
  t="$1.new"; rm -f "$t"; : > "$t"; chmod "$2" "$t"
  if [ "$3" -gt 0 ]; then dd bs="$3" count=1 iflag=fullblock status=none >> "$t"; fi
  got=$(sha256sum < "$t" | cut -c1-64)
  if [ "$got" != "$4" ]; then
    rm -f "$t"; echo "$5: sha256 on the host is $got, expected $4: the upload was damaged" >&2; exit 3
  fi
}
"#;

/// The systemd unit's path.
pub const UNIT_PATH: &str = "/etc/systemd/system/tau-node.service";

/// How many hosts (the first ones of the playbook at the first deploy) every node bootstraps
/// from: adding a host later changes no other host's config.
const SEEDS: usize = 3;

/// The seed addresses every node bootstraps from: those recorded at the first deploy
/// ([`Layout::seeds`]), so that removing or adding hosts never changes the others' config; the
/// first hosts of the playbook when none is recorded yet, or when no recorded seed is a host of
/// the playbook any more (then every node's config changes once).
pub fn seeds(playbook: &Playbook, layout: &Layout) -> Result<Vec<Multiaddr>, DesiredError> {
    let addresses = addresses(playbook, layout)?;
    let recorded: Vec<Multiaddr> = std::fs::read_to_string(layout.seeds())
        .ok()
        .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default();
    if recorded.iter().any(|seed| addresses.iter().any(|(_, a)| a == seed)) {
        return Ok(recorded);
    }
    Ok(addresses.into_iter().take(SEEDS).map(|(_, a)| a).collect())
}

/// Records `seeds` for later deploys.
pub fn record_seeds(layout: &Layout, seeds: &[Multiaddr]) -> std::io::Result<()> {
    let text: String = seeds.iter().map(|a| format!("{a}\n")).collect();
    if std::fs::read_to_string(layout.seeds()).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(layout.seeds(), text)?;
    }
    Ok(())
}

/// What a file is, for `plan` and the recap.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `tau-node` itself.
    Binary,
    /// `node.yaml`.
    Config,
    /// Keys and shares.
    Secrets,
    /// The supervisor script or the systemd unit.
    Service,
}

/// One file a host should hold.
#[derive(Clone)]
pub struct File {
    /// Its path: relative to the base folder, or absolute (the systemd unit).
    pub path: String,
    /// Its contents.
    pub bytes: Vec<u8>,
    /// Its mode.
    pub mode: u32,
    /// What it is.
    pub kind: Kind,
}

impl std::fmt::Debug for File {
    // Never the bytes: some are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("File").field("path", &self.path).field("kind", &self.kind).finish()
    }
}

impl File {
    /// Its sha256, hex.
    pub fn sha256(&self) -> String {
        sha256_hex(&self.bytes)
    }
}

/// The sha256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// How the node is kept running on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// A systemd unit, where the host runs systemd.
    Systemd,
    /// `supervise.sh` with a pid file.
    Supervised,
}

/// Everything about one host that does not need a connection.
#[derive(Debug, Clone)]
pub struct Desired {
    /// As the playbook describes it.
    pub host: Host,
    /// Its base folder on the host (absolute).
    pub base: String,
    /// Its node's peer id.
    pub peer_id: PeerId,
    /// Its node's p2p address, ending in `/p2p/<peer id>`.
    pub p2p_addr: Multiaddr,
    /// The files, apart from the binary and the service's own file.
    pub files: Vec<File>,
}

/// Why a host's files could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{host}: {message}")]
pub struct DesiredError {
    host: String,
    message: String,
}

/// The peer id and p2p address of every host, from the secrets folder.
pub fn addresses(
    playbook: &Playbook,
    layout: &Layout,
) -> Result<Vec<(PeerId, Multiaddr)>, DesiredError> {
    playbook
        .hosts
        .iter()
        .map(|host| {
            let path = layout.identity(&host.name);
            let key = tau_proto::keyfile::read(&path).map_err(|e| DesiredError {
                host: host.name.clone(),
                message: format!("{e} (run `spore-drive init` or deploy to create it)"),
            })?;
            let peer = key.public().to_peer_id();
            let port = playbook.shape_of(host).map(|s| s.ports.p2p).unwrap_or_default();
            let addr =
                Multiaddr::from(host.address).with(Protocol::Tcp(port)).with(Protocol::P2p(peer));
            Ok((peer, addr))
        })
        .collect()
}

/// The base folder of `host`.
pub fn base_of(playbook: &Playbook, host: &Host) -> String {
    let dir = playbook.install_dir.clone();
    match playbook.transport {
        Transport::Ssh => dir.display().to_string(),
        Transport::Local => {
            absolute(&playbook.resolve(&dir)).join(&host.name).display().to_string()
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// What every host should hold.
pub fn desired(playbook: &Playbook) -> Result<Vec<Desired>, DesiredError> {
    let layout = Layout { dir: playbook.secrets_dir() };
    let addresses = addresses(playbook, &layout)?;
    let read = |host: &str, path: &Path| {
        std::fs::read(path).map_err(|e| DesiredError {
            host: host.into(),
            message: format!("cannot read {}: {e}", path.display()),
        })
    };
    let swarm_key = read("cloud", &layout.swarm_key())?;
    let operator = tau_proto::keyfile::read(&layout.operator_key())
        .map_err(|e| DesiredError { host: "cloud".into(), message: e.to_string() })?;
    let operator_key = WriterKey::of(&operator).map(|k| k.to_string());
    let seeds = seeds(playbook, &layout)?;
    let mut all = Vec::new();
    for (host, (peer_id, p2p_addr)) in playbook.hosts.iter().zip(&addresses) {
        let name = &host.name;
        let shape = playbook.shape_of(host).ok_or_else(|| DesiredError {
            host: name.clone(),
            message: format!("unknown shape `{}`", host.shape),
        })?;
        let runs = |service: &str| shape.services.iter().any(|s| s == service);
        let secret = |path: &str, bytes: Vec<u8>| File {
            path: path.into(),
            bytes,
            mode: 0o600,
            kind: Kind::Secrets,
        };
        let mut files = vec![
            secret("secrets/swarm.key", swarm_key.clone()),
            secret("secrets/identity.key", read(name, &layout.identity(name))?),
        ];
        let vault = if runs("vault") {
            files.push(secret("secrets/vault-keyset.yaml", read(name, &layout.vault_keyset())?));
            files.push(secret("secrets/vault-share.yaml", read(name, &layout.vault_share(name))?));
            Some(VaultConfig {
                keyset: "secrets/vault-keyset.yaml".into(),
                share: "secrets/vault-share.yaml".into(),
            })
        } else {
            None
        };
        let config = NodeConfig {
            identity_key: "secrets/identity.key".into(),
            swarm_key: "secrets/swarm.key".into(),
            operator_key: operator_key.clone(),
            listen: vec![listen_ip(playbook, host.address)],
            announce: match playbook.transport {
                Transport::Ssh => vec![strip_peer(p2p_addr)],
                Transport::Local => Vec::new(),
            },
            bootstrap: seeds.iter().filter(|a| *a != p2p_addr).cloned().collect(),
            services: shape.services.clone(),
            data_dir: "data".into(),
            ports: shape.ports,
            location: host.location.clone(),
            seer: runs("seer").then(|| {
                SeerConfig::new(
                    playbook.cloud.domain.clone(),
                    playbook.cloud.generated_domain.clone(),
                )
            }),
            vault,
            substrate: shape.substrate.clone().unwrap_or_default(),
            tns: shape.tns.clone().unwrap_or_default(),
            connections: shape.connections.clone().unwrap_or_default(),
            ci: Default::default(),
            database: Default::default(),
            metrics: Default::default(),
            drain: shape.drain.clone().unwrap_or_else(|| NodeConfig::default().drain),
        };
        let yaml = serde_yaml_ng::to_string(&config).map_err(|e| DesiredError {
            host: name.clone(),
            message: format!("cannot write node.yaml: {e}"),
        })?;
        let header = format!(
            "# Written by Spore Drive for host {name} of cloud {}: edit the playbook, not this file.\n",
            playbook.cloud.name
        );
        files.push(File {
            path: "node.yaml".into(),
            bytes: format!("{header}{yaml}").into_bytes(),
            mode: 0o600,
            kind: Kind::Config,
        });
        all.push(Desired {
            host: host.clone(),
            base: base_of(playbook, host),
            peer_id: *peer_id,
            p2p_addr: p2p_addr.clone(),
            files,
        });
    }
    Ok(all)
}

/// Hosts that leave the cloud (deployed once, no longer in the playbook): only what removing
/// them needs (where they are, their peer id), none of their files.
pub fn leaving(playbook: &Playbook, hosts: &[Host]) -> Result<Vec<Desired>, DesiredError> {
    let layout = Layout { dir: playbook.secrets_dir() };
    hosts
        .iter()
        .map(|host| {
            let key = tau_proto::keyfile::read(&layout.identity(&host.name))
                .map_err(|e| DesiredError { host: host.name.clone(), message: e.to_string() })?;
            let peer_id = key.public().to_peer_id();
            let port = playbook.shape_of(host).map_or(4001, |s| s.ports.p2p);
            let p2p_addr = Multiaddr::from(host.address)
                .with(Protocol::Tcp(port))
                .with(Protocol::P2p(peer_id));
            Ok(Desired {
                host: host.clone(),
                base: base_of(playbook, host),
                peer_id,
                p2p_addr,
                files: Vec::new(),
            })
        })
        .collect()
}

/// Real hosts listen everywhere and announce their address; local "hosts" share this machine
/// and each listens on its own loopback address.
fn listen_ip(playbook: &Playbook, address: IpAddr) -> IpAddr {
    match playbook.transport {
        Transport::Ssh if address.is_ipv6() => IpAddr::from([0u16; 8]),
        Transport::Ssh => IpAddr::from([0, 0, 0, 0]),
        Transport::Local => address,
    }
}

fn strip_peer(addr: &Multiaddr) -> Multiaddr {
    addr.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect()
}

impl Desired {
    /// The service's own file.
    pub fn service_file(&self, service: Service) -> File {
        match service {
            Service::Supervised => File {
                path: "supervise.sh".into(),
                bytes: SUPERVISOR.as_bytes().to_vec(),
                mode: 0o755,
                kind: Kind::Service,
            },
            Service::Systemd => File {
                path: UNIT_PATH.into(),
                bytes: unit(&self.base).into_bytes(),
                mode: 0o644,
                kind: Kind::Service,
            },
        }
    }

    /// Every file, the service's included.
    pub fn all_files(&self, service: Service) -> Vec<File> {
        let mut files = self.files.clone();
        files.push(self.service_file(service));
        files
    }

    fn path(&self, file: &str) -> String {
        if file.starts_with('/') { file.to_string() } else { format!("{}/{file}", self.base) }
    }

    /// A script printing the host's facts as `key=value` lines: `arch`, `systemd`, `free_kb`,
    /// `running`, and `sha <path> <hex or ->` for the binary and every file.
    pub fn facts_script(&self, transport: Transport) -> String {
        let mut paths = vec!["bin/tau-node".to_string()];
        paths.extend(self.files.iter().map(|f| f.path.clone()));
        paths.push("supervise.sh".into());
        paths.push(UNIT_PATH.into());
        let base = quote(&self.base);
        let systemd = match transport {
            Transport::Ssh => "[ -d /run/systemd/system ] && command -v systemctl >/dev/null",
            Transport::Local => "false",
        };
        let mut script = format!(
            "B={base}\n\
             echo \"arch=$(uname -m)\"\n\
             if {systemd}; then echo systemd=1; else echo systemd=0; fi\n\
             d=$B; while [ ! -d \"$d\" ]; do d=$(dirname \"$d\"); done\n\
             echo \"free_kb=$(df -Pk \"$d\" | awk 'NR==2 {{print $4}}')\"\n\
             {RUNNING}\n"
        );
        for path in paths {
            let full = quote(&self.path(&path));
            script.push_str(&format!(
                "if [ -f {full} ]; then echo \"sha {path} $(sha256sum < {full} | cut -c1-64)\"; \
                 else echo 'sha {path} -'; fi\n"
            ));
        }
        script
    }

    /// A script that makes the folders (secrets 0700).
    pub fn prepare_script(&self) -> String {
        let base = quote(&self.base);
        format!(
            "set -e\numask 022\nmkdir -p {base}/bin {base}/data {base}/logs {base}/run {base}/secrets\n\
             chmod 0700 {base}/secrets {base}/data\n"
        )
    }

    /// A script that writes stdin to `file.new` (mode set before any byte lands) and checks
    /// its sha256.
    pub fn stage_script(&self, path: &str, mode: u32, sha256: &str) -> String {
        let target = quote(&format!("{}.new", self.path(path)));
        format!(
            "set -e\numask 077\nt={target}\nrm -f \"$t\"\n: > \"$t\"\nchmod {mode:o} \"$t\"\n\
             cat > \"$t\"\ngot=$(sha256sum < \"$t\" | cut -c1-64)\n\
             if [ \"$got\" != {sha256} ]; then rm -f \"$t\"; \
             echo \"{path}: sha256 on the host is $got, expected {sha256}: the upload was damaged\" >&2; \
             exit 3; fi\n"
        )
    }

    /// A script that makes the base folders and writes every one of `files` to `path.new`
    /// (mode set before any byte lands), reading their contents one after the other from stdin
    /// (see [`Desired::stage_files_input`]), and checks each one's sha256: one command for all
    /// of them, however many there are.
    pub fn stage_files_script(&self, files: &[File]) -> String {
        let mut script = self.prepare_script();
        script.push_str(STAGE_FUNCTION);
        for file in files {
            script.push_str(&format!(
                "stage {} {:o} {} {} {}\n",
                quote(&self.path(&file.path)),
                file.mode,
                file.bytes.len(),
                file.sha256(),
                quote(&file.path)
            ));
        }
        script
    }

    /// What [`Desired::stage_files_script`] reads: the files' contents, one after the other.
    pub fn stage_files_input(files: &[File]) -> Vec<u8> {
        files.iter().flat_map(|f| f.bytes.iter().copied()).collect()
    }

    /// A script that puts staged files in place, keeping each previous one as `.prev`.
    pub fn activate_script(&self, paths: &[String]) -> String {
        let mut script = String::from("set -e\n");
        for path in paths {
            let full = quote(&self.path(path));
            let prev = quote(&format!("{}.prev", self.path(path)));
            let new = quote(&format!("{}.new", self.path(path)));
            script.push_str(&format!(
                "if [ -f {full} ]; then mv -f {full} {prev}; else rm -f {prev}; fi\nmv -f {new} {full}\n"
            ));
        }
        script
    }

    /// A script that puts the previous files back (a file without a previous one is removed).
    pub fn rollback_script(&self, paths: &[String]) -> String {
        let mut script = String::new();
        for path in paths {
            let full = quote(&self.path(path));
            let prev = quote(&format!("{}.prev", self.path(path)));
            script.push_str(&format!(
                "if [ -f {prev} ]; then mv -f {prev} {full}; else rm -f {full}; fi\n"
            ));
        }
        script
    }

    /// A script that starts the node.
    pub fn start_script(&self, service: Service) -> String {
        let base = quote(&self.base);
        match service {
            Service::Systemd => {
                "set -e\nsystemctl daemon-reload\nsystemctl enable --quiet tau-node\n\
                                 systemctl restart tau-node\n"
                    .into()
            }
            Service::Supervised => format!(
                "cd {base} || exit 1\n[ -x bin/tau-node ] || {{ echo 'no bin/tau-node' >&2; exit 1; }}\n\
                 rm -f run/stop\n\
                 setsid sh ./supervise.sh </dev/null >>logs/supervisor.log 2>&1 &\n\
                 i=0; while [ ! -s run/supervisor.pid ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done\n\
                 [ -s run/supervisor.pid ] || {{ echo 'the supervisor did not start' >&2; exit 1; }}\n"
            ),
        }
    }

    /// A script that stops the node (either way it was started) and waits until it is gone: 75 s
    /// at most (a node first drains: 7 s by default, 60 s at most), then it is killed.
    pub fn stop_script(&self) -> String {
        let base = quote(&self.base);
        format!(
            "B={base}\n\
             if [ -f {UNIT_PATH} ] && command -v systemctl >/dev/null; then systemctl stop tau-node 2>/dev/null || true; fi\n\
             [ -d \"$B/run\" ] || exit 0\n\
             cd \"$B\"\n\
             gone() {{ i=0; while kill -0 \"$1\" 2>/dev/null && [ $i -lt 750 ]; do sleep 0.1; i=$((i+1)); done; \
             if kill -0 \"$1\" 2>/dev/null; then kill -KILL \"$1\" 2>/dev/null; sleep 0.2; fi; }}\n\
             if [ -s run/supervisor.pid ]; then touch run/stop; s=$(cat run/supervisor.pid); \
             kill -TERM \"$s\" 2>/dev/null; gone \"$s\"; fi\n\
             if [ -s run/node.pid ]; then n=$(cat run/node.pid); kill -TERM \"$n\" 2>/dev/null; gone \"$n\"; fi\n\
             rm -f run/stop run/supervisor.pid run/node.pid\n"
        )
    }

    /// A script printing `version=`, `running=` and the last lines of the node's log.
    pub fn status_script(&self) -> String {
        let base = quote(&self.base);
        format!(
            "B={base}\n\
             if [ -x \"$B/bin/tau-node\" ]; then echo \"version=$(\"$B/bin/tau-node\" --version 2>/dev/null | head -n1)\"; \
             else echo version=; fi\n{RUNNING}\n"
        )
    }

    /// A script printing the last lines of the node's log: from the journal where systemd runs
    /// it, else from `logs/node.log`.
    pub fn log_tail_script(&self, lines: usize) -> String {
        format!(
            "if [ -f {UNIT_PATH} ] && command -v journalctl >/dev/null; then \
             journalctl -u tau-node -n {lines} --no-pager -o cat 2>/dev/null || true; \
             else tail -n {lines} {}/logs/node.log 2>/dev/null || true; fi\n",
            quote(&self.base)
        )
    }

    /// A script that stops the node and removes everything Spore Drive put on the host.
    pub fn destroy_script(&self) -> String {
        let base = quote(&self.base);
        format!(
            "{}\nif [ -f {UNIT_PATH} ]; then systemctl disable --quiet tau-node 2>/dev/null || true; \
             rm -f {UNIT_PATH} {UNIT_PATH}.prev {UNIT_PATH}.new; systemctl daemon-reload 2>/dev/null || true; fi\n\
             rm -rf {base}\n[ ! -e {base} ] || {{ echo 'could not remove {}' >&2; exit 1; }}\n",
            self.stop_script(),
            self.base
        )
    }
}

/// Prints `running=1` when the node's supervisor (or unit) is alive.
const RUNNING: &str = "r=0\n\
    if [ -f /etc/systemd/system/tau-node.service ] && command -v systemctl >/dev/null && \
    systemctl is-active --quiet tau-node 2>/dev/null; then r=1; fi\n\
    if [ -s \"$B/run/supervisor.pid\" ] && kill -0 \"$(cat \"$B/run/supervisor.pid\")\" 2>/dev/null; then r=1; fi\n\
    echo running=$r";

/// The supervisor: starts `tau-node` again whenever it exits, until `run/stop` exists or it is
/// sent SIGTERM (then it stops the node first).
pub const SUPERVISOR: &str = r#"#!/bin/sh
# Written by Spore Drive: keeps tau-node running on a host without systemd. It starts the node
# again whenever it exits, until run/stop exists or this script gets SIGTERM (then it stops the
# node first). Its pid is in run/supervisor.pid, the node's in run/node.pid.
cd "$(dirname "$0")" || exit 1
echo $$ > run/supervisor.pid
node=
trap 'touch run/stop; [ -n "$node" ] && kill -TERM "$node" 2>/dev/null' TERM INT HUP
while [ ! -e run/stop ]; do
  ./bin/tau-node run --config node.yaml >>logs/node.log 2>&1 </dev/null &
  node=$!
  echo "$node" > run/node.pid
  # wait returns early when a signal arrives: keep waiting until the node is gone.
  while kill -0 "$node" 2>/dev/null; do wait "$node"; done
  [ -e run/stop ] && break
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) tau-node exited; starting it again in 1s"
  sleep 1
done
rm -f run/node.pid run/supervisor.pid
"#;

/// The systemd unit for a node installed in `base`.
pub fn unit(base: &str) -> String {
    format!(
        "# Written by Spore Drive.\n[Unit]\nDescription=Tau node\nAfter=network-online.target\n\
         Wants=network-online.target\n\n[Service]\nWorkingDirectory={base}\n\
         ExecStart={base}/bin/tau-node run --config {base}/node.yaml\nRestart=always\nRestartSec=1\n\
         LimitNOFILE=65536\nStandardOutput=journal\nStandardError=journal\n\
         SyslogIdentifier=tau-node\n\n[Install]\nWantedBy=multi-user.target\n"
    )
}

/// Why a file is not a node binary Spore Drive can place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ElfError {
    /// Not ELF at all.
    #[error("not an ELF executable")]
    NotElf,
    /// Neither little- nor big-endian.
    #[error("an ELF file of unknown byte order")]
    ByteOrder,
    /// A machine Spore Drive does not know.
    #[error("an ELF executable for machine {0:#x}")]
    Machine(u16),
}

/// The machine an ELF binary is built for, as `uname -m` names it.
pub fn elf_arch(header: &[u8]) -> Result<&'static str, ElfError> {
    if header.len() < 20 || &header[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    let machine = match header[5] {
        1 => u16::from_le_bytes([header[18], header[19]]),
        2 => u16::from_be_bytes([header[18], header[19]]),
        _ => return Err(ElfError::ByteOrder),
    };
    Ok(match machine {
        0x3e => "x86_64",
        0xb7 => "aarch64",
        0xf3 => "riscv64",
        0x28 => "armv7l",
        0x03 => "i686",
        other => return Err(ElfError::Machine(other)),
    })
}

/// Whether a binary built for `built` runs on a host whose `uname -m` is `host`.
pub fn arch_matches(built: &str, host: &str) -> bool {
    match built {
        "armv7l" => host.starts_with("armv7") || host.starts_with("armv8l"),
        "i686" => matches!(host, "i386" | "i486" | "i586" | "i686"),
        _ => built == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_headers_name_their_machine() {
        let mut header = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
        header.resize(20, 0);
        header[18] = 0x3e;
        assert_eq!(elf_arch(&header), Ok("x86_64"));
        header[18] = 0xb7;
        assert_eq!(elf_arch(&header), Ok("aarch64"));
        assert!(elf_arch(b"#!/bin/sh\necho hello\n").is_err());
        let own = std::fs::read("/proc/self/exe").unwrap_or_default();
        assert_eq!(elf_arch(&own[..64]), Ok(std::env::consts::ARCH));
        assert!(arch_matches("x86_64", "x86_64"));
        assert!(!arch_matches("x86_64", "aarch64"));
    }
}
