//! One behaviour for every request-response protocol, node and client alike.
//!
//! libp2p's `request_response` takes one behaviour per protocol, fixed when the swarm is built;
//! this one takes protocols as they come. A server registers a protocol with [`Behaviour::serve`]
//! ([`route`] makes the registration for a service's inbox); a caller makes a [`Call`] for a
//! protocol, hands it to [`Behaviour::call`] for a peer (dialing the peer first if needed) and
//! awaits its [`Answer`].
//!
//! Every byte of a call is written and read by the connection's own handler, in the task that
//! already owns the connection, as `request_response` does: a round trip wakes no other task but
//! the caller's and, on the server, the service's. Encoding and the limits' checks happen at the
//! ends; a message over its protocol's limit is refused before a byte of it is decoded. The task
//! that owns the swarm only routes calls to connections; it never waits on a stream.
//!
//! A peer that proposes a protocol nobody here serves is refused during negotiation, exactly as a
//! `request_response` behaviour refuses a protocol it only supports outbound.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::io;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
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
use crate::membership::Admitted;
use crate::protocol::{Access, Protocol};

/// Requests one peer may have in flight on one protocol (as libp2p's request-response allowed
/// per connection); more are refused unread, so no peer can make a node buffer without bound.
pub const MAX_IN_FLIGHT_PER_PEER: usize = 100;
/// Requests in flight on one protocol, all peers together.
pub const MAX_IN_FLIGHT: usize = 1024;

/// A request from a peer, for a service to answer through `reply`.
pub struct Inbound<Req, Resp> {
    /// Who asked.
    pub peer: PeerId,
    /// What.
    pub request: Req,
    /// Where the answer goes; dropping it closes the peer's stream unanswered.
    pub reply: oneshot::Sender<Resp>,
}

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
    /// The connection closed before the call was answered.
    #[error("the connection closed")]
    Closed,
}

impl CallError {
    /// Whether the peer's service can never have seen the request: the peer could not be
    /// reached, does not serve the protocol, or the request was too large to send. After any
    /// other failure the request may have been handled, only its answer lost.
    pub fn never_delivered(&self) -> bool {
        matches!(
            self,
            CallError::Open(OpenError::Dial(_) | OpenError::Unsupported(_))
                | CallError::TooLarge { what: "request", .. }
        )
    }
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
    /// The service's inbox is full: the request was dropped unanswered.
    #[error("the service is busy")]
    Busy,
    /// The service has stopped taking requests.
    #[error("the service has stopped")]
    Stopped,
    /// The peer may not send this request (it is for nodes the operator admitted): it was
    /// closed unanswered.
    #[error("the request is for admitted nodes only")]
    NotAdmitted,
}

/// A call for one protocol, encoded and within the protocol's request limit, ready to be handed
/// to [`Behaviour::call`]. Its answer comes on the [`Answer`] made with it.
#[derive(Debug)]
pub struct Call {
    protocol: StreamProtocol,
    request: Vec<u8>,
    max_response: u64,
    timeout: Duration,
    reply: oneshot::Sender<Result<Vec<u8>, CallError>>,
}

impl Call {
    /// The protocol it is for.
    pub fn protocol(&self) -> &str {
        self.protocol.as_ref()
    }

    /// Encodes `request` for `P`: refused here, before anything is sent, past `P::MAX_REQUEST`.
    pub fn new<P: Protocol>(request: &P::Request) -> Result<(Self, Answer<P>), CallError> {
        let request = encode(request, "request", P::MAX_REQUEST)?;
        let (reply, receiver) = oneshot::channel();
        let call = Call {
            protocol: StreamProtocol::new(P::NAME),
            request,
            max_response: P::MAX_RESPONSE,
            timeout: P::TIMEOUT,
            reply,
        };
        Ok((call, Answer { receiver, protocol: PhantomData }))
    }

    fn fail(self, error: CallError) {
        let _ = self.reply.send(Err(error));
    }

    /// Fails the call without sending it: the peer cannot be reached, for `reason`.
    pub fn unreachable(self, reason: String) {
        self.fail(OpenError::Dial(reason).into());
    }
}

/// The answer to a [`Call`], decoded when it comes. The caller bounds the wait by `P::TIMEOUT`;
/// the connection gives up on the call after the same time, or as soon as the answer is dropped.
#[derive(Debug)]
pub struct Answer<P> {
    receiver: oneshot::Receiver<Result<Vec<u8>, CallError>>,
    protocol: PhantomData<fn() -> P>,
}

