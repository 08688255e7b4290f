//! Fetching a repository's branch with its deploy key, and checking out one commit, with the
//! `git` and `ssh` commands.
//!
//! The deploy key is a 0600 file in the job's `ssh/` folder (0700), deleted with the job; the
//! host is checked against the key pinned at registration only (`StrictHostKeyChecking=yes`
//! against a known_hosts file holding that one key; no global or user known_hosts, no ssh
//! config, no agent). git runs with a cleared environment and no system or global config, only
//! the ssh transport allowed, no hooks, no submodules. Nothing secret is ever on a command
//! line: only paths.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tau_proto::git::Repository;

use super::log::Log;

/// How long one git command may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a checkout failed (the log has git's own words).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckoutError(pub String);

/// A repository's key files for one job, deleted when dropped.
pub struct KeyFiles {
    dir: PathBuf,
    key: PathBuf,
    known_hosts: PathBuf,
}

impl KeyFiles {
    /// Writes `private` (an OpenSSH private key) and the pinned host key of `repo` into `dir`
    /// (created 0700), each 0600.
    pub fn write(dir: &Path, repo: &Repository, private: &[u8]) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let key = dir.join(format!("{}.key", repo.kind));
        let known_hosts = dir.join(format!("{}.known_hosts", repo.kind));
        let line = crate::patrick::host_key::known_hosts_line(&repo.url, &repo.host_key);
        for (path, bytes) in [(&key, private), (&known_hosts, line.as_bytes())] {
            let _ = std::fs::remove_file(path);
            let mut file =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
            std::io::Write::write_all(&mut file, bytes)?;
        }
        Ok(Self { dir: dir.to_path_buf(), key, known_hosts })
    }

    fn ssh_command(&self) -> String {
        // Paths only; quoted for git's shell.
        format!(
            "ssh -F /dev/null -i '{}' -o IdentitiesOnly=yes -o IdentityAgent=none \
             -o UserKnownHostsFile='{}' -o GlobalKnownHostsFile=/dev/null \
             -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10 \
             -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no",
            self.key.display(),
            self.known_hosts.display()
        )
    }
}

