//! `node.yaml`: what one node is and does.
//!
//! ```yaml
//! identity_key: identity.key        # ed25519, mode 0600; relative paths are relative to this file
//! swarm_key: swarm.key              # the cloud's pre-shared key
//! operator_key: ed25519:<hex>       # the public half of the cloud's operator key
//! listen: [0.0.0.0]                 # IP addresses to listen on, with the ports below
//! announce: []                      # multiaddrs to tell peers instead (NAT, public address)
//! bootstrap:                        # peers to join through, each ending in /p2p/<peer id>
//!   - /ip4/10.0.0.1/tcp/4001/p2p/12D3KooW...
//! services: [tns, hoarder, vault, seer, substrate, ci]
//! data_dir: data
//! ports: { p2p: 4001, http: 8080, dns: 53, webhook: 8419 }   # webhook: patrick, on ci nodes
//! location: { region: eu-west, latitude: 48.85, longitude: 2.35 }
//! drain: 7s                         # on SIGTERM, serve this long after telling seer the node is
//!                                   # leaving (at least seer's DNS TTL); 0s stops at once
//! substrate:                        # only read when the node runs substrate
//!   counter_window: 60s             # one signed counter record per function per window
//!   counter_retention: 24h          # acknowledged records are kept this long, others forever
//!   max_instances: 1000             # functions running at once on this node
//!   load_memory: 512MiB             # component bytes held at once to be compiled
//! seer:                             # required when the node runs seer
//!   domain: example.com             # answers <service>.tau.example.com
//!   generated_domain: g.example.com # <project>.g.example.com (and below) need no TXT record
//!   ttl: 5                          # seconds, on every answer
//!   txt_resolver: 10.0.0.53:53      # where TXT validation records are looked up
//!                                   # [default: the host's resolv.conf]
//!   rate: 100                       # answers per second to one source (an IPv4 /24 or an
//!                                   # IPv6 /56), with as many at once; 0 means no limit
//!   slip: 2                         # of the queries over the rate, every 2nd gets a short
//!                                   # truncated answer (the client retries over TCP), the
//!                                   # others none; 0 answers none
//! tns:                              # only read when the node runs tns
//!   max_records_per_project: 100000 # live records one project may hold on this node
//!   max_bytes_per_project: 128MiB   # and their size
//! vault:                            # required when the node runs vault
//!   keyset: keyset.yaml             # the public key set (`tau-node vault deal`)
//!   share: vault-share.yaml         # this node's secret key share, mode 0600
//! ```
//!
//! Unknown fields are errors, and every error names the file and the field.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::admin::Location;
use crate::identity::WriterKey;
use crate::profile::peer_id_of;
use crate::yaml::{self, YamlError};
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use serde::{Deserialize, Serialize};

/// The services a node can run.
/// `ci` builds and deploys git-operated projects: patrick takes their push webhooks (on the
/// `webhook` port, answered at `patrick.tau.<domain>`) and monkey builds them. `database` keeps
/// projects' key-value stores.
pub const SERVICES: [&str; 7] = ["tns", "hoarder", "vault", "seer", "substrate", "ci", "database"];

/// A node's configuration, as written in `node.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's ed25519 identity key file.
    pub identity_key: PathBuf,
    /// The cloud's swarm key file.
    pub swarm_key: PathBuf,
    /// The public half of the cloud's operator key (`ed25519:<hex>`): the only key that may
    /// create projects in TNS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_key: Option<String>,
    /// IP addresses to listen on (p2p, and later http and dns).
    #[serde(default = "default_listen")]
    pub listen: Vec<IpAddr>,
    /// Addresses announced to peers instead of the listen addresses.
    #[serde(default)]
    pub announce: Vec<Multiaddr>,
    /// Peers to join the cloud through.
    #[serde(default)]
    pub bootstrap: Vec<Multiaddr>,
    /// The services this node runs.
    #[serde(default)]
    pub services: Vec<String>,
    /// Where the node keeps its data.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The ports it listens on.
    #[serde(default)]
    pub ports: Ports,
    /// Where the node is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// How long a stopping node keeps serving after its heartbeats say it is leaving, so that
    /// seer stops sending clients to it and the answers clients cached expire first (`7s`).
    #[serde(default = "default_drain", skip_serializing_if = "is_default_drain")]
    pub drain: String,
    /// The substrate service's settings.
    #[serde(default, skip_serializing_if = "SubstrateConfig::is_default")]
    pub substrate: SubstrateConfig,
    /// The vault service's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultConfig>,
    /// The seer service's DNS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seer: Option<SeerConfig>,
    /// The tns service's per-project quotas.
    #[serde(default, skip_serializing_if = "TnsConfig::is_default")]
    pub tns: TnsConfig,
    /// How many other nodes the node keeps connections to.
    #[serde(default, skip_serializing_if = "ConnectionsConfig::is_default")]
    pub connections: ConnectionsConfig,
    /// The ci service's build sandbox.
    #[serde(default, skip_serializing_if = "CiConfig::is_default")]
    pub ci: CiConfig,
    /// The database service's settings.
    #[serde(default, skip_serializing_if = "DatabaseConfig::is_default")]
    pub database: DatabaseConfig,
    /// Where the node pushes its metrics, besides serving them on the admin port.
    #[serde(default, skip_serializing_if = "MetricsConfig::is_default")]
    pub metrics: MetricsConfig,
}