impl<P: Protocol> Answer<P> {
    /// Waits for the answer and decodes it.
    pub async fn get(self) -> Result<P::Response, CallError> {
        let bytes = self.receiver.await.map_err(|_| OpenError::Closed)??;
        cbor::from_slice(&bytes)
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

/// Writes a call's request on its stream and reads the answer. Negotiation is lazy: the request
/// goes out with the protocol's proposal, and a peer that does not serve the protocol says so
/// when the answer is read.
async fn exchange(
    mut stream: Stream,
    protocol: StreamProtocol,
    request: Vec<u8>,
    max_response: u64,
) -> Result<Vec<u8>, CallError> {
    let unsupported = |e: io::Error| match e.get_ref().map(|e| e.is::<NegotiationError>()) {
        Some(true) => CallError::Open(OpenError::Unsupported(protocol.clone())),
        _ => CallError::Io(e),
    };
    stream.write_all(&request).await.map_err(unsupported)?;
    stream.close().await.map_err(unsupported)?;
    let answer = read_limited(&mut stream, max_response, "answer").await.map_err(|e| match e {
        CallError::Io(e) => unsupported(e),
        other => other,
    })?;
    if answer.is_empty() {
        return Err(CallError::NoAnswer);
    }
    Ok(answer)
}

/// An answer on its way from a service: its encoded bytes, or `None` when the service dropped
/// the request.
type Answering = BoxFuture<'static, Option<Result<Vec<u8>, CallError>>>;

/// Takes a request's bytes from a peer and gives them to the service, if who is admitted lets
/// the peer send it.
type Accept = dyn Fn(PeerId, &[u8], &Admitted) -> Result<Answering, CallError> + Send + Sync;

/// A served protocol as the connections see it: its limits and where its requests go.
#[derive(Clone)]
pub struct Route {
    access: Access,
    max_request: u64,
    timeout: Duration,
    accept: Arc<Accept>,
    in_flight: Arc<Mutex<HashMap<PeerId, usize>>>,
}

/// The route of protocol `P` to a service's `inbox`: each request is decoded and handed over
/// with a oneshot for the answer; a full inbox refuses the request.
pub fn route<P: Protocol>(inbox: mpsc::Sender<Inbound<P::Request, P::Response>>) -> Route {
    let accept = move |peer: PeerId, bytes: &[u8], admitted: &Admitted| {
        let request: P::Request = cbor::from_slice(bytes)
            .map_err(|e| CallError::Decode { what: "request", reason: e.to_string() })?;
        if !admitted.allows(P::request_access(&request), &peer) {
            return Err(CallError::NotAdmitted);
        }
        let (reply, response) = oneshot::channel();
        inbox.try_send(Inbound { peer, request, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => CallError::Busy,
            mpsc::error::TrySendError::Closed(_) => CallError::Stopped,
        })?;
        Ok(async move {
            let response = response.await.ok()?;
            Some(encode(&response, "answer", P::MAX_RESPONSE))
        }
        .boxed())
    };
    Route {
        access: P::ACCESS,
        max_request: P::MAX_REQUEST,
        timeout: P::TIMEOUT,
        accept: Arc::new(accept),
        in_flight: Arc::default(),
    }
}

/// Counts a peer's requests in flight on one route; one less when dropped.
struct InFlight {
    peer: PeerId,
    counts: Arc<Mutex<HashMap<PeerId, usize>>>,
}

impl InFlight {
    fn take(counts: &Arc<Mutex<HashMap<PeerId, usize>>>, peer: PeerId) -> Option<Self> {
        let mut map = counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let total: usize = map.values().sum();
        let mine = map.entry(peer).or_default();
        if *mine >= MAX_IN_FLIGHT_PER_PEER || total >= MAX_IN_FLIGHT {
            return None;
        }
        *mine += 1;
        Some(Self { peer, counts: counts.clone() })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.peer);
            }
        }
    }
}

