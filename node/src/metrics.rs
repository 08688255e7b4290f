//! The node's metrics, where monitoring stacks look: Prometheus text on the admin HTTP port
//! (`GET /metrics` on `ports.admin`), and the same figures pushed over OTLP when `node.yaml`
//! names a collector (`metrics.otlp`).
//!
//! Figures are read when asked for, from the parts that keep them: the resource sampler (what
//! the heartbeat carries), the p2p core (peers), substrate's per-function totals since the start
//! (requests, errors, a latency histogram), TNS (records written), hoarder (pins, blobs held),
//! vault (shares answered) and seer (nodes seen, healthy ones, DNS answers dropped). Nothing on
//! the request path waits for a scrape.
//!
//! The port shows what the heartbeats already tell every tenant (resources, services) and each
//! function's request figures. Bind it where only the monitoring network reaches, or set
//! `ports.admin: 0` to serve none.

mod otlp;
mod server;

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

pub use otlp::{Otlp, OtlpError};
pub use server::serve;
use tau_proto::admin::Resources;
use tokio::sync::watch;

use crate::p2p;
use crate::substrate::counters::{Counters, LATENCY_BUCKETS};

/// What a metric is, as Prometheus types it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets when the node restarts).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Counts of observations under each bound, their sum and count.
    Histogram,
}

/// One value of a metric: its name's suffix (`_bucket`, `_sum`, `_count` for a histogram),
/// labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Appended to the metric's name.
    pub suffix: &'static str,
    /// Label names and values.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

/// A metric and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Its name (`tau_...`; a counter's ends in `_total`).
    pub name: &'static str,
    /// What it measures.
    pub help: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its values.
    pub samples: Vec<Sample>,
}

impl Metric {
    fn one(name: &'static str, help: &'static str, kind: Kind, value: f64) -> Self {
        Self { name, help, kind, samples: vec![Sample { suffix: "", labels: Vec::new(), value }] }
    }
}

/// Where the figures come from: every part is optional but the node's own.
#[derive(Clone)]
pub struct Sources {
    /// The node's peer id.
    pub peer_id: String,
    /// Its services.
    pub services: Vec<String>,
    /// When it started.
    pub started: Instant,
    /// The resource sampler's latest sample.
    pub resources: watch::Receiver<Resources>,
    /// Whether it is draining.
    pub leaving: watch::Receiver<bool>,
    /// The p2p core.
    pub handle: p2p::Handle,
    /// Substrate's (or a ci node's) counters.
    pub counters: Option<Arc<Counters>>,
    /// The node's TNS store.
    pub tns: Option<crate::tns::Local>,
    /// The node's hoarder.
    pub hoarder: Option<crate::hoarder::Local>,
    /// The node's vault.
    pub vault: Option<crate::vault::Local>,
    /// The node's seer.
    pub seer: Option<Arc<crate::seer::Shared>>,
}

impl Sources {
    /// Every figure, now.
    pub async fn gather(&self) -> Vec<Metric> {
        use Kind::{Counter, Gauge};
        let mut all = Vec::new();
        all.push(Metric {
            name: "tau_node_info",
            help: "The node's version and services (always 1).",
            kind: Gauge,
            samples: vec![Sample {
                suffix: "",
                labels: vec![
                    ("peer_id", self.peer_id.clone()),
                    ("version", tau_proto::VERSION.to_string()),
                    ("services", self.services.join(",")),
                ],
                value: 1.0,
            }],
        });
        let uptime = self.started.elapsed().as_secs_f64();
        all.push(Metric::one(
            "tau_node_uptime_seconds",
            "Seconds since the node started.",
            Gauge,
            uptime,
        ));
        let draining = f64::from(u8::from(*self.leaving.borrow()));
        all.push(Metric::one(
            "tau_node_draining",
            "1 while the node drains (leaves).",
            Gauge,
            draining,
        ));
        let r = self.resources.borrow().clone();
        for (name, help, value) in [
            (
                "tau_cpu_percent",
                "CPU use over the last sample, 0 to 100.",
                f64::from(r.cpu_percent),
            ),
            ("tau_cpus", "Logical CPUs.", f64::from(r.cpus)),
            ("tau_load1", "Load average over 1 minute.", r.load[0]),
            ("tau_memory_used_bytes", "Memory in use.", r.memory_used as f64),
            ("tau_memory_total_bytes", "Total memory.", r.memory_total as f64),
            (
                "tau_disk_available_bytes",
                "Free space on the data folder's disk.",
                r.disk_available as f64,
            ),
            ("tau_disk_total_bytes", "Size of the data folder's disk.", r.disk_total as f64),
        ] {
            all.push(Metric::one(name, help, Gauge, value));
        }
        if let Ok(peers) = self.handle.peers().await {
            let help = "Nodes this node is connected to.";
            all.push(Metric::one("tau_p2p_peers", help, Gauge, peers.len() as f64));
        }
        if let Some(counters) = &self.counters {
            all.extend(functions(counters));
        }
        if let Some(tns) = &self.tns {
            let help = "TNS records this node's store has taken (its clock).";
            all.push(Metric::one("tau_tns_writes_total", help, Counter, tns.clock() as f64));
        }
        if let Some(hoarder) = &self.hoarder {
            let f = hoarder.figures();
            for (name, help, kind, value) in [
                ("tau_hoarder_pins", "Pins this node knows of (blob and owner).", Gauge, f.pins),
                ("tau_hoarder_blobs_held", "Blobs this node holds.", Gauge, f.held),
                ("tau_hoarder_fetching", "Blobs this node is fetching now.", Gauge, f.fetching),
                (
                    "tau_hoarder_rejected_chunks_total",
                    "Chunks refused because they did not match their hash.",
                    Counter,
                    f.rejected_chunks,
                ),
            ] {
                all.push(Metric::one(name, help, kind, value as f64));
            }
        }
        if let Some(vault) = &self.vault {
            let help = "Decryption shares this vault node answered.";
            all.push(Metric::one(
                "tau_vault_shares_answered_total",
                help,
                Counter,
                vault.answered() as f64,
            ));
        }
        if let Some(seer) = &self.seer {
            let nodes = seer.table().nodes(Instant::now());
            let healthy = nodes.iter().filter(|n| n.healthy).count();
            all.push(Metric::one(
                "tau_seer_nodes",
                "Nodes whose heartbeats this seer holds.",
                Gauge,
                nodes.len() as f64,
            ));
            all.push(Metric::one(
                "tau_seer_healthy_nodes",
                "Nodes this seer counts healthy.",
                Gauge,
                healthy as f64,
            ));
            let dropped =
                seer.dropped.load(Ordering::Relaxed) + seer.limited.load(Ordering::Relaxed);
            let help = "DNS queries dropped or limited (over a source's rate, or malformed).";
            all.push(Metric::one("tau_dns_dropped_total", help, Counter, dropped as f64));
        }
        all
    }
}

