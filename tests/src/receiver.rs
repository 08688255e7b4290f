//! A billing system's ingest endpoint, for tests of `q push` and exports: checks every event
//! of a batch against the documented fields of its format (Stripe meter events, Lago batch
//! events, CloudEvents 1.0 batch mode), deduplicates by event id as the real systems do, and can
//! refuse a share of batches (503) or require a header.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use crate::harness::Result;

/// How the receiver behaves.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `cloudevents`, `stripe` or `lago`: check and deduplicate events of that shape; `None`
    /// acknowledges every batch at once, unread (for benchmarks).
    pub shape: Option<String>,
    /// The share of batches refused with 503 before being read, drawn at random.
    pub fail_ratio: f64,
    /// A header every batch must carry (name, value), else 401.
    pub require: Option<(String, String)>,
}

/// What the receiver saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Each event id acknowledged, and how many times it was sent in acknowledged batches.
    pub ids: HashMap<String, u32>,
    /// The events themselves, by id (the first copy).
    pub events: HashMap<String, Value>,
    /// Batches acknowledged.
    pub batches: u64,
    /// Batches refused on purpose (503).
    pub refused: u64,
    /// Batches refused for a missing or wrong header.
    pub unauthorized: u64,
    /// Events that did not have their format's fields, with why.
    pub invalid: Vec<String>,
    /// Bytes of every batch acknowledged.
    pub bytes: u64,
}

impl Seen {
    /// Events sent again after they were acknowledged (what deduplication absorbed).
    pub fn duplicates(&self) -> u64 {
        self.ids.values().map(|n| u64::from(n - 1)).sum()
    }
}

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:PORT/ingest`.
    pub url: String,
    seen: Arc<Mutex<Seen>>,
}

impl Receiver {
    /// Starts one on a free port; it runs until the process ends.
    pub fn start(options: Options) -> Result<Receiver> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let kept = Arc::clone(&seen);
        let base = crate::http_server::serve(move |request| {
            let mut seen = kept.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((name, value)) = &options.require
                && request.header(name) != Some(value.as_str())
            {
                seen.unauthorized += 1;
                return (401, "{\"error\":\"unauthorized\"}".into());
            }
            if options.fail_ratio > 0.0 && rand_unit() < options.fail_ratio {
                seen.refused += 1;
                return (503, "{\"error\":\"try again\"}".into());
            }
            let Some(shape) = &options.shape else {
                seen.batches += 1;
                seen.bytes += request.body.len() as u64;
                return (200, "{}".into());
            };
            match accept(shape, &request.body, request.header("content-type")) {
                Ok(events) => {
                    seen.batches += 1;
                    seen.bytes += request.body.len() as u64;
                    for (id, event) in events {
                        *seen.ids.entry(id.clone()).or_default() += 1;
                        seen.events.entry(id).or_insert(event);
                    }
                    (200, "{}".into())
                }
                Err(why) => {
                    seen.invalid.push(why.clone());
                    (400, serde_json::json!({ "error": why }).to_string())
                }
            }
        })?;
        Ok(Receiver { url: format!("{base}/ingest"), seen })
    }

    /// What it saw so far.
    pub fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A number in [0, 1) from the operating system's randomness (no generator crate needed).
fn rand_unit() -> f64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The events of a batch, checked, by id; or why the batch is refused.
pub fn accept(
    shape: &str,
    body: &[u8],
    content_type: Option<&str>,
) -> std::result::Result<Vec<(String, Value)>, String> {
    let batch: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let (events, wanted) = match shape {
        "lago" => (batch.get("events").and_then(Value::as_array), "application/json"),
        "cloudevents" => (batch.as_array(), "application/cloudevents-batch+json"),
        _ => (batch.as_array(), "application/json"),
    };
    if content_type != Some(wanted) {
        return Err(format!("content-type {content_type:?}, not {wanted}"));
    }
    let events = events.ok_or("not a batch of the format")?;
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let id = match shape {
            "stripe" => check_stripe(event),
            "lago" => check_lago(event),
            "cloudevents" => check_cloudevent(event),
            other => Err(format!("no format {other}")),
        }
        .map_err(|why| format!("{why}: {event}"))?;
        out.push((id, event.clone()));
    }
    Ok(out)
}

/// The object's keys must be exactly `keys`.
fn exactly(event: &Value, keys: &[&str]) -> std::result::Result<(), String> {
    let object = event.as_object().ok_or("not an object")?;
    let mut found: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut wanted = keys.to_vec();
    found.sort_unstable();
    wanted.sort_unstable();
    if found != wanted {
        return Err(format!("fields {found:?}, not {wanted:?}"));
    }
    Ok(())
}

fn text<'a>(event: &'a Value, key: &str, max: usize) -> std::result::Result<&'a str, String> {
    match event.get(key).and_then(Value::as_str) {
        Some(s) if !s.is_empty() && s.len() <= max => Ok(s),
        _ => Err(format!("`{key}` is not a string of 1-{max} characters")),
    }
}

/// Stripe's meter event: `event_name`, `payload` with `stripe_customer_id` and `value` (a
/// string of a whole number), `identifier` (up to 100 characters, the idempotency key) and
/// `timestamp` (Unix seconds).
pub fn check_stripe(event: &Value) -> std::result::Result<String, String> {
    exactly(event, &["event_name", "payload", "identifier", "timestamp"])?;
    text(event, "event_name", 100)?;
    let payload = &event["payload"];
    exactly(payload, &["stripe_customer_id", "value"])?;
    text(payload, "stripe_customer_id", 100)?;
    let value = text(payload, "value", 40)?;
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("payload.value `{value}` is not a whole number"));
    }
    if !event["timestamp"].is_u64() {
        return Err("`timestamp` is not Unix seconds".into());
    }
    Ok(text(event, "identifier", 100)?.to_string())
}

/// Lago's event: `transaction_id` (its idempotency key), `external_subscription_id`, `code`,
/// `timestamp` (Unix seconds) and `properties` (an object).
pub fn check_lago(event: &Value) -> std::result::Result<String, String> {
    exactly(
        event,
        &["transaction_id", "external_subscription_id", "code", "timestamp", "properties"],
    )?;
    text(event, "external_subscription_id", 255)?;
    text(event, "code", 255)?;
    if !event["timestamp"].is_u64() {
        return Err("`timestamp` is not Unix seconds".into());
    }
    if !event["properties"].is_object() {
        return Err("`properties` is not an object".into());
    }
    Ok(text(event, "transaction_id", 255)?.to_string())
}

/// A CloudEvent's required attributes (the full check is the JSON schema's, in the tests).
/// OpenMeter deduplicates by id and source; q's ids are unique across sources already.
pub fn check_cloudevent(event: &Value) -> std::result::Result<String, String> {
    if event["specversion"] != "1.0" {
        return Err("`specversion` is not 1.0".into());
    }
    text(event, "source", 2048)?;
    text(event, "type", 255)?;
    Ok(text(event, "id", 255)?.to_string())
}
