//! Made-up but well-formed cloud data, the same on every run: the snapshot tests, the README's
//! captures and the rendering benchmark use it. Any size: `peers(10_000)`, `records(100_000)`.

use std::net::{IpAddr, Ipv4Addr};

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tau_proto::admin::{Location, PeerInfo, Resources};
use tau_proto::client::registry::{RecordView, Value};
use tau_proto::client::secrets::{NodeShare, VaultReport};
use tau_proto::counters::Usage;
use tau_proto::git::{self, Finished, Job, JobState, RepoKind};
use tau_proto::hoarder::{BlobId, PinInfo, PinState};
use tau_proto::identity::WriterKey;
use tau_proto::seer::{Heartbeat, NodeStatus};
use tau_proto::tns::values::{
    DomainClaim, Execution, Function, ProjectConfig, ProjectRoot, Registrar, Route, Source,
    Trigger, TriggerKind,
};
use tau_proto::vault::ShareInfo;

use crate::usage::UsageRow;

const ALL: &[&str] = &["tns", "hoarder", "vault", "seer", "substrate"];
const GIB: u64 = 1 << 30;
/// 2023-11-14 22:13:20 UTC: the sample cloud's "now".
pub const NOW_MS: u64 = 1_700_000_000_000;

/// The peer id of sample node `i`.
pub fn peer(i: usize) -> PeerId {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    match Keypair::ed25519_from_bytes(seed) {
        Ok(key) => key.public().to_peer_id(),
        Err(_) => PeerId::random(),
    }
}

fn ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 20, (i / 250) as u8, (i % 250 + 1) as u8)
}

fn services(i: usize) -> Vec<String> {
    let list: &[&str] = if i % 5 < 3 { ALL } else { &["hoarder", "substrate"] };
    list.iter().map(|s| s.to_string()).collect()
}

/// `n` connected peers.
pub fn peers(n: usize) -> Vec<PeerInfo> {
    (1..=n)
        .map(|i| PeerInfo {
            peer_id: peer(i),
            addrs: [format!("/ip4/{}/tcp/4001", ip(i))]
                .iter()
                .filter_map(|a| a.parse::<Multiaddr>().ok())
                .collect(),
            rtt_micros: if i % 7 == 6 { None } else { Some(180 + (i as u64 * 397) % 4_000) },
            quiet_ms: if i % 7 == 6 { None } else { Some((i as u64 * 211) % 2_000) },
            services: services(i),
            connected_secs: 40 + (i as u64 * 1_711) % 200_000,
            agent: "tau-node/0.1.0".into(),
        })
        .collect()
}

/// `n` nodes as seer sees them at round `round` (their CPU moves from round to round); node 3
/// has stopped beating.
pub fn nodes(n: usize, round: u64) -> Vec<NodeStatus> {
    (0..n)
        .map(|i| {
            let unhealthy = i == 3;
            let round = if unhealthy { round.min(4) } else { round };
            let wave = ((i as u64 * 17 + round * 11) % 60) as f32;
            NodeStatus {
                heartbeat: Heartbeat {
                    peer: peer(i),
                    seq: round,
                    started_ms: NOW_MS - 3_600_000,
                    version: "0.1.0".into(),
                    services: services(i),
                    addrs: vec![IpAddr::V4(ip(i))],
                    http_port: 8080,
                    location: Some(Location {
                        region: ["eu-west", "us-east", "ap-south"][i % 3].into(),
                        latitude: None,
                        longitude: None,
                    }),
                    resources: Resources {
                        cpus: 8,
                        cpu_percent: 10.0 + wave,
                        load: [0.4 + f64::from(wave) / 20.0, 0.5, 0.6],
                        memory_total: 16 * GIB,
                        memory_used: (3 + i as u64 % 5) * GIB,
                        disk_total: 500 * GIB,
                        disk_available: (400 - 37 * (i as u64 % 8)) * GIB,
                    },
                    active_requests: (i as u64 * 3 + round) % 9,
                    full: false,
                    leaving: false,
                },
                age_ms: if unhealthy { 19_000 } else { 600 },
                healthy: !unhealthy,
            }
        })
        .collect()
}

