//! How services plug into the swarm task: inbound requests go to the service over a channel with
//! a oneshot for the answer; outbound requests come back on a oneshot. Services never see a
//! libp2p type but [`PeerId`].

use std::collections::HashMap;

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use tokio::sync::{mpsc, oneshot};

/// A request from a peer, for a service to answer through `reply`.
pub struct Inbound<Req, Resp> {
    /// Who asked.
    pub peer: PeerId,
    /// What.
    pub request: Req,
    /// Where the answer goes; dropping it leaves the peer with an error.
    pub reply: oneshot::Sender<Resp>,
}

/// Why an outbound request got no answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("request to {peer} failed: {reason}")]
pub struct RequestError {
    /// The peer asked.
    pub peer: PeerId,
    /// Why.
    pub reason: String,
}

type Answer<Resp> = oneshot::Sender<Result<Resp, RequestError>>;

/// What the rest of the node asks of a service protocol.
pub(crate) enum ServiceCommand<Req, Resp> {
    /// Route inbound requests to this inbox.
    Serve(mpsc::Sender<Inbound<Req, Resp>>),
    /// Send a request and hand back the answer.
    Request { peer: PeerId, request: Req, answer: Answer<Resp> },
}
/// A service's answer once it comes, with the channel it goes back on.
type Pending<Resp> = BoxFuture<'static, Option<(Resp, ResponseChannel<Resp>)>>;

/// One service protocol's plumbing inside the swarm task.
pub(super) struct Route<Req, Resp> {
    inbox: Option<mpsc::Sender<Inbound<Req, Resp>>>,
    pub(super) responding: FuturesUnordered<Pending<Resp>>,
    waiting: HashMap<OutboundRequestId, (PeerId, Answer<Resp>)>,
}

impl<Req, Resp> Default for Route<Req, Resp> {
    fn default() -> Self {
        Self { inbox: None, responding: FuturesUnordered::new(), waiting: HashMap::new() }
    }
}

impl<Req, Resp> Route<Req, Resp>
where
    Req: Send + 'static,
    Resp: Send + 'static,
{
    pub(super) fn command(
        &mut self,
        behaviour: &mut request_response::cbor::Behaviour<Req, Resp>,
        command: ServiceCommand<Req, Resp>,
    ) where
        Req: serde::Serialize + serde::de::DeserializeOwned,
        Resp: serde::Serialize + serde::de::DeserializeOwned,
    {
        match command {
            ServiceCommand::Serve(inbox) => self.inbox = Some(inbox),
            ServiceCommand::Request { peer, request, answer } => {
                let id = behaviour.send_request(&peer, request);
                self.waiting.insert(id, (peer, answer));
            }
        }
    }

    /// Hands an inbound request to the service; its answer comes out of `responding`. Gives the
    /// channel back when no service is registered.
    pub(super) fn forward(
        &mut self,
        peer: PeerId,
        request: Req,
        channel: ResponseChannel<Resp>,
    ) -> Result<(), ResponseChannel<Resp>> {
        let Some(inbox) = &self.inbox else {
            return Err(channel);
        };
        let (reply, answer) = oneshot::channel();
        if inbox.try_send(Inbound { peer, request, reply }).is_err() {
            tracing::warn!(%peer, "service busy: request dropped");
            return Ok(());
        }
        self.responding.push(answer.map(move |r| r.ok().map(|r| (r, channel))).boxed());
        Ok(())
    }

    pub(super) fn on_event(&mut self, event: request_response::Event<Req, Resp>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    if self.forward(peer, request, channel).is_err() {
                        tracing::debug!(%peer, "request for a service this node does not serve");
                    }
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some((_, answer)) = self.waiting.remove(&request_id) {
                        let _ = answer.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                if let Some((peer, answer)) = self.waiting.remove(&request_id) {
                    let _ = answer.send(Err(RequestError { peer, reason: error.to_string() }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}
