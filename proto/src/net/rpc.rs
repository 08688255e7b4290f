//! One behaviour for every request-response protocol, node and client alike.
//!
//! libp2p's `request_response` takes one behaviour per protocol, fixed when the swarm is built;
//! this one takes protocols as they come. A server registers a protocol with [`Behaviour::serve`]
//! and gets each inbound stream for it on a channel; a caller asks [`Behaviour::open`] for a stream
//! to a peer (dialing it first if needed) and gets it on a oneshot. What travels on a stream, and
//! its limits, is [`call`]'s and [`read_request`]'s business, outside the swarm task: the task that
//! owns the swarm never waits on a stream.
//!
//! A peer that proposes a protocol nobody here serves is refused during negotiation, exactly as a
//! `request_response` behaviour refuses a protocol it only supports outbound.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::io;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::{InboundUpgrade, NegotiationError, OutboundUpgrade, UpgradeInfo};
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
};
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId,
    DialError, DialFailure, FromSwarm, NetworkBehaviour, NotifyHandler, Stream, StreamUpgradeError,
    SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    behaviour::ConnectionEstablished,
};
use libp2p::{PeerId, StreamProtocol};
use tokio::sync::{mpsc, oneshot};

use crate::cbor;
use crate::protocol::Protocol;

/// How many inbound streams of one protocol may wait for its server; more are refused (closed
/// unanswered), as a busy service refuses them.
pub const INBOX: usize = 1024;

/// An inbound stream for a served protocol, with the peer that opened it.
pub type InboundStream = (PeerId, Stream);

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The peer does not serve the protocol.
    #[error("the peer does not serve {0}")]
    Unsupported(StreamProtocol),
    /// The peer could not be reached.
    #[error("cannot reach the peer: {0}")]
    Dial(String),
    /// The stream could not be negotiated.
    #[error("cannot open a stream: {0}")]
    Io(#[source] io::Error),
    /// The connection closed before the stream opened.
    #[error("the connection closed")]
    Closed,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum CallError {
    /// No stream to the peer.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// No full answer within the protocol's time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// A message is larger than the protocol allows; nothing of it was decoded.
    #[error("the {what} is over the protocol's limit of {limit} bytes")]
    TooLarge {
        /// `request` or `answer`.
        what: &'static str,
        limit: u64,
    },
    /// The stream failed while the message was written or read.
    #[error("stream: {0}")]
    Io(#[from] io::Error),
    /// A message could not be encoded or decoded.
    #[error("the {what} does not decode: {reason}")]
    Decode {
        /// `request` or `answer`.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The peer closed the stream without an answer (its server dropped the request).
    #[error("the peer closed the stream without an answer")]
    NoAnswer,
}

/// Sends `request` on a stream opened for `P` and reads the answer, within `P`'s limits. The
/// caller bounds the whole call by `P::TIMEOUT`. The request is encoded before the future is
/// made, so the future never holds it.
pub fn call<P: Protocol>(
    mut stream: Stream,
    request: &P::Request,
) -> impl Future<Output = Result<P::Response, CallError>> + Send + 'static {
    let bytes = encode(request, "request", P::MAX_REQUEST);
    async move {
        let unsupported = |e: io::Error| match e.get_ref().map(|e| e.is::<NegotiationError>()) {
            Some(true) => CallError::Open(OpenError::Unsupported(StreamProtocol::new(P::NAME))),
            _ => CallError::Io(e),
        };
        // Negotiation is lazy: the request goes out with the protocol's proposal, and a peer
        // that does not serve the protocol says so when the answer is read.
        stream.write_all(&bytes?).await.map_err(unsupported)?;
        stream.close().await.map_err(unsupported)?;
        let answer =
            read_limited(&mut stream, P::MAX_RESPONSE, "answer").await.map_err(|e| match e {
                CallError::Io(e) => unsupported(e),
                other => other,
            })?;
        if answer.is_empty() {
            return Err(CallError::NoAnswer);
        }
        cbor::from_slice(&answer)
            .map_err(|e| CallError::Decode { what: "answer", reason: e.to_string() })
    }
}

fn encode<T: serde::Serialize>(
    value: &T,
    what: &'static str,
    limit: u64,
) -> Result<Vec<u8>, CallError> {
    let bytes =
        cbor::to_vec(value).map_err(|e| CallError::Decode { what, reason: e.to_string() })?;
    if bytes.len() as u64 > limit {
        return Err(CallError::TooLarge { what, limit });
    }
    Ok(bytes)
}

/// Reads a request for `P` from an inbound stream: refused unread past `P::MAX_REQUEST`.
pub async fn read_request<P: Protocol>(stream: &mut Stream) -> Result<P::Request, CallError> {
    let bytes = read_limited(stream, P::MAX_REQUEST, "request").await?;
    cbor::from_slice(&bytes)
        .map_err(|e| CallError::Decode { what: "request", reason: e.to_string() })
}

/// Writes the answer to a request read with [`read_request`], and closes the stream.
pub fn write_response<P: Protocol>(
    mut stream: Stream,
    response: &P::Response,
) -> impl Future<Output = Result<(), CallError>> + Send + 'static {
    let bytes = encode(response, "answer", P::MAX_RESPONSE);
    async move {
        stream.write_all(&bytes?).await?;
        stream.close().await?;
        Ok(())
    }
}

/// Reads a stream to its end, refusing it once it passes `limit` bytes.
async fn read_limited(
    stream: &mut Stream,
    limit: u64,
    what: &'static str,
) -> Result<Vec<u8>, CallError> {
    let mut bytes = Vec::new();
    stream.take(limit.saturating_add(1)).read_to_end(&mut bytes).await?;
    if bytes.len() as u64 > limit {
        return Err(CallError::TooLarge { what, limit });
    }
    Ok(bytes)
}

/// A request for an outbound stream.
#[derive(Debug)]
pub struct Open {
    protocol: StreamProtocol,
    reply: oneshot::Sender<Result<Stream, OpenError>>,
}

/// The protocols this peer serves, shared with every connection's handler.
#[derive(Default)]
struct Served {
    protocols: Vec<StreamProtocol>,
    inboxes: HashMap<StreamProtocol, mpsc::Sender<InboundStream>>,
}

fn served(shared: &RwLock<Served>) -> std::sync::RwLockReadGuard<'_, Served> {
    shared.read().unwrap_or_else(|e| e.into_inner())
}