fn writer(i: usize) -> WriterKey {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&(i as u64).to_be_bytes());
    key[31] = 0xab;
    WriterKey(key)
}

fn view(key: String, scope: &str, version: u64, who: usize, value: Value) -> RecordView {
    RecordView {
        key,
        scope: scope.into(),
        version,
        writer: writer(who).to_string(),
        deleted: false,
        value: Some(value),
    }
}

/// About `n` registry records: projects with their config, functions, domains and routes, the
/// registrars and the vault key set.
pub fn records(n: usize) -> Vec<RecordView> {
    let mut out = vec![view("/vault/keyset".into(), "operator", 1, 0, Value::Raw(vec![0xa1, 1]))];
    for r in 0..3 {
        out.push(view(
            format!("/registrars/{}", peer(r)),
            "operator",
            2,
            0,
            Value::Registrar(Registrar { key: writer(100 + r) }),
        ));
    }
    let mut p = 0;
    while out.len() < n {
        let project = if p == 0 { "example".to_string() } else { format!("project-{p:05}") };
        let owner = 1 + p;
        let scope = format!("project:{project}");
        out.push(view(
            format!("/projects/{project}"),
            "operator",
            10 + p as u64,
            0,
            Value::ProjectRoot(ProjectRoot { owner: writer(owner) }),
        ));
        out.push(view(
            format!("/projects/{project}/config"),
            &scope,
            11 + p as u64,
            owner,
            Value::ProjectConfig(ProjectConfig {
                name: project.clone(),
                description: "sample project".into(),
                branches: Default::default(),
            }),
        ));
        let domain = format!("{project}.tau");
        for (f, name) in ["ping", "echo", "hello"].iter().enumerate() {
            out.push(view(
                format!("/projects/{project}/functions/{name}"),
                &scope,
                12 + f as u64,
                owner,
                Value::Function(Box::new(Function {
                    name: name.to_string(),
                    description: format!("the {name} function"),
                    trigger: Trigger {
                        kind: TriggerKind::Http,
                        method: "GET".into(),
                        paths: vec![format!("/{name}")],
                    },
                    domains: vec![domain.clone()],
                    source: Source {
                        file: format!("{name}.wasm"),
                        cid: BlobId::of(format!("{project}/{name}").as_bytes()),
                        size: 80_000 + f as u64 * 1_234,
                    },
                    execution: Execution { timeout_ms: 5_000, memory_bytes: 64 << 20, call: None },
                    allowed_outbound_hosts: Vec::new(),
                    variables: Default::default(),
                })),
            ));
            out.push(view(
                format!("/http/{domain}/GET/{name}"),
                &scope,
                15 + f as u64,
                owner,
                Value::Route(Route { project: project.clone(), function: name.to_string() }),
            ));
        }
        out.push(view(
            format!("/domains/{domain}"),
            &scope,
            20,
            owner,
            Value::Domain(DomainClaim { project: project.clone() }),
        ));
        p += 1;
    }
    out.truncate(n);
    out
}

/// The registry records of a few build jobs of project `example`, one in each state but queued,
/// and one queued; job `i`'s log is [`job_log`]`(i)`.
pub fn jobs() -> Vec<RecordView> {
    let states = |i: usize| {
        let finished = |summary: &str| Finished {
            monkey: peer(i % 3).to_string(),
            started_at: NOW_MS - 600_000 + i as u64 * 60_000,
            finished_at: NOW_MS - 600_000 + i as u64 * 60_000 + 4_200 + i as u64 * 300,
            config_commit: Some(commit(100 + i)),
            code_commit: Some(commit(i)),
            summary: summary.to_string(),
            log: Some(BlobId::of(job_log(i).as_bytes())),
        };
        match i {
            0 => JobState::Done(finished("deployed: 5 written, 0 deleted, 11 unchanged")),
            1 => JobState::Failed(finished("the build failed: cargo exited with status 101")),
            2 => JobState::Skipped { reason: "superseded by a newer commit".into() },
            3 => JobState::Building {
                monkey: peer(1).to_string(),
                started_at: NOW_MS - 5_000,
                lease_until: NOW_MS + 10_000,
                attempt: 1,
            },
            _ => JobState::Queued,
        }
    };
    (0..5)
        .map(|i| {
            let job = Job {
                repo: if i == 2 { RepoKind::Config } else { RepoKind::Code },
                branch: if i == 1 { "staging".into() } else { "main".into() },
                commit: commit(i),
                queued_at: NOW_MS - 600_000 + i as u64 * 60_000,
                state: states(i),
            };
            let branch = (i == 1).then_some("staging");
            view(
                git::job_key("example", &commit(i), branch),
                "project:example",
                30 + i as u64,
                1,
                Value::Job(Box::new(job)),
            )
        })
        .collect()
}