/// Pushing metrics over OTLP (`metrics` in `node.yaml`); the admin port serves them anyway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// An OpenTelemetry collector's OTLP/HTTP endpoint (`http://collector:4318`); none: no push.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp: Option<String>,
    /// How often to push (`15s`; 1s to 1h).
    pub interval: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { otlp: None, interval: "15s".into() }
    }
}

impl MetricsConfig {
    /// Whether every setting is the default (then `node.yaml` leaves the section out).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// How often to push (checked when the file was loaded).
    pub fn interval(&self) -> std::time::Duration {
        humantime::parse_duration(&self.interval).unwrap_or(std::time::Duration::from_secs(15))
    }

    /// The first setting that is wrong, and why.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if let Some(url) = &self.otlp
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Some(("otlp", format!("`{url}` is not an http:// or https:// URL")));
        }
        match humantime::parse_duration(&self.interval) {
            Ok(d) if (1..=3600).contains(&d.as_secs()) => None,
            Ok(_) => Some(("interval", "between 1s and 1h".into())),
            Err(e) => Some(("interval", format!("`{}` is not a duration: {e}", self.interval))),
        }
    }
}

/// The database service's settings (`database` in `node.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// How old a storage's pin of a blob no key names must be before it is taken away
    /// (`10m`): longer than a key written through another node takes to arrive here. The
    /// storages this node sweeps are swept every quarter of it (at least every second, at
    /// most every minute).
    pub storage_grace: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { storage_grace: "10m".into() }
    }
}

impl DatabaseConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The grace of a storage's pins (checked when the file was loaded).
    pub fn storage_grace(&self) -> std::time::Duration {
        humantime::parse_duration(&self.storage_grace)
            .unwrap_or(std::time::Duration::from_secs(600))
    }

    /// How often this node sweeps the storages it sweeps.
    pub fn storage_sweep(&self) -> std::time::Duration {
        (self.storage_grace() / 4)
            .clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(60))
    }

    /// What is wrong with these settings, if anything: the field (as named in YAML) and why.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        match humantime::parse_duration(&self.storage_grace) {
            Ok(d) if d >= std::time::Duration::from_secs(1) => None,
            Ok(_) => Some(("storage_grace", "must be at least 1s".into())),
            Err(e) => Some((
                "storage_grace",
                format!("`{}` is not a duration (like 10m): {e}", self.storage_grace),
            )),
        }
    }
}

/// The ci service's build sandbox (`ci` in `node.yaml`): what a build may use, and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CiConfig {
    /// The Rust toolchain builds use, read-only (a rustup toolchain folder, with `bin/cargo`
    /// and the `wasm32-wasip2` target) [default: `rustc --print sysroot` when the node starts].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toolchain: Option<PathBuf>,
    /// The cargo registry cache builds read, read-only (`$CARGO_HOME/registry`) [default: the
    /// node's own `$CARGO_HOME/registry`, else `~/.cargo/registry`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cargo_registry: Option<PathBuf>,
    /// The longest one build may take.
    pub build_timeout: String,
    /// The address space a build may use (its processes' `RLIMIT_AS`).
    pub build_memory: String,
}

impl Default for CiConfig {
    fn default() -> Self {
        Self {
            toolchain: None,
            cargo_registry: None,
            build_timeout: "10m".into(),
            build_memory: "8GiB".into(),
        }
    }
}