/// The behaviour: see the module's documentation.
#[derive(Default)]
pub struct Behaviour {
    served: Arc<RwLock<Served>>,
    connections: HashMap<PeerId, Vec<ConnectionId>>,
    /// Opens waiting for a connection to their peer.
    waiting: HashMap<PeerId, Vec<Open>>,
    actions: VecDeque<ToSwarm<Infallible, Open>>,
}

impl Behaviour {
    /// Serves `protocol`: its inbound streams go to `inbox` from now on (a second registration
    /// replaces the first). A full inbox refuses the stream.
    pub fn serve(&mut self, protocol: StreamProtocol, inbox: mpsc::Sender<InboundStream>) {
        let mut served = self.served.write().unwrap_or_else(|e| e.into_inner());
        if !served.protocols.contains(&protocol) {
            served.protocols.push(protocol.clone());
        }
        served.inboxes.insert(protocol, inbox);
    }

    /// Opens a stream for `protocol` to `peer`, dialing it first if there is no connection
    /// (at `addrs`, and wherever the other behaviours know it to be). The stream, or why there is
    /// none, comes on `reply`.
    pub fn open(
        &mut self,
        peer: PeerId,
        protocol: StreamProtocol,
        addrs: Vec<Multiaddr>,
        reply: oneshot::Sender<Result<Stream, OpenError>>,
    ) {
        let open = Open { protocol, reply };
        if let Some(&connection) = self.connections.get(&peer).and_then(|c| c.last()) {
            self.actions.push_back(ToSwarm::NotifyHandler {
                peer_id: peer,
                handler: NotifyHandler::One(connection),
                event: open,
            });
            return;
        }
        self.waiting.entry(peer).or_default().push(open);
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .extend_addresses_through_behaviour()
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        self.actions.push_back(ToSwarm::Dial { opts });
    }