/// A made-up commit id.
fn commit(i: usize) -> String {
    let mixed = (i as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    format!("{:08x}{mixed:032x}", (mixed >> 96) as u32 ^ 0x5eed_c0de)
}

/// Job `i`'s log.
pub fn job_log(i: usize) -> String {
    format!(
        "monkey: job {i}\n   Compiling hello v0.1.0 (/work/code/hello)\n{}",
        if i == 1 { "error: expected one of `(` or `<`, found `{`\n" } else { "    Finished\n" }
    )
}

/// `n` pins; every seventh is under-replicated and every eleventh is being repaired.
pub fn pins(n: usize) -> Vec<PinInfo> {
    (0..n)
        .map(|i| {
            let state = match i {
                _ if i % 7 == 3 => PinState::UnderReplicated,
                _ if i % 11 == 5 => PinState::Repairing,
                _ => PinState::Ok,
            };
            let held = if state == PinState::Ok { 3 } else { 1 + i % 2 };
            PinInfo {
                cid: BlobId::of(&(i as u64).to_le_bytes()),
                size: 4_096 + (i as u64 * 7_919_713) % 40_000_000,
                factor: 3,
                target: 3,
                holders: (0..held).map(|h| peer((i + h) % 5)).collect(),
                state,
            }
        })
        .collect()
}

/// A vault of `n` nodes, threshold 1 (two shares read a secret), the last node not answering.
pub fn vault(n: usize) -> VaultReport {
    let keyset = "9f3c1e0b7a5d4c2e8f6a1b3c5d7e9f0a".to_string();
    let nodes: Vec<NodeShare> = (0..n)
        .map(|i| NodeShare {
            node: peer(i).to_string(),
            info: (i + 1 < n).then(|| ShareInfo {
                keyset: keyset.clone(),
                index: i as u32,
                threshold: 1,
                shares: n as u32,
                secrets: 4 + i as u64,
            }),
            error: (i + 1 == n).then(|| "request timed out".to_string()),
        })
        .collect();
    VaultReport { keyset: Some(keyset), needed: Some(2), reachable: n - 1, readable: n > 2, nodes }
}

/// The latest windows of a few functions.
pub fn usage() -> Vec<UsageRow> {
    ["ping", "echo", "hello"]
        .iter()
        .enumerate()
        .map(|(i, function)| UsageRow {
            project: "example".into(),
            function: function.to_string(),
            window_start_ms: NOW_MS - 60_000,
            window_ms: 60_000,
            usage: Usage {
                invocations: 1_200 / (i as u64 + 1),
                errors: if i == 2 { 3 } else { 0 },
                wall_micros: 1_200 / (i as u64 + 1) * (900 + i as u64 * 400),
                cpu_micros: 1_200 / (i as u64 + 1) * (400 + i as u64 * 100),
                ..Usage::default()
            },
            nodes: 3 - i.min(1),
            total_invocations: 52_000 / (i as u64 + 1),
            total_errors: if i == 2 { 17 } else { 0 },
            since_ms: NOW_MS - 3_600_000,
        })
        .collect()
}

/// A few key-value stores, one held by fewer nodes than the others.
pub fn stores() -> Vec<crate::query::StoreRow> {
    [("example", "counts", 3, 412), ("example", "notes", 120, 48_310), ("shop", "carts", 9, 2_204)]
        .iter()
        .enumerate()
        .map(|(i, (project, store, keys, bytes))| crate::query::StoreRow {
            project: project.to_string(),
            store: store.to_string(),
            keys: *keys,
            bytes: *bytes,
            nodes: (0..3 - i.min(1)).map(peer).collect(),
        })
        .collect()
}
