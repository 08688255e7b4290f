//! Usage events for billing systems: one event per signed record and additive figure (peak
//! memory is a maximum, not a sum, so it is not one), in the shapes CloudEvents 1.0 (OpenMeter's
//! ingest format), Stripe's meter events and Lago's batch events take.
//!
//! Every event's id is derived from the record's node, its sequence number and the figure
//! ([`event_id`]), never from when it was sent: a resend carries the same ids, and a receiver
//! that deduplicates by id counts each event exactly once.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};
use tau_proto::counters::Usage;
use tau_proto::yaml::{self, YamlError};

use crate::store::StoredRecord;

/// Reads one figure of a record's usage.
pub type Figure = fn(&Usage) -> u64;

/// The additive figures, by the name an event carries (`tau_<name>` as its meter).
pub const FIGURES: [(&str, Figure); 13] = [
    ("invocations", |u| u.invocations),
    ("errors", |u| u.errors),
    ("wall_micros", |u| u.wall_micros),
    ("cpu_micros", |u| u.cpu_micros),
    ("bytes_in", |u| u.bytes_in),
    ("bytes_out", |u| u.bytes_out),
    ("kv_reads", |u| u.kv_reads),
    ("kv_writes", |u| u.kv_writes),
    ("storage_read_bytes", |u| u.storage_read_bytes),
    ("storage_written_bytes", |u| u.storage_written_bytes),
    ("outbound_requests", |u| u.outbound_requests),
    ("outbound_sent_bytes", |u| u.outbound_sent_bytes),
    ("outbound_received_bytes", |u| u.outbound_received_bytes),
];

/// One figure of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEvent {
    /// Its id ([`event_id`]).
    pub id: String,
    /// The project.
    pub project: String,
    /// The function.
    pub function: String,
    /// The figure's name ([`FIGURES`]).
    pub figure: &'static str,
    /// Its value.
    pub value: u64,
    /// The start of the record's window, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// The node that signed the record.
    pub node: String,
    /// The record's sequence number on it.
    pub seq: u64,
}

/// The id of `figure` of the record `seq` of `node`: `tau-` and 32 hex digits of keccak256
/// over the three, the same however often it is computed.
pub fn event_id(node: &str, seq: u64, figure: &str) -> String {
    let input = format!("tau/q/event/1\0{node}\0{seq}\0{figure}");
    let hash = alloy_primitives::keccak256(input.as_bytes());
    format!("tau-{}", hex::encode(&hash[..16]))
}

/// The events of a record: one per additive figure that is not zero.
pub fn events_of(record: &StoredRecord) -> Vec<UsageEvent> {
    FIGURES
        .iter()
        .filter_map(|(figure, get)| {
            let value = get(&record.usage);
            (value > 0).then(|| UsageEvent {
                id: event_id(&record.node, record.seq, figure),
                project: record.project.clone(),
                function: record.function.clone(),
                figure,
                value,
                timestamp_ms: record.window_start_ms,
                node: record.node.clone(),
                seq: record.seq,
            })
        })
        .collect()
}

/// Who pays for each project, in the billing system (`customers.yaml`):
///
/// ```yaml
/// projects:
///   example: cus_NffrFeUfNV2Hib     # Stripe: the customer; Lago: the subscription's external id
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customers {
    /// Project to the billing system's id.
    pub projects: BTreeMap<String, String>,
    #[serde(skip)]
    path: String,
}

/// A project the customers file does not name.
#[derive(Debug, thiserror::Error)]
#[error("{path} names no customer for project `{project}`: add `{project}: <id>` under `projects`")]
pub struct NoCustomer {
    /// The file.
    pub path: String,
    /// The project.
    pub project: String,
}

impl Customers {
    /// Loads `customers.yaml` strictly; every id is 1-100 characters without spaces.
    pub fn load(path: &Path) -> Result<Customers, YamlError> {
        Customers::check(yaml::load(path)?, path)
    }