    fn handler(&self, peer: PeerId) -> Handler {
        Handler { peer, served: self.served.clone(), opens: VecDeque::new() }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            }) => {
                self.connections.entry(peer_id).or_default().push(connection_id);
                for open in self.waiting.remove(&peer_id).unwrap_or_default() {
                    self.actions.push_back(ToSwarm::NotifyHandler {
                        peer_id,
                        handler: NotifyHandler::One(connection_id),
                        event: open,
                    });
                }
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { peer_id, connection_id, .. }) => {
                if let Some(connections) = self.connections.get_mut(&peer_id) {
                    connections.retain(|c| *c != connection_id);
                    if connections.is_empty() {
                        self.connections.remove(&peer_id);
                    }
                }
            }
            FromSwarm::DialFailure(DialFailure { peer_id: Some(peer), error, .. }) => {
                // Another dial to the peer is under way (or it just connected): its outcome
                // decides for the waiting opens.
                if matches!(error, DialError::DialPeerConditionFalse(_)) {
                    return;
                }
                let reason = error_chain(error);
                for open in self.waiting.remove(&peer).unwrap_or_default() {
                    let _ = open.reply.send(Err(OpenError::Dial(reason.clone())));
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.actions.pop_front() {
            Some(action) => Poll::Ready(action),
            None => Poll::Pending,
        }
    }
}

/// An error and its sources on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}

/// One connection's side of the behaviour.
pub struct Handler {
    peer: PeerId,
    served: Arc<RwLock<Served>>,
    opens: VecDeque<Open>,
}

type Reply = (StreamProtocol, oneshot::Sender<Result<Stream, OpenError>>);

impl ConnectionHandler for Handler {
    type FromBehaviour = Open;
    type ToBehaviour = Infallible;
    type InboundProtocol = Upgrade;
    type OutboundProtocol = Upgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Reply;

    fn listen_protocol(&self) -> SubstreamProtocol<Upgrade, ()> {
        SubstreamProtocol::new(Upgrade(served(&self.served).protocols.clone()), ())
    }

    fn connection_keep_alive(&self) -> bool {
        !self.opens.is_empty()
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Upgrade, Reply, Infallible>> {
        match self.opens.pop_front() {
            Some(open) => Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(
                    Upgrade(vec![open.protocol.clone()]),
                    (open.protocol, open.reply),
                ),
            }),
            None => Poll::Pending,
        }
    }

    fn on_behaviour_event(&mut self, open: Open) {
        self.opens.push_back(open);
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<Upgrade, Upgrade, (), Reply>) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: (stream, protocol),
                ..
            }) => {
                let served = served(&self.served);
                let Some(inbox) = served.inboxes.get(&protocol) else { return };
                if let Err(e) = inbox.try_send((self.peer, stream)) {
                    let reason = match e {
                        mpsc::error::TrySendError::Full(_) => "busy",
                        mpsc::error::TrySendError::Closed(_) => "stopped",
                    };
                    tracing::warn!(peer = %self.peer, %protocol, reason, "inbound stream refused");
                }
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: (stream, _),
                info: (_, reply),
            }) => {
                let _ = reply.send(Ok(stream));
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError {
                info: (protocol, reply),
                error,
            }) => {
                let error = match error {
                    StreamUpgradeError::NegotiationFailed => OpenError::Unsupported(protocol),
                    StreamUpgradeError::Timeout => {
                        OpenError::Io(io::Error::from(io::ErrorKind::TimedOut))
                    }
                    StreamUpgradeError::Io(e) => OpenError::Io(e),
                    StreamUpgradeError::Apply(never) => match never {},
                };
                let _ = reply.send(Err(error));
            }
            _ => {}
        }
    }
}

/// The upgrade: negotiates one of the protocols and hands over the raw stream.
#[derive(Debug, Clone)]
pub struct Upgrade(Vec<StreamProtocol>);

impl UpgradeInfo for Upgrade {
    type Info = StreamProtocol;
    type InfoIter = std::vec::IntoIter<StreamProtocol>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.0.clone().into_iter()
    }
}

impl InboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;

    fn upgrade_inbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        ready(Ok((stream, protocol)))
    }
}

impl OutboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;

    fn upgrade_outbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        ready(Ok((stream, protocol)))
    }
}
