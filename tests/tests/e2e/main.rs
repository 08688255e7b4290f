//! End-to-end tests: real `tau-node` processes on loopback.

mod mesh;
mod node;
mod tns;
