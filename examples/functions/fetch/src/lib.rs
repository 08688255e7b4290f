//! `GET /fetch?url=http://host:port/path` fetches the URL (or, without `url`, the one in the
//! variable `url`) with `wasi:http`'s outgoing handler and answers its status and body,
//! prefixed with the variable `greeting` if the YAML sets one. It follows up to 3 redirects,
//! each a new request the node checks against the hosts the function's YAML allows. A request
//! the node refuses is answered 502 with the node's reason.

use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingRequest, OutgoingRequest, ResponseOutparam, Scheme,
};
use wasi::io::streams::StreamError;

mod config {
    wit_bindgen::generate!({ path: "wit", world: "wasi:config/imports" });
    pub use self::wasi::config::store::get;
}

/// The most bytes of the fetched body passed on.
const MAX_BODY: usize = 64 * 1024;
/// The most redirects followed.
const MAX_REDIRECTS: usize = 3;

struct Fetch;

wasi::http::proxy::export!(Fetch);

impl wasi::exports::http::incoming_handler::Guest for Fetch {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let variable = |name: &str| config::get(name).ok().flatten();
        let query = request.path_with_query().unwrap_or_default();
        let url = query
            .split_once("?url=")
            .map(|(_, url)| url.to_string())
            .or_else(|| variable("url"));
        let Some(mut url) = url else {
            return kit::respond(out, 400, &[], b"give ?url=http://... or set the variable url\n");
        };
        let greeting = variable("greeting").unwrap_or_default();
        for _ in 0..=MAX_REDIRECTS {
            match get(&url) {
                Ok((status, Some(location), _)) if (300..400).contains(&status) => url = location,
                Ok((status, _, body)) => {
                    let mut answer = format!("{greeting}{status}\n").into_bytes();
                    answer.extend_from_slice(&body);
                    return kit::respond(out, 200, &[("content-type", b"text/plain")], &answer);
                }
                Err(why) => {
                    let text = format!("cannot fetch {url}: {why}\n");
                    return kit::respond(out, 502, &[], text.as_bytes());
                }
            }
        }
        kit::respond(out, 502, &[], b"too many redirects\n");
    }
}

/// GETs `url`: its status, its `location` header and (the start of) its body.
fn get(url: &str) -> Result<(u16, Option<String>, Vec<u8>), String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        _ => return Err("not an http:// or https:// URL".into()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let set = request.set_scheme(Some(&scheme)).is_ok()
        && request.set_authority(Some(authority)).is_ok()
        && request.set_path_with_query(Some(path)).is_ok();
    if !set {
        return Err("not a URL the request can take".into());
    }
    let pending = outgoing_handler::handle(request, None).map_err(describe)?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(describe(code)),
        _ => return Err("no response".into()),
    };
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let mut body = Vec::new();
    if let Ok(incoming) = response.consume()
        && let Ok(stream) = incoming.stream()
    {
        while body.len() < MAX_BODY {
            match stream.blocking_read((MAX_BODY - body.len()) as u64) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) | Err(StreamError::LastOperationFailed(_)) => break,
            }
        }
    }
    Ok((status, location, body))
}

fn describe(code: ErrorCode) -> String {
    format!("{code:?}")
}
