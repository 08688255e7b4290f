//! An example function: a `wasi:http/incoming-handler` that answers `pong`.

use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Ping;

wasi::http::proxy::export!(Ping);

impl wasi::exports::http::incoming_handler::Guest for Ping {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        kit::respond(out, 200, &[("content-type", b"text/plain")], b"pong\n");
    }
}