    /// Parses a customers file's text (`path` only names it in messages).
    pub fn parse(text: &str, path: &Path) -> Result<Customers, YamlError> {
        Customers::check(yaml::parse(text, path)?, path)
    }

    fn check(mut customers: Customers, path: &Path) -> Result<Customers, YamlError> {
        for (project, id) in &customers.projects {
            if id.is_empty() || id.len() > 100 || id.chars().any(char::is_whitespace) {
                return Err(YamlError::invalid(
                    path,
                    format!("projects.{project}"),
                    "an id of 1-100 characters without spaces",
                ));
            }
        }
        customers.path = path.display().to_string();
        Ok(customers)
    }

    /// The billing system's id for `project`.
    pub fn of(&self, project: &str) -> Result<&str, NoCustomer> {
        self.projects
            .get(project)
            .map(String::as_str)
            .ok_or_else(|| NoCustomer { path: self.path.clone(), project: project.to_string() })
    }
}

/// The billing systems' shapes of an event and of a batch of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// CloudEvents 1.0, JSON batch mode (OpenMeter's ingest).
    Cloudevents,
    /// Stripe meter events.
    Stripe,
    /// Lago batch events.
    Lago,
}

impl Shape {
    /// One event for `customer` (the billing system's id of the project's payer).
    pub fn render(self, event: &UsageEvent, customer: &str) -> Value {
        match self {
            Shape::Cloudevents => cloudevent(event, customer),
            Shape::Stripe => stripe(event, customer),
            Shape::Lago => lago(event, customer),
        }
    }

    /// What a batch of events is sent as: a JSON array, or Lago's `{"events": [...]}`.
    pub fn batch(self, events: Vec<Value>) -> Value {
        match self {
            Shape::Lago => json!({ "events": events }),
            _ => Value::Array(events),
        }
    }

    /// A batch's media type.
    pub fn content_type(self) -> &'static str {
        match self {
            Shape::Cloudevents => "application/cloudevents-batch+json",
            _ => "application/json",
        }
    }

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Cloudevents => "cloudevents",
            Shape::Stripe => "stripe",
            Shape::Lago => "lago",
        }
    }
}

/// A CloudEvents 1.0 event, built and checked by the CloudEvents SDK: the event id; the node
/// that signed the record as `source` (id and source are what a receiver deduplicates by);
/// `tau_<figure>` as `type`; the customer as `subject` (OpenMeter's subject); the window's
/// start as `time`; the value with where it came from as JSON `data`.
pub fn cloudevent(event: &UsageEvent, customer: &str) -> Value {
    use cloudevents::{EventBuilder, EventBuilderV10};
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(event.timestamp_ms);
    let built = EventBuilderV10::new()
        .id(event.id.clone())
        .source(format!("tau:node:{}", event.node))
        .ty(format!("tau_{}", event.figure))
        .subject(customer)
        .time(humantime::format_rfc3339_millis(time).to_string())
        .data(
            "application/json",
            json!({
                "value": event.value,
                "project": event.project,
                "function": event.function,
                "node": event.node,
                "seq": event.seq,
            }),
        )
        .build()
        .expect("the id, source, type and an RFC 3339 time are always given");
    serde_json::to_value(built).expect("an event serializes")
}

/// A Stripe meter event (`POST /v1/billing/meter_events`): the meter's event name, the
/// customer and the value in the payload, the id as its idempotency `identifier`, the time in
/// Unix seconds.
pub fn stripe(event: &UsageEvent, customer: &str) -> Value {
    json!({
        "event_name": format!("tau_{}", event.figure),
        "payload": {
            "stripe_customer_id": customer,
            "value": event.value.to_string(),
        },
        "identifier": event.id,
        "timestamp": event.timestamp_ms / 1000,
    })
}

