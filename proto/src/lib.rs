//! Tau's shared types: what every tool that talks to a cloud needs, and nothing heavier.
//!
//! # Layout
//!
//! - [`swarm_key`]: the cloud's pre-shared key (the `/key/swarm/psk/1.0.0/` file format).
//! - [`identity`]: who signs: [`identity::WriterKey`] and the key inside a node's peer id.
//! - [`cloud_secrets`]: the secrets a cloud is made with (swarm key, operator key, identities,
//!   vault key set and shares), laid out and checked the same way by `tau-node dev` and Spore
//!   Drive.
//! - [`keyfile`]: ed25519 key files (node identities, the operator key), written with mode 0600.
//! - [`profile`]: the cloud profile (`cloud.yaml`) that every client takes with `--cloud FILE`.
//! - [`yaml`]: strict YAML loading with errors that name the file and the field.
//! - [`admin`]: the `/tau/admin/1` request and response types.
//! - [`hoarder`]: blob ids (CIDv1, BLAKE3), manifests, `/tau/hoarder/1` types, heartbeats.
//! - [`tns`]: the registry's records, keys, values and `/tau/tns/1` types.
//! - [`counters`]: signed execution counter records (substrate signs them, q collects them).
//! - [`seer`]: signed heartbeats, node health, `/tau/seer/1` types, domain validation tokens.
//! - [`vault`]: threshold encryption of secrets (dealing, encrypting, checking and combining
//!   shares) and owner-signed requests.
//! - [`protocol`]: what a protocol is ([`protocol::Protocol`], [`protocol::Topic`]): one type
//!   each, served and called through one generic path.
//! - [`cbor`]: the encoding of every wire message and value.
//! - [`net`]: the transport every peer uses (TCP + pnet + noise + yamux) and [`net::rpc`], the
//!   one behaviour that carries every request-response protocol.
//! - [`client`]: the light client ([`Client::connect`]) used by `tau-node status`, taucorder and q.
//! - [`text`]: text from the network made safe to print (control characters escaped).
//! - [`bench`]: benchmark figures, as every benchmark hands them to the report.
//!
//! This crate exists so that light clients do not link the node's heavy dependencies (wasmtime,
//! databases) just to share its types.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs)]

pub mod admin;
pub mod bench;
pub mod bytes;
pub mod cbor;
pub mod client;
pub mod cloud_secrets;
pub mod counters;
pub mod database;
pub mod git;
pub mod hoarder;
pub mod identity;
pub mod keyfile;
pub mod kv;
pub mod logs;
pub mod membership;
pub mod net;
pub mod node_config;
pub mod outbound;
pub mod profile;
pub mod protocol;
pub mod seer;
pub mod storage;
pub mod swarm_key;
pub mod text;
pub mod tns;
pub mod vault;
pub mod yaml;

pub use client::Client;
pub use profile::CloudProfile;
pub use swarm_key::SwarmKey;

/// The version of the Tau crates, as reported in `Info` and identify.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The identify agent prefix of a Tau node; light clients use [`CLIENT_AGENT_PREFIX`].
pub const NODE_AGENT_PREFIX: &str = "tau-node/";

/// The identify agent prefix of a light client.
pub const CLIENT_AGENT_PREFIX: &str = "tau-client/";