impl CiConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// `build_timeout`, checked.
    pub fn timeout(&self) -> std::time::Duration {
        humantime::parse_duration(&self.build_timeout)
            .unwrap_or(std::time::Duration::from_secs(600))
    }

    /// `build_memory` in bytes, checked.
    pub fn memory(&self) -> u64 {
        self.build_memory.parse::<bytesize::ByteSize>().map_or(8 << 30, |b| b.as_u64())
    }

    /// What is wrong, as (field, message).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        match humantime::parse_duration(&self.build_timeout) {
            Ok(d) if !d.is_zero() && d <= std::time::Duration::from_secs(3600) => {}
            Ok(_) => return Some(("build_timeout", "more than 0 and at most 1h".into())),
            Err(e) => {
                return Some((
                    "build_timeout",
                    format!("`{}` is not a duration: {e}", self.build_timeout),
                ));
            }
        }
        match self.build_memory.parse::<bytesize::ByteSize>() {
            Ok(b) if b.as_u64() >= 256 << 20 => None,
            Ok(_) => Some(("build_memory", "at least 256MiB".into())),
            Err(e) => Some(("build_memory", format!("`{}` is not a size: {e}", self.build_memory))),
        }
    }
}

/// How many other nodes a node keeps connections to: it dials nodes kad finds while it has fewer
/// than `target`, and closes the least recently used ones once it has more than `ceiling`, so
/// that a node's cost does not grow with the cloud. A node it is not connected to is dialed when
/// a request is sent to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Connections to other nodes the node dials up to.
    pub target: u32,
    /// Connections to other nodes the node never keeps more of (light clients not counted).
    pub ceiling: u32,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self { target: 24, ceiling: 48 }
    }
}

impl ConnectionsConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// What is wrong with these settings, if anything: the field (as named in YAML) and why.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.target == 0 {
            return Some(("target", "must be at least 1".into()));
        }
        if self.ceiling < self.target + 2 {
            return Some((
                "ceiling",
                format!(
                    "must be at least target + 2 ({}), to leave room for requests",
                    self.target + 2
                ),
            ));
        }
        if self.ceiling > 10_000 {
            return Some(("ceiling", "must be at most 10000".into()));
        }
        None
    }
}

/// The seer service's DNS settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeerConfig {
    /// The cloud's domain: seer answers `<service>.tau.<domain>`.
    pub domain: String,
    /// The suffix of generated domains: `<project>.<generated_domain>` and names below it are
    /// served at once, with no TXT validation.
    pub generated_domain: String,
    /// The TTL of every answer, seconds.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// The DNS server TXT validation records are looked up at [default: resolv.conf's].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txt_resolver: Option<std::net::SocketAddr>,
    /// Answers per second to one source (an IPv4 /24 or an IPv6 /56) over UDP, with as many at
    /// once; 0 means no limit.
    #[serde(default = "default_rate")]
    pub rate: u32,
    /// Of the UDP queries over `rate`, every `slip`-th gets a short truncated answer, so that a
    /// real client behind a busy source retries over TCP; the others get none. 0: none at all.
    #[serde(default = "default_slip")]
    pub slip: u32,
}

fn default_ttl() -> u32 {
    5
}

fn default_rate() -> u32 {
    100
}

fn default_slip() -> u32 {
    2
}

impl SeerConfig {
    /// Seer for `domain` and `generated_domain`, the rest as defaults.
    pub fn new(domain: String, generated_domain: String) -> Self {
        Self {
            domain,
            generated_domain,
            ttl: default_ttl(),
            txt_resolver: None,
            rate: default_rate(),
            slip: default_slip(),
        }
    }
}

/// The tns service's settings: what one project may hold on this node. Records written by the
/// operator key are not counted against it, and deleting is always allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TnsConfig {
    /// Live records one project may hold.
    pub max_records_per_project: u64,
    /// The size of a project's live records (`128MiB`), counted as a page counts them.
    pub max_bytes_per_project: String,
}

impl Default for TnsConfig {
    fn default() -> Self {
        Self { max_records_per_project: 100_000, max_bytes_per_project: "128MiB".into() }
    }
}

impl TnsConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The byte quota (checked when the file was loaded).
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes_per_project.parse::<bytesize::ByteSize>().map_or(128 << 20, |s| s.as_u64())
    }

    /// What is wrong with these settings, if anything: the field (as named in YAML) and why.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.max_records_per_project == 0 {
            return Some(("max_records_per_project", "must be at least 1".into()));
        }
        match self.max_bytes_per_project.parse::<bytesize::ByteSize>() {
            Ok(size) if size.as_u64() >= 1024 => None,
            Ok(_) => Some(("max_bytes_per_project", "must be at least 1KiB".into())),
            Err(e) => {
                let value = &self.max_bytes_per_project;
                Some((
                    "max_bytes_per_project",
                    format!("`{value}` is not a size (like 64MiB): {e}"),
                ))
            }
        }
    }
}

