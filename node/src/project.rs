//! Projects: a folder compiled into TNS records, and the plan that turns what a cloud has into
//! what the folder says.
//!
//! A project folder, as a config repository is in the original platform:
//!
//! ```text
//! config.yaml           id, name, description, branches (a git-operated project's)
//! functions/<name>.yaml id, description, trigger {type, method, paths}, domains, source,
//!                       execution {timeout, memory, call}
//!                       allowed_outbound_hosts, variables
//! databases/<name>.yaml id, functions (that may open it), size (a key-value store)
//! storages/<name>.yaml  id, functions (that may open it), size (named blobs)
//! <name>.wasm           the components the functions name as `source`
//! ```
//!
//! - [`spec`]: the YAML files, strictly parsed, every error naming the file and the field.
//! - [`compile`]: a folder into drafts: `/projects/<id>/config`, `/projects/<id>/functions/<name>`,
//!   `/domains/<fqdn>` and `/http/<fqdn>/<METHOD><path>`. Nothing reaches the network unless
//!   the whole folder compiles.
//! - [`plan`]: compares the drafts with the project's records in TNS: what to write, what to
//!   delete (tombstones), what is unchanged. Pushing the same folder twice writes nothing.

pub mod spec;

mod compile;
mod plan;

pub use compile::{Compiled, compile, compile_with, config_id};
pub use plan::{Plan, PlanError, plan};
