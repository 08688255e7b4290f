//! A git host on this machine, for git-operated projects: an OpenSSH `sshd` on a loopback port
//! with its own host key, bare repositories, and `post-receive` hooks that post a signed push
//! webhook (`tau-git-hook`), as GitHub, Gitea or Forgejo would.
//!
//! Keys log in through `authorized_keys` lines that force a command: the developer's key runs
//! `git-shell` (fetch and push), a deploy key only `git-upload-pack` (read-only), like a git
//! host's deploy keys. The login user is the one running the tests (root), allowed only forced
//! commands. Dropping the host stops sshd (its folder is the caller's to remove); `tau-lab
//! git-host` runs one by hand.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::Result;
use crate::ssh_lab::keygen;

/// A running git host.
pub struct GitHost {
    /// Its folder: host key, config, authorized keys, repositories.
    pub dir: PathBuf,
    /// The port sshd listens on (127.0.0.1).
    pub port: u16,
    /// The developer's private key (pushes).
    pub developer_key: PathBuf,
    sshd: Option<Child>,
}

impl GitHost {
    /// Starts sshd on a free loopback port, with a developer key that may push. Fails with the
    /// reason (never skips) when sshd, ssh-keygen or git are missing.
    pub fn start(dir: &Path) -> Result<Self> {
        for tool in ["/usr/sbin/sshd", "git", "ssh-keygen", "git-shell"] {
            let found = Path::new(tool).exists()
                || Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
            if !found {
                return Err(format!("{tool} is missing: scripts/setup installs it").into());
            }
        }
        std::fs::create_dir_all(dir.join("repos"))?;
        std::fs::create_dir_all("/run/sshd")?;
        let developer_key = dir.join("developer");
        keygen(&developer_key)?;
        keygen(&dir.join("ssh_host_ed25519_key"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {dir}/ssh_host_ed25519_key\n\
             PidFile {dir}/sshd.pid\nAuthorizedKeysFile {dir}/authorized_keys\n\
             UsePAM no\nStrictModes no\nPermitRootLogin forced-commands-only\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nMaxStartups 100\n\
             LogLevel ERROR\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config)?;
        std::fs::write(dir.join("port"), port.to_string())?;
        // Deploy keys may only fetch.
        let readonly = dir.join("read-only");
        std::fs::write(
            &readonly,
            "#!/bin/sh\ncase \"$SSH_ORIGINAL_COMMAND\" in\n  git-upload-pack\\ *) exec git-shell -c \
             \"$SSH_ORIGINAL_COMMAND\" ;;\n  *) echo 'this deploy key is read-only' >&2; exit 1 ;;\nesac\n",
        )?;
        std::fs::set_permissions(&readonly, std::fs::Permissions::from_mode(0o755))?;
        let mut host = Self { dir: dir.to_path_buf(), port, developer_key, sshd: None };
        let developer = std::fs::read_to_string(host.developer_key.with_extension("pub"))?;
        host.authorize(&developer, "git-shell -c \\\"$SSH_ORIGINAL_COMMAND\\\"")?;
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log"))?)
            .spawn()?;
        host.sshd = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
                return Err(format!("the git host's sshd does not listen on {addr}: {log}").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(host)
    }

    /// The host whose folder is `dir`, as [`GitHost::start`] left it (its sshd is not this
    /// value's: dropping it stops nothing).
    pub fn open(dir: &Path) -> Result<Self> {
        let port = std::fs::read_to_string(dir.join("port")).map_err(|e| {
            format!("{}: {e} (is it a git host's folder?)", dir.join("port").display())
        })?;
        let port =
            port.trim().parse().map_err(|e| format!("{}: {e}", dir.join("port").display()))?;
        Ok(Self { dir: dir.to_path_buf(), port, developer_key: dir.join("developer"), sshd: None })
    }

    fn authorize(&self, public: &str, command: &str) -> Result {
        let line = format!("restrict,command=\"{command}\" {}\n", public.trim());
        let path = self.dir.join("authorized_keys");
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str(&line);
        std::fs::write(&path, text)?;
        Ok(())
    }

    /// Adds a read-only deploy key (an OpenSSH public key line).
    pub fn add_deploy_key(&self, public: &str) -> Result {
        let command = self.dir.join("read-only").display().to_string();
        self.authorize(public, &command)
    }

    /// A known_hosts file's line for this host.
    pub fn known_hosts_line(&self) -> Result<String> {
        let public = std::fs::read_to_string(self.dir.join("ssh_host_ed25519_key.pub"))?;
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        Ok(format!("[127.0.0.1]:{} {}\n", self.port, key.join(" ")))
    }

    /// Makes the bare repository `name.git` (branch `main`); returns its ssh URL.
    pub fn create_repo(&self, name: &str) -> Result<String> {
        let path = self.repo_path(name);
        git(None, &["init", "-q", "--bare", "-b", "main"], Some(&path))?;
        Ok(format!("ssh://root@127.0.0.1:{}{}", self.port, path.display()))
    }

    fn repo_path(&self, name: &str) -> PathBuf {
        self.dir.join("repos").join(format!("{name}.git"))
    }

    /// Makes `name`'s `post-receive` hook post a signed webhook to `url` for every push, with
    /// the secret in a 0600 file beside it; `hook` is the `tau-git-hook` binary.
    pub fn set_webhook(&self, name: &str, url: &str, secret: &[u8], hook: &Path) -> Result {
        if !self.repo_path(name).is_dir() {
            return Err(format!("{} has no repository {name}.git", self.dir.display()).into());
        }
        let hooks = self.repo_path(name).join("hooks");
        let secret_file = hooks.join("webhook.secret");
        std::fs::write(&secret_file, secret)?;
        std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600))?;
        let script = hooks.join("post-receive");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexec '{}' --url '{url}' --secret-file '{}' --name '{name}'\n",
                hook.display(),
                secret_file.display()
            ),
        )?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        Ok(())
    }

    /// Runs git in `work` as the developer (ssh with the developer key, this host pinned);
    /// returns stdout and stderr together.
    pub fn git(&self, work: &Path, args: &[&str]) -> Result<String> {
        let known = self.dir.join("developer_known_hosts");
        std::fs::write(&known, self.known_hosts_line()?)?;
        let ssh = format!(
            "ssh -F /dev/null -i '{}' -o IdentitiesOnly=yes -o UserKnownHostsFile='{}' \
             -o StrictHostKeyChecking=yes -o BatchMode=yes",
            self.developer_key.display(),
            known.display()
        );
        git(Some(&ssh), args, Some(work))
    }
}

/// Runs git (in `dir`, created if missing) with a clean config; fails with its output.
pub fn git(ssh: Option<&str>, args: &[&str], dir: Option<&Path>) -> Result<String> {
    let mut command = Command::new("git");
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)?;
        command.current_dir(dir);
    }
    command
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Tau Test")
        .env("GIT_AUTHOR_EMAIL", "test@tau.invalid")
        .env("GIT_COMMITTER_NAME", "Tau Test")
        .env("GIT_COMMITTER_EMAIL", "test@tau.invalid")
        .args(args);
    if let Some(ssh) = ssh {
        command.env("GIT_SSH_COMMAND", ssh);
    }
    let output = command.output().map_err(|e| format!("cannot run git: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        return Err(format!("git {args:?} failed: {text}").into());
    }
    Ok(text)
}

impl Drop for GitHost {
    fn drop(&mut self) {
        if let Some(mut child) = self.sshd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