/// Reads one request, has the service answer it, and writes the answer.
async fn answer(
    route: Route,
    peer: PeerId,
    admitted: Admitted,
    mut stream: Stream,
) -> Result<(), CallError> {
    let request = read_limited(&mut stream, route.max_request, "request").await?;
    let Some(answer) = (route.accept)(peer, &request, &admitted)?.await else {
        // The service dropped the request: the stream closes unanswered.
        return Ok(());
    };
    stream.write_all(&answer?).await?;
    stream.close().await?;
    Ok(())
}

/// The protocols this peer serves, shared with every connection's handler.
#[derive(Default)]
struct Served {
    protocols: Vec<StreamProtocol>,
    routes: HashMap<StreamProtocol, Route>,
    /// Who may call a protocol open only to nodes or a role.
    admitted: Admitted,
}

fn served(shared: &RwLock<Served>) -> std::sync::RwLockReadGuard<'_, Served> {
    shared.read().unwrap_or_else(|e| e.into_inner())
}

/// The behaviour: see the module's documentation.
#[derive(Default)]
pub struct Behaviour {
    served: Arc<RwLock<Served>>,
    /// Peers whose connections stay open while idle.
    kept: Arc<RwLock<HashSet<PeerId>>>,
    connections: HashMap<PeerId, Vec<ConnectionId>>,
    /// Calls waiting for a connection to their peer.
    waiting: HashMap<PeerId, Vec<Call>>,
    actions: VecDeque<ToSwarm<Infallible, Call>>,
}

impl Behaviour {
    /// Serves `protocol` by `route` from now on (a second registration replaces the first).
    pub fn serve(&mut self, protocol: StreamProtocol, route: Route) {
        let mut served = self.served.write().unwrap_or_else(|e| e.into_inner());
        if !served.protocols.contains(&protocol) {
            served.protocols.push(protocol.clone());
        }
        served.routes.insert(protocol, route);
    }

    /// From now on the connections to `peers` stay open while idle; those to anyone else close
    /// once idle for the swarm's idle timeout (no request under way, nothing else keeping them).
    pub fn keep(&mut self, peers: HashSet<PeerId>) {
        *self.kept.write().unwrap_or_else(|e| e.into_inner()) = peers;
    }

    /// From now on, a protocol open only to nodes or a role answers only the peers `admitted`
    /// allows; anyone else's stream is closed unread.
    pub fn admit(&mut self, admitted: Admitted) {
        self.served.write().unwrap_or_else(|e| e.into_inner()).admitted = admitted;
    }

    /// Sends `call` to `peer`, dialing it first if there is no connection (at `addrs`, and
    /// wherever the other behaviours know it to be). The answer, or why there is none, comes
    /// on the call's [`Answer`].
    pub fn call(&mut self, peer: PeerId, call: Call, addrs: Vec<Multiaddr>) {
        if let Some(&connection) = self.connections.get(&peer).and_then(|c| c.last()) {
            self.actions.push_back(ToSwarm::NotifyHandler {
                peer_id: peer,
                handler: NotifyHandler::One(connection),
                event: call,
            });
            return;
        }
        self.waiting.entry(peer).or_default().push(call);
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .extend_addresses_through_behaviour()
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        self.actions.push_back(ToSwarm::Dial { opts });
    }

