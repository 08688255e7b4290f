//! End-to-end tests of Tau: the real binaries as separate processes talking over loopback (and,
//! as Spore Drive lands, over SSH hosts in network namespaces).
//!
//! The tests are in `tests/e2e/`, one integration binary with one module per story. This
//! library holds the helpers they share: finding (building) the binaries, running commands with
//! timeouts, waiting for conditions.
#![deny(missing_docs)]

pub mod bench;
pub mod git_host;
pub mod harness;
pub mod http_server;
pub mod lab;
pub mod otlp;
pub mod postgres;
pub mod receiver;
pub mod ssh_lab;
pub mod systemd_lab;
pub mod tmux;