/// The vault service's files, from `tau-node vault deal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// The public key set (`keyset.yaml`).
    pub keyset: PathBuf,
    /// This node's secret key share (`share-<i>.yaml`, mode 0600).
    pub share: PathBuf,
}

/// The substrate service's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubstrateConfig {
    /// The length of a counter window (`60s`).
    pub counter_window: String,
    /// How long acknowledged counter records stay on disk (`24h`).
    pub counter_retention: String,
    /// The most function instances alive at once; more requests wait for a free slot.
    pub max_instances: u32,
    /// How long a request waits for a free slot before it is answered 503 (`10s`).
    pub slot_wait: String,
    /// The longest any function runs on this node (`15m`): a longer timeout is cut to it.
    pub max_timeout: String,
    /// The most memory any function has on this node (`4GiB`): a larger limit is cut to it.
    pub max_memory: String,
    /// How long a connection may take to send a request's headers, and may stay idle between
    /// requests, before the gateway closes it (`10s`).
    pub header_timeout: String,
    /// The most gateway connections open at once; more are closed as they arrive.
    pub max_connections: u32,
    /// The most gateway connections open at once from one IP address.
    pub max_connections_per_ip: u32,
    /// The most component bytes held in memory at once to be compiled (`512MiB`); more loads
    /// wait their turn (a component larger than this loads alone). Fetched components go to
    /// disk first, so a slow peer holds no memory.
    pub load_memory: String,
    /// Address blocks functions may reach although they are private, loopback or link-local
    /// (`[127.0.0.1/32]` for a test server on this host); none by default. Which hosts a
    /// function may call is its own YAML's `allowed_outbound_hosts`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outbound_allow: Vec<String>,
    /// PEM files of certificate authorities functions' outgoing https trusts besides the
    /// public ones (Mozilla's, built in): a private CA of the provider's, or a test's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outbound_roots: Vec<PathBuf>,
}

impl Default for SubstrateConfig {
    fn default() -> Self {
        Self {
            counter_window: "60s".into(),
            counter_retention: "24h".into(),
            max_instances: 1000,
            slot_wait: "10s".into(),
            max_timeout: "15m".into(),
            max_memory: "4GiB".into(),
            header_timeout: "10s".into(),
            max_connections: 10_000,
            max_connections_per_ip: 256,
            load_memory: "512MiB".into(),
            outbound_allow: Vec::new(),
            outbound_roots: Vec::new(),
        }
    }
}

impl SubstrateConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The counter window (checked when the file was loaded).
    pub fn window(&self) -> std::time::Duration {
        humantime::parse_duration(&self.counter_window)
            .unwrap_or(std::time::Duration::from_secs(60))
    }

    /// The retention of acknowledged counter records (checked when the file was loaded).
    pub fn retention(&self) -> std::time::Duration {
        humantime::parse_duration(&self.counter_retention)
            .unwrap_or(std::time::Duration::from_secs(24 * 3600))
    }

    /// How long a request waits for a free slot (checked when the file was loaded).
    pub fn slot_wait(&self) -> std::time::Duration {
        humantime::parse_duration(&self.slot_wait).unwrap_or(std::time::Duration::from_secs(10))
    }

    /// The longest a function runs here (checked when the file was loaded).
    pub fn max_timeout(&self) -> std::time::Duration {
        humantime::parse_duration(&self.max_timeout)
            .unwrap_or(std::time::Duration::from_secs(15 * 60))
    }

    /// How long the gateway waits for a request's headers (checked when the file was loaded).
    pub fn header_timeout(&self) -> std::time::Duration {
        humantime::parse_duration(&self.header_timeout)
            .unwrap_or(std::time::Duration::from_secs(10))
    }

    /// The most memory a function has here, bytes (checked when the file was loaded).
    pub fn max_memory(&self) -> u64 {
        self.max_memory.parse::<bytesize::ByteSize>().map_or(4 << 30, |size| size.as_u64())
    }

    /// The component bytes held in memory at once, bytes (checked when the file was loaded).
    pub fn load_memory(&self) -> u64 {
        self.load_memory.parse::<bytesize::ByteSize>().map_or(512 << 20, |size| size.as_u64())
    }

    /// The blocks of `outbound_allow` (checked when the file was loaded).
    pub fn outbound_allow(&self) -> Vec<crate::outbound::Cidr> {
        self.outbound_allow.iter().filter_map(|c| crate::outbound::Cidr::parse(c).ok()).collect()
    }

    /// What is wrong with these settings, if anything: the field (as named in YAML) and why.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        const SECOND: std::time::Duration = std::time::Duration::from_secs(1);
        const MILLI: std::time::Duration = std::time::Duration::from_millis(1);
        for (field, value, least) in [
            ("counter_window", &self.counter_window, SECOND),
            ("counter_retention", &self.counter_retention, SECOND),
            ("slot_wait", &self.slot_wait, MILLI),
            ("max_timeout", &self.max_timeout, MILLI),
            ("header_timeout", &self.header_timeout, MILLI),
        ] {
            match humantime::parse_duration(value) {
                Ok(d) if d >= least => {}
                Ok(_) => return Some((field, format!("must be at least {least:?}"))),
                Err(e) => {
                    return Some((
                        field,
                        format!("`{value}` is not a duration (like 60s or 5m): {e}"),
                    ));
                }
            }
        }
        if self.max_instances == 0 || self.max_instances > 10_000 {
            return Some(("max_instances", "must be between 1 and 10000".into()));
        }
        if self.max_connections == 0 {
            return Some(("max_connections", "must be at least 1".into()));
        }
        if self.max_connections_per_ip == 0 || self.max_connections_per_ip > self.max_connections {
            return Some((
                "max_connections_per_ip",
                "must be at least 1 and at most max_connections".into(),
            ));
        }
        for (field, value) in [("max_memory", &self.max_memory), ("load_memory", &self.load_memory)]
        {
            match value.parse::<bytesize::ByteSize>() {
                Ok(size) if size.as_u64() >= 1 << 20 => {}
                Ok(_) => return Some((field, "must be at least 1MiB".into())),
                Err(e) => {
                    return Some((field, format!("`{value}` is not a size (like 512MiB): {e}")));
                }
            }
        }
        for block in &self.outbound_allow {
            if let Err(e) = crate::outbound::Cidr::parse(block) {
                return Some(("outbound_allow", e));
            }
        }
        None
    }
}

