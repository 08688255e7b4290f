//! `status`: each host's node as it is: installed version, running, answering, peers seen.

use std::time::Duration;

use serde::Serialize;
use tau_proto::client::{Client, ConnectOptions};

use super::{Run, run, strip_host};
use crate::host::Desired;
use crate::script::Stdin;

/// What `status` reports for one host.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    /// The host's name in the playbook.
    pub host: String,
    /// Its address.
    pub address: String,
    /// Whether a connection succeeded.
    pub reachable: bool,
    /// The installed node's version.
    pub version: Option<String>,
    /// Whether its supervisor (or unit) runs.
    pub running: bool,
    /// Whether the node answered.
    pub healthy: bool,
    /// How many other nodes it sees.
    pub peers: Option<usize>,
    /// What went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Run {
    /// One host's status.
    pub async fn status_host(&self, desired: &Desired) -> HostStatus {
        let mut status = HostStatus {
            host: desired.host.name.clone(),
            address: desired.host.address.to_string(),
            reachable: false,
            version: None,
            running: false,
            healthy: false,
            peers: None,
            error: None,
        };
        let conn = match self.connect(desired, true).await {
            Ok(conn) => conn,
            Err(e) => {
                status.error = Some(strip_host(&e.to_string()));
                return status;
            }
        };
        status.reachable = true;
        let script = desired.status_script();
        match run(&conn, "status", &script, Stdin::Null, self.options.command_timeout).await {
            Ok(output) => {
                for line in output.text().lines() {
                    match line.split_once('=') {
                        Some(("version", v)) if !v.trim().is_empty() => {
                            status.version = Some(v.trim().to_string())
                        }
                        Some(("running", r)) => status.running = r.trim() == "1",
                        _ => {}
                    }
                }
            }
            Err(e) => status.error = Some(e.reason),
        }
        conn.close().await;
        if status.running {
            let options =
                ConnectOptions { timeout: Duration::from_secs(5), ..ConnectOptions::default() };
            match Client::connect_with(&self.profile_of(desired), options).await {
                Ok(client) => match client.peers(desired.peer_id).await {
                    Ok(peers) => {
                        status.healthy = true;
                        status.peers = Some(
                            peers
                                .iter()
                                .filter(|p| p.agent.starts_with(tau_proto::NODE_AGENT_PREFIX))
                                .count(),
                        );
                    }
                    Err(e) => status.error = Some(format!("node does not answer: {e}")),
                },
                Err(e) => status.error = Some(format!("node does not answer: {e}")),
            }
        }
        status
    }
}
