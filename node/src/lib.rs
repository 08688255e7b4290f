//! The Tau node: one libp2p peer per host that runs the cloud's protocols as services.
//!
//! # Layout
//!
//! - [`config`]: `node.yaml`, strictly parsed, every error naming the file and the field.
//! - [`p2p`]: the one task that owns the libp2p swarm (TCP + pnet + noise + yamux; identify,
//!   ping, kad, gossipsub, request-response) and the cloneable [`p2p::Handle`] others use. It
//!   serves the admin protocol `/tau/admin/1` from its own state.
//! - [`db`]: the embedded database (one redb file per service), its errors naming the file,
//!   a handle that saw an I/O error opened again.
//! - [`membership`]: who is a node: the operator's admission records, followed and handed to the
//!   p2p core and seer.
//! - [`resources`]: CPU, memory, load and disk, sampled in the background for `Info`.
//! - [`hoarder`]: the blob service (chunked store, pins, rendezvous placement, repair).
//! - [`tns`]: the registry service (redb store, gossip, anti-entropy, authorization).
//! - [`database`]: projects' key-value stores, replicated among the database nodes.
//! - [`seer`]: heartbeats of every node, node health, the DNS server.
//! - [`substrate`]: the function service (hyper gateway, wasmtime, signed execution counters);
//!   the only module that touches wasmtime.
//! - [`project`]: a project folder compiled into TNS records, and the plan of a push.
//! - [`node`]: starts the parts of a node from its config and stops them on a cancellation token.
//! - [`dev`]: the files of a local N-node cloud (`tau-node dev`).
//!
//! The binary (`src/main.rs` and `src/commands/`) only parses arguments and calls into this
//! library. Shared wire types and the light client live in `tau_proto`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs)]

pub mod admin;
pub mod config;
pub mod database;
pub mod db;
pub mod dev;
pub mod hoarder;
pub mod http_server;
pub mod logs;
pub mod membership;
pub mod metrics;
pub mod monkey;
pub mod node;
pub mod p2p;
pub mod patrick;
pub mod project;
pub mod resources;
pub mod seer;
pub mod substrate;
pub mod tns;
pub mod vault;

pub use config::NodeConfig;
pub use node::Node;
