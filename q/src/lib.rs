//! q: turns the execution counters that Tau's substrate nodes sign into numbers a billing system
//! or a contract can trust.
//!
//! Layout:
//! - [`store`]: where collected records live: a SQLite file by default, PostgreSQL by URL; one
//!   schema and one set of queries for both; each (node, seq) stored once, each batch in one
//!   transaction with the node's cursor.
//! - [`verify`]: batched ed25519 verification of counter records, record by record only to find
//!   the bad ones.
//! - [`collect`]: asks every substrate node for its records since q's cursor, sorts each page
//!   (verified, kept aside, gaps), stores it, then acknowledges it to the node.
//! - [`events`]: usage events (one per record and additive figure, ids from node, sequence and
//!   figure) in the shapes of CloudEvents 1.0, Stripe's meter events and Lago's batch events.
//! - [`invoice`]: an HTML invoice of a project's period, its amounts those of a priced proof.
//! - [`push`]: sends those events to a billing system in batches, moving a per-target cursor
//!   only after the receiver acknowledged a batch.
//! - [`proof`]: the Merkle sum tree over a period's line items (priced with a rate card, or
//!   not), the EIP-712 statement q signs with its [`key`], amendments for late records, and the
//!   offline check of a proof file.
//! - [`rates`]: rate cards (`rates.yaml`) and exact charges (integers, rounded once, half up).
//! - [`report`]: exports (CSV, JSON) and charts (PNG, SVG, with a bundled font).
//! - [`alerts`]: thresholds on a project's usage over a sliding window, posted to a webhook
//!   once when crossed and once when cleared.
//! - [`status`]: the nodes (online, capacity, load) and how far behind q is on each.
//! - [`metrics`]: q's own metrics to an OpenTelemetry collector (`--otlp`).
//! - [`period`]: `FROM..TO` on the command line.

pub mod alerts;
pub mod collect;
pub mod events;
pub mod invoice;
pub mod key;
pub mod metrics;
pub mod period;
pub mod proof;
pub mod push;
pub mod rates;
pub mod report;
pub mod status;
pub mod store;
pub mod verify;
