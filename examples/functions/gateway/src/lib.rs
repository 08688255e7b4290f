//! A content gateway over the cloud's blobs (`tau:storage`), everything streamed 64 KiB at a
//! time, so a blob of any size passes through in little memory:
//!
//! - `GET /blob/<cid>`: the hoarder blob `<cid>` (`blobs`). A CID that does not parse is 400, a
//!   blob no node holds 404.
//! - `GET /files`: the keys of the project's storage `files`, one per line.
//! - `GET /files/<key>`: the blob `<key>` names (404: no such key).
//! - `PUT /files/<key>`: stores the request's body under `<key>` (201, the blob's CID).
//! - `DELETE /files/<key>`: deletes the key (204).
//!
//! A failure on the way is 502 (before the first byte of an answer) or a cut-off body (after).
//! One component serves all three routes (`gateway`, `files-put`, `files-delete`).

use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasi::io::streams::StreamError;

mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "tau:storage/imports" });
    pub use self::tau::storage::{blobs, storage};
}

use bindings::{blobs, storage};

/// Bytes read from a blob or a request and written on at a time.
const PIECE: u64 = 64 * 1024;
/// The storage the `/files` routes use.
const FILES: &str = "files";

struct Gateway;

wasi::http::proxy::export!(Gateway);

/// Answers `status` with `text` and a newline (an empty `text`: an empty body).
fn plain(out: ResponseOutparam, status: u16, text: &str) {
    let response = OutgoingResponse::new(Fields::new());
    let _ = response.set_status_code(status);
    let Ok(body) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if text.is_empty() {
        let _ = OutgoingBody::finish(body, None);
        return;
    }
    if let Ok(stream) = body.write() {
        for part in format!("{text}\n").as_bytes().chunks(4096) {
            if stream.blocking_write_and_flush(part).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(body, None);
}

/// Answers 200 with `blob`'s bytes, read a piece at a time.
fn stream_blob(out: ResponseOutparam, blob: blobs::Blob) {
    let headers = Fields::new();
    let _ = headers.append("content-type", b"application/octet-stream");
    let _ = headers.append("content-length", blob.size().to_string().as_bytes());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(200);
    let Ok(body) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    let Ok(stream) = body.write() else { return };
    loop {
        let piece = match blob.read(PIECE) {
            Ok(piece) if piece.is_empty() => break,
            Ok(piece) => piece,
            // The status is sent: cut the body short, so the client sees it incomplete.
            Err(_) => return,
        };
        // blocking_write_and_flush takes at most 4096 bytes at a time.
        for part in piece.chunks(4096) {
            if stream.blocking_write_and_flush(part).is_err() {
                return;
            }
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

fn blob_by_cid(out: ResponseOutparam, cid: &str) {
    use blobs::Error;
    match blobs::open(cid) {
        Ok(blob) => stream_blob(out, blob),
        Err(Error::BadCid(why)) => plain(out, 400, &format!("not a CID: {why}")),
        Err(Error::NotFound) => plain(out, 404, &format!("no node holds {cid}")),
        Err(Error::TooManyOpen) => plain(out, 503, "too many blobs open"),
        Err(Error::Other(why)) => plain(out, 502, &why),
    }
}

/// The status and text of a storage error.
fn failed(error: storage::Error) -> (u16, String) {
    use storage::Error;
    match error {
        Error::NoSuchStorage => (500, format!("the project declares no storage `{FILES}`")),
        Error::AccessDenied => (403, format!("this function may not open `{FILES}`")),
        Error::BadKey(why) => (400, why),
        Error::Full(why) => (507, why),
        Error::TooManyOpen => (503, "too many blobs open".into()),
        Error::Other(why) => (502, why),
    }
}

/// Streams the request's body into an upload under `key`; the blob's CID.
fn put(files: &storage::Container, key: &str, request: IncomingRequest) -> Result<String, (u16, String)> {
    let upload = files.put(key).map_err(failed)?;
    let body = request.consume().map_err(|()| (400, "no request body".to_string()))?;
    {
        let stream = body.stream().map_err(|()| (400, "no request body".to_string()))?;
        loop {
            match stream.blocking_read(PIECE) {
                Ok(piece) => upload.write(&piece).map_err(failed)?,
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(_)) => {
                    return Err((400, "the request body broke off".into()));
                }
            }
        }
    }
    let _ = wasi::http::types::IncomingBody::finish(body);
    upload.finish().map_err(failed)
}

fn files(out: ResponseOutparam, request: IncomingRequest, key: &str) {
    let files = match storage::open(FILES) {
        Ok(files) => files,
        Err(e) => {
            let (status, text) = failed(e);
            return plain(out, status, &text);
        }
    };
    let answer = match (request.method(), key) {
        (Method::Get, "") => list(&files),
        (Method::Get, key) => match files.get(key) {
            Ok(Some(blob)) => return stream_blob(out, blob),
            Ok(None) => Err((404, format!("no file `{key}`"))),
            Err(e) => Err(failed(e)),
        },
        (Method::Put, "") | (Method::Delete, "") => Err((404, "PUT or DELETE /files/<key>".into())),
        (Method::Put, key) => put(&files, key, request).map(|cid| (201, cid)),
        (Method::Delete, key) => files.delete(key).map(|()| (204, String::new())).map_err(failed),
        _ => Err((405, "GET, PUT or DELETE".into())),
    };
    match answer {
        Ok((status, text)) | Err((status, text)) => plain(out, status, &text),
    }
}

/// Every key of the storage, in order, one per line.
fn list(files: &storage::Container) -> Result<(u16, String), (u16, String)> {
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = files.list_keys(cursor).map_err(failed)?;
        keys.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    keys.sort();
    Ok((200, keys.join("\n")))
}

impl wasi::exports::http::incoming_handler::Guest for Gateway {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default().to_string();
        if let Some(cid) = path.strip_prefix("/blob/").filter(|c| !c.is_empty()) {
            return blob_by_cid(out, cid);
        }
        if path == "/files" {
            return files(out, request, "");
        }
        if let Some(key) = path.strip_prefix("/files/") {
            return files(out, request, key);
        }
        plain(out, 404, "GET /blob/<cid>, GET /files, GET, PUT or DELETE /files/<key>")
    }
}
