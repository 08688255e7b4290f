//! Who is healthy, on any node: a copy of one seer's change feed. A seer publishes its changes
//! on `tau/seer/feed/1` as they happen, and its cursor alone every few seconds otherwise
//! ([`tau_proto::seer::FeedMessage`]); a follower applies the changes of the seer it follows
//! and asks that seer for what it missed ([`tau_proto::seer::SeerRequest::Changes`]) when a
//! message does not follow on from its cursor. A service that must know which of its peers are
//! alive (hoarder's placement) reads the copy instead of hearing every node's beats: a quiet
//! cloud costs a few small gossip messages, a busy one what changed. A seer node reads its own
//! table.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use libp2p::PeerId;
use tau_proto::seer::{
    Change, Cursor, FeedMessage, FeedTopic, Member, SeerProtocol, SeerRequest, SeerResponse,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::p2p::{self, GossipError, GossipMessage, Verdict};

/// How often a seer node reads its own feed.
pub const POLL: Duration = Duration::from_secs(1);
/// A followed seer silent for this long (three idle messages missed) is left for another.
pub const STALE_AFTER: Duration = Duration::from_secs(16);

/// The most nodes remembered as gone.
const MAX_GONE: usize = 100_000;

/// The healthy nodes, as the feed last said.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Health {
    /// Each healthy node and what it runs.
    pub nodes: HashMap<PeerId, Member>,
    /// The nodes the feed said went unhealthy (until it says they are back): a node connected
    /// but in neither set is one seer has not heard of yet, a newcomer.
    pub gone: std::collections::HashSet<PeerId>,
    /// Whether a seer answered within [`STALE_AFTER`]: without, `nodes` says nothing (a cloud
    /// without seer, or cut off from every seer node).
    pub fresh: bool,
}

impl Health {
    /// The healthy nodes that run `service`, sorted.
    pub fn running(&self, service: &str) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> =
            self.nodes.iter().filter(|(_, m)| m.runs(service)).map(|(p, _)| *p).collect();
        peers.sort();
        peers
    }

    fn apply(&mut self, reset: bool, changes: Vec<Change>) {
        if reset {
            self.nodes.clear();
        }
        for change in changes {
            match change.member {
                Some(member) => {
                    self.gone.remove(&change.peer);
                    self.nodes.insert(change.peer, member);
                }
                None => {
                    if self.gone.len() >= MAX_GONE {
                        self.gone.clear();
                    }
                    self.gone.insert(change.peer);
                    self.nodes.remove(&change.peer);
                }
            }
        }
    }
}

/// Follows the feed into `health` until `shutdown`: from `local`, the node's own seer, else
/// from the seer nodes' gossip.
pub async fn spawn(
    handle: p2p::Handle,
    local: Option<Arc<Shared>>,
    health: watch::Sender<Health>,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, GossipError> {
    match local {
        Some(shared) => Ok(tokio::spawn(read_own(handle, shared, health, shutdown))),
        None => {
            let feed = handle.subscribe::<FeedTopic>().await?;
            Ok(tokio::spawn(follow(handle, feed, health, shutdown)))
        }
    }
}

fn publish(health: &watch::Sender<Health>, copy: &Health) {
    health.send_if_modified(|shared| {
        let changed = shared != copy;
        if changed {
            *shared = copy.clone();
        }
        changed
    });
}

/// A seer node reads its own table.
async fn read_own(
    handle: p2p::Handle,
    shared: Arc<Shared>,
    health: watch::Sender<Health>,
    shutdown: CancellationToken,
) {
    let mut copy = Health { fresh: true, ..Health::default() };
    let mut cursor = None;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let (at, reset, changes) = shared.table().changes(cursor);
        copy.apply(reset, changes);
        cursor = Some(at);
        publish(&health, &copy);
    }
    drop(handle);
}

type Resync = BoxFuture<'static, (PeerId, Option<(Cursor, bool, Vec<Change>)>)>;