/// The ports a node listens on (`node.yaml`'s `ports`, a playbook shape's `ports`); 0 means any
/// free port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    /// libp2p (TCP).
    pub p2p: u16,
    /// The substrate HTTP gateway.
    pub http: u16,
    /// The seer DNS server (UDP and TCP).
    pub dns: u16,
    /// patrick's webhook endpoint (HTTP), on `ci` nodes.
    #[serde(default = "default_webhook_port", skip_serializing_if = "is_default_webhook_port")]
    pub webhook: u16,
    /// The admin HTTP port: `GET /metrics` (Prometheus text), on every node.
    #[serde(default = "default_admin_port", skip_serializing_if = "is_default_admin_port")]
    pub admin: u16,
}

/// The admin port unless `ports.admin` says otherwise (the port OpenTelemetry's Prometheus
/// exporters use).
pub const DEFAULT_ADMIN_PORT: u16 = 9464;

fn default_admin_port() -> u16 {
    DEFAULT_ADMIN_PORT
}

fn is_default_admin_port(port: &u16) -> bool {
    *port == DEFAULT_ADMIN_PORT
}

/// patrick's port unless `ports.webhook` says otherwise.
pub const DEFAULT_WEBHOOK_PORT: u16 = 8419;

fn default_webhook_port() -> u16 {
    DEFAULT_WEBHOOK_PORT
}

fn is_default_webhook_port(port: &u16) -> bool {
    *port == DEFAULT_WEBHOOK_PORT
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            p2p: 4001,
            http: 8080,
            dns: 53,
            webhook: DEFAULT_WEBHOOK_PORT,
            admin: DEFAULT_ADMIN_PORT,
        }
    }
}

