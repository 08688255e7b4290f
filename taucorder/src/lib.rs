//! taucorder: what an operator looks at in a live Tau cloud.
//!
//! taucorder is a light client of the cloud (`--cloud cloud.yaml`, the profile Spore Drive or
//! `tau-node dev` writes): it joins with the swarm key and an ephemeral identity and asks the
//! nodes, never holding anything of its own.
//!
//! Layout:
//! - [`query`]: one connection to the cloud and the questions taucorder asks it (peers, nodes,
//!   registry records, hoarder pins, vault shares), answered as plain data that the commands
//!   print as JSON or YAML.
//! - [`usage`]: follows the substrate nodes' signed counter logs and sums each function's latest
//!   window.
//! - [`ui`]: the terminal UI: the app and its views, the key map, the network task, and the
//!   main loop (generic over the terminal backend, so tests drive it into a `TestBackend`).

pub mod query;
pub mod ui;
pub mod usage;
