//! A content gateway: `GET /blob/<cid>` answers the hoarder blob `<cid>` (`tau:storage/blobs`),
//! streamed 64 KiB at a time, so a blob of any size passes through in little memory. A CID that
//! does not parse is 400, a blob no node holds 404, a failure on the way 502 (before the first
//! byte) or a cut-off body (after).

use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

mod storage {
    wit_bindgen::generate!({ path: "wit", world: "tau:storage/imports" });
    pub use self::tau::storage::blobs;
}

use storage::blobs::{self, Error};

/// Bytes read from the blob and written to the response at a time.
const PIECE: u64 = 64 * 1024;

struct Gateway;

wasi::http::proxy::export!(Gateway);

fn plain(out: ResponseOutparam, status: u16, text: &str) {
    let response = OutgoingResponse::new(Fields::new());
    let _ = response.set_status_code(status);
    let Ok(body) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = body.write() {
        let _ = stream.blocking_write_and_flush(format!("{text}\n").as_bytes());
    }
    let _ = OutgoingBody::finish(body, None);
}

impl wasi::exports::http::incoming_handler::Guest for Gateway {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default();
        let Some(cid) = path.strip_prefix("/blob/").filter(|c| !c.is_empty()) else {
            return plain(out, 404, "GET /blob/<cid>");
        };
        let blob = match blobs::open(cid) {
            Ok(blob) => blob,
            Err(Error::BadCid(why)) => return plain(out, 400, &format!("not a CID: {why}")),
            Err(Error::NotFound) => return plain(out, 404, &format!("no node holds {cid}")),
            Err(Error::TooManyOpen) => return plain(out, 503, "too many blobs open"),
            Err(Error::Other(why)) => return plain(out, 502, &why),
        };
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
}
