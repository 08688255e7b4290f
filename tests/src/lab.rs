//! A lab of test hosts on this machine: one network namespace per host, each with a veth pair
//! on a bridge the lab made, addresses in a private /24 of its own. The root namespace holds the
//! bridge's first address, so the test itself (and its clients) reach every host. Everything is
//! removed when the lab is dropped.
//!
//! Needs root and `ip` (iproute2; `scripts/setup` installs it).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::harness::{KillOnDrop, Result, binary, tau_node, tau_node_ok, wait_for};

/// A cloud of `tau-node run` processes, one per lab host, made with `tau-node init`: its swarm
/// and operator keys in its folder, node `i` in `node-<i>` (log in `node.log`), p2p on port
/// 4001 of its host, each node after the first bootstrapping from the first, every node
/// admitted by the operator for the cloud's services. The processes are killed on drop.
pub struct LabCloud {
    /// Its `cloud.yaml`, bootstrapping from every node.
    pub profile: PathBuf,
    /// Each node's peer id, in host order.
    pub ids: Vec<String>,
    /// Each node's folder.
    pub dirs: Vec<PathBuf>,
    _processes: Vec<KillOnDrop>,
}

impl LabCloud {
    /// How many nodes each node is connected to, as its `peers` says, in host order.
    pub fn peer_counts(&self) -> Result<Vec<usize>> {
        let cloud = self.profile.to_string_lossy();
        let mut counts = Vec::new();
        for id in &self.ids {
            let out = tau_node_ok(&["peers", "--cloud", &cloud, "--node", id, "--json"])?;
            let peers: serde_json::Value = serde_json::from_str(&out)?;
            counts.push(peers.as_array().map_or(0, Vec::len));
        }
        Ok(counts)
    }
}

/// One host: a network namespace with one address.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace's name.
    pub netns: String,
    /// Its address on the lab's bridge.
    pub ip: Ipv4Addr,
    veth: String,
}

