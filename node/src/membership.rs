//! The node's view of who is a node ([`tau_proto::membership`]): the operator's admission
//! records, checked against the operator key, kept newest per peer, and handed to the p2p core
//! (which lists, believes, hears and answers only admitted peers) and to the services that
//! decide by them (seer).
//!
//! Records arrive three ways: from the node's own registry when it runs tns (every `/nodes/`
//! record it stores, which the node then gossips), over the `tau/members/1` topic, and by asking
//! a connected node for its set: often while the node starts, then every
//! [`PULL_EVERY`] (one digest when nothing changed). A node without an operator key admits
//! everyone, as before admission existed, and says so in its log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use rand::seq::IndexedRandom;
use tau_proto::cbor;
use tau_proto::identity::WriterKey;
use tau_proto::membership::{
    Admitted, MemberError, Members, MembersProtocol, MembersRequest, MembersResponse, MembersTopic,
};
use tau_proto::tns::{Record, keys};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::p2p::{self, GossipError, GossipMessage, Inbound, Verdict};
use crate::tns;

/// How often a node asks a peer for admission records once it has started.
pub const PULL_EVERY: Duration = Duration::from_secs(5);
/// How often it asks while it starts ([`FAST_FOR`]), or while it knows no node.
const PULL_FAST: Duration = Duration::from_millis(500);
/// How soon it looks again for a peer to ask while it starts and is connected to none.
const PULL_FIRST: Duration = Duration::from_millis(50);
const FAST_FOR: Duration = Duration::from_secs(30);
/// The most records one gossip message may carry.
const MAX_GOSSIP_RECORDS: usize = 1_000;

