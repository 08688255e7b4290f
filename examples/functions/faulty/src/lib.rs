//! A function that misbehaves on purpose, for the node's tests. The last path segment says how:
//!
//! - `spin`: loops forever without answering (the node must stop it at its timeout);
//! - `hog`: allocates until memory runs out (the node must stop it at its memory limit);
//! - `crash`: panics (a trap);
//! - `silent`: returns without setting a response;
//! - `sleep`: waits on a host clock forever (the deadline must apply outside wasm too);
//! - anything else: answers `fine`.

use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Faulty;

wasi::http::proxy::export!(Faulty);

impl wasi::exports::http::incoming_handler::Guest for Faulty {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = kit::path(&request);
        match path.rsplit('/').next().unwrap_or("") {
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "hog" => {
                let mut kept: Vec<Vec<u8>> = Vec::new();
                loop {
                    kept.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&kept);
                }
            }
            "crash" => panic!("crashing on purpose"),
            "silent" => drop(out),
            "sleep" => loop {
                wasi::clocks::monotonic_clock::subscribe_duration(3_600_000_000_000).block();
            },
            _ => kit::respond(out, 200, &[("content-type", b"text/plain")], b"fine\n"),
        }
    }
}
