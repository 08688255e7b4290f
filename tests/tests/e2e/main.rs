//! End-to-end tests: real `tau-node` processes on loopback.

mod hoarder;
mod mesh;
mod node;
mod q;
mod seer;
mod spore;
mod substrate;
mod taucorder;
mod tns;
mod vault;