/// Why membership could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The topic could not be joined or the protocol served.
    #[error("membership: {0}")]
    P2p(#[from] GossipError),
    /// The node's registry could not be read.
    #[error("membership: {0}")]
    Registry(#[from] crate::db::DbError),
}

/// Who a node admits before it has heard a record: everyone without an operator key (said in
/// the log), else nobody.
pub fn initial(operator: Option<&WriterKey>) -> Admitted {
    match operator {
        Some(_) => Admitted::Listed(Arc::default()),
        None => Admitted::Open,
    }
}

/// Starts following admission records (signed by `operator`), from the node's own registry
/// `local` too when it runs tns. The returned watch follows who is admitted. Without an operator
/// key nothing starts and everyone stays admitted.
pub async fn start(
    handle: p2p::Handle,
    operator: Option<WriterKey>,
    local: Option<tns::Local>,
    shutdown: CancellationToken,
) -> Result<(Option<JoinHandle<()>>, watch::Receiver<Admitted>), MembershipError> {
    let Some(operator) = operator else {
        tracing::warn!(
            "no operator_key in node.yaml: every peer with the swarm key counts as a node"
        );
        return Ok((None, watch::channel(Admitted::Open).1));
    };
    let (inbox, requests) = mpsc::channel(64);
    handle.serve::<MembersProtocol>(inbox).await.map_err(|e| MembershipError::P2p(e.into()))?;
    let gossip = handle.subscribe::<MembersTopic>().await?;
    let mut follower = Follower {
        handle: handle.clone(),
        members: Members::new(operator),
        changes: local.as_ref().map(tns::Local::changes),
        local,
        admitted: watch::channel(initial(Some(&operator))).0,
        me: handle.peer_id(),
        admitted_self: false,
    };
    follower.load_local()?;
    follower.publish_admitted().await;
    let admitted = follower.admitted.subscribe();
    let task = tokio::spawn(follower.run(requests, gossip, shutdown));
    Ok((Some(task), admitted))
}

type Pull = BoxFuture<'static, (PeerId, Result<MembersResponse, p2p::RequestError>)>;

struct Follower {
    handle: p2p::Handle,
    members: Members,
    local: Option<tns::Local>,
    changes: Option<broadcast::Receiver<Arc<[String]>>>,
    admitted: watch::Sender<Admitted>,
    me: PeerId,
    admitted_self: bool,
}

impl Follower {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Inbound<MembersRequest, MembersResponse>>,
        mut gossip: mpsc::Receiver<GossipMessage>,
        shutdown: CancellationToken,
    ) {
        let started = Instant::now();
        let mut pulls: FuturesUnordered<Pull> = FuturesUnordered::new();
        let mut next_pull = tokio::time::Instant::now();
        loop {
            let changes = async {
                match self.changes.as_mut() {
                    Some(changes) => changes.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(inbound) = requests.recv() => {
                    let answer = match inbound.request {
                        MembersRequest::Records { digest } if digest == self.members.digest() => {
                            MembersResponse::Same
                        }
                        MembersRequest::Records { .. } => {
                            MembersResponse::Records(self.members.records())
                        }
                        _ => MembersResponse::Error("unsupported members request".into()),
                    };
                    let _ = inbound.reply.send(answer);
                }
                Some(message) = gossip.recv() => {
                    let verdict = self.receive(&message.data).await;
                    if self.handle.validate(message.id, verdict).await.is_err() {
                        break;
                    }
                }
                changed = changes => match changed {
                    Ok(keys) => self.registry_changed(&keys).await,
                    // Missed some: read them all again.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Err(error) = self.load_local() {
                            tracing::warn!(%error, "cannot read admission records");
                        }
                        self.publish_admitted().await;
                    }
                    Err(broadcast::error::RecvError::Closed) => self.changes = None,
                },
                Some((peer, answer)) = pulls.next(), if !pulls.is_empty() => {
                    self.pulled(peer, answer).await;
                }
                () = tokio::time::sleep_until(next_pull), if pulls.is_empty() => {
                    // Often only while this node starts and is not admitted yet.
                    let fast = (started.elapsed() < FAST_FOR && !self.admitted_self)
                        || self.members.admitted().is_empty();
                    let pull = self.pull().await;
                    // No peer yet: ask the first one as soon as it connects.
                    let wait = match (&pull, fast) {
                        (None, true) => PULL_FIRST,
                        (_, true) => PULL_FAST,
                        (_, false) => PULL_EVERY,
                    };
                    next_pull = tokio::time::Instant::now() + wait;
                    if let Some(pull) = pull {
                        pulls.push(pull);
                    }
                }
            }
        }
        tracing::debug!("membership stopped");
    }

    /// Reads every admission record of the node's own registry.
    fn load_local(&mut self) -> Result<(), crate::db::DbError> {
        let Some(local) = &self.local else { return Ok(()) };
        for record in local.list_with_tombstones(keys::NODES)? {
            if let Err(error) = self.members.apply(record) {
                tracing::warn!(%error, "admission record in the registry not taken");
            }
        }
        Ok(())
    }

    /// Takes the admission records among the keys the registry just stored, and gossips them.
    async fn registry_changed(&mut self, changed: &[String]) {
        let Some(local) = &self.local else { return };
        let mut news = Vec::new();
        for key in changed.iter().filter(|k| k.starts_with(keys::NODES)) {
            match local.get(key) {
                Ok(Some(record)) => match self.members.apply(record.clone()) {
                    Ok(true) => news.push(record),
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, "admission record not taken"),
                },
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "cannot read an admission record"),
            }
        }
        if news.is_empty() {
            return;
        }
        self.publish_admitted().await;
        for batch in news.chunks(MAX_GOSSIP_RECORDS) {
            let data = match cbor::to_vec(&batch) {
                Ok(data) => data,
                Err(error) => {
                    tracing::error!(%error, "cannot encode admission records");
                    continue;
                }
            };
            if let Err(error) = self.handle.publish::<MembersTopic>(data).await {
                // Peers ask for the set often enough to learn it anyway.
                tracing::debug!(%error, "admission records not gossiped");
            }
        }
    }

    /// Checks gossiped records: forwarded when one was news, held against the sender when one
    /// was forged.
    async fn receive(&mut self, data: &[u8]) -> Verdict {
        let Ok(records) = cbor::from_slice::<Vec<Record>>(data) else {
            return Verdict::Reject;
        };
        if records.len() > MAX_GOSSIP_RECORDS {
            return Verdict::Reject;
        }
        let (news, forged) = self.apply(records);
        if news {
            self.publish_admitted().await;
        }
        match (forged, news) {
            (true, _) => Verdict::Reject,
            (false, true) => Verdict::Accept,
            (false, false) => Verdict::Ignore,
        }
    }

    /// Applies records from a peer: whether any was news, and whether any was forged.
    fn apply(&mut self, records: Vec<Record>) -> (bool, bool) {
        let (mut news, mut forged) = (false, false);
        for record in records {
            match self.members.apply(record) {
                Ok(changed) => news |= changed,
                Err(error) => {
                    forged |= error.is_forgery();
                    if let MemberError::Full(_) = error {
                        tracing::warn!(%error, "admission record not taken");
                    } else {
                        tracing::debug!(%error, "admission record refused");
                    }
                }
            }
        }
        (news, forged)
    }

    /// Asks one connected node, picked at random, for its set unless it has the same.
    async fn pull(&self) -> Option<Pull> {
        let candidates = self.handle.candidates().await.ok()?;
        let peer = *candidates.choose(&mut rand::rng())?;
        let handle = self.handle.clone();
        let digest = self.members.digest();
        Some(Box::pin(async move {
            let answer =
                handle.call::<MembersProtocol>(peer, MembersRequest::Records { digest }).await;
            (peer, answer)
        }))
    }

    async fn pulled(&mut self, peer: PeerId, answer: Result<MembersResponse, p2p::RequestError>) {
        match answer {
            Ok(MembersResponse::Records(records)) => {
                let (news, forged) = self.apply(records);
                if forged {
                    tracing::warn!(%peer, "a peer answered forged admission records");
                }
                if news {
                    self.publish_admitted().await;
                }
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "admission records not pulled"),
        }
    }

    /// Hands the admitted set to the p2p core and the watchers.
    async fn publish_admitted(&mut self) {
        let listed = self.members.admitted();
        let admitted_self = listed.contains_key(&self.me);
        if admitted_self != self.admitted_self {
            self.admitted_self = admitted_self;
            match admitted_self {
                true => tracing::info!("this node is admitted by the operator"),
                false => tracing::warn!(
                    "this node is not admitted by the operator: other nodes treat it as a client"
                ),
            }
        }
        let admitted = Admitted::Listed(Arc::new(listed));
        // The p2p task stops only at shutdown, which stops this one too.
        let _ = self.handle.admit(admitted.clone()).await;
        self.admitted.send_replace(admitted);
    }
}
