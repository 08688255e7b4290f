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

pub mod collect;
pub mod store;
pub mod verify;
