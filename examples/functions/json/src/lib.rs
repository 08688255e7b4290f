//! An example function: parses the JSON in the request body and answers it pretty-printed, or
//! answers 400 with where the JSON is broken.

use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Json;

wasi::http::proxy::export!(Json);

impl wasi::exports::http::incoming_handler::Guest for Json {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let body = kit::read_body(&request);
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(value) => {
                let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
                text.push('\n');
                kit::respond(out, 200, &[("content-type", b"application/json")], text.as_bytes());
            }
            Err(e) => {
                let text = format!("not JSON: {e}\n");
                kit::respond(out, 400, &[("content-type", b"text/plain")], text.as_bytes());
            }
        }
    }
}
