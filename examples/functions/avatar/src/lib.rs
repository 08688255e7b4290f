//! An example function: draws a deterministic avatar, a symmetric 5x5 pattern in one colour,
//! from the request path (`/avatar/alice` always gives the same picture), as SVG.

use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Avatar;

wasi::http::proxy::export!(Avatar);

/// FNV-1a: a stable spread of the name's bytes (a picture, not a secret).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// The SVG for `name`.
pub fn draw(name: &str) -> String {
    let hash = fnv1a(name.as_bytes());
    let hue = hash % 360;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 5 5\" width=\"120\" height=\"120\" \
         shape-rendering=\"crispEdges\"><rect width=\"5\" height=\"5\" fill=\"#f0f0f0\"/>\
         <g fill=\"hsl({hue},65%,50%)\">"
    );
    // 15 bits pick the left three columns; the right two mirror them.
    for row in 0..5u64 {
        for col in 0..3u64 {
            if hash >> (8 + row * 3 + col) & 1 == 1 {
                svg.push_str(&format!("<rect x=\"{col}\" y=\"{row}\" width=\"1\" height=\"1\"/>"));
                if col < 2 {
                    let mirror = 4 - col;
                    svg.push_str(&format!(
                        "<rect x=\"{mirror}\" y=\"{row}\" width=\"1\" height=\"1\"/>"
                    ));
                }
            }
        }
    }
    svg.push_str("</g></svg>\n");
    svg
}

impl wasi::exports::http::incoming_handler::Guest for Avatar {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = kit::path(&request);
        let name = path.trim_start_matches('/').trim_start_matches("avatar").trim_matches('/');
        let name = if name.is_empty() { "tau" } else { name };
        kit::respond(out, 200, &[("content-type", b"image/svg+xml")], draw(name).as_bytes());
    }
}
