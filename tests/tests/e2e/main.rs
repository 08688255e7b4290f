//! End-to-end tests: real `tau-node` processes on loopback.

mod billing;
mod blobs;
mod day_two;
mod git;
mod hoarder;
mod hostile;
mod keyvalue;
mod mesh;
mod node;
mod operate;
mod outbound;
mod proof;
mod q;
mod scale;
mod seer;
mod spore;
mod storage;
mod store;
mod story;
mod substrate;
mod systemd;
mod taucorder;
mod tns;
mod vault;
