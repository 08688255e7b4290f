//! `node.yaml`: what one node is and does. The type lives in [`tau_proto::node_config`] so that
//! Spore Drive writes exactly the file the node reads.

pub use tau_proto::node_config::*;
