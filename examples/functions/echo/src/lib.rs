//! An example function: answers with the request's body, and with its method, path and headers
//! as `x-echo-method`, `x-echo-path` and `x-echo-<header>` response headers.

use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};

struct Echo;

wasi::http::proxy::export!(Echo);

impl wasi::exports::http::incoming_handler::Guest for Echo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let method = match request.method() {
            Method::Get => "GET".to_string(),
            Method::Post => "POST".to_string(),
            Method::Put => "PUT".to_string(),
            Method::Delete => "DELETE".to_string(),
            Method::Patch => "PATCH".to_string(),
            Method::Head => "HEAD".to_string(),
            Method::Options => "OPTIONS".to_string(),
            Method::Connect => "CONNECT".to_string(),
            Method::Trace => "TRACE".to_string(),
            Method::Other(other) => other,
        };
        let path = request.path_with_query().unwrap_or_default();
        let names: Vec<(String, Vec<u8>)> = request
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| (format!("x-echo-{name}"), value))
            .collect();
        let body = kit::read_body(&request);
        let mut headers: Vec<(&str, &[u8])> =
            vec![("x-echo-method", method.as_bytes()), ("x-echo-path", path.as_bytes())];
        headers.extend(names.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
        kit::respond(out, 200, &headers, &body);
    }
}