fn default_listen() -> Vec<IpAddr> {
    vec![IpAddr::from([0, 0, 0, 0])]
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

fn default_drain() -> String {
    "7s".into()
}

fn is_default_drain(drain: &str) -> bool {
    drain == default_drain()
}

/// What is wrong with `drain` as a node's drain time, if anything: a duration of at most 60 s.
pub fn drain_problem(drain: &str) -> Option<String> {
    match humantime::parse_duration(drain) {
        Ok(d) if d <= std::time::Duration::from_secs(60) => None,
        Ok(_) => Some("at most 60s".into()),
        Err(e) => Some(format!("`{drain}` is not a duration (like 7s, or 0s): {e}")),
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            identity_key: PathBuf::from("identity.key"),
            swarm_key: PathBuf::from("swarm.key"),
            operator_key: None,
            listen: default_listen(),
            announce: Vec::new(),
            bootstrap: Vec::new(),
            services: Vec::new(),
            data_dir: default_data_dir(),
            ports: Ports::default(),
            location: None,
            drain: default_drain(),
            substrate: SubstrateConfig::default(),
            vault: None,
            seer: None,
            tns: TnsConfig::default(),
            connections: ConnectionsConfig::default(),
            ci: CiConfig::default(),
            database: DatabaseConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

impl NodeConfig {
    /// How long a stopping node keeps serving (checked when the file was loaded).
    pub fn drain(&self) -> std::time::Duration {
        humantime::parse_duration(&self.drain).unwrap_or(std::time::Duration::from_secs(7))
    }

    /// Loads and checks `path`; relative paths in it become relative to the file's folder.
    pub fn load(path: &Path) -> Result<Self, YamlError> {
        let mut config: Self = yaml::load(path)?;
        config.check(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.identity_key = base.join(&config.identity_key);
        config.swarm_key = base.join(&config.swarm_key);
        config.data_dir = base.join(&config.data_dir);
        for roots in &mut config.substrate.outbound_roots {
            *roots = base.join(&*roots);
        }
        if let Some(vault) = &mut config.vault {
            vault.keyset = base.join(&vault.keyset);
            vault.share = base.join(&vault.share);
        }
        Ok(config)
    }

    /// Parses `text` as if it were the file `path`, without touching the disk.
    pub fn parse(text: &str, path: &Path) -> Result<Self, YamlError> {
        let config: Self = yaml::parse(text, path)?;
        config.check(path)?;
        Ok(config)
    }

    /// Writes the configuration as YAML.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_yaml_ng::to_string(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text)
    }

    /// The checks that serde's types cannot express.
    fn check(&self, path: &Path) -> Result<(), YamlError> {
        let invalid = |field: String, message: String| YamlError::invalid(path, field, message);
        if let Some(key) = &self.operator_key {
            key.parse::<WriterKey>().map_err(|e| invalid("operator_key".into(), e.to_string()))?;
        }
        if self.listen.is_empty() {
            return Err(invalid("listen".into(), "at least one address is needed".into()));
        }
        for (i, service) in self.services.iter().enumerate() {
            if !SERVICES.contains(&service.as_str()) {
                return Err(invalid(
                    format!("services[{i}]"),
                    format!("unknown service `{service}`, expected one of {}", SERVICES.join(", ")),
                ));
            }
            if self.services[..i].contains(service) {
                return Err(invalid(
                    format!("services[{i}]"),
                    format!("`{service}` is listed twice"),
                ));
            }
        }
        if self.services.iter().any(|s| s == "vault") && self.vault.is_none() {
            return Err(invalid(
                "vault".into(),
                "a vault node needs `vault: { keyset: FILE, share: FILE }` (files from `tau-node vault deal`)"
                    .into(),
            ));
        }
        match &self.seer {
            None if self.services.iter().any(|s| s == "seer") => {
                return Err(invalid(
                    "seer".into(),
                    "a seer node needs `seer: { domain: ..., generated_domain: ... }`".into(),
                ));
            }
            Some(seer) => {
                for (field, name) in [
                    ("seer.domain", &seer.domain),
                    ("seer.generated_domain", &seer.generated_domain),
                ] {
                    if !crate::tns::keys::is_domain(name) {
                        return Err(invalid(
                            field.into(),
                            format!("`{name}` is not a domain name"),
                        ));
                    }
                }
                if seer.ttl == 0 || seer.ttl > 86_400 {
                    return Err(invalid("seer.ttl".into(), "must be 1 to 86400 seconds".into()));
                }
            }
            None => {}
        }
        for (i, addr) in self.bootstrap.iter().enumerate() {
            if peer_id_of(addr).is_none() {
                return Err(invalid(
                    format!("bootstrap[{i}]"),
                    format!("{addr} does not end in /p2p/<peer id>"),
                ));
            }
        }
        let Ports { p2p, http, dns, webhook, admin } = self.ports;
        let pairs = [
            (p2p, http, "http"),
            (p2p, dns, "dns"),
            (http, dns, "dns"),
            (p2p, webhook, "webhook"),
            (http, webhook, "webhook"),
            (dns, webhook, "webhook"),
            (p2p, admin, "admin"),
            (http, admin, "admin"),
            (dns, admin, "admin"),
            (webhook, admin, "admin"),
        ];
        for (a, b, name) in pairs {
            if a != 0 && a == b {
                return Err(invalid(format!("ports.{name}"), format!("port {a} is used twice")));
            }
        }
        if let Some(message) = drain_problem(&self.drain) {
            return Err(invalid("drain".into(), message));
        }
        if let Some((field, message)) = self.substrate.problem() {
            return Err(invalid(format!("substrate.{field}"), message));
        }
        if let Some((field, message)) = self.tns.problem() {
            return Err(invalid(format!("tns.{field}"), message));
        }
        if let Some((field, message)) = self.connections.problem() {
            return Err(invalid(format!("connections.{field}"), message));
        }
        if let Some((field, message)) = self.ci.problem() {
            return Err(invalid(format!("ci.{field}"), message));
        }
        if let Some((field, message)) = self.database.problem() {
            return Err(invalid(format!("database.{field}"), message));
        }
        if let Some((field, message)) = self.metrics.problem() {
            return Err(invalid(format!("metrics.{field}"), message));
        }
        if let Some(location) = &self.location {
            if location.latitude.is_some_and(|l| !(-90.0..=90.0).contains(&l)) {
                return Err(invalid("location.latitude".into(), "must be within -90..90".into()));
            }
            if location.longitude.is_some_and(|l| !(-180.0..=180.0).contains(&l)) {
                return Err(invalid(
                    "location.longitude".into(),
                    "must be within -180..180".into(),
                ));
            }
        }
        Ok(())
    }

    /// The operator's public key, if configured (checked when the file was loaded).
    pub fn operator_key(&self) -> Option<WriterKey> {
        self.operator_key.as_deref().and_then(|k| k.parse().ok())
    }

    /// The DNS server's listen addresses: each listen IP with the dns port.
    pub fn dns_listen_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.listen.iter().map(|ip| std::net::SocketAddr::new(*ip, self.ports.dns)).collect()
    }

    /// The HTTP gateway's listen addresses: each listen IP with the http port.
    pub fn http_listen_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.listen.iter().map(|ip| std::net::SocketAddr::new(*ip, self.ports.http)).collect()
    }

    /// The admin HTTP port's listen addresses: each listen IP with the admin port.
    pub fn admin_listen_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.listen.iter().map(|ip| std::net::SocketAddr::new(*ip, self.ports.admin)).collect()
    }

    /// patrick's listen addresses: each listen IP with the webhook port.
    pub fn webhook_listen_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.listen.iter().map(|ip| std::net::SocketAddr::new(*ip, self.ports.webhook)).collect()
    }

    /// The libp2p listen addresses: each listen IP with the p2p port.
    pub fn p2p_listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen
            .iter()
            .map(|ip| Multiaddr::from(*ip).with(Protocol::Tcp(self.ports.p2p)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

    type Parsed = Result<NodeConfig, Box<dyn std::error::Error>>;

    fn parse(text: &str) -> Parsed {
        Ok(NodeConfig::parse(text, Path::new("node.yaml"))?)
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_minimal_file_gets_the_defaults() -> Result<(), Box<dyn std::error::Error>> {
        let config = parse("identity_key: id.key\nswarm_key: swarm.key\n")?;
        assert_eq!(config.ports, Ports::default());
        assert_eq!(config.listen, default_listen());
        assert_eq!(config.p2p_listen_addrs()[0].to_string(), "/ip4/0.0.0.0/tcp/4001");
        Ok(())
    }

    #[test]
    fn a_full_file_loads() -> Result<(), Box<dyn std::error::Error>> {
        let config = parse(&format!(
            "identity_key: id.key\nswarm_key: swarm.key\nlisten: [127.0.0.1, '::1']\n\
             announce: [/ip4/1.2.3.4/tcp/4001]\nbootstrap: [/ip4/127.0.0.1/tcp/4002/p2p/{PEER}]\n\
             services: [tns, substrate]\ndata_dir: /var/lib/tau\n\
             ports: {{p2p: 4001, http: 80, dns: 53}}\n\
             location: {{region: lab, latitude: 1.5, longitude: -2}}\n"
        ))?;
        assert_eq!(config.services, ["tns", "substrate"]);
        assert_eq!(config.p2p_listen_addrs()[1].to_string(), "/ip6/::1/tcp/4001");
        assert_eq!(config.location.map(|l| l.region), Some("lab".into()));
        Ok(())
    }

    #[test]
    fn load_resolves_paths_relative_to_the_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("node.yaml");
        std::fs::write(&path, "identity_key: id.key\nswarm_key: /abs/swarm.key\n")?;
        let config = NodeConfig::load(&path)?;
        assert_eq!(config.identity_key, dir.path().join("id.key"));
        assert_eq!(config.swarm_key, PathBuf::from("/abs/swarm.key"));
        assert_eq!(config.data_dir, dir.path().join("data"));
        Ok(())
    }

    #[test]
    fn every_kind_of_bad_file_names_the_file_and_field() {
        let base = "identity_key: a\nswarm_key: b\n";
        let cases = [
            (String::new(), "node.yaml: "),
            ("identity_key: a\n".to_string(), "missing field `swarm_key`"),
            (format!("{base}colour: blue\n"), "unknown field `colour`"),
            (format!("{base}ports: {{p2p: 1, http: 2, dns: 3, ssh: 4}}\n"), "unknown field `ssh`"),
            (format!("{base}ports: {{p2p: 99999, http: 2, dns: 3}}\n"), "field `ports.p2p`"),
            (format!("{base}ports: {{p2p: 80, http: 80, dns: 3}}\n"), "field `ports.http`"),
            (format!("{base}listen: [not-an-ip]\n"), "field `listen[0]`"),
            (format!("{base}listen: []\n"), "field `listen`"),
            (format!("{base}announce: [nonsense]\n"), "field `announce[0]`"),
            (format!("{base}bootstrap: [/ip4/127.0.0.1/tcp/1]\n"), "field `bootstrap[0]`"),
            (format!("{base}services: [tns, dns]\n"), "field `services[1]`: unknown service"),
            (format!("{base}services: [tns, tns]\n"), "listed twice"),
            (format!("{base}location: {{region: x, latitude: 91}}\n"), "location.latitude"),
            (format!("{base}location: {{latitude: 1}}\n"), "field `location`"),
            (format!("{base}services: tns\n"), "field `services`"),
            (format!("{base}substrate: {{counter_window: soon}}\n"), "substrate.counter_window"),
            (format!("{base}substrate: {{counter_window: 10ms}}\n"), "at least 1s"),
            (format!("{base}database: {{storage_grace: 10ms}}\n"), "database.storage_grace"),
            (format!("{base}database: {{storage_grace: later}}\n"), "not a duration"),
            (format!("{base}metrics: {{otlp: 'ftp://x'}}\n"), "metrics.otlp"),
            (format!("{base}metrics: {{interval: 0s}}\n"), "metrics.interval"),
            (format!("{base}substrate: {{max_instances: 0}}\n"), "substrate.max_instances"),
            (format!("{base}substrate: {{windows: 1s}}\n"), "unknown field `windows`"),
            (format!("{base}services: [vault]\n"), "field `vault`: a vault node needs"),
            (format!("{base}services: [seer]\n"), "field `seer`: a seer node needs"),
            (
                format!("{base}seer: {{domain: 'a b', generated_domain: g.x}}\n"),
                "field `seer.domain`",
            ),
            (format!("{base}seer: {{domain: x, generated_domain: g, ttl: 0}}\n"), "seer.ttl"),
            (format!("{base}vault: {{keyset: k}}\n"), "missing field `share`"),
            (format!("{base}connections: {{target: 0}}\n"), "field `connections.target`"),
            (
                format!("{base}connections: {{target: 30, ceiling: 31}}\n"),
                "field `connections.ceiling`: must be at least target + 2 (32)",
            ),
            (format!("{base}connections: {{peers: 3}}\n"), "unknown field `peers`"),
            (
                format!("{base}operator_key: 12D3KooW\n"),
                "field `operator_key`: `12D3KooW` is not a public key",
            ),
            ("identity_key: [\n".to_string(), "node.yaml: "),
        ];
        for (text, expected) in cases {
            let msg = error(&text);
            assert!(msg.starts_with("node.yaml: "), "{text:?} gave {msg}");
            assert!(msg.contains(expected), "{text:?} gave {msg}, expected {expected}");
        }
    }

    #[test]
    fn saved_files_load_back() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("node.yaml");
        let config = NodeConfig {
            services: vec!["seer".into()],
            seer: Some(SeerConfig {
                domain: "example.com".into(),
                generated_domain: "g.example.com".into(),
                ttl: 5,
                txt_resolver: Some("127.0.0.1:5353".parse()?),
                rate: 20,
                slip: 0,
            }),
            tns: TnsConfig { max_records_per_project: 7, max_bytes_per_project: "1MiB".into() },
            connections: ConnectionsConfig { target: 4, ceiling: 8 },
            ..NodeConfig::default()
        };
        config.save(&path)?;
        assert_eq!(NodeConfig::parse(&std::fs::read_to_string(&path)?, &path)?, config);
        Ok(())
    }
}
