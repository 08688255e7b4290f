//! A counter in the project's key-value store `counts` (`wasi:keyvalue`).
//!
//! - `POST /count?key=NAME` reads the counter, adds one (`atomics.increment`: increments taken
//!   on different nodes at once are all counted) and answers the new value.
//! - `GET /count?key=NAME` answers the value (0 for a counter never incremented).
//!
//! `key` defaults to `hits`. A store the function may not open is 403, one its project does not
//! declare 404, any other failure of the store 503 with the node's reason.

use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};

mod kv {
    wit_bindgen::generate!({ path: "wit", world: "wasi:keyvalue/imports" });
    pub use self::wasi::keyvalue::{atomics, store};
}

use kv::store::Error;

/// The store, as `databases/counts.yaml` names it.
const STORE: &str = "counts";

struct Counter;

wasi::http::proxy::export!(Counter);

impl wasi::exports::http::incoming_handler::Guest for Counter {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let query = request.path_with_query().unwrap_or_default();
        let key = query
            .split_once("key=")
            .map(|(_, rest)| rest.split('&').next().unwrap_or_default().to_string())
            .filter(|key| !key.is_empty())
            .unwrap_or_else(|| "hits".into());
        let answer = match request.method() {
            Method::Post => count(&key),
            Method::Get => read(&key),
            _ => return kit::respond(out, 405, &[], b"GET or POST\n"),
        };
        match answer {
            Ok(value) => kit::respond(out, 200, &[("content-type", b"text/plain")], format!("{value}\n").as_bytes()),
            Err((status, why)) => kit::respond(out, status, &[], format!("{why}\n").as_bytes()),
        }
    }
}

fn open() -> Result<kv::store::Bucket, (u16, String)> {
    kv::store::open(STORE).map_err(|e| failure("cannot open the store", e))
}

/// The counter's value.
fn read(key: &str) -> Result<u64, (u16, String)> {
    let bucket = open()?;
    let value = bucket.get(key).map_err(|e| failure("cannot read", e))?;
    Ok(value.and_then(|v| String::from_utf8(v).ok()?.trim().parse().ok()).unwrap_or(0))
}

/// Reads the counter, then adds one: the new value.
fn count(key: &str) -> Result<u64, (u16, String)> {
    let bucket = open()?;
    bucket.get(key).map_err(|e| failure("cannot read", e))?;
    kv::atomics::increment(&bucket, key, 1).map_err(|e| failure("cannot increment", e))
}

fn failure(what: &str, error: Error) -> (u16, String) {
    match error {
        Error::NoSuchStore => (404, format!("{what}: the project has no store `{STORE}`")),
        Error::AccessDenied => (403, format!("{what}: this function may not open `{STORE}`")),
        Error::Other(why) => (503, format!("{what}: {why}")),
    }
}
