//! The build sandbox: `cargo build --offline --release --target wasm32-wasip2` of a code
//! repository, inside bubblewrap (`bwrap`, Debian's `bubblewrap`).
//!
//! Inside: every namespace new (no network at all, not even loopback to the host; no view of
//! the host's processes), user `nobody` (65534) in a user namespace of its own, mapped to the
//! node's user outside (so it may write the two folders bound for it, which the node's user
//! owns) and with no capabilities, a filesystem made only of
//! `/usr` and `/etc/alternatives` (read-only), the toolchain (read-only, at `/toolchain`), the cargo registry cache
//! (read-only), the repository (read-write, `/build/src`), the project's target folder
//! (read-write, `/build/target`) and empty `/tmp` and `$HOME`; no environment but what is set
//! here. The node's data folder, keys and vault share are simply not there. Outside: every
//! process of the build has an address-space limit (`RLIMIT_AS`) and a file-size limit (set by
//! util-linux's `prlimit`), and a deadline after which the whole process group is killed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::log::Log;

/// The user a build runs as.
const NOBODY: &str = "65534";
/// The largest file a build may write.
const MAX_FILE: u64 = 2 << 30;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The build ran and failed (the log has its output).
    #[error("the build failed ({0})")]
    Failed(String),
    /// It ran past its deadline and was killed.
    #[error("the build ran past {0:?} and was stopped")]
    Timeout(Duration),
    /// The sandbox could not be set up.
    #[error("cannot start the build sandbox: {0}")]
    Sandbox(String),
}

/// What a build may use.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// The toolchain folder (`bin/cargo`, `bin/rustc`, `lib/rustlib/wasm32-wasip2`).
    pub toolchain: PathBuf,
    /// The cargo registry cache (`$CARGO_HOME/registry`), if there is one.
    pub registry: Option<PathBuf>,
    /// The deadline.
    pub timeout: Duration,
    /// `RLIMIT_AS`, bytes.
    pub memory: u64,
}

impl Sandbox {
    /// The sandbox as the node's config says, with the toolchain and registry found on this
    /// host when the config names none.
    pub fn from_config(config: &tau_proto::node_config::CiConfig) -> Result<Self, String> {
        let toolchain = match &config.toolchain {
            Some(path) => path.clone(),
            None => sysroot()?,
        };
        if !toolchain.join("bin/cargo").is_file() {
            return Err(format!(
                "{} has no bin/cargo: set ci.toolchain to a Rust toolchain folder",
                toolchain.display()
            ));
        }
        let registry = match &config.cargo_registry {
            Some(path) => Some(path.clone()),
            None => {
                let home = std::env::var_os("CARGO_HOME").map(PathBuf::from).or_else(|| {
                    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo"))
                });
                home.map(|home| home.join("registry")).filter(|path| path.is_dir())
            }
        };
        Ok(Self { toolchain, registry, timeout: config.timeout(), memory: config.memory() })
    }