/// A Lago event (`POST /api/v1/events/batch` takes `{"events": [...]}` of them): the id as its
/// idempotent `transaction_id`, the subscription, the billable metric's code, Unix seconds, and
/// the value with where it came from in `properties`.
pub fn lago(event: &UsageEvent, subscription: &str) -> Value {
    json!({
        "transaction_id": event.id,
        "external_subscription_id": subscription,
        "code": format!("tau_{}", event.figure),
        "timestamp": event.timestamp_ms / 1000,
        "properties": {
            "value": event.value,
            "project": event.project,
            "function": event.function,
            "node": event.node,
            "seq": event.seq,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(node: &str, seq: u64) -> StoredRecord {
        StoredRecord {
            node: node.into(),
            seq,
            project: "shop".into(),
            function: "checkout".into(),
            window_start_ms: 1_796_342_460_000,
            window_ms: 60_000,
            usage: Usage {
                invocations: 3,
                wall_micros: 1_500,
                peak_memory: 1 << 20,
                kv_writes: 2,
                ..Usage::default()
            },
            signature: vec![0; 64],
            hash: [0; 32],
        }
    }

    #[test]
    fn a_record_gives_one_event_per_nonzero_additive_figure_with_stable_ids() {
        let events = events_of(&record("node-a", 7));
        let figures: Vec<_> = events.iter().map(|e| (e.figure, e.value)).collect();
        assert_eq!(figures, [("invocations", 3), ("wall_micros", 1_500), ("kv_writes", 2)]);
        assert_eq!(events_of(&record("node-a", 7)), events, "the same ids every time");
        let ids: std::collections::HashSet<String> = [
            event_id("node-a", 7, "invocations"),
            event_id("node-a", 7, "wall_micros"),
            event_id("node-a", 8, "invocations"),
            event_id("node-b", 7, "invocations"),
        ]
        .into();
        assert_eq!(ids.len(), 4, "node, sequence and figure each change the id");
        assert!(events[0].id.starts_with("tau-") && events[0].id.len() == 36);
    }

    #[test]
    fn stripe_and_lago_events_have_their_documented_fields() {
        let event = &events_of(&record("node-a", 7))[0];
        let stripe = stripe(event, "cus_123");
        assert_eq!(stripe["event_name"], "tau_invocations");
        assert_eq!(stripe["payload"]["stripe_customer_id"], "cus_123");
        assert_eq!(stripe["payload"]["value"], "3", "Stripe takes the value as a string");
        assert_eq!(stripe["identifier"], event.id);
        assert_eq!(stripe["timestamp"], 1_796_342_460);
        let cloud = cloudevent(event, "cus_123");
        assert_eq!(cloud["specversion"], "1.0");
        assert_eq!(cloud["id"], event.id);
        assert_eq!(cloud["type"], "tau_invocations");
        assert_eq!(cloud["subject"], "cus_123");
        assert_eq!(cloud["source"], "tau:node:node-a");
        assert_eq!(cloud["time"], "2026-12-04T00:01:00Z");
        assert_eq!(cloud["datacontenttype"], "application/json");
        assert_eq!(cloud["data"]["value"], 3);
        let lago = lago(event, "sub_9");
        assert_eq!(lago["transaction_id"], event.id);
        assert_eq!(lago["external_subscription_id"], "sub_9");
        assert_eq!(lago["code"], "tau_invocations");
        assert_eq!(lago["timestamp"], 1_796_342_460);
        assert_eq!(lago["properties"]["value"], 3);
    }

    #[test]
    fn a_project_without_a_customer_is_named_with_the_file() {
        let path = Path::new("billing/customers.yaml");
        let customers = Customers::parse("projects:\n  shop: cus_123\n", path).unwrap();
        assert_eq!(customers.of("shop").unwrap(), "cus_123");
        let missing = customers.of("blog").unwrap_err().to_string();
        assert!(
            missing.contains("billing/customers.yaml") && missing.contains("`blog`"),
            "{missing}"
        );
        let bad = Customers::parse("projects:\n  shop: 'cus 123'\n", path).unwrap_err();
        assert!(bad.to_string().contains("projects.shop"), "{bad}");
        let typo = Customers::parse("project:\n  shop: cus_123\n", path).unwrap_err();
        assert!(typo.to_string().contains("project"), "{typo}");
    }
}
