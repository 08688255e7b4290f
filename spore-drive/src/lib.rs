//! Spore Drive: provisions hosts and installs the bundled Tau node, so that a provider has a
//! working cloud in minutes.
//!
//! # Layout
//!
//! - [`playbook`]: the playbook (cloud, shapes, hosts, transport), strictly parsed; every error
//!   names the file and the field.
//! - [`secrets`]: the cloud's secrets (swarm key, operator key, one identity per host, the
//!   vault key set and shares), generated once, 0600, never overwritten.
//! - [`init`]: `spore-drive init DIR`: a playbook to start from, and its secrets.
//! - [`host`]: what a host should hold (binary, `node.yaml`, secrets, the service) and the `sh`
//!   scripts that inspect and change it.
//! - [`shell`] and [`ssh`]: where those scripts run: over SSH (`russh`), or on this machine for
//!   the `local` transport; [`script`]: what both take and give (stdin, output, errors).
//! - [`deploy`]: the phases on every host (plan, deploy with health check and rollback, status,
//!   destroy), the vault key set, the cloud profile; [`progress`] shows them; [`state`] is what
//!   a deploy records for the next (`--retry-failed`).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs)]

pub mod deploy;
pub mod host;
pub mod init;
pub mod playbook;
pub mod progress;
pub mod script;
pub mod secrets;
pub mod shell;
pub mod ssh;
pub mod state;

pub use playbook::Playbook;