    /// The bwrap arguments that build `src` into `target`.
    fn arguments(&self, src: &Path, target: &Path) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        let mut add = |items: &[&dyn AsRef<std::ffi::OsStr>]| {
            args.extend(items.iter().map(|item| item.as_ref().to_os_string()));
        };
        add(&[&"--unshare-all", &"--unshare-user", &"--uid", &NOBODY, &"--gid", &NOBODY]);
        add(&[&"--die-with-parent", &"--new-session", &"--cap-drop", &"ALL"]);
        add(&[&"--ro-bind", &"/usr", &"/usr"]);
        for (link, to) in [("/lib", "usr/lib"), ("/lib64", "usr/lib64"), ("/bin", "usr/bin")] {
            if Path::new(link).is_symlink() || Path::new(link).exists() {
                add(&[&"--symlink", &to, &link]);
            }
        }
        // Debian's `cc` (build scripts link with it) is a link through /etc/alternatives.
        if Path::new("/etc/alternatives").is_dir() {
            add(&[&"--ro-bind", &"/etc/alternatives", &"/etc/alternatives"]);
        }
        add(&[&"--proc", &"/proc", &"--dev", &"/dev", &"--tmpfs", &"/tmp"]);
        add(&[&"--tmpfs", &"/home/build"]);
        add(&[&"--ro-bind", &self.toolchain, &"/toolchain"]);
        if let Some(registry) = &self.registry {
            add(&[&"--ro-bind", registry, &"/home/build/.cargo/registry"]);
        }
        add(&[&"--bind", &src, &"/build/src", &"--bind", &target, &"/build/target"]);
        add(&[&"--chdir", &"/build/src", &"--clearenv"]);
        for (name, value) in [
            ("PATH", "/toolchain/bin:/usr/bin:/bin"),
            ("HOME", "/home/build"),
            ("CARGO_HOME", "/home/build/.cargo"),
            ("CARGO_TARGET_DIR", "/build/target"),
            ("CARGO_TERM_COLOR", "never"),
            ("CARGO_NET_OFFLINE", "true"),
            ("LANG", "C.UTF-8"),
        ] {
            add(&[&"--setenv", &name, &value]);
        }
        add(&[&"--", &"/toolchain/bin/cargo", &"build", &"--offline", &"--release"]);
        add(&[&"--target", &"wasm32-wasip2"]);
        args
    }

    /// Builds the cargo project in `src` into `target` (kept between builds of one project:
    /// what did not change is not built again). The output goes to `log`.
    pub async fn cargo_build(
        &self,
        src: &Path,
        target: &Path,
        log: &mut Log,
    ) -> Result<(), BuildError> {
        std::fs::create_dir_all(target)
            .map_err(|e| BuildError::Sandbox(format!("{}: {e}", target.display())))?;
        log.line("building: cargo build --offline --release --target wasm32-wasip2 (sandboxed)");
        // util-linux's prlimit sets the limits on bwrap, which every process of the build
        // inherits.
        let mut command = tokio::process::Command::new("prlimit");
        command
            .arg(format!("--as={}", self.memory))
            .arg(format!("--fsize={MAX_FILE}"))
            .arg("--core=0")
            .arg("bwrap")
            .args(self.arguments(src, target))
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| {
            BuildError::Sandbox(format!(
                "cannot run prlimit and bwrap (util-linux, bubblewrap): {e}"
            ))
        })?;
        let pid = child.id();
        let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
        let read = async {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let read_out = async {
                if let Some(out) = out.as_mut() {
                    let _ = out.read_to_end(&mut a).await;
                }
            };
            let read_err = async {
                if let Some(err) = err.as_mut() {
                    let _ = err.read_to_end(&mut b).await;
                }
            };
            tokio::join!(read_out, read_err);
            (a, b)
        };
        let run = async {
            let (a, b) = read.await;
            (child.wait().await, a, b)
        };
        let (status, stdout, stderr) = match tokio::time::timeout(self.timeout, run).await {
            Ok(done) => done,
            Err(_) => {
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                    let group = nix::unistd::Pid::from_raw(pid);
                    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
                }
                log.line(&format!("stopped: over {:?}", self.timeout));
                return Err(BuildError::Timeout(self.timeout));
            }
        };
        log.text(&String::from_utf8_lossy(&stdout));
        log.text(&String::from_utf8_lossy(&stderr));
        let status = status.map_err(|e| BuildError::Sandbox(e.to_string()))?;
        if !status.success() {
            let last = String::from_utf8_lossy(&stderr)
                .lines()
                .rev()
                .find(|l| l.starts_with("error"))
                .map(|l| l.trim().to_string())
                .unwrap_or_else(|| status.to_string());
            return Err(BuildError::Failed(last));
        }
        Ok(())
    }
}

/// `rustc --print sysroot`: the toolchain the node's own PATH names.
fn sysroot() -> Result<PathBuf, String> {
    let output = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("no ci.toolchain set and `rustc --print sysroot` failed: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "no ci.toolchain set and `rustc --print sysroot` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}
