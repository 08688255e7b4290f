//! The admin requests the p2p core does not answer itself: `Logs`, `Drain`, `AntiEntropy` and
//! `Repair` here, counter requests handed on to the node's counters (substrate's, or a ci
//! node's).
//!
//! All but the counters' are the operator's: every tenant holds the swarm key, and a node's log
//! names projects, peers and errors that are not theirs, while a drain takes the node out of
//! service. The caller is the operator when its peer id is the operator key (a client connected
//! with `--as-operator`). A node without an operator key (a dev cloud) admits anyone, and
//! answers anyone here too.

use std::sync::{Arc, OnceLock};

use libp2p::PeerId;
use tau_proto::admin::{AdminRequest, AdminResponse, AntiEntropyReport};
use tau_proto::identity::WriterKey;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::logs::Logs;
use crate::p2p::{self, Inbound};

type AdminInbound = Inbound<AdminRequest, AdminResponse>;

/// What the admin task serves from.
pub struct Parts {
    /// The p2p core: the task takes the admin requests it does not answer.
    pub handle: p2p::Handle,
    /// The operator key from `node.yaml`, if any.
    pub operator: Option<WriterKey>,
    /// The process's log buffers.
    pub logs: Arc<Logs>,
    /// Set to drain the node (its heartbeats then list no service).
    pub leaving: watch::Sender<bool>,
    /// Where counter requests go, on a node that keeps counters.
    pub counters: Option<mpsc::Sender<AdminInbound>>,
    /// The registry and hoarder, once they have started (after this task).
    pub services: Arc<Services>,
}

/// The services the operator's anti-entropy and repair reach, set as each starts.
#[derive(Default)]
pub struct Services {
    /// The registry, on a tns node.
    pub tns: OnceLock<crate::tns::Local>,
    /// Hoarder, on a hoarder node.
    pub hoarder: OnceLock<crate::hoarder::Local>,
}

/// Starts serving until `shutdown`.
pub async fn start(
    parts: Parts,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, p2p::Stopped> {
    let (inbox, mut requests) = mpsc::channel::<AdminInbound>(256);
    parts.handle.extend_admin(inbox).await?;
    Ok(tokio::spawn(async move {
        loop {
            let inbound = tokio::select! {
                _ = shutdown.cancelled() => break,
                inbound = requests.recv() => match inbound {
                    Some(inbound) => inbound,
                    None => break,
                },
            };
            parts.answer(inbound);
        }
    }))
}

impl Parts {
    fn is_operator(&self, peer: &PeerId) -> bool {
        match &self.operator {
            None => true,
            Some(operator) => WriterKey::of_peer(peer).as_ref() == Some(operator),
        }
    }

    fn answer(&self, inbound: AdminInbound) {
        let operator_only = matches!(
            inbound.request,
            AdminRequest::Logs(_)
                | AdminRequest::Drain
                | AdminRequest::AntiEntropy
                | AdminRequest::Repair(_)
        );
        if operator_only && !self.is_operator(&inbound.peer) {
            tracing::warn!(peer = %inbound.peer, "admin request refused: not the operator");
            let _ = inbound.reply.send(AdminResponse::Error(
                "only the operator may read this node's logs, drain it, run its anti-entropy or \
                 repair a pin (connect with the operator key: --as-operator)"
                    .into(),
            ));
            return;
        }
        match inbound.request {
            AdminRequest::Logs(query) => {
                // A follower waits for lines: each read in its own task.
                let logs = self.logs.clone();
                tokio::spawn(async move {
                    let page = logs.follow(&query).await;
                    let _ = inbound.reply.send(AdminResponse::Logs(page));
                });
            }
            AdminRequest::Drain => {
                let already = self.leaving.send_replace(true);
                if !already {
                    tracing::warn!(
                        by = %inbound.peer,
                        "draining: heartbeats list no service from now on; seer sends no more \
                         clients here and hoarder moves this node's replicas to others"
                    );
                }
                let _ = inbound.reply.send(AdminResponse::Draining { already });
            }
            AdminRequest::AntiEntropy => {
                let services = self.services.clone();
                tokio::spawn(async move {
                    tracing::info!(by = %inbound.peer, "anti-entropy at the operator's request");
                    let mut report = AntiEntropyReport::default();
                    if let Some(tns) = services.tns.get() {
                        tns.anti_entropy(&mut report).await;
                    }
                    if let Some(hoarder) = services.hoarder.get() {
                        report.hoarder_peers = hoarder.anti_entropy().await;
                    }
                    let _ = inbound.reply.send(AdminResponse::AntiEntropy(report));
                });
            }
            AdminRequest::Repair(cid) => {
                let answer = match self.services.hoarder.get() {
                    Some(hoarder) => AdminResponse::Repair(hoarder.repair(cid)),
                    None => AdminResponse::Error("this node does not run hoarder".into()),
                };
                let _ = inbound.reply.send(answer);
            }
            _ => match &self.counters {
                Some(counters) => {
                    if counters.try_send(inbound).is_err() {
                        tracing::warn!("counter requests busy: request dropped");
                    }
                }
                None => {
                    let message = "this node keeps no counters".to_string();
                    let _ = inbound.reply.send(AdminResponse::Error(message));
                }
            },
        }
    }
}
