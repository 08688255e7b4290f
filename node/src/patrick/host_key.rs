//! A git host's SSH host key, pinned at registration: read from a known_hosts file, or fetched
//! from the host for its owner to confirm by fingerprint. Monkeys then clone only from a host
//! that presents exactly this key.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::ssh_key::{HashAlg, PublicKey};
use tau_proto::git::RepoUrl;

/// How long fetching a host key may take.
pub const SCAN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no host key could be pinned. Names the file or host at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum HostKeyError {
    #[error("{path}: {reason}")]
    KnownHosts { path: String, reason: String },
    #[error("{path} holds no key for {host} port {port}")]
    NotListed { path: String, host: String, port: u16 },
    #[error("cannot fetch the SSH host key of {host}:{port}: {reason}")]
    Scan { host: String, port: u16, reason: String },
}

/// A pinned host key: its OpenSSH line (`type base64`, no comment) and SHA-256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// `ssh-ed25519 AAAA...`.
    pub line: String,
    /// `SHA256:...`.
    pub fingerprint: String,
}

impl Pinned {
    fn of(key: &PublicKey) -> Result<Self, String> {
        let mut key = key.clone();
        key.set_comment("");
        let line = key.to_openssh().map_err(|e| e.to_string())?.trim().to_string();
        Ok(Self { line, fingerprint: key.fingerprint(HashAlg::Sha256).to_string() })
    }
}

/// The key `path` (an OpenSSH known_hosts file; hashed entries too) lists for the URL's host and
/// port: its ed25519 key if it has one, else the first listed.
pub fn from_known_hosts(path: &Path, url: &RepoUrl) -> Result<Pinned, HostKeyError> {
    let file = || path.display().to_string();
    // russh reads a missing file as empty; say so instead.
    std::fs::metadata(path)
        .map_err(|e| HostKeyError::KnownHosts { path: file(), reason: e.to_string() })?;
    let keys = russh::keys::known_hosts::known_host_keys_path(&url.host, url.port, path)
        .map_err(|e| HostKeyError::KnownHosts { path: file(), reason: e.to_string() })?;
    let key = keys
        .iter()
        .map(|(_, key)| key)
        .find(|key| key.algorithm() == russh::keys::ssh_key::Algorithm::Ed25519)
        .or_else(|| keys.first().map(|(_, key)| key))
        .ok_or_else(|| HostKeyError::NotListed {
            path: file(),
            host: url.host.clone(),
            port: url.port,
        })?;
    Pinned::of(key).map_err(|reason| HostKeyError::KnownHosts { path: file(), reason })
}

/// Remembers the key the server offered and ends the handshake there.
struct Grab(Arc<Mutex<Option<PublicKey>>>);

impl client::Handler for Grab {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        if let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = server_key
            && let Ok(mut slot) = self.0.lock()
        {
            *slot = Some(key.clone());
        }
        Ok(false)
    }
}

/// Fetches the host key the URL's host offers (ed25519 preferred), without logging in: for the
/// owner to compare its fingerprint with what their git host publishes.
pub async fn scan(url: &RepoUrl) -> Result<Pinned, HostKeyError> {
    let failed =
        |reason: String| HostKeyError::Scan { host: url.host.clone(), port: url.port, reason };
    let config = Arc::new(client::Config {
        preferred: russh::Preferred {
            key: std::borrow::Cow::Borrowed(&[
                russh::keys::Algorithm::Ed25519,
                russh::keys::Algorithm::Ecdsa { curve: russh::keys::ssh_key::EcdsaCurve::NistP256 },
                russh::keys::Algorithm::Rsa { hash: Some(russh::keys::ssh_key::HashAlg::Sha512) },
            ]),
            ..Default::default()
        },
        ..client::Config::default()
    });
    let seen = Arc::new(Mutex::new(None));
    let address = (url.host.as_str(), url.port);
    // russh's connect has no timeout of its own.
    let connect = client::connect(config, address, Grab(seen.clone()));
    match tokio::time::timeout(SCAN_TIMEOUT, connect).await {
        Err(_) => return Err(failed(format!("no answer within {}s", SCAN_TIMEOUT.as_secs()))),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            if seen.lock().ok().and_then(|s| s.clone()).is_none() {
                return Err(failed(e.to_string()));
            }
        }
    }
    let key =
        seen.lock().ok().and_then(|s| s.clone()).ok_or_else(|| failed("no key offered".into()))?;
    Pinned::of(&key).map_err(failed)
}

/// A known_hosts file with only `pinned` for the URL's host: what `ssh` checks the host against
/// when a monkey clones.
pub fn known_hosts_line(url: &RepoUrl, pinned_line: &str) -> String {
    match url.port {
        22 => format!("{} {pinned_line}\n", url.host),
        port => format!("[{}]:{port} {pinned_line}\n", url.host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_hosts_file_gives_the_hosts_ed25519_key_and_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let keygen = |kind: &str| {
            let file = dir.path().join(kind);
            let out = std::process::Command::new("ssh-keygen")
                .args(["-q", "-N", "", "-t", kind, "-f"])
                .arg(&file)
                .output()
                .expect("ssh-keygen (openssh-client) is needed; scripts/test installs it");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let public = std::fs::read_to_string(file.with_extension("pub")).unwrap();
            public.split(' ').take(2).collect::<Vec<_>>().join(" ")
        };
        let (ed, ecdsa) = (keygen("ed25519"), keygen("ecdsa"));
        std::fs::write(
            &path,
            format!("other.example {ed}\n[git.example]:2222 {ecdsa}\n[git.example]:2222 {ed} c\n"),
        )
        .unwrap();
        let url = RepoUrl::parse("url", "ssh://git@git.example:2222/o/code.git").unwrap();
        let pinned = from_known_hosts(&path, &url).unwrap();
        assert_eq!(pinned.line, ed);
        assert!(pinned.fingerprint.starts_with("SHA256:"), "{}", pinned.fingerprint);
        assert_eq!(known_hosts_line(&url, &pinned.line), format!("[git.example]:2222 {ed}\n"));

        let elsewhere = RepoUrl::parse("url", "ssh://git@git.example/o/code.git").unwrap();
        let error = from_known_hosts(&path, &elsewhere).unwrap_err().to_string();
        assert!(error.contains("known_hosts holds no key for git.example port 22"), "{error}");
        let missing = from_known_hosts(&dir.path().join("nope"), &url).unwrap_err().to_string();
        assert!(missing.contains("nope"), "{missing}");
    }
}
