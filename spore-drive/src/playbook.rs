//! The playbook: what a cloud is made of and where it runs.
//!
//! ```yaml
//! cloud:
//!   name: lab                       # the cloud's name (1-63 of a-z, 0-9, -)
//!   domain: lab.tau                 # seer answers <service>.tau.<domain>
//!   generated_domain: g.lab.tau     # <project>.<generated_domain> needs no TXT record
//!   secrets: secrets                # swarm key, operator key, identities, vault shares (0600)
//! transport: ssh                    # ssh (default) or local (folders on this machine)
//! host_keys: strict                 # strict (default): unknown hosts are refused; accept-new
//! known_hosts: known_hosts          # checked host keys, for ssh
//! ssh: { user: root, port: 22, key: id_ed25519 }   # defaults for every host; no key: ssh-agent
//! install_dir: /opt/tau             # where the node lives on each host (local: a folder here)
//! shapes:
//!   full: { services: [tns, hoarder, vault, seer, substrate], ports: { p2p: 4001, http: 8080, dns: 53 } }
//!   edge:                           # optional per shape: node.yaml's substrate settings
//!     services: [hoarder, substrate]
//!     substrate: { counter_window: 10s }
//!     drain: 7s                     # optional: node.yaml's drain (serve on after leaving)
//!     tns: { max_records_per_project: 50000 }   # optional: node.yaml's tns quotas
//!     connections: { target: 24, ceiling: 48 }  # optional: node.yaml's connection bounds
//! hosts:
//!   - { name: h1, address: 10.10.0.2, shape: full, location: { region: lab } }
//! ```
//!
//! Relative paths are relative to the playbook's folder. Unknown fields are errors, and every
//! error names the file and the field.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use tau_proto::admin::Location;
use tau_proto::node_config::Ports;
use tau_proto::node_config::{ConnectionsConfig, SubstrateConfig, TnsConfig, drain_problem};
use tau_proto::tns::keys::{is_domain, is_name};
use tau_proto::yaml::{self, YamlError};

/// Folders a node must never be installed in: `install_dir` reaches remote commands and the
/// systemd unit, and `destroy` removes it.
const SYSTEM_FOLDERS: [&str; 27] = [
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/usr/bin",
    "/usr/lib",
    "/usr/local",
    "/usr/local/bin",
    "/usr/sbin",
    "/var",
    "/var/lib",
];

/// Why `dir` cannot be where nodes are installed, if it cannot: only letters, digits and
/// `/._-` (nothing a shell or a unit file would read as syntax), absolute and without `.` or
/// `..` segments on SSH hosts (a local one is relative to the playbook's folder), and not a
/// system folder.
fn install_dir_problem(dir: &Path, transport: Transport) -> Option<String> {
    let Some(text) = dir.to_str() else { return Some("is not UTF-8".into()) };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b)) {
        return Some(format!(
            "{text:?} may hold only letters, digits, `/`, `.`, `_` and `-` (it reaches remote \
             commands and the systemd unit)"
        ));
    }
    if transport == Transport::Ssh {
        if !dir.is_absolute() {
            return Some(format!("{text:?} must be absolute on SSH hosts, such as /opt/tau"));
        }
        if dir.components().any(|c| matches!(c, Component::CurDir | Component::ParentDir)) {
            return Some(format!("{text:?} has a `.` or `..` segment"));
        }
    }
    let trimmed = match text.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    if SYSTEM_FOLDERS.contains(&trimmed) {
        return Some(format!(
            "{text:?} is a system folder (destroy removes install_dir): name one of its own, \
             such as /opt/tau"
        ));
    }
    None
}

/// The services a node can run (as `tau-node` knows them).
pub use tau_proto::node_config::SERVICES;