/// A set of hosts on one bridge.
#[derive(Debug)]
pub struct Lab {
    /// The hosts in the order made, each in its own network namespace.
    pub hosts: Vec<Host>,
    bridge: String,
    /// The bridge's address (the root namespace's).
    pub gateway: Ipv4Addr,
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> Result {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run ip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

impl Lab {
    /// Makes `count` hosts in a /24 of its own. Fails (never skips) without root or `ip`.
    pub fn new(count: usize) -> Result<Self> {
        static LABS: AtomicU32 = AtomicU32::new(0);
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        Self::with_subnet(count, ((pid + n) % 250) as u8, (pid + 7919 * n) % 100_000)
    }

    /// Makes `count` hosts in 10.213.`subnet`.0/24 (hosts from .10 up), naming its interfaces
    /// after `tag`.
    pub fn with_subnet(count: usize, subnet: u8, tag: u32) -> Result<Self> {
        if !nix::unistd::Uid::effective().is_root() {
            return Err("the lab needs root (network namespaces); run the tests as root".into());
        }
        let net = [10, 213, subnet];
        let gateway = Ipv4Addr::new(net[0], net[1], net[2], 1);
        let mut lab = Self { hosts: Vec::new(), bridge: format!("taub{tag}"), gateway };
        ip(&["link", "add", &lab.bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{gateway}/24"), "dev", &lab.bridge])?;
        ip(&["link", "set", &lab.bridge, "up"])?;
        for i in 0..count {
            let host = Host {
                netns: format!("taun{tag}-{i}"),
                ip: Ipv4Addr::new(net[0], net[1], net[2], 10 + i as u8),
                veth: format!("tauv{tag}-{i}"),
            };
            let inner = format!("{}p", host.veth);
            ip(&["netns", "add", &host.netns])?;
            lab.hosts.push(host.clone());
            ip(&["link", "add", &host.veth, "type", "veth", "peer", "name", &inner])?;
            ip(&["link", "set", &inner, "netns", &host.netns])?;
            ip(&["link", "set", &host.veth, "master", &lab.bridge])?;
            ip(&["link", "set", &host.veth, "up"])?;
            let ns = |args: &[&str]| {
                let mut all = vec!["netns", "exec", &host.netns, "ip"];
                all.extend_from_slice(args);
                ip(&all)
            };
            ns(&["addr", "add", &format!("{}/24", host.ip), "dev", &inner])?;
            ns(&["link", "set", &inner, "up"])?;
            ns(&["link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    /// Starts a [`LabCloud`] in `dir` on every host, its nodes running `services` (given to
    /// `tau-node init` with `init`, more options) and logging with `RUST_LOG=log_filter`;
    /// returns once the operator has admitted every node.
    pub fn start_cloud(
        &self,
        dir: &Path,
        services: &str,
        init: &[&str],
        log_filter: &str,
    ) -> Result<LabCloud> {
        let tau = binary("tau-node")?;
        let swarm_key = dir.join("swarm.key").to_string_lossy().into_owned();
        tau_node_ok(&["swarm-key", "--out", &swarm_key])?;
        let operator = dir.join("operator.key").to_string_lossy().into_owned();
        let operator_public = tau_node_ok(&["key", "generate", "--out", &operator])?;
        let mut ids: Vec<String> = Vec::new();
        let mut dirs = Vec::new();
        let mut processes = Vec::new();
        for (i, host) in self.hosts.iter().enumerate() {
            let node = dir.join(format!("node-{i}"));
            let (node_arg, ip) = (node.to_string_lossy().into_owned(), host.ip.to_string());
            let mut args = vec!["init", "--dir", &node_arg, "--swarm-key", &swarm_key];
            args.extend(["--operator-key", operator_public.trim(), "--services", services]);
            args.extend(["--listen", &ip, "--p2p-port", "4001"]);
            args.extend(init);
            let bootstrap =
                ids.first().map(|first| format!("/ip4/{}/tcp/4001/p2p/{first}", self.hosts[0].ip));
            if let Some(bootstrap) = &bootstrap {
                args.extend(["--bootstrap", bootstrap]);
            }
            ids.push(tau_node_ok(&args)?.trim().to_string());
            let child = self
                .command(i, &tau)
                .args(["run", "--config"])
                .arg(node.join("node.yaml"))
                .env("RUST_LOG", log_filter)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(node.join("node.log"))?)
                .spawn()?;
            processes.push(KillOnDrop(child));
            dirs.push(node);
        }
        let profile = dir.join("cloud.yaml");
        let bootstrap: Vec<String> = ids
            .iter()
            .zip(&self.hosts)
            .map(|(id, host)| format!("  - /ip4/{}/tcp/4001/p2p/{id}", host.ip))
            .collect();
        std::fs::write(
            &profile,
            format!(
                "name: lab\nswarm_key: swarm.key\noperator_key: operator.key\nbootstrap:\n{}\n",
                bootstrap.join("\n")
            ),
        )?;
        // The operator admits its nodes (until then they are clients to each other).
        let cloud = profile.to_string_lossy().into_owned();
        wait_for(Duration::from_secs(60), "the operator admits the lab nodes", || {
            for id in &ids {
                let admit = ["nodes", "admit", id, "--service", services, "--cloud", &cloud];
                if !tau_node(&admit)?.status.success() {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        })?;
        Ok(LabCloud { profile, ids, dirs, _processes: processes })
    }

    /// A command that runs `program` inside host `i`'s namespace.
    pub fn command(&self, i: usize, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.hosts[i].netns]).arg(program);
        command
    }

    /// Cuts every host of `a` off from every host of `b` (both ways); both still reach the
    /// root namespace.
    pub fn partition(&self, a: &[usize], b: &[usize]) -> Result {
        self.blackholes(a, b, "add")
    }

    /// Undoes [`Lab::partition`].
    pub fn heal(&self, a: &[usize], b: &[usize]) -> Result {
        self.blackholes(a, b, "del")
    }

    /// Takes host `i`'s link down (`up` false: it is cut off from everything, as a pulled cable
    /// or a dead switch port would) or back up.
    pub fn set_link(&self, i: usize, up: bool) -> Result {
        ip(&["link", "set", &self.hosts[i].veth, if up { "up" } else { "down" }])
    }

    /// Adds or deletes a blackhole route from each host of `a` to each of `b`, and back.
    fn blackholes(&self, a: &[usize], b: &[usize], verb: &str) -> Result {
        for (from, to) in a.iter().flat_map(|x| b.iter().flat_map(move |y| [(*x, *y), (*y, *x)])) {
            let target = format!("{}/32", self.hosts[to].ip);
            ip(&[
                "netns",
                "exec",
                &self.hosts[from].netns,
                "ip",
                "route",
                verb,
                "blackhole",
                &target,
            ])?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for host in &self.hosts {
            let _ = ip(&["link", "del", &host.veth]);
            let _ = ip(&["netns", "del", &host.netns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
