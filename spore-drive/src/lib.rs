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
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(missing_docs)]

pub mod init;
pub mod playbook;
pub mod secrets;

pub use playbook::Playbook;
