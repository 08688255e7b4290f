//! A function that misbehaves on purpose, for the node's tests. The last path segment says how:
//!
//! - `spin`: loops forever without answering (the node must stop it at its timeout);
//! - `hog`: allocates until memory runs out (the node must stop it at its memory limit);
//! - `crash`: panics (a trap);
//! - `silent`: returns without setting a response;
//! - `sleep`: waits on a host clock forever (the deadline must apply outside wasm too);
//! - `fetch`, `read`, `connect`, `env`: tries an outgoing HTTP request, reading a file, opening
//!   a TCP connection (to `?port=N` on 127.0.0.1), listing the environment; answers `denied: ...`
//!   or `allowed: ...`;
//! - `print`: prints `?lines=N` numbered lines to stdout (1000 by default) and one to stderr,
//!   then answers `printed N`;
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
            "fetch" => answer(out, fetch()),
            "read" => answer(
                out,
                std::fs::read_to_string("/etc/hostname")
                    .map(|_| "read /etc/hostname".to_string())
                    .map_err(|e| e.to_string()),
            ),
            "connect" => {
                let full = request.path_with_query().unwrap_or_default();
                let port = full.split("port=").nth(1).unwrap_or("80").to_string();
                let result = std::net::TcpStream::connect(format!("127.0.0.1:{port}"))
                    .map(|_| format!("connected to port {port}"))
                    .map_err(|e| e.to_string());
                answer(out, result)
            }
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                match vars.is_empty() {
                    true => answer(out, Err("no environment".into())),
                    false => answer(out, Ok(vars.join(","))),
                }
            }
            "print" => {
                let full = request.path_with_query().unwrap_or_default();
                let lines: u32 =
                    full.split("lines=").nth(1).and_then(|n| n.parse().ok()).unwrap_or(1000);
                for i in 1..=lines {
                    println!("line {i} of {lines}");
                }
                eprintln!("printed {lines} lines");
                let text = format!("printed {lines}\n");
                kit::respond(out, 200, &[("content-type", b"text/plain")], text.as_bytes())
            }
            _ => kit::respond(out, 200, &[("content-type", b"text/plain")], b"fine\n"),
        }
    }
}

/// `allowed: what` or `denied: why`.
fn answer(out: ResponseOutparam, result: Result<String, String>) {
    let text = match result {
        Ok(what) => format!("allowed: {what}\n"),
        Err(why) => format!("denied: {why}\n"),
    };
    kit::respond(out, 200, &[("content-type", b"text/plain")], text.as_bytes());
}

/// An outgoing GET to 127.0.0.1:9.
fn fetch() -> Result<String, String> {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Fields, OutgoingRequest, Scheme};
    let request = OutgoingRequest::new(Fields::new());
    request.set_scheme(Some(&Scheme::Http)).map_err(|()| "bad scheme".to_string())?;
    request.set_authority(Some("127.0.0.1:9")).map_err(|()| "bad authority".to_string())?;
    request.set_path_with_query(Some("/")).map_err(|()| "bad path".to_string())?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(response))) => Ok(format!("status {}", response.status())),
        Some(Ok(Err(e))) => Err(format!("{e:?}")),
        Some(Err(())) | None => Err("no answer".into()),
    }
}
