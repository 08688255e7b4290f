//! q's own metrics, sent to an OpenTelemetry collector over OTLP/HTTP (protobuf) when
//! `--otlp URL` names one: records ingested, records kept aside (bad signatures, foreign or
//! unknown nodes, conflicts), gaps, nodes that did not answer, and per node the records not
//! collected yet (lag).

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, MeterProvider};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;

use crate::collect::Report;

/// Why metrics could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("OTLP exporter for {url}: {reason}")]
pub struct MetricsError {
    url: String,
    reason: String,
}

/// The instruments, exporting every `interval` and once more at [`Metrics::shutdown`].
pub struct Metrics {
    provider: SdkMeterProvider,
    ingested: Counter<u64>,
    replayed: Counter<u64>,
    rejected: Counter<u64>,
    gaps: Counter<u64>,
    unreachable: Counter<u64>,
    lag: Gauge<u64>,
}

/// `URL/v1/metrics`, unless the URL already names the path.
fn metrics_endpoint(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with("/v1/metrics") { url.to_string() } else { format!("{url}/v1/metrics") }
}

impl Metrics {
    /// Exports to the OTLP/HTTP collector at `url` (such as `http://127.0.0.1:4318`).
    pub fn otlp(url: &str, interval: std::time::Duration) -> Result<Self, MetricsError> {
        crate::push::install_tls_provider();
        let fail =
            |e: &dyn std::fmt::Display| MetricsError { url: url.into(), reason: e.to_string() };
        // A timeout, so that a collector that does not answer cannot hold q up.
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_timeout(std::time::Duration::from_secs(10))
            .with_endpoint(metrics_endpoint(url))
            .build()
            .map_err(|e| fail(&e))?;
        let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
            .with_interval(interval)
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(Resource::builder().with_service_name("q").build())
            .build();
        let meter = provider.meter("q");
        let counter = |name: &'static str, what: &'static str| {
            meter.u64_counter(name).with_description(what).with_unit("{record}").build()
        };
        Ok(Metrics {
            ingested: counter("q.records.ingested", "Verified records stored, each once"),
            replayed: counter("q.records.replayed", "Records read again that were already stored"),
            rejected: counter(
                "q.records.rejected",
                "Records kept aside: bad signature, foreign or unknown node, conflict",
            ),
            gaps: meter
                .u64_counter("q.gaps")
                .with_description("Gaps seen in nodes' sequence numbers")
                .build(),
            unreachable: meter
                .u64_counter("q.nodes.unreachable")
                .with_description("Collections in which a node did not answer")
                .build(),
            lag: meter
                .u64_gauge("q.lag")
                .with_description("Records a node holds that q has not collected")
                .with_unit("{record}")
                .build(),
            provider,
        })
    }

    /// Counts one collection.
    pub fn collected(&self, report: &Report) {
        self.ingested.add(report.ingested.inserted, &[]);
        self.replayed.add(report.ingested.replayed, &[]);
        self.rejected.add(report.ingested.rejected, &[]);
        self.gaps.add(report.ingested.gaps, &[]);
        for (node, _) in &report.unreachable {
            self.unreachable.add(1, &[KeyValue::new("node", node.clone())]);
        }
    }

    /// Records one node's lag.
    pub fn lag(&self, node: &str, lag: u64) {
        self.lag.record(lag, &[KeyValue::new("node", node.to_string())]);
    }

    /// Exports what is left and stops.
    pub fn shutdown(self) -> Result<(), MetricsError> {
        self.provider
            .shutdown()
            .map_err(|e| MetricsError { url: "the collector".into(), reason: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_path_is_added_once() {
        assert_eq!(metrics_endpoint("http://c:4318"), "http://c:4318/v1/metrics");
        assert_eq!(metrics_endpoint("http://c:4318/"), "http://c:4318/v1/metrics");
        assert_eq!(metrics_endpoint("http://c:4318/v1/metrics"), "http://c:4318/v1/metrics");
    }
}
