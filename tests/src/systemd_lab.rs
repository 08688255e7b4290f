//! Lab hosts whose PID 1 is systemd, for Spore Drive's systemd path: each host of a [`Lab`] is a
//! `systemd-nspawn --boot` container of a Debian bookworm root made once with `debootstrap`
//! (`systemd-container` and `debootstrap`; `scripts/setup` installs both), running in the host's
//! network namespace, with OpenSSH answering as root with the lab's key.
//!
//! The root is made once per machine in [`ROOTFS`] (about a minute, 44 MB, from the Debian
//! mirror apt already uses); each host boots a copy of its own. Each container runs in cgroups
//! of its own in both the `name=systemd` and the `unified` hierarchies (else two hosts would
//! share one). There is no `systemd-machined` here: `--register=no --keep-unit`, and the
//! containers are reached over SSH, never with `machinectl`.
//!
//! Dropping the lab powers every container off (SIGTERM to nspawn), then removes its copy, its
//! cgroups and the network.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::harness::Result;
use crate::lab::Lab;
use crate::ssh_lab::keygen;

/// Where the bookworm root with systemd and sshd is kept between runs.
pub const ROOTFS: &str = "/var/cache/tau-lab/bookworm-systemd";

/// The packages the root holds beyond `minbase`.
const PACKAGES: &str = "systemd,systemd-sysv,dbus,openssh-server,iproute2";

/// Made when the root is complete: a root without it is made again.
const COMPLETE: &str = ".tau-lab-complete";

/// One booted host.
struct Machine {
    nspawn: Option<Child>,
    /// Its copy of the root.
    root: PathBuf,
    /// Its cgroup folders (in the `name=systemd` and the `unified` hierarchies).
    cgroups: Vec<PathBuf>,
}

/// A lab whose hosts boot systemd.
pub struct SystemdLab {
    /// The hosts' network.
    pub lab: Lab,
    /// The lab's folder: the client key, and one folder per host (its root in `root`).
    pub dir: PathBuf,
    /// The private key that logs in as root on every host.
    pub client_key: PathBuf,
    machines: Vec<Machine>,
}

fn run(command: &mut Command) -> Result<Output> {
    let out = command.output().map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{command:?} exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(out)
}

/// The Debian mirror apt uses here (from `/etc/apt/sources.list.d/*.sources` or
/// `/etc/apt/sources.list`), else Debian's own.
fn mirror() -> String {
    let mut texts: Vec<String> = std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .collect();
    texts.extend(std::fs::read_to_string("/etc/apt/sources.list").ok());
    for text in &texts {
        for line in text.lines().map(str::trim) {
            let url = line.strip_prefix("URIs:").map(str::trim).or_else(|| {
                line.strip_prefix("deb ").and_then(|rest| rest.split_whitespace().last())
            });
            let url = url.and_then(|u| u.split_whitespace().next()).unwrap_or_default();
            if url.starts_with("http") && url.trim_end_matches('/').ends_with("/debian") {
                return url.to_string();
            }
        }
    }
    "http://deb.debian.org/debian".into()
}

/// The bookworm root every host boots a copy of, made with debootstrap when missing.
fn rootfs() -> Result<PathBuf> {
    static MAKING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = MAKING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = PathBuf::from(ROOTFS);
    if root.join(COMPLETE).exists() {
        return Ok(root);
    }
    for tool in ["/usr/sbin/debootstrap", "/usr/bin/systemd-nspawn"] {
        if !Path::new(tool).exists() {
            return Err(format!(
                "{tool} is missing: install debootstrap and systemd-container (scripts/setup does)"
            )
            .into());
        }
    }
    let making = root.with_extension("making");
    let _ = std::fs::remove_dir_all(&making);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(making.parent().ok_or("ROOTFS has no parent")?)?;
    let mirror = mirror();
    eprintln!("making the systemd lab root in {ROOTFS} with debootstrap from {mirror}");
    run(Command::new("/usr/sbin/debootstrap")
        .args(["--variant=minbase", &format!("--include={PACKAGES}"), "bookworm"])
        .arg(&making)
        .arg(&mirror)
        .stdout(Stdio::null()))?;
    // Each host gets its own machine id at boot and its own host keys (made per copy).
    std::fs::write(making.join("etc/machine-id"), "")?;
    for entry in std::fs::read_dir(making.join("etc/ssh"))?.flatten() {
        if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
            std::fs::remove_file(entry.path())?;
        }
    }
    std::fs::create_dir_all(making.join("root/.ssh"))?;
    std::fs::write(making.join(COMPLETE), "")?;
    std::fs::rename(&making, &root)?;
    Ok(root)
}

