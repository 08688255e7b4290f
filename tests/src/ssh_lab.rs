//! SSH hosts on this machine, for Spore Drive: each host of a [`Lab`] runs an OpenSSH `sshd`
//! (Debian's `openssh-server`) with its own host key, config and authorized key, in a private
//! mount namespace where the host's own folder is bind-mounted on `/opt`, so that every host has
//! its own `/opt/tau`. There is no systemd in these hosts: Spore Drive supervises the node.
//!
//! Dropping the lab kills every process in its hosts and removes them.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::Result;
use crate::lab::Lab;

/// Debian's sshd (`openssh-server`).
const SSHD: &str = "/usr/sbin/sshd";

/// A lab whose hosts run sshd.
pub struct SshLab {
    /// The hosts' network.
    pub lab: Lab,
    /// The lab's folder: the client key, and one folder per host.
    pub dir: PathBuf,
    /// The private key that logs in as root on every host.
    pub client_key: PathBuf,
    sshd: Vec<Option<Child>>,
    small_disks: Vec<usize>,
    keep_dir: bool,
}

fn run(command: &mut Command) -> Result {
    let out = command.output().map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{command:?}: {}", String::from_utf8_lossy(&out.stderr).trim()).into());
    }
    Ok(())
}

/// A new ed25519 key pair at `path` (and `path.pub`), with ssh-keygen.
pub fn keygen(path: &Path) -> Result {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "tau-lab", "-f"])
        .arg(path))
}

impl SshLab {
    /// `count` SSH hosts in a fresh /24, their files under `dir` (removed on drop when
    /// `keep_dir` is false). Fails with the reason (never skips) when root, `ip`, sshd or
    /// ssh-keygen are missing.
    pub fn new(count: usize, dir: &Path) -> Result<Self> {
        Self::from_lab(Lab::new(count)?, dir, false)
    }

    /// SSH hosts on the network of `lab`.
    pub fn from_lab(lab: Lab, dir: &Path, keep_dir: bool) -> Result<Self> {
        if !Path::new(SSHD).exists() {
            return Err(
                format!("{SSHD} is missing: install openssh-server (scripts/setup does)").into()
            );
        }
        std::fs::create_dir_all(dir)?;
        std::fs::create_dir_all("/run/sshd")?;
        std::fs::create_dir_all("/opt")?;
        let client_key = dir.join("id_ed25519");
        keygen(&client_key)?;
        let authorized = std::fs::read_to_string(client_key.with_extension("pub"))?;
        let mut ssh_lab = Self {
            sshd: (0..lab.hosts.len()).map(|_| None).collect(),
            lab,
            dir: dir.to_path_buf(),
            client_key,
            small_disks: Vec::new(),
            keep_dir,
        };
        for i in 0..ssh_lab.lab.hosts.len() {
            let host = ssh_lab.host_dir(i);
            std::fs::create_dir_all(host.join("opt"))?;
            std::fs::write(host.join("authorized_keys"), &authorized)?;
            keygen(&host.join("ssh_host_ed25519_key"))?;
            let config = format!(
                "ListenAddress {ip}\nPort 22\nHostKey {dir}/ssh_host_ed25519_key\n\
                 PidFile {dir}/sshd.pid\nAuthorizedKeysFile {dir}/authorized_keys\n\
                 UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 Subsystem sftp internal-sftp\nMaxStartups 100\nMaxSessions 100\nLogLevel ERROR\n",
                ip = ssh_lab.lab.hosts[i].ip,
                dir = host.display()
            );
            std::fs::write(host.join("sshd_config"), config)?;
        }
        for i in 0..ssh_lab.lab.hosts.len() {
            ssh_lab.start_sshd(i)?;
        }
        Ok(ssh_lab)
    }

