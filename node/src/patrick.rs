//! patrick: takes push webhooks from a project's git host and queues one build job per pushed
//! commit (issue 24, in progress). This far: reading and checking a webhook
//! ([`webhook`]), and making a repository's deploy key ([`deploy_key`]).

pub mod deploy_key;
pub mod host_key;
pub mod webhook;
