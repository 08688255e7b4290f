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

/// Each figure's event name (its meter in the billing system), in [`FIGURES`]' order.
const EVENT_NAMES: [&str; 13] = [
    "tau_invocations",
    "tau_errors",
    "tau_wall_micros",
    "tau_cpu_micros",
    "tau_bytes_in",
    "tau_bytes_out",
    "tau_kv_reads",
    "tau_kv_writes",
    "tau_storage_read_bytes",
    "tau_storage_written_bytes",
    "tau_outbound_requests",
    "tau_outbound_sent_bytes",
    "tau_outbound_received_bytes",
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
    /// Its event name: `tau_` and the figure.
    pub name: &'static str,
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
        .zip(EVENT_NAMES)
        .filter_map(|((figure, get), name)| {
            let value = get(&record.usage);
            (value > 0).then(|| UsageEvent {
                id: event_id(&record.node, record.seq, figure),
                project: record.project.clone(),
                function: record.function.clone(),
                figure,
                name,
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
        let mut json = Vec::new();
        self.write(&mut json, event, customer).expect("writing to memory does not fail");
        serde_json::from_slice(&json).expect("q writes JSON")
    }

    /// Writes one event for `customer` as JSON, straight from the event (no value tree).
    pub fn write(
        self,
        out: &mut (impl std::io::Write + ?Sized),
        event: &UsageEvent,
        customer: &str,
    ) -> std::io::Result<()> {
        let written = match self {
            Shape::Cloudevents => serde_json::to_writer(out, &cloudevent_of(event, customer)),
            Shape::Stripe => serde_json::to_writer(out, &StripeEvent::of(event, customer)),
            Shape::Lago => serde_json::to_writer(out, &LagoEvent::of(event, customer)),
        };
        written.map_err(std::io::Error::other)
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
pub fn cloudevent_of(event: &UsageEvent, customer: &str) -> cloudevents::Event {
    use cloudevents::{EventBuilder, EventBuilderV10};
    let time = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(event.timestamp_ms as i64)
        .unwrap_or_default();
    let data = serde_json::to_value(Properties::of(event)).expect("plain data");
    EventBuilderV10::new()
        .id(event.id.as_str())
        .source(format!("tau:node:{}", event.node))
        .ty(event.name)
        .subject(customer)
        .time(time)
        .data("application/json", data)
        .build()
        .expect("the id, source, type and time are always given")
}

/// [`cloudevent_of`] as JSON.
pub fn cloudevent(event: &UsageEvent, customer: &str) -> Value {
    Shape::Cloudevents.render(event, customer)
}

/// A count written as a JSON string (Stripe takes a meter event's value so).
struct Text(u64);

impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// A Stripe meter event (`POST /v1/billing/meter_events`): the meter's event name, the
/// customer and the value in the payload, the id as its idempotency `identifier`, the time in
/// Unix seconds.
#[derive(serde::Serialize)]
struct StripeEvent<'a> {
    event_name: &'a str,
    payload: StripePayload<'a>,
    identifier: &'a str,
    timestamp: u64,
}

#[derive(serde::Serialize)]
struct StripePayload<'a> {
    stripe_customer_id: &'a str,
    value: Text,
}

impl<'a> StripeEvent<'a> {
    fn of(event: &'a UsageEvent, customer: &'a str) -> Self {
        StripeEvent {
            event_name: event.name,
            payload: StripePayload { stripe_customer_id: customer, value: Text(event.value) },
            identifier: &event.id,
            timestamp: event.timestamp_ms / 1000,
        }
    }
}

/// A Lago event (`POST /api/v1/events/batch` takes `{"events": [...]}` of them): the id as its
/// idempotent `transaction_id`, the subscription, the billable metric's code, Unix seconds, and
/// the value with where it came from in `properties`.
#[derive(serde::Serialize)]
struct LagoEvent<'a> {
    transaction_id: &'a str,
    external_subscription_id: &'a str,
    code: &'a str,
    timestamp: u64,
    properties: Properties<'a>,
}

/// The value and where it came from.
#[derive(serde::Serialize)]
struct Properties<'a> {
    value: u64,
    project: &'a str,
    function: &'a str,
    node: &'a str,
    seq: u64,
}

impl<'a> Properties<'a> {
    fn of(event: &'a UsageEvent) -> Self {
        Properties {
            value: event.value,
            project: &event.project,
            function: &event.function,
            node: &event.node,
            seq: event.seq,
        }
    }
}

impl<'a> LagoEvent<'a> {
    fn of(event: &'a UsageEvent, subscription: &'a str) -> Self {
        LagoEvent {
            transaction_id: &event.id,
            external_subscription_id: subscription,
            code: event.name,
            timestamp: event.timestamp_ms / 1000,
            properties: Properties::of(event),
        }
    }
}

/// A Stripe meter event as JSON.
pub fn stripe(event: &UsageEvent, customer: &str) -> Value {
    Shape::Stripe.render(event, customer)
}

/// A Lago event as JSON.
pub fn lago(event: &UsageEvent, subscription: &str) -> Value {
    Shape::Lago.render(event, subscription)
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
