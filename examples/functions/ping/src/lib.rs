//! An example function: a `wasi:http/incoming-handler` that answers `pong`, and prints a line
//! for each request (`tau-node logs --function example/ping` shows them).

use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Ping;

wasi::http::proxy::export!(Ping);

impl wasi::exports::http::incoming_handler::Guest for Ping {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        println!("pong for {}", kit::path(&request));
        kit::respond(out, 200, &[("content-type", b"text/plain")], b"pong\n");
    }
}
