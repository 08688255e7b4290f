//! What q gives billing systems and people: exports (CSV, JSON) of per-line totals or raw
//! records, and charts (PNG, SVG) of invocations and time per function over a period.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use plotters::prelude::*;

use crate::events::Shape;
use crate::period::{OPEN_END, Period};
use crate::store::{Store, StoreError, StoredRecord};

/// An export's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated, one header line.
    Csv,
    /// One JSON array.
    Json,
    /// CloudEvents 1.0 in JSON batch mode (OpenMeter's ingest), one per record and figure
    /// (needs customers).
    Cloudevents,
    /// Stripe meter events, one per record and figure, as one JSON array (needs customers).
    Stripe,
    /// Lago events, one per record and figure, as `{"events": [...]}` (needs customers).
    Lago,
}

impl Format {
    /// The billing system's event shape, for the formats that are one.
    pub fn shape(self) -> Option<Shape> {
        match self {
            Format::Csv | Format::Json => None,
            Format::Cloudevents => Some(Shape::Cloudevents),
            Format::Stripe => Some(Shape::Stripe),
            Format::Lago => Some(Shape::Lago),
        }
    }
}

/// Why an export or a chart failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum ReportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing failed.
    #[error("writing {0}")]
    Io(#[from] std::io::Error),
    /// Nothing to draw.
    #[error("no records in the period {0}: nothing to plot")]
    Empty(String),
    /// A project the customers file does not name.
    #[error(transparent)]
    NoCustomer(#[from] crate::events::NoCustomer),
    /// The format needs a customers file.
    #[error("--format {0} needs --customers customers.yaml (project: the billing system's id)")]
    NeedsCustomers(&'static str),
    /// The format has no totals.
    #[error("--format {0} exports every record's events: it has no totals")]
    EventsOnly(&'static str),
    /// The chart could not be drawn.
    #[error("drawing {path}: {reason}")]
    Draw {
        path: String,
        /// Why.
        reason: String,
    },
}

/// The header of a records export, in [`StoredRecord`]'s field order.
const RECORD_HEADER: [&str; 22] = [
    "node",
    "seq",
    "project",
    "function",
    "window_start_ms",
    "window_ms",
    "invocations",
    "errors",
    "wall_micros",
    "cpu_micros",
    "peak_memory",
    "bytes_in",
    "bytes_out",
    "kv_reads",
    "kv_writes",
    "storage_read_bytes",
    "storage_written_bytes",
    "outbound_requests",
    "outbound_sent_bytes",
    "outbound_received_bytes",
    "signature",
    "hash",
];

/// A record's CSV row, in [`RECORD_HEADER`]'s order (the csv crate writes no nested struct).
fn record_row(r: &StoredRecord) -> Vec<String> {
    let mut row = vec![
        r.node.clone(),
        r.seq.to_string(),
        r.project.clone(),
        r.function.clone(),
        r.window_start_ms.to_string(),
        r.window_ms.to_string(),
    ];
    row.extend(r.usage.figures().map(|figure| figure.to_string()));
    row.push(hex::encode(&r.signature));
    row.push(hex::encode(r.hash));
    row
}

const TOTAL_HEADER: [&str; 13] = [
    "project",
    "function",
    "invocations",
    "errors",
    "wall_micros",
    "cpu_micros",
    "kv_reads",
    "kv_writes",
    "storage_read_bytes",
    "storage_written_bytes",
    "outbound_sent_bytes",
    "outbound_received_bytes",
    "records",
];

fn csv_error(e: csv::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Writes the per-(project, function) totals of `period`; returns how many lines.
pub async fn export_totals(
    store: &Store,
    period: Period,
    project: Option<&str>,
    format: Format,
    out: &mut dyn Write,
) -> Result<usize, ReportError> {
    let totals = store.totals(period.from_ms, period.to_ms, project).await?;
    match format {
        Format::Cloudevents | Format::Stripe | Format::Lago => {
            return Err(ReportError::EventsOnly(format.shape().map_or("", Shape::name)));
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &totals).map_err(std::io::Error::other)?;
            writeln!(out)?;
        }
        Format::Csv => {
            let mut csv = csv::WriterBuilder::new().has_headers(false).from_writer(&mut *out);
            csv.write_record(TOTAL_HEADER).map_err(csv_error)?;
            for total in &totals {
                csv.serialize(total).map_err(csv_error)?;
            }
            csv.flush()?;
        }
    }
    Ok(totals.len())
}

/// Writes the usage events of every record of `period` in `format` (Stripe or Lago), each
/// project's with its customer in `customers`, streamed; returns how many events.
pub async fn export_events(
    store: &Store,
    period: Period,
    project: Option<&str>,
    shape: Shape,
    customers: &crate::events::Customers,
    out: &mut dyn Write,
) -> Result<u64, ReportError> {
    let (open, close): (&[u8], &[u8]) = match shape {
        Shape::Lago => (b"{\"events\": [", b"]}\n"),
        _ => (b"[", b"]\n"),
    };
    // Every project of the period has a customer, or nothing is written.
    for total in store.totals(period.from_ms, period.to_ms, project).await? {
        customers.of(&total.project)?;
    }
    out.write_all(open)?;
    let mut events = 0u64;
    let mut missing = None;
    store
        .records(period.from_ms, period.to_ms, project, |record| {
            let customer = match customers.of(&record.project) {
                Ok(customer) => customer,
                Err(e) => {
                    missing.get_or_insert(e);
                    return Ok(());
                }
            };
            for event in crate::events::events_of(&record) {
                out.write_all(if events == 0 { b"\n  " } else { b",\n  " })?;
                shape.write(&mut *out, &event, customer)?;
                events += 1;
            }
            Ok(())
        })
        .await?;
    if let Some(e) = missing {
        return Err(e.into());
    }
    out.write_all(if events == 0 { close } else { b"\n" })?;
    if events > 0 {
        out.write_all(close)?;
    }
    out.flush()?;
    Ok(events)
}

/// Writes every record of `period`, streamed (never all in memory); returns how many.
pub async fn export_records(
    store: &Store,
    period: Period,
    project: Option<&str>,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64, ReportError> {
    let count = match format {
        Format::Cloudevents | Format::Stripe | Format::Lago => {
            return Err(ReportError::NeedsCustomers(format.shape().map_or("", Shape::name)));
        }
        Format::Json => {
            out.write_all(b"[")?;
            let mut first = true;
            let count = store
                .records(period.from_ms, period.to_ms, project, |record| {
                    out.write_all(if first { b"\n  " } else { b",\n  " })?;
                    first = false;
                    serde_json::to_writer(&mut *out, &record).map_err(std::io::Error::other)
                })
                .await?;
            out.write_all(if count == 0 { b"]\n" } else { b"\n]\n" })?;
            count
        }
        Format::Csv => {
            let mut csv = csv::WriterBuilder::new().has_headers(false).from_writer(&mut *out);
            csv.write_record(RECORD_HEADER).map_err(csv_error)?;
            let count = store
                .records(period.from_ms, period.to_ms, project, |record| {
                    csv.write_record(record_row(&record)).map_err(csv_error)
                })
                .await?;
            csv.flush()?;
            count
        }
    };
    out.flush()?;
    Ok(count)
}

/// What a chart shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Chart {
    /// The functions drawn (`project/function`).
    pub functions: Vec<String>,
    /// Records behind it.
    pub records: u64,
    /// Width of one time bucket, ms.
    pub bucket_ms: u64,
}

/// Per function, per bucket: (invocations, wall micros).
type Series = BTreeMap<String, Vec<(u64, u64)>>;

/// What a panel shows of a bucket.
type Measure = fn(&(u64, u64)) -> f64;

const BUCKETS: u64 = 60;
const WIDTH: u32 = 1200;
const HEIGHT: u32 = 800;
/// The font every chart is drawn with, bundled so that no system font is needed.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Draws invocations and wall time per function over `period` into `out` (`.png` or `.svg`).
pub async fn plot(
    store: &Store,
    period: Period,
    project: Option<&str>,
    out: &Path,
) -> Result<Chart, ReportError> {
    let mut rows: Vec<StoredRecord> = Vec::new();
    store
        .records(period.from_ms, period.to_ms, project, |r| {
            rows.push(r);
            Ok(())
        })
        .await?;
    if rows.is_empty() {
        return Err(ReportError::Empty(period.to_string()));
    }
    let (series, chart, from, bucket_ms, shown) = bucketed(&rows, period);

    let draw_error =
        |e: DrawError| ReportError::Draw { path: out.display().to_string(), reason: e.0 };
    let extension = out.extension().and_then(|e| e.to_str()).unwrap_or_default();
    // Both backends measure text with it. Registering twice (a second chart in one process) is
    // harmless.
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    match extension {
        "png" => {
            let root = BitMapBackend::new(out, (WIDTH, HEIGHT)).into_drawing_area();
            draw(&root, &series, from, bucket_ms, &shown, project).map_err(draw_error)?;
            root.present().map_err(|e| draw_error(DrawError(e.to_string())))?;
        }
        "svg" => {
            let root = SVGBackend::new(out, (WIDTH, HEIGHT)).into_drawing_area();
            draw(&root, &series, from, bucket_ms, &shown, project).map_err(draw_error)?;
            root.present().map_err(|e| draw_error(DrawError(e.to_string())))?;
        }
        _ => {
            return Err(draw_error(DrawError(
                "the file name must end in .png or .svg (that picks the format)".into(),
            )));
        }
    }
    Ok(chart)
}

/// The records' invocations and wall time per function, in time buckets over `period` (its
/// open ends closed by the records): the series, what the chart shows, the first bucket's
/// start, a bucket's width and the period drawn.
fn bucketed(rows: &[StoredRecord], period: Period) -> (Series, Chart, u64, u64, Period) {
    // An open end is where the records end.
    let from = if period.from_ms == 0 {
        rows.iter().map(|r| r.window_start_ms).min().unwrap_or(0)
    } else {
        period.from_ms
    };
    let to = if period.to_ms == OPEN_END {
        rows.iter().map(|r| r.window_start_ms + r.window_ms.max(1)).max().unwrap_or(from + 1)
    } else {
        period.to_ms
    };
    // A point is never narrower than a record's window (nor than a second).
    let widest = rows.iter().map(|r| r.window_ms).max().unwrap_or(1000);
    let bucket_ms = (to.saturating_sub(from)).div_ceil(BUCKETS).max(widest).max(1000);
    let buckets = (to.saturating_sub(from)).div_ceil(bucket_ms).max(1) as usize;
    let mut series: Series = BTreeMap::new();
    for r in rows {
        let line = series
            .entry(format!("{}/{}", r.project, r.function))
            .or_insert_with(|| vec![(0, 0); buckets]);
        let b = ((r.window_start_ms.saturating_sub(from)) / bucket_ms) as usize;
        let slot = &mut line[b.min(buckets - 1)];
        slot.0 += r.usage.invocations;
        slot.1 += r.usage.wall_micros;
    }
    let chart = Chart {
        functions: series.keys().cloned().collect(),
        records: rows.len() as u64,
        bucket_ms,
    };

    (series, chart, from, bucket_ms, Period { from_ms: from, to_ms: to })
}

/// The chart of `rows` over `period` as SVG text, to put inline in a page.
pub fn svg_chart(
    rows: &[StoredRecord],
    period: Period,
    project: Option<&str>,
) -> Result<String, ReportError> {
    if rows.is_empty() {
        return Err(ReportError::Empty(period.to_string()));
    }
    let (series, _, from, bucket_ms, shown) = bucketed(rows, period);
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let fail =
            |e: DrawError| ReportError::Draw { path: "the invoice's chart".into(), reason: e.0 };
        draw(&root, &series, from, bucket_ms, &shown, project).map_err(fail)?;
        root.present().map_err(|e| fail(DrawError(e.to_string())))?;
    }
    Ok(svg)
}

/// A bucket's start as a short UTC label.
fn time_label(ms: u64, span_ms: u64) -> String {
    let text =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string();
    if span_ms < 86_400_000 {
        text[11..19].to_string()
    } else {
        format!("{} {}", &text[..10], &text[11..16])
    }
}

/// Why plotters could not draw (its error type is generic over the backend).
#[derive(Debug)]
struct DrawError(String);

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    series: &Series,
    from: u64,
    bucket_ms: u64,
    period: &Period,
    project: Option<&str>,
) -> Result<(), DrawError>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| DrawError(e.to_string());
    root.fill(&WHITE).map_err(e)?;
    let title = match project {
        Some(p) => format!("Usage of {p}, {period}"),
        None => format!("Usage, {period}"),
    };
    let root = root.titled(&title, ("sans-serif", 22)).map_err(e)?;
    let (top, bottom) = root.split_vertically(HEIGHT / 2 - 20);
    let buckets = series.values().next().map_or(1, Vec::len);
    let span = bucket_ms * buckets as u64;
    let panels: [(&DrawingArea<DB, _>, &str, Measure); 2] = [
        (&top, "invocations", |b| b.0 as f64),
        (&bottom, "wall time (ms)", |b| b.1 as f64 / 1000.0),
    ];
    for (area, label, value) in panels {
        let max = series.values().flat_map(|v| v.iter().map(value)).fold(0.0f64, f64::max).max(1.0);
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .margin_right(40)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0..buckets, 0.0..max * 1.1)
            .map_err(e)?;
        chart
            .configure_mesh()
            .y_desc(label)
            .x_desc(format!("window start, {} s per point", bucket_ms / 1000))
            .x_labels(8)
            .x_label_formatter(&|b| time_label(from + *b as u64 * bucket_ms, span))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(e)?;
        for (i, (name, points)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(
                    LineSeries::new(
                        points.iter().enumerate().map(|(b, p)| (b, value(p))),
                        color.stroke_width(2),
                    )
                    // A dot per point: a period of one point is still drawn.
                    .point_size(3),
                )
                .map_err(e)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(e)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tau_proto::counters::Usage;

    use super::*;

    #[test]
    fn a_csv_record_row_matches_its_header() -> Result<(), Box<dyn std::error::Error>> {
        let record = StoredRecord {
            node: "12D3KooWnode".into(),
            seq: 7,
            project: "shop".into(),
            function: "pay".into(),
            window_start_ms: 1_000,
            window_ms: 60_000,
            usage: Usage {
                invocations: 11,
                errors: 1,
                wall_micros: 22,
                cpu_micros: 33,
                peak_memory: 44,
                bytes_in: 55,
                bytes_out: 66,
                ..Usage::default()
            },
            signature: vec![0xab],
            hash: [0xcd; 32],
        };
        let mut out = Vec::new();
        let mut csv = csv::WriterBuilder::new().has_headers(false).from_writer(&mut out);
        csv.write_record(record_row(&record))?;
        csv.flush()?;
        drop(csv);
        let text = String::from_utf8(out)?;
        let cells: Vec<&str> = text.trim_end().split(',').collect();
        assert_eq!(cells.len(), RECORD_HEADER.len(), "{text}");
        let at = |name: &str| RECORD_HEADER.iter().position(|h| *h == name).map(|i| cells[i]);
        assert_eq!(at("seq"), Some("7"));
        assert_eq!(at("invocations"), Some("11"));
        assert_eq!(at("bytes_out"), Some("66"));
        assert_eq!(at("signature"), Some("ab"));
        // The JSON export names the same fields, flat.
        let json: serde_json::Value = serde_json::to_value(&record)?;
        let keys: Vec<&str> =
            json.as_object().ok_or("an object")?.keys().map(|k| k.as_str()).collect();
        let mut header = RECORD_HEADER.to_vec();
        header.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, header);
        Ok(())
    }
}
