//! The health check after a start: the new node process answers `Info` and, when other nodes
//! are known to run, sees at least one of them.

use std::time::{Duration, Instant};

use tau_proto::client::{Client, ClientError, ConnectOptions};

use super::Run;
use crate::host::Desired;

/// Why a started node is not healthy.
#[derive(Debug, thiserror::Error)]
pub(super) enum Unhealthy {
    /// Nothing connected yet.
    #[error("no answer yet")]
    NotYet,
    /// The node's address does not take a connection.
    #[error("no answer from {addr}: {source}")]
    NoConnection {
        /// The node's address.
        addr: String,
        /// Why.
        source: ClientError,
    },
    /// It does not answer `Info`.
    #[error("Info: {0}")]
    Info(ClientError),
    /// It answers but is still starting its services (one that fails to start exits).
    #[error("the node answers but has not started all its services")]
    Starting,
    /// Another, older process answers at its address.
    #[error("an older node process answers (up {0}s): the new one did not take its place")]
    Older(u64),
    /// It does not list its peers.
    #[error("peers: {0}")]
    Peers(ClientError),
    /// It answers but sees no other node.
    #[error("the node answers but sees no other node yet")]
    Alone,
    /// It sees no other node, and the hosts could not be admitted.
    #[error("the node sees no other node, and the hosts could not be admitted: {0}")]
    NotAdmitted(String),
    /// The time ran out; the last reason.
    #[error("{last} (after {secs}s)")]
    TimedOut {
        /// Why the last check failed.
        last: Box<Unhealthy>,
        /// The time it had.
        secs: u64,
    },
}

/// How often a starting node is asked whether it is healthy: its answer is a round trip on a
/// connection already open, and each poll saved is time the deploy waits for nothing.
const HEALTH_POLL: Duration = Duration::from_millis(100);

impl Run {
    /// Waits until the node started at `started` answers `Info` (and is that process, not an
    /// older one) and sees at least one other node when any other node is known to run.
    pub(super) async fn health(
        &self,
        desired: &Desired,
        started: Instant,
    ) -> Result<(), Unhealthy> {
        let deadline = started + self.options.health_timeout;
        let profile = self.profile_of(desired);
        let mut last = Unhealthy::NotYet;
        while Instant::now() < deadline {
            let options =
                ConnectOptions { timeout: Duration::from_secs(3), ..ConnectOptions::default() };
            let client = match Client::connect_with(&profile, options).await {
                Ok(client) => client,
                Err(source) => {
                    last = Unhealthy::NoConnection { addr: desired.p2p_addr.to_string(), source };
                    tokio::time::sleep(HEALTH_POLL).await;
                    continue;
                }
            };
            while Instant::now() < deadline {
                match self.check_once(&client, desired, started).await {
                    Ok(()) => return Ok(()),
                    Err(reason) => last = reason,
                }
                tokio::time::sleep(HEALTH_POLL).await;
            }
        }
        Err(Unhealthy::TimedOut {
            last: Box::new(last),
            secs: self.options.health_timeout.as_secs(),
        })
    }

    async fn check_once(
        &self,
        client: &Client,
        desired: &Desired,
        started: Instant,
    ) -> Result<(), Unhealthy> {
        let peer = desired.peer_id;
        let info = client.info(peer).await.map_err(Unhealthy::Info)?;
        if info.uptime_secs > started.elapsed().as_secs() + 2 {
            return Err(Unhealthy::Older(info.uptime_secs));
        }
        if !info.ready {
            return Err(Unhealthy::Starting);
        }
        let others =
            self.up.lock().map(|up| up.iter().any(|h| *h != desired.host.name)).unwrap_or(false);
        if !others {
            return Ok(());
        }
        let peers = client.peers(peer).await.map_err(Unhealthy::Peers)?;
        let nodes =
            peers.iter().filter(|p| p.agent.starts_with(tau_proto::NODE_AGENT_PREFIX)).count();
        if nodes == 0 {
            // Nodes list only admitted peers: on a first deploy, nobody has admitted the hosts
            // yet. Written once through whichever node takes them; a no-op after.
            if let Err(error) = self.admit_hosts(client).await {
                return Err(Unhealthy::NotAdmitted(error.to_string()));
            }
            return Err(Unhealthy::Alone);
        }
        Ok(())
    }
}