/// A playbook, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    /// What every host shares: name, domain, secrets, node settings.
    pub cloud: Cloud,
    /// How hosts are reached.
    #[serde(default)]
    pub transport: Transport,
    /// How unknown SSH host keys are treated.
    #[serde(default)]
    pub host_keys: HostKeys,
    /// The known_hosts file SSH host keys are checked against.
    #[serde(default = "default_known_hosts")]
    pub known_hosts: PathBuf,
    /// SSH settings for every host (each may override them).
    #[serde(default)]
    pub ssh: Ssh,
    /// Where the node lives on each host (for `local`: a folder on this machine, one subfolder
    /// per host).
    #[serde(default = "default_install_dir")]
    pub install_dir: PathBuf,
    /// The kinds of host, by name.
    pub shapes: BTreeMap<String, Shape>,
    /// Every host of the cloud, each name unique.
    pub hosts: Vec<Host>,
    /// The folder the playbook is in (relative paths are relative to it).
    #[serde(skip)]
    pub base: PathBuf,
}

/// The playbook's `cloud:` section: what every host shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cloud {
    /// Its name.
    pub name: String,
    /// Its domain: seer answers `<service>.tau.<domain>`.
    pub domain: String,
    /// The suffix of its generated domains.
    pub generated_domain: String,
    /// Where its secrets are kept (created 0700, each file 0600).
    pub secrets: PathBuf,
}

/// How hosts are reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Over SSH.
    #[default]
    Ssh,
    /// Folders on this machine, one per host.
    Local,
}

/// How SSH host keys are checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeys {
    /// Only hosts already in known_hosts; an unknown host is refused and its fingerprint shown.
    #[default]
    Strict,
    /// An unknown host is learned once; a changed key is still refused.
    AcceptNew,
}

/// SSH settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ssh {
    /// The user to log in as (sudo is used when it is not root).
    #[serde(default = "default_user")]
    pub user: String,
    /// The SSH port.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// The private key file [default: the keys of the running ssh-agent].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

impl Default for Ssh {
    fn default() -> Self {
        Self { user: default_user(), port: default_ssh_port(), key: None }
    }
}

/// A host's own SSH settings, over the playbook's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshOverride {
    /// The SSH user (the cloud's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The SSH port (the cloud's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The private key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

/// A kind of host: the services it runs and its ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shape {
    /// The services the node runs, by name (tns, hoarder, vault, seer, substrate).
    pub services: Vec<String>,
    /// The ports the node listens on.
    #[serde(default)]
    pub ports: Ports,
    /// The substrate settings of its nodes (counter window and retention, instances), as in
    /// node.yaml's `substrate` section; the node's defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substrate: Option<SubstrateConfig>,
    /// The per-project quotas of its tns nodes, as in node.yaml's `tns` section; the node's
    /// defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tns: Option<TnsConfig>,
    /// How many other nodes its nodes keep connections to, as in node.yaml's `connections`
    /// section; the node's defaults (24, at most 48) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<ConnectionsConfig>,
    /// How long its nodes keep serving when stopped, after telling seer they are leaving, as
    /// in node.yaml's `drain`; the node's default (7s) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<String>,
}

/// One entry of the playbook's `hosts:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Its name (1-63 of a-z, 0-9, -).
    pub name: String,
    /// The address the node listens on and SSH connects to.
    pub address: IpAddr,
    /// Its shape.
    pub shape: String,
    /// Its own SSH settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshOverride>,
    /// Where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

fn default_known_hosts() -> PathBuf {
    PathBuf::from("known_hosts")
}

fn default_install_dir() -> PathBuf {
    PathBuf::from("/opt/tau")
}

fn default_user() -> String {
    "root".into()
}

fn default_ssh_port() -> u16 {
    22
}

impl Playbook {
    /// Loads and checks the playbook at `path`.
    pub fn load(path: &Path) -> Result<Self, YamlError> {
        let mut playbook: Self = yaml::load(path)?;
        playbook.check(path)?;
        playbook.base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(playbook)
    }