impl Drop for KeyFiles {
    fn drop(&mut self) {
        for path in [&self.key, &self.known_hosts] {
            let _ = std::fs::remove_file(path);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A repository: its git folder, and the work tree checked out from it (kept between jobs, so
/// that a checkout touches only the files a commit changed and cargo rebuilds only what they
/// affect). The git folder is never inside the work tree, which the build sandbox may write:
/// nothing a build does can change git's config or hooks.
pub struct Checkout {
    git_dir: PathBuf,
    work_tree: PathBuf,
    home: PathBuf,
    ssh: String,
    branch: String,
}

impl Checkout {
    /// Fetches `branch` of `repo` into `git_dir` (a bare repository, made the first time),
    /// whose work tree is `work_tree`; when `repo` has no such branch, its deployed branch if
    /// `or_deployed`.
    #[allow(clippy::too_many_arguments, reason = "each is a different part of one fetch")]
    pub async fn fetch(
        git_dir: &Path,
        work_tree: &Path,
        home: &Path,
        repo: &Repository,
        branch: &str,
        or_deployed: bool,
        keys: &KeyFiles,
        log: &mut Log,
    ) -> Result<Self, CheckoutError> {
        let mut this = Self {
            git_dir: git_dir.to_path_buf(),
            work_tree: work_tree.to_path_buf(),
            home: home.to_path_buf(),
            ssh: keys.ssh_command(),
            branch: branch.to_string(),
        };
        std::fs::create_dir_all(work_tree)
            .map_err(|e| CheckoutError(format!("cannot create {}: {e}", work_tree.display())))?;
        if !git_dir.join("HEAD").exists() {
            let _ = std::fs::remove_dir_all(git_dir);
            // Not with GIT_DIR and GIT_WORK_TREE set: git init refuses a work tree for a bare
            // repository.
            let (status, output) =
                this.run_with(&["init", "-q", "--bare", &git_dir.to_string_lossy()], false).await?;
            if !status.success() {
                log.text(&output);
                return Err(CheckoutError(format!("git init failed: {}", output.trim())));
            }
        }
        // A job killed in the middle of a checkout leaves its lock; one job per project runs
        // here at a time.
        let _ = std::fs::remove_file(git_dir.join("index.lock"));
        let url = repo.url.to_string();
        log.line(&format!("fetching {url} branch {branch}"));
        let fetched = this.fetch_branch(&url, branch).await?;
        if !fetched.0.success() {
            let missing = fetched.1.contains("couldn't find remote ref");
            if !(missing && or_deployed && branch != repo.branch) {
                log.text(&fetched.1);
                return Err(CheckoutError(format!(
                    "git fetch failed: {}",
                    fetched.1.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim()
                )));
            }
            log.line(&format!("no branch {branch}: fetching {url} branch {}", repo.branch));
            this.branch = repo.branch.clone();
            let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", repo.branch);
            this.git(&["fetch", "-q", "--no-tags", "--no-recurse-submodules", &url, &refspec], log)
                .await?;
        }
        Ok(this)
    }

    /// `git fetch` of one branch, without failing on git's failure.
    async fn fetch_branch(
        &self,
        url: &str,
        branch: &str,
    ) -> Result<(std::process::ExitStatus, String), CheckoutError> {
        let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
        self.run(&["fetch", "-q", "--no-tags", "--no-recurse-submodules", url, &refspec]).await
    }

    /// The branch fetched.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The kept repository `git_dir` (work tree `work_tree`), without fetching, if it has
    /// `commit`.
    pub async fn kept(
        git_dir: &Path,
        work_tree: &Path,
        home: &Path,
        branch: &str,
        commit: &str,
    ) -> Result<Option<Self>, CheckoutError> {
        if !git_dir.join("HEAD").exists() || !work_tree.is_dir() {
            return Ok(None);
        }
        let this = Self {
            git_dir: git_dir.to_path_buf(),
            work_tree: work_tree.to_path_buf(),
            home: home.to_path_buf(),
            ssh: String::from("false"),
            branch: branch.to_string(),
        };
        let (known, _) = this.run(&["cat-file", "-e", &format!("{commit}^{{commit}}")]).await?;
        Ok(known.success().then_some(this))
    }

    /// The commit the branch points at.
    pub async fn tip(&self, log: &mut Log) -> Result<String, CheckoutError> {
        let name = format!("refs/remotes/origin/{}", self.branch);
        Ok(self.git(&["rev-parse", "--verify", "-q", &name], log).await?.trim().to_string())
    }

    /// Whether `ancestor` is `commit` or one of its ancestors (`None`: `ancestor` is not in this
    /// repository's history at all).
    pub async fn is_ancestor(
        &self,
        ancestor: &str,
        commit: &str,
        log: &mut Log,
    ) -> Result<Option<bool>, CheckoutError> {
        let known = self.run(&["cat-file", "-e", &format!("{ancestor}^{{commit}}")]).await?;
        if !known.0.success() {
            return Ok(None);
        }
        let (status, output) = self.run(&["merge-base", "--is-ancestor", ancestor, commit]).await?;
        match status.code() {
            Some(0) => Ok(Some(true)),
            Some(1) => Ok(Some(false)),
            _ => {
                log.text(&output);
                Err(CheckoutError(format!("git merge-base failed for {ancestor} and {commit}")))
            }
        }
    }

    /// Checks out `commit` (detached), putting back whatever a build changed in the work tree
    /// and removing what it added.
    pub async fn checkout(&self, commit: &str, log: &mut Log) -> Result<(), CheckoutError> {
        let args = ["-c", "advice.detachedHead=false", "checkout", "-q", "-f", "--detach", commit];
        self.git(&args, log).await?;
        self.git(&["clean", "-q", "-ffdx"], log).await.map(|_| ())
    }

    async fn git(&self, args: &[&str], log: &mut Log) -> Result<String, CheckoutError> {
        let (status, output) = self.run(args).await?;
        if !status.success() {
            log.text(&output);
            let what = args.iter().find(|a| !a.starts_with('-')).copied().unwrap_or("git");
            return Err(CheckoutError(format!(
                "git {what} failed: {}",
                output.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output").trim()
            )));
        }
        Ok(output)
    }

    /// Runs git in the checkout; stdout and stderr together.
    async fn run(
        &self,
        args: &[&str],
    ) -> Result<(std::process::ExitStatus, String), CheckoutError> {
        self.run_with(args, true).await
    }

    /// [`Checkout::run`], with or without `GIT_DIR` and `GIT_WORK_TREE` set.
    async fn run_with(
        &self,
        args: &[&str],
        in_repository: bool,
    ) -> Result<(std::process::ExitStatus, String), CheckoutError> {
        let mut command = tokio::process::Command::new("git");
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
            .env("HOME", &self.home)
            .env("LANG", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_SSH_COMMAND", &self.ssh)
            .env("GIT_SSH_VARIANT", "ssh")
            .envs(
                [("GIT_DIR", &self.git_dir), ("GIT_WORK_TREE", &self.work_tree)]
                    .into_iter()
                    .filter(|_| in_repository),
            )
            .args(["-c", "protocol.allow=never", "-c", "protocol.ssh.allow=always"])
            .args(["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false"])
            .args(["-c", "submodule.recurse=false"])
            // A committed symlink is checked out as a file holding its target's name, so that
            // nothing the monkey reads from a tree leads outside it.
            .args(["-c", "core.symlinks=false"])
            .args(args)
            .current_dir(&self.work_tree)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(GIT_TIMEOUT, command.output())
            .await
            .map_err(|_| CheckoutError(format!("git took over {}s", GIT_TIMEOUT.as_secs())))?
            .map_err(|e| CheckoutError(format!("cannot run git: {e}")))?;
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        Ok((output.status, text))
    }
}
