//! What a Tau protocol is: one type that names it, its messages, its limits and who may call it.
//!
//! A request-response protocol is a unit struct with an `impl` [`Protocol`]; a node serves it by
//! registering a handler for it at start, and the node and the light client call it through one
//! generic method (`p2p::Handle::call` in the node, [`crate::Client::call`]). The p2p core and
//! the light client know no protocol by name but the core's own `admin`: adding a service adds
//! an `impl Protocol`, its handler and one line where the node assembles its services.
//!
//! On the wire a call is one stream negotiated for the protocol's name: the caller writes the
//! request as CBOR and closes its side; the server writes the response as CBOR and closes. A
//! message longer than its protocol's limit is refused before a byte of it is decoded.
//!
//! A gossip topic is the same: a unit struct with an `impl` [`Topic`].

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The request limit of a protocol that does not set one.
pub const DEFAULT_MAX_REQUEST: u64 = 16 << 20;
/// The response limit of a protocol that does not set one.
pub const DEFAULT_MAX_RESPONSE: u64 = 64 << 20;
/// The time a call gets, open to answer, in a protocol that does not set one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A request-response protocol.
pub trait Protocol: Send + Sync + 'static {
    /// The protocol name negotiated on the stream, such as `/tau/admin/1`.
    const NAME: &'static str;
    /// How long a call may take, from opening the stream to the last byte of the answer; a
    /// server gives up on a request after the same time.
    const TIMEOUT: Duration = DEFAULT_TIMEOUT;
    /// The largest request, in bytes of CBOR.
    const MAX_REQUEST: u64 = DEFAULT_MAX_REQUEST;
    /// The largest response, in bytes of CBOR.
    const MAX_RESPONSE: u64 = DEFAULT_MAX_RESPONSE;
    /// Who may call it.
    const ACCESS: Access = Access::Anyone;

    /// What a caller sends.
    type Request: Serialize + DeserializeOwned + Send + 'static;
    /// What the server answers.
    type Response: Serialize + DeserializeOwned + Send + 'static;

    /// Who may send `request`: [`Protocol::ACCESS`], unless the protocol keeps some of its
    /// requests to nodes (anti-entropy, replication) while clients call the rest. Checked once
    /// the request is decoded; a request its caller may not send is closed unanswered, as a
    /// protocol the caller may not call is.
    fn request_access(request: &Self::Request) -> Access {
        let _ = request;
        Self::ACCESS
    }

    /// The message of an answer that says the request failed, if this one does. The light
    /// client turns such an answer into an error that names the node.
    fn refusal(response: &Self::Response) -> Option<&str> {
        let _ = response;
        None
    }
}

/// Who may call a protocol or publish on a topic. Admission is the operator's (see
/// [`crate::membership`]); a node that knows no operator key treats every `tau-node` peer as
/// admitted, for every role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Any peer, light clients included.
    Anyone,
    /// Nodes the operator admitted.
    Nodes,
    /// Nodes that hold this role.
    Role(&'static str),
}

/// A gossipsub topic a service publishes or subscribes to: its name and its largest message.
pub trait Topic: Send + Sync + 'static {
    /// The topic's name, such as `tau/<service>/1`.
    const NAME: &'static str;
    /// Whose messages are delivered: a message from anyone else is dropped (and not forwarded)
    /// before the service sees it.
    const ACCESS: Access = Access::Anyone;
}
