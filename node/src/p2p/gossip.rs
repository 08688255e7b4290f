//! Gossipsub for services: subscribe to a topic, publish, and validate what arrives before it is
//! forwarded (messages are signed by their author and held until the service says whether they
//! are valid).

use std::collections::HashMap;

use libp2p::PeerId;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId, TopicHash};
use tau_proto::membership::Admitted;
use tau_proto::protocol::Access;
use tokio::sync::mpsc;

/// Why a topic could not be joined or a message published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum GossipError {
    /// gossipsub refused the subscription.
    #[error("cannot subscribe to {topic}: {reason}")]
    Subscribe {
        topic: &'static str,
        /// Why.
        reason: String,
    },
    /// gossipsub refused the message (no peer on the topic yet, or a duplicate).
    #[error("cannot publish on {topic}: {reason}")]
    Publish {
        topic: &'static str,
        /// Why.
        reason: String,
    },
    /// The p2p task has stopped.
    #[error(transparent)]
    Stopped(#[from] super::Stopped),
}

/// A message on a topic this node subscribed to. Report a verdict with
/// [`super::Handle::validate`]; until then it is not forwarded.
#[derive(Debug)]
pub struct GossipMessage {
    /// The peer that published it, if known.
    pub author: Option<PeerId>,
    /// The bytes as published; the topic's service decodes and checks them.
    pub data: Vec<u8>,
    /// Which message, for the verdict.
    pub id: MessageRef,
}

/// Identifies a received message for its verdict.
#[derive(Debug, Clone)]
pub struct MessageRef {
    pub(super) id: MessageId,
    pub(super) source: PeerId,
}

/// A service's verdict on a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: deliver and forward it.
    Accept,
    /// Invalid (forged, unauthorized): drop it and hold it against the peer that sent it.
    Reject,
    /// Valid but nothing new: drop it without blame.
    Ignore,
}

impl From<Verdict> for MessageAcceptance {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Accept => Self::Accept,
            Verdict::Reject => Self::Reject,
            Verdict::Ignore => Self::Ignore,
        }
    }
}

/// The subscribed topics and where their messages go.
#[derive(Default)]
pub(super) struct Topics {
    subscribers: HashMap<TopicHash, (Access, mpsc::Sender<GossipMessage>)>,
}

impl Topics {
    pub(super) fn subscribe(
        &mut self,
        behaviour: &mut gossipsub::Behaviour,
        name: &'static str,
        access: Access,
        sender: mpsc::Sender<GossipMessage>,
    ) -> Result<(), GossipError> {
        let topic = IdentTopic::new(name);
        behaviour
            .subscribe(&topic)
            .map_err(|e| GossipError::Subscribe { topic: name, reason: e.to_string() })?;
        self.subscribers.insert(topic.hash(), (access, sender));
        Ok(())
    }

    /// Publishes `data` on topic `name`.
    pub(super) fn publish(
        behaviour: &mut gossipsub::Behaviour,
        name: &'static str,
        data: Vec<u8>,
    ) -> Result<(), GossipError> {
        behaviour
            .publish(IdentTopic::new(name), data)
            .map(|_| ())
            .map_err(|e| GossipError::Publish { topic: name, reason: e.to_string() })
    }

    /// Hands a message to its topic's subscriber; a message nobody can take, or whose author
    /// the topic does not admit, is ignored (dropped, not forwarded, and not held against the
    /// peer that passed it on, which may not have learned of a revocation yet).
    pub(super) fn deliver(
        &mut self,
        behaviour: &mut gossipsub::Behaviour,
        admitted: &Admitted,
        source: PeerId,
        id: MessageId,
        message: gossipsub::Message,
    ) {
        let reference = MessageRef { id, source };
        let delivered = match self.subscribers.get(&message.topic) {
            Some((access, _))
                if *access != Access::Anyone
                    && !message.source.is_some_and(|author| admitted.allows(*access, &author)) =>
            {
                tracing::debug!(
                    topic = %message.topic,
                    author = ?message.source,
                    "gossip from a peer not admitted for the topic: ignored"
                );
                false
            }
            Some((_, sender)) => sender
                .try_send(GossipMessage {
                    author: message.source,
                    data: message.data,
                    id: reference.clone(),
                })
                .is_ok(),
            None => false,
        };
        if !delivered {
            tracing::debug!(topic = %message.topic, "gossip message not taken: ignored");
            behaviour.report_message_validation_result(
                &reference.id,
                &reference.source,
                MessageAcceptance::Ignore,
            );
        }
    }
}
