//! A repository's deploy key: an OpenSSH ed25519 key pair made at registration. The user adds
//! the public line to their git host as a read-only deploy key; the private key goes to the
//! vault and is held by a monkey only while it clones.

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{HashAlg, LineEnding, PrivateKey};
use zeroize::Zeroizing;

/// A new deploy key.
pub struct DeployKey {
    /// The private key in OpenSSH's format, wiped from memory when dropped.
    pub private: Zeroizing<String>,
    /// The public key line (`ssh-ed25519 AAAA... comment`).
    pub public: String,
    /// Its SHA-256 fingerprint, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// Makes a deploy key whose comment is `comment` (such as `tau shop code`).
pub fn generate(comment: &str) -> Result<DeployKey, russh::keys::ssh_key::Error> {
    let seed = Zeroizing::new(rand::random::<[u8; 32]>());
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment(comment);
    Ok(DeployKey {
        private: key.to_openssh(LineEnding::LF)?,
        public: key.public_key().to_openssh()?,
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use tau_proto::git::{RepoKind, RepoUrl, Repository};

    use super::*;

    #[test]
    fn a_deploy_key_is_what_openssh_reads() {
        let key = generate("tau shop code").unwrap();
        assert!(key.public.starts_with("ssh-ed25519 ") && key.public.ends_with(" tau shop code"));
        assert_ne!(generate("x").unwrap().public, generate("x").unwrap().public);
        // OpenSSH itself derives the same public key from the private one.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deploy");
        std::fs::write(&path, key.private.as_bytes()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = std::process::Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("ssh-keygen (openssh-client) is needed; scripts/test installs it");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let derived = String::from_utf8(out.stdout).unwrap();
        let body = |line: &str| line.split(' ').nth(1).unwrap_or_default().to_string();
        assert_eq!(body(&derived), body(&key.public));
        let out = std::process::Command::new("ssh-keygen").arg("-l").arg("-f").arg(&path).output();
        let listed = String::from_utf8(out.unwrap().stdout).unwrap();
        assert!(listed.contains(&key.fingerprint), "{listed} lacks {}", key.fingerprint);
        // And a repository record takes its public line.
        let repo = Repository {
            kind: RepoKind::Code,
            url: RepoUrl::parse("url", "ssh://git@host/o/code.git").unwrap(),
            branch: "main".into(),
            host_key: key.public.clone(),
            deploy_key: key.public.clone(),
        };
        repo.check().unwrap();
    }
}
