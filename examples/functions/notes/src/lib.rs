//! Notes, a small JSON CRUD API over the project's key-value store `notes` (`wasi:keyvalue`).
//!
//! - `PUT /notes/<id>` with a JSON body stores it (201 new, 200 replaced); 400 for a body that
//!   is not JSON or an id that is not 1-64 of a-z, 0-9, - and _.
//! - `GET /notes/<id>` answers it, 404 if there is none.
//! - `GET /notes` lists the ids (`{"ids": [...]}`).
//! - `DELETE /notes/<id>` deletes it (204; 404 if there was none).
//!
//! A failure of the store is 503 with the node's reason (such as a full store).

use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};

mod kv {
    wit_bindgen::generate!({ path: "wit", world: "wasi:keyvalue/imports" });
    pub use self::wasi::keyvalue::store;
}

use kv::store::{Bucket, Error};

/// The store, as `databases/notes.yaml` names it.
const STORE: &str = "notes";
/// The largest note, bytes.
const MAX_NOTE: usize = 64 * 1024;

struct Notes;

wasi::http::proxy::export!(Notes);

type Answer = (u16, Vec<u8>);

impl wasi::exports::http::incoming_handler::Guest for Notes {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = kit::path(&request);
        let id = path.trim_end_matches('/').strip_prefix("/notes").unwrap_or_default();
        let id = id.strip_prefix('/').unwrap_or(id);
        let method = request.method();
        let body = kit::read_body(&request);
        let (status, body) = match answer(method, id, body) {
            Ok(answer) | Err(answer) => answer,
        };
        kit::respond(out, status, &[("content-type", b"application/json")], &body);
    }
}

fn answer(method: Method, id: &str, body: Vec<u8>) -> Result<Answer, Answer> {
    let bucket = kv::store::open(STORE).map_err(failure)?;
    if id.is_empty() {
        return match method {
            Method::Get => list(&bucket),
            _ => Err(error(405, "GET /notes, or PUT, GET or DELETE /notes/<id>")),
        };
    }
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
        return Err(error(400, "an id is 1-64 of a-z, 0-9, - and _"));
    }
    match method {
        Method::Get => match bucket.get(id).map_err(failure)? {
            Some(note) => Ok((200, note)),
            None => Err(error(404, "no such note")),
        },
        Method::Put => {
            if body.len() > MAX_NOTE || serde_json::from_slice::<serde_json::Value>(&body).is_err() {
                return Err(error(400, "a note is a JSON value of at most 64 KiB"));
            }
            let existed = bucket.exists(id).map_err(failure)?;
            bucket.set(id, &body).map_err(failure)?;
            Ok((if existed { 200 } else { 201 }, body))
        }
        Method::Delete => {
            if !bucket.exists(id).map_err(failure)? {
                return Err(error(404, "no such note"));
            }
            bucket.delete(id).map_err(failure)?;
            Ok((204, Vec::new()))
        }
        _ => Err(error(405, "PUT, GET or DELETE /notes/<id>")),
    }
}

/// Every id, page by page.
fn list(bucket: &Bucket) -> Result<Answer, Answer> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = bucket.list_keys(cursor).map_err(failure)?;
        ids.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    ids.sort();
    Ok((200, serde_json::json!({ "ids": ids }).to_string().into_bytes()))
}

fn error(status: u16, message: &str) -> Answer {
    (status, serde_json::json!({ "error": message }).to_string().into_bytes())
}

fn failure(e: Error) -> Answer {
    match e {
        Error::NoSuchStore => error(404, "the project has no store `notes`"),
        Error::AccessDenied => error(403, "this function may not open `notes`"),
        Error::Other(why) => error(503, &why),
    }
}