/// The seer a node follows, and where its copy is.
struct Following {
    seer: PeerId,
    cursor: Option<Cursor>,
    heard: Instant,
}

/// Follows the gossiped feeds.
async fn follow(
    handle: p2p::Handle,
    mut feed: mpsc::Receiver<GossipMessage>,
    health: watch::Sender<Health>,
    shutdown: CancellationToken,
) {
    let mut copy = Health::default();
    let mut following: Option<Following> = None;
    let mut resync: Option<Resync> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            Some((seer, answer)) = async { resync.as_mut()?.await.into() }, if resync.is_some() => {
                resync = None;
                if let (Some(f), Some((cursor, reset, changes))) = (following.as_mut(), answer)
                    && f.seer == seer
                {
                    copy.apply(reset, changes);
                    f.cursor = Some(cursor);
                    f.heard = Instant::now();
                }
            }
            message = feed.recv() => {
                let Some(message) = message else { break };
                let verdict = match (message.author, tau_proto::cbor::from_slice::<FeedMessage>(&message.data)) {
                    (Some(author), Ok(news)) => {
                        let stale = following.as_ref().is_none_or(|f| f.heard.elapsed() >= STALE_AFTER);
                        if stale && following.as_ref().is_none_or(|f| f.seer != author) {
                            tracing::debug!(seer = %author, "following a seer's feed");
                            following = Some(Following { seer: author, cursor: None, heard: Instant::now() });
                            copy.nodes.clear();
                        }
                        if let Some(f) = following.as_mut().filter(|f| f.seer == author) {
                            f.heard = Instant::now();
                            match f.cursor {
                                Some(at) if at == news.cursor => {}
                                Some(at) if at.epoch == news.cursor.epoch
                                    && at.version + news.changes.len() as u64 == news.cursor.version =>
                                {
                                    copy.apply(false, news.changes);
                                    f.cursor = Some(news.cursor);
                                }
                                Some(at) if at.epoch == news.cursor.epoch && at.version > news.cursor.version => {}
                                since => {
                                    // Missed something (or just started): ask the seer.
                                    if resync.is_none() {
                                        resync = Some(ask(handle.clone(), author, since));
                                    }
                                }
                            }
                        }
                        Verdict::Accept
                    }
                    _ => Verdict::Reject,
                };
                if handle.validate(message.id, verdict).await.is_err() {
                    break;
                }
            }
        }
        copy.fresh = following
            .as_ref()
            .is_some_and(|f| f.cursor.is_some() && f.heard.elapsed() < STALE_AFTER);
        publish(&health, &copy);
    }
}

/// Asks `seer` for its changes since `since` (all of them without).
fn ask(handle: p2p::Handle, seer: PeerId, since: Option<Cursor>) -> Resync {
    async move {
        let request = SeerRequest::Changes { since };
        let answer = match handle.call::<SeerProtocol>(seer, request).await {
            Ok(SeerResponse::Changes { cursor, reset, changes }) => Some((cursor, reset, changes)),
            Ok(_) => None,
            Err(error) => {
                tracing::debug!(%error, "seer changes not read");
                None
            }
        };
        (seer, answer)
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_replaces_the_copy_and_changes_edit_it() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let hoarder = Member { services: vec!["hoarder".into()], full: false, leaving: false };
        let mut health = Health::default();
        health.apply(
            false,
            vec![
                Change { peer: a, member: Some(hoarder.clone()) },
                Change {
                    peer: b,
                    member: Some(Member { services: vec![], full: false, leaving: false }),
                },
            ],
        );
        assert_eq!(health.running("hoarder"), vec![a]);
        health.apply(false, vec![Change { peer: a, member: None }]);
        assert!(health.running("hoarder").is_empty());
        assert!(health.gone.contains(&a), "remembered as gone");
        health.apply(true, vec![Change { peer: b, member: Some(hoarder) }]);
        assert_eq!(health.nodes.len(), 1);
        assert_eq!(health.running("hoarder"), vec![b]);
    }
}