    /// Host `i`'s folder (its `/opt` is `opt` in it).
    pub fn host_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("host-{i}"))
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        self.lab.hosts[i].ip
    }

    /// The `.pub` of host `i`'s host key.
    pub fn host_key(&self, i: usize) -> Result<String> {
        Ok(std::fs::read_to_string(self.host_dir(i).join("ssh_host_ed25519_key.pub"))?)
    }

    /// Starts host `i`'s sshd and waits until it accepts connections.
    pub fn start_sshd(&mut self, i: usize) -> Result {
        let host = self.host_dir(i);
        // The host's own account files, when it has any (see add_sudo_user).
        let etc: String = ["passwd", "group", "shadow", "sudoers"]
            .iter()
            .filter(|name| host.join("etc").join(name).exists())
            .map(|name| format!("mount --bind {}/etc/{name} /etc/{name} && ", host.display()))
            .collect();
        let script = format!(
            "mount --bind {opt} /opt && {etc}exec {SSHD} -D -e -f {config}",
            opt = host.join("opt").display(),
            config = host.join("sshd_config").display()
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &self.lab.hosts[i].netns])
            .args(["unshare", "-m", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(host.join("sshd.log"))?)
            .spawn()?;
        self.sshd[i] = Some(child);
        let addr = SocketAddr::from((self.ip(i), 22));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(host.join("sshd.log")).unwrap_or_default();
                return Err(format!("sshd of host {i} does not listen on {addr}: {log}").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops host `i`'s sshd (what runs in the host keeps running).
    pub fn stop_sshd(&mut self, i: usize) {
        if let Some(mut child) = self.sshd[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Gives host `i` a new host key (as a reinstall would) and restarts its sshd.
    pub fn change_host_key(&mut self, i: usize) -> Result {
        self.stop_sshd(i);
        keygen(&self.host_dir(i).join("ssh_host_ed25519_key"))?;
        self.start_sshd(i)
    }

    /// Gives host `i` a small disk: a tmpfs of `mib` MiB as its `/opt` (sshd restarted to see
    /// it; what already runs keeps the old one). [`SshLab::full_size_disk`] undoes it.
    pub fn small_disk(&mut self, i: usize, mib: u32) -> Result {
        self.stop_sshd(i);
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tau-lab-disk"])
            .arg(self.host_dir(i).join("opt")))?;
        self.small_disks.push(i);
        self.start_sshd(i)
    }

    /// Gives host `i` its own `/opt` back.
    pub fn full_size_disk(&mut self, i: usize) -> Result {
        self.stop_sshd(i);
        run(Command::new("umount").arg(self.host_dir(i).join("opt")))?;
        self.small_disks.retain(|&d| d != i);
        self.start_sshd(i)
    }

    /// Adds the user `name` with `password`, allowed to run anything with sudo once it gives
    /// that password, to host `i` alone: the host gets its own `/etc/passwd`, `group`, `shadow`
    /// and `sudoers`, bind-mounted in its mount namespace (this machine's files are not
    /// touched), and its sshd is restarted to see them. Needs sudo (`scripts/setup` installs it).
    pub fn add_sudo_user(&mut self, i: usize, name: &str, password: &str) -> Result {
        if !Path::new("/usr/bin/sudo").exists() {
            return Err("/usr/bin/sudo is missing: install sudo (scripts/setup does)".into());
        }
        let host = self.host_dir(i);
        let etc = host.join("etc");
        std::fs::create_dir_all(&etc)?;
        let home = host.join(format!("home-{name}"));
        std::fs::create_dir_all(&home)?;
        let mut openssl = Command::new("openssl")
            .args(["passwd", "-6", "-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run openssl: {e}"))?;
        {
            use std::io::Write;
            let mut stdin = openssl.stdin.take().ok_or("openssl has no stdin")?;
            writeln!(stdin, "{password}")?;
        }
        let hash = openssl.wait_with_output()?;
        let hash = String::from_utf8(hash.stdout)?.trim().to_string();
        if !hash.starts_with("$6$") {
            return Err("openssl passwd did not give a SHA-512 crypt hash".into());
        }
        let add = |file: &str, line: String, mode: u32| -> Result {
            use std::os::unix::fs::PermissionsExt;
            let mut text = std::fs::read_to_string(format!("/etc/{file}")).unwrap_or_default();
            if file == "sudoers" {
                text = "Defaults lecture=never\nroot ALL=(ALL:ALL) ALL\n".into();
            }
            text.push_str(&line);
            let path = etc.join(file);
            std::fs::write(&path, text)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            Ok(())
        };
        add("passwd", format!("{name}:x:4242:4242::{}:/bin/sh\n", home.display()), 0o644)?;
        add("group", format!("{name}:x:4242:\n"), 0o644)?;
        add("shadow", format!("{name}:{hash}:19000:0:99999:7:::\n"), 0o600)?;
        add("sudoers", format!("{name} ALL=(ALL:ALL) ALL\n"), 0o440)?;
        self.stop_sshd(i);
        self.start_sshd(i)
    }

    /// The command lines of the processes running in host `i`, sshd's own excepted.
    pub fn processes(&self, i: usize) -> Result<Vec<String>> {
        let out = Command::new("ip").args(["netns", "pids", &self.lab.hosts[i].netns]).output()?;
        let mut found = Vec::new();
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
            let line = String::from_utf8_lossy(&cmdline).replace('\0', " ").trim().to_string();
            if !line.starts_with(SSHD) && !line.starts_with("sshd") {
                found.push(line);
            }
        }
        Ok(found)
    }

    /// A TCP listener on every address of host `i` at `port`, made inside its network namespace
    /// (the port is taken there until the listener is dropped).
    pub fn hold_port(&self, i: usize, port: u16) -> Result<std::net::TcpListener> {
        let netns = format!("/run/netns/{}", self.lab.hosts[i].netns);
        let ip = std::net::Ipv4Addr::UNSPECIFIED;
        // A thread of its own enters the namespace; the socket stays in it.
        std::thread::spawn(move || -> std::result::Result<std::net::TcpListener, String> {
            let file = std::fs::File::open(&netns).map_err(|e| format!("{netns}: {e}"))?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns {netns}: {e}"))?;
            std::net::TcpListener::bind((ip, port)).map_err(|e| format!("bind {ip}:{port}: {e}"))
        })
        .join()
        .map_err(|_| "the thread entering the namespace panicked")?
        .map_err(Into::into)
    }

    /// Every file under host `i`'s `/opt`.
    pub fn files(&self, i: usize) -> Vec<PathBuf> {
        fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                found.push(path.clone());
                if path.is_dir() && !path.is_symlink() {
                    walk(&path, found);
                }
            }
        }
        let mut found = Vec::new();
        walk(&self.host_dir(i).join("opt"), &mut found);
        found
    }

    /// Kills everything running in host `i` but its sshd, and empties its `/opt`: the host is
    /// as new again.
    pub fn wipe(&self, i: usize) -> Result {
        self.kill(i, false);
        std::thread::sleep(Duration::from_millis(100));
        // Empty it, but keep the folder itself: it is what the host's /opt is mounted from.
        for entry in std::fs::read_dir(self.host_dir(i).join("opt"))? {
            let path = entry?.path();
            if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    /// Kills everything running in host `i`.
    fn kill_all(&self, i: usize) {
        self.kill(i, true);
    }

    /// Kills the processes of host `i`: all of them, or all but its sshd.
    fn kill(&self, i: usize, sshd_too: bool) {
        let netns = &self.lab.hosts[i].netns;
        let Ok(out) = Command::new("ip").args(["netns", "pids", netns]).output() else { return };
        let sshd = self.sshd[i].as_ref().map(Child::id);
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let Ok(pid) = pid.parse::<u32>() else { continue };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let is_sshd = Some(pid) == sshd || cmdline.starts_with(SSHD.as_bytes());
            if sshd_too || !is_sshd {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

impl Drop for SshLab {
    fn drop(&mut self) {
        for i in 0..self.sshd.len() {
            self.stop_sshd(i);
            self.kill_all(i);
        }
        // Give the kernel a moment to reap them before the namespaces go.
        std::thread::sleep(Duration::from_millis(200));
        for &i in &self.small_disks {
            let _ = Command::new("umount").arg(self.host_dir(i).join("opt")).output();
        }
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
