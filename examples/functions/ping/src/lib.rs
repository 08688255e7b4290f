//! An example function: a `wasi:http/incoming-handler` that answers `pong`.

use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Ping;

wasi::http::proxy::export!(Ping);

impl wasi::exports::http::incoming_handler::Guest for Ping {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let response = OutgoingResponse::new(Fields::new());
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(response_out, Ok(response));
        if let Ok(out) = body.write() {
            let _ = out.blocking_write_and_flush(b"pong\n");
        }
        let _ = OutgoingBody::finish(body, None);
    }
}
