//! `spore-drive init DIR`: a playbook to start from, and the cloud's secrets.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::playbook::{Playbook, Transport};
use crate::secrets::{self, Made, SecretsError};

/// Why a playbook could not be scaffolded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum InitError {
    /// The playbook exists already.
    #[error("{0} exists already: init never overwrites a playbook")]
    Exists(String),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The written playbook does not load (a bug).
    #[error(transparent)]
    Playbook(#[from] tau_proto::yaml::YamlError),
    /// The secrets could not be made.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

/// The text of a new playbook for `name`, with `hosts` hosts reached by `transport`.
pub fn template(name: &str, hosts: usize, transport: Transport) -> String {
    let mut text = String::new();
    let local = transport == Transport::Local;
    let _ = writeln!(text, "# The {name} cloud. Deploy it with: spore-drive deploy playbook.yaml");
    let _ = writeln!(text, "cloud:");
    let _ = writeln!(text, "  name: {name}");
    let _ =
        writeln!(text, "  domain: {name}.tau              # seer answers <service>.tau.<domain>");
    let _ = writeln!(
        text,
        "  generated_domain: g.{name}.tau  # <project>.<generated_domain> is served at once"
    );
    let _ = writeln!(
        text,
        "  secrets: secrets               # keys and shares, mode 0600; keep them safe"
    );
    if local {
        let _ = writeln!(
            text,
            "transport: local                 # one folder per host on this machine"
        );
        let _ = writeln!(text, "install_dir: nodes");
    } else {
        let _ = writeln!(text, "transport: ssh");
        let _ = writeln!(
            text,
            "host_keys: strict                # unknown hosts are refused; accept-new learns them once"
        );
        let _ = writeln!(text, "known_hosts: known_hosts");
        let _ = writeln!(
            text,
            "ssh: {{ user: root, port: 22 }}   # add `key: FILE`, or the ssh-agent's keys are used"
        );
        let _ = writeln!(text, "install_dir: /opt/tau");
    }
    let _ = writeln!(text, "shapes:");
    let _ = writeln!(text, "  full:");
    let _ = writeln!(text, "    services: [tns, hoarder, vault, seer, substrate]");
    let dns = if local { 5353 } else { 53 };
    let _ = writeln!(text, "    ports: {{ p2p: 4001, http: 8080, dns: {dns} }}");
    let _ = writeln!(text, "hosts:");
    for i in 0..hosts {
        let address =
            if local { format!("127.0.0.{}", i + 1) } else { format!("10.0.0.{}", i + 2) };
        let _ = writeln!(
            text,
            "  - {{ name: node-{}, address: {address}, shape: full, location: {{ region: {} }} }}",
            i + 1,
            if local { "local" } else { "eu-west" }
        );
    }
    text
}

/// Writes `dir/playbook.yaml` (never over an existing one) and generates its secrets.
pub fn init(
    dir: &Path,
    name: &str,
    hosts: usize,
    transport: Transport,
) -> Result<(PathBuf, Made), InitError> {
    let path = dir.join("playbook.yaml");
    if path.exists() {
        return Err(InitError::Exists(path.display().to_string()));
    }
    let io = |source| InitError::Io { path: path.display().to_string(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(&path, template(name, hosts, transport)).map_err(io)?;
    let playbook = Playbook::load(&path)?;
    let made = secrets::ensure(&playbook)?;
    Ok((path, made))
}