impl SystemdLab {
    /// `count` hosts that boot systemd, in a fresh /24, their files under `dir` (removed on
    /// drop). Returns once each answers SSH and its systemd has finished starting. Fails with
    /// the reason (never skips) without root, debootstrap, systemd-nspawn or the mirror.
    pub fn new(count: usize, dir: &Path) -> Result<Self> {
        let lab = Lab::new(count)?;
        let rootfs = rootfs()?;
        std::fs::create_dir_all(dir)?;
        let client_key = dir.join("id_ed25519");
        keygen(&client_key)?;
        let authorized = std::fs::read_to_string(client_key.with_extension("pub"))?;
        let mut systemd_lab =
            Self { lab, dir: dir.to_path_buf(), client_key, machines: Vec::new() };
        for i in 0..count {
            let host = systemd_lab.dir.join(format!("host-{i}"));
            std::fs::create_dir_all(&host)?;
            let root = host.join("root");
            run(Command::new("cp").arg("-a").arg(&rootfs).arg(&root))?;
            std::fs::remove_file(root.join(COMPLETE))?;
            run(Command::new("ssh-keygen").arg("-A").arg("-f").arg(&root))?;
            let keys = root.join("root/.ssh/authorized_keys");
            std::fs::write(&keys, &authorized)?;
            std::os::unix::fs::chown(&keys, Some(0), Some(0))?;
            std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            let name = systemd_lab.lab.hosts[i].netns.clone();
            let cgroups: Vec<PathBuf> = ["systemd", "unified"]
                .iter()
                .map(|h| Path::new("/sys/fs/cgroup").join(h).join("tau-lab").join(&name))
                .collect();
            for cgroup in &cgroups {
                std::fs::create_dir_all(cgroup)?;
            }
            // The launching shell moves itself into both cgroups, then becomes nspawn.
            let script = format!(
                "echo $$ > {0}/cgroup.procs && echo $$ > {1}/cgroup.procs && exec systemd-nspawn \
                 --boot -D {2} -M {name} --register=no --keep-unit \
                 --network-namespace-path=/run/netns/{name} --console=read-only",
                cgroups[0].display(),
                cgroups[1].display(),
                root.display()
            );
            let log = std::fs::File::create(host.join("console.log"))?;
            let nspawn = Command::new("sh")
                .args(["-c", &script])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?;
            systemd_lab.machines.push(Machine { nspawn: Some(nspawn), root, cgroups });
        }
        for i in 0..count {
            systemd_lab.wait_booted(i)?;
        }
        Ok(systemd_lab)
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        self.lab.hosts[i].ip
    }

    /// Host `i`'s root, as seen from outside.
    pub fn root(&self, i: usize) -> &Path {
        &self.machines[i].root
    }

    /// Runs `command` as root on host `i` over SSH (its output, whatever its exit status).
    pub fn ssh(&self, i: usize, command: &str) -> Result<Output> {
        let out = Command::new("ssh")
            .args(["-q", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-i"])
            .arg(&self.client_key)
            .arg(format!("root@{}", self.ip(i)))
            .arg(command)
            .stdin(Stdio::null())
            .output()?;
        if out.status.code() == Some(255) {
            return Err(format!(
                "ssh to host {i} ({}): {}",
                self.ip(i),
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into());
        }
        Ok(out)
    }

    /// The stdout of `command` on host `i`, trimmed; fails when it exits non-zero.
    pub fn ssh_ok(&self, i: usize, command: &str) -> Result<String> {
        let out = self.ssh(i, command)?;
        if !out.status.success() {
            return Err(format!(
                "{command:?} on host {i} exited {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Waits until host `i` answers SSH and its systemd has started every unit.
    fn wait_booted(&self, i: usize) -> Result {
        let started = Instant::now();
        let address = SocketAddr::from((self.ip(i), 22));
        let mut last = String::new();
        while started.elapsed() < Duration::from_secs(120) {
            if TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok() {
                match self.ssh(i, "systemctl is-system-running --wait") {
                    Ok(out) => {
                        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
                        // Degraded is booted too: a unit the container cannot run failed.
                        if state == "running" || state == "degraded" {
                            return Ok(());
                        }
                        last = format!("systemd says {state:?}");
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let console = std::fs::read_to_string(self.dir.join(format!("host-{i}/console.log")))
            .unwrap_or_default();
        let tail: Vec<&str> = console.lines().rev().take(20).collect();
        Err(format!(
            "systemd host {i} did not boot in 120 s ({last}); its console ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
        .into())
    }
}

impl Drop for SystemdLab {
    fn drop(&mut self) {
        for machine in &mut self.machines {
            if let Some(nspawn) = &machine.nspawn {
                // SIGTERM to nspawn powers the container off cleanly.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(nspawn.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        for machine in &mut self.machines {
            let Some(mut nspawn) = machine.nspawn.take() else { continue };
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = nspawn.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = nspawn.kill();
            let _ = nspawn.wait();
        }
        for machine in &self.machines {
            for cgroup in &machine.cgroups {
                remove_cgroup(cgroup);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes a cgroup folder and those the container made inside it, deepest first.
fn remove_cgroup(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}