    fn handler(&self, peer: PeerId) -> Handler {
        Handler {
            peer,
            served: self.served.clone(),
            kept: self.kept.clone(),
            calls: VecDeque::new(),
            streams: FuturesUnordered::new(),
        }
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
                for call in self.waiting.remove(&peer_id).unwrap_or_default() {
                    self.actions.push_back(ToSwarm::NotifyHandler {
                        peer_id,
                        handler: NotifyHandler::One(connection_id),
                        event: call,
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
                // decides for the waiting calls.
                if matches!(error, DialError::DialPeerConditionFalse(_)) {
                    return;
                }
                let reason = error_chain(error);
                for call in self.waiting.remove(&peer).unwrap_or_default() {
                    call.fail(OpenError::Dial(reason.clone()).into());
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

/// One connection's side of the behaviour: it opens a stream for each call and answers each
/// inbound stream, doing all of their reading and writing itself.
pub struct Handler {
    peer: PeerId,
    served: Arc<RwLock<Served>>,
    kept: Arc<RwLock<HashSet<PeerId>>>,
    /// Calls waiting for their stream.
    calls: VecDeque<Call>,
    /// The exchanges under way on this connection's streams, both ways.
    streams: FuturesUnordered<BoxFuture<'static, ()>>,
}

impl Handler {
    fn answer_inbound(&mut self, protocol: StreamProtocol, stream: Stream) {
        let peer = self.peer;
        let (route, admitted) = {
            let served = served(&self.served);
            let Some(route) = served.routes.get(&protocol) else { return };
            if !served.admitted.allows(route.access, &peer) {
                tracing::debug!(%peer, %protocol, "not admitted for the protocol: refused");
                return;
            }
            (route.clone(), served.admitted.clone())
        };
        let Some(in_flight) = InFlight::take(&route.in_flight, peer) else {
            tracing::warn!(%peer, %protocol, "too many requests in flight: refused");
            return;
        };
        let timeout = route.timeout;
        self.streams.push(
            async move {
                let _in_flight = in_flight;
                match tokio::time::timeout(timeout, answer(route, peer, admitted, stream)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error @ (CallError::Busy | CallError::Stopped))) => {
                        tracing::warn!(%peer, %protocol, %error, "request dropped")
                    }
                    Ok(Err(CallError::NotAdmitted)) => {
                        tracing::debug!(%peer, %protocol, "not admitted for the request: refused")
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %protocol, %error, "inbound request failed")
                    }
                    Err(_) => tracing::debug!(%peer, %protocol, "inbound request timed out"),
                }
            }
            .boxed(),
        );
    }

    fn send(&mut self, stream: Stream, call: Call) {
        let Call { protocol, request, max_response, timeout, mut reply } = call;
        self.streams.push(
            async move {
                let exchange = exchange(stream, protocol, request, max_response);
                tokio::select! {
                    // The caller gave up: so does the connection.
                    () = reply.closed() => {}
                    result = tokio::time::timeout(timeout, exchange) => {
                        let _ = reply.send(result.unwrap_or(Err(CallError::Timeout(timeout))));
                    }
                }
            }
            .boxed(),
        );
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Call;
    type ToBehaviour = Infallible;
    type InboundProtocol = Upgrade;
    type OutboundProtocol = Upgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Call;

    fn listen_protocol(&self) -> SubstreamProtocol<Upgrade, ()> {
        SubstreamProtocol::new(Upgrade(served(&self.served).protocols.clone()), ())
    }

    fn connection_keep_alive(&self) -> bool {
        !self.calls.is_empty()
            || !self.streams.is_empty()
            || self.kept.read().unwrap_or_else(|e| e.into_inner()).contains(&self.peer)
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Upgrade, Call, Infallible>> {
        while let Poll::Ready(Some(())) = self.streams.poll_next_unpin(cx) {}
        match self.calls.pop_front() {
            Some(call) => Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(Upgrade(vec![call.protocol.clone()]), call),
            }),
            None => Poll::Pending,
        }
    }

    fn on_behaviour_event(&mut self, call: Call) {
        self.calls.push_back(call);
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<Upgrade, Upgrade, (), Call>) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: (stream, protocol),
                ..
            }) => self.answer_inbound(protocol, stream),
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: (stream, _),
                info: call,
            }) => self.send(stream, call),
            ConnectionEvent::DialUpgradeError(DialUpgradeError { info: call, error }) => {
                let error = match error {
                    StreamUpgradeError::NegotiationFailed => {
                        OpenError::Unsupported(call.protocol.clone())
                    }
                    StreamUpgradeError::Timeout => {
                        OpenError::Io(io::Error::from(io::ErrorKind::TimedOut))
                    }
                    StreamUpgradeError::Io(e) => OpenError::Io(e),
                    StreamUpgradeError::Apply(never) => match never {},
                };
                call.fail(error.into());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_call_that_never_left_is_undelivered() {
        let unreachable = CallError::Open(OpenError::Dial("no route".into()));
        let unserved = CallError::Open(OpenError::Unsupported(StreamProtocol::new("/tau/x/1")));
        let too_large = CallError::TooLarge { what: "request", limit: 10 };
        for undelivered in [unreachable, unserved, too_large] {
            assert!(undelivered.never_delivered(), "{undelivered}");
        }
        let maybe_handled = [
            CallError::NoAnswer,
            CallError::Timeout(Duration::from_secs(1)),
            CallError::Open(OpenError::Closed),
            CallError::TooLarge { what: "answer", limit: 10 },
        ];
        for error in maybe_handled {
            assert!(!error.never_delivered(), "{error}");
        }
    }
}
