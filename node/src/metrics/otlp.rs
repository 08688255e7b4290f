//! The node's metrics pushed to an OpenTelemetry collector over OTLP/HTTP (protobuf), every
//! `metrics.interval`: the same figures the admin port serves, as observable instruments that
//! read the latest sample. Counters drop Prometheus' `_total` (a collector's Prometheus exporter
//! adds it back); a histogram goes as its `_bucket` (with `le`), `_sum` and `_count` counters.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Kind, Metric, Sources};

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
#[error("metrics.otlp: cannot export to {url}: {reason}")]
pub struct OtlpError {
    url: String,
    reason: String,
}

/// The exporter's task.
pub struct Otlp;

/// `URL/v1/metrics`, unless the URL already names the path.
fn endpoint(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with("/v1/metrics") { url.to_string() } else { format!("{url}/v1/metrics") }
}

type Latest = Arc<Mutex<Vec<Metric>>>;

/// Calls `observe` with every sample of `name` whose suffix is `suffix`.
fn each(latest: &Latest, name: &str, suffix: &str, mut observe: impl FnMut(f64, &[KeyValue])) {
    let Ok(latest) = latest.lock() else { return };
    for metric in latest.iter().filter(|m| m.name == name) {
        for sample in metric.samples.iter().filter(|s| s.suffix == suffix) {
            let attributes: Vec<KeyValue> =
                sample.labels.iter().map(|(k, v)| KeyValue::new(*k, v.clone())).collect();
            observe(sample.value, &attributes);
        }
    }
}

impl Otlp {
    /// Starts pushing `sources`' figures to `url` every `interval`, until `shutdown` (then
    /// once more).
    pub async fn start(
        url: &str,
        interval: Duration,
        sources: Sources,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, OtlpError> {
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let fail = |e: &dyn std::fmt::Display| OtlpError { url: url.into(), reason: e.to_string() };
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_timeout(Duration::from_secs(10))
            .with_endpoint(endpoint(url))
            .build()
            .map_err(|e| fail(&e))?;
        let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
            .with_interval(interval)
            .build();
        let resource = Resource::builder()
            .with_service_name("tau-node")
            .with_attribute(KeyValue::new("peer_id", sources.peer_id.clone()))
            .build();
        let provider =
            SdkMeterProvider::builder().with_reader(reader).with_resource(resource).build();
        let meter = provider.meter("tau-node");
        let first = sources.gather().await;
        let latest: Latest = Arc::new(Mutex::new(first.clone()));
        let mut gauges = Vec::new();
        let mut counters = Vec::new();
        for metric in &first {
            let base = metric.name.strip_suffix("_total").unwrap_or(metric.name);
            let parts: Vec<(String, &'static str)> = match metric.kind {
                Kind::Histogram => ["_bucket", "_sum", "_count"]
                    .into_iter()
                    .map(|suffix| (format!("{base}{suffix}"), suffix))
                    .collect(),
                _ => vec![(base.to_string(), "")],
            };
            for (name, suffix) in parts {
                let (latest, metric_name) = (latest.clone(), metric.name);
                match metric.kind {
                    Kind::Gauge => gauges.push(
                        meter
                            .f64_observable_gauge(name)
                            .with_description(metric.help)
                            .with_callback(move |o| {
                                each(&latest, metric_name, suffix, |v, a| o.observe(v, a))
                            })
                            .build(),
                    ),
                    Kind::Counter | Kind::Histogram => counters.push(
                        meter
                            .f64_observable_counter(name)
                            .with_description(metric.help)
                            .with_callback(move |o| {
                                each(&latest, metric_name, suffix, |v, a| o.observe(v, a))
                            })
                            .build(),
                    ),
                }
            }
        }
        // Sampled at half the interval, so that each export reads a recent sample.
        let every = (interval / 2).max(Duration::from_millis(500));
        Ok(tokio::spawn(async move {
            let _instruments = (gauges, counters);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                let figures = sources.gather().await;
                if let Ok(mut latest) = latest.lock() {
                    *latest = figures;
                }
            }
            // The last export, off the runtime: the exporter's client blocks.
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = provider.shutdown() {
                    tracing::debug!(error = %e, "metrics exporter shutdown");
                }
            })
            .await;
        }))
    }
}