/// Substrate's figures per function: requests, errors, and the latency histogram.
fn functions(counters: &Counters) -> Vec<Metric> {
    let mut requests = Vec::new();
    let mut errors = Vec::new();
    let mut latency = Vec::new();
    for ((project, function), lifetime) in counters.lifetimes() {
        let labels = vec![("project", project), ("function", function)];
        requests.push(Sample {
            suffix: "",
            labels: labels.clone(),
            value: lifetime.requests as f64,
        });
        errors.push(Sample { suffix: "", labels: labels.clone(), value: lifetime.errors as f64 });
        let mut below = 0;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&lifetime.buckets) {
            below += count;
            let mut labels = labels.clone();
            labels.push(("le", format_value(*bound)));
            latency.push(Sample { suffix: "_bucket", labels, value: below as f64 });
        }
        let mut inf = labels.clone();
        inf.push(("le", "+Inf".into()));
        latency.push(Sample { suffix: "_bucket", labels: inf, value: lifetime.requests as f64 });
        latency.push(Sample { suffix: "_sum", labels: labels.clone(), value: lifetime.seconds });
        latency.push(Sample { suffix: "_count", labels, value: lifetime.requests as f64 });
    }
    vec![
        Metric {
            name: "tau_function_requests_total",
            help: "Requests a function served on this node (failed ones included).",
            kind: Kind::Counter,
            samples: requests,
        },
        Metric {
            name: "tau_function_errors_total",
            help: "Requests a function failed on this node (trap, timeout, memory, no answer).",
            kind: Kind::Counter,
            samples: errors,
        },
        Metric {
            name: "tau_function_duration_seconds",
            help: "How long a function's invocations took on this node, wall time.",
            kind: Kind::Histogram,
            samples: latency,
        },
    ]
}

/// `metrics` in the Prometheus text format (version 0.0.4).
pub fn render(metrics: &[Metric]) -> String {
    let mut out = String::new();
    for metric in metrics {
        let kind = match metric.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {} {}", metric.name, escape_help(metric.help));
        let _ = writeln!(out, "# TYPE {} {kind}", metric.name);
        for sample in &metric.samples {
            out.push_str(metric.name);
            out.push_str(sample.suffix);
            if !sample.labels.is_empty() {
                out.push('{');
                for (i, (name, value)) in sample.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{name}=\"{}\"", escape_label(value));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", format_value(sample.value));
        }
    }
    out
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A label value: backslash, double quote and line feed escaped (the text format's rules).
fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format_with_escaped_labels() {
        let metrics = vec![
            Metric::one("tau_up", "Up.", Kind::Gauge, 1.0),
            Metric {
                name: "tau_function_requests_total",
                help: "Requests\nserved.",
                kind: Kind::Counter,
                samples: vec![Sample {
                    suffix: "",
                    labels: vec![("project", "a\"b\\c\nd".into()), ("function", "f".into())],
                    value: 3.0,
                }],
            },
        ];
        let text = render(&metrics);
        assert_eq!(
            text,
            "# HELP tau_up Up.\n# TYPE tau_up gauge\ntau_up 1\n\
             # HELP tau_function_requests_total Requests\\nserved.\n\
             # TYPE tau_function_requests_total counter\n\
             tau_function_requests_total{project=\"a\\\"b\\\\c\\nd\",function=\"f\"} 3\n"
        );
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
    }
}