    /// `path`, relative to the playbook's folder unless absolute; `~/` is the home folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if let (Ok(rest), Some(home)) = (path.strip_prefix("~"), std::env::var_os("HOME")) {
            return PathBuf::from(home).join(rest);
        }
        tidy(&self.base.join(path))
    }

    /// The secrets folder, relative paths taken from the playbook's folder.
    pub fn secrets_dir(&self) -> PathBuf {
        self.resolve(&self.cloud.secrets)
    }

    /// `host`'s shape (checked to exist when the playbook was loaded).
    pub fn shape_of(&self, host: &Host) -> Option<&Shape> {
        self.shapes.get(&host.shape)
    }

    /// The hosts that run `service`.
    pub fn hosts_running(&self, service: &str) -> Vec<&Host> {
        self.hosts
            .iter()
            .filter(|h| self.shape_of(h).is_some_and(|s| s.services.iter().any(|x| x == service)))
            .collect()
    }

    /// `host`'s SSH settings, its own over the playbook's.
    pub fn ssh_of(&self, host: &Host) -> Ssh {
        let own = host.ssh.clone().unwrap_or_default();
        Ssh {
            user: own.user.unwrap_or_else(|| self.ssh.user.clone()),
            port: own.port.unwrap_or(self.ssh.port),
            key: own.key.or_else(|| self.ssh.key.clone()).map(|k| self.resolve(&k)),
        }
    }

    fn check(&self, path: &Path) -> Result<(), YamlError> {
        let invalid = |field: String, message: String| YamlError::invalid(path, field, message);
        if !is_name(&self.cloud.name) {
            return Err(invalid("cloud.name".into(), "1-63 of a-z, 0-9 and -".into()));
        }
        for (field, name) in [
            ("cloud.domain", &self.cloud.domain),
            ("cloud.generated_domain", &self.cloud.generated_domain),
        ] {
            if !is_domain(name) {
                return Err(invalid(field.into(), format!("`{name}` is not a domain name")));
            }
        }
        if let Some(message) = install_dir_problem(&self.install_dir, self.transport) {
            return Err(invalid("install_dir".into(), message));
        }
        if self.shapes.is_empty() {
            return Err(invalid("shapes".into(), "at least one shape is needed".into()));
        }
        for (name, shape) in &self.shapes {
            let field = |rest: &str| format!("shapes.{name}{rest}");
            if !is_name(name) {
                return Err(invalid(field(""), "a shape's name is 1-63 of a-z, 0-9 and -".into()));
            }
            if shape.services.is_empty() {
                return Err(invalid(field(".services"), "at least one service".into()));
            }
            for (i, service) in shape.services.iter().enumerate() {
                if !SERVICES.contains(&service.as_str()) {
                    return Err(invalid(
                        field(&format!(".services[{i}]")),
                        format!(
                            "unknown service `{service}`, expected one of {}",
                            SERVICES.join(", ")
                        ),
                    ));
                }
                if shape.services[..i].contains(service) {
                    return Err(invalid(
                        field(&format!(".services[{i}]")),
                        format!("`{service}` is listed twice"),
                    ));
                }
            }
            let Ports { p2p, http, dns, webhook, admin } = shape.ports;
            for (port, which) in
                [(p2p, "p2p"), (http, "http"), (dns, "dns"), (webhook, "webhook"), (admin, "admin")]
            {
                if port == 0 {
                    return Err(invalid(
                        field(&format!(".ports.{which}")),
                        "a port is 1-65535".into(),
                    ));
                }
            }
            let ports = [p2p, http, dns, webhook, admin];
            if ports.iter().enumerate().any(|(i, port)| ports[..i].contains(port)) {
                return Err(invalid(
                    field(".ports"),
                    "p2p, http, dns, webhook and admin need five different ports".into(),
                ));
            }
            if let Some((name, message)) = shape.substrate.as_ref().and_then(|s| s.problem()) {
                return Err(invalid(field(&format!(".substrate.{name}")), message));
            }
            if let Some((name, message)) = shape.tns.as_ref().and_then(|s| s.problem()) {
                return Err(invalid(field(&format!(".tns.{name}")), message));
            }
            if let Some((name, message)) = shape.connections.as_ref().and_then(|s| s.problem()) {
                return Err(invalid(field(&format!(".connections.{name}")), message));
            }
            if let Some(message) = shape.drain.as_deref().and_then(drain_problem) {
                return Err(invalid(field(".drain"), message));
            }
        }
        if self.hosts.is_empty() {
            return Err(invalid("hosts".into(), "at least one host is needed".into()));
        }
        let mut names = BTreeSet::new();
        let mut addresses = BTreeSet::new();
        for (i, host) in self.hosts.iter().enumerate() {
            let field = |rest: &str| format!("hosts[{i}]{rest}");
            if !is_name(&host.name) {
                return Err(invalid(field(".name"), "1-63 of a-z, 0-9 and -".into()));
            }
            if !names.insert(host.name.as_str()) {
                return Err(invalid(
                    field(".name"),
                    format!("host `{}` is listed twice", host.name),
                ));
            }
            if !addresses.insert(host.address) {
                return Err(invalid(
                    field(".address"),
                    format!("{} is the address of another host too", host.address),
                ));
            }
            if self.transport == Transport::Local && !host.address.is_loopback() {
                return Err(invalid(
                    field(".address"),
                    format!(
                        "{}: the local transport runs hosts on loopback addresses (127.0.0.0/8)",
                        host.address
                    ),
                ));
            }
            if !self.shapes.contains_key(&host.shape) {
                return Err(invalid(
                    field(".shape"),
                    format!(
                        "no shape `{}`; the shapes are {}",
                        host.shape,
                        self.shapes.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            if host.location.as_ref().is_some_and(|l| l.region.trim().is_empty()) {
                return Err(invalid(field(".location.region"), "must not be empty".into()));
            }
        }
        Ok(())
    }
}

/// `path` with each `dir/..` taken out where `dir` is a real folder (not a symlink, through which
/// `..` would lead elsewhere): `playbooks/../target/x` reads `target/x`.
fn tidy(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_)))
                    && !std::fs::symlink_metadata(&out)
                        .is_ok_and(|m| m.file_type().is_symlink()) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() { PathBuf::from(".") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_takes_out_dir_dotdot_but_not_through_a_symlink() {
        assert_eq!(tidy(Path::new("no-such-dir/../target/x")), Path::new("target/x"));
        assert_eq!(tidy(Path::new("/a/b/../../c")), Path::new("/c"));
        assert_eq!(tidy(Path::new("../x")), Path::new("../x"));
        assert_eq!(tidy(Path::new("a/..")), Path::new("."));
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/usr/share", &link).unwrap();
        assert_eq!(tidy(&link.join("../x")), link.join("../x"));
    }

    const BASE: &str = "cloud: {name: lab, domain: lab.tau, generated_domain: g.lab.tau, secrets: s}\n\
                        shapes: {full: {services: [tns, seer]}}\n";

    fn parse(text: &str) -> Result<Playbook, YamlError> {
        let path = Path::new("/x/playbook.yaml");
        let mut playbook: Playbook = yaml::parse(text, path)?;
        playbook.check(path)?;
        playbook.base = PathBuf::from("/x");
        Ok(playbook)
    }

    #[test]
    fn defaults_and_overrides() {
        let playbook = parse(&format!(
            "{BASE}ssh: {{user: deploy, key: keys/id}}\nhosts:\n\
             - {{name: a, address: 10.0.0.2, shape: full}}\n\
             - {{name: b, address: 10.0.0.3, shape: full, ssh: {{port: 2222, key: /abs/k}}}}\n"
        ))
        .unwrap();
        assert_eq!((playbook.transport, playbook.host_keys), (Transport::Ssh, HostKeys::Strict));
        assert_eq!(playbook.shapes["full"].ports, Ports::default());
        let a = playbook.ssh_of(&playbook.hosts[0]);
        assert_eq!((a.user.as_str(), a.port, a.key), ("deploy", 22, Some("/x/keys/id".into())));
        let b = playbook.ssh_of(&playbook.hosts[1]);
        assert_eq!((b.port, b.key), (2222, Some("/abs/k".into())));
        assert_eq!(playbook.secrets_dir(), PathBuf::from("/x/s"));
        assert_eq!(playbook.hosts_running("seer").len(), 2);
        assert!(playbook.hosts_running("vault").is_empty());
    }
}
