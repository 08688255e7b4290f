//! An OTLP/HTTP receiver for tests: listens on 127.0.0.1, answers every POST with 200, and
//! hands each request's path and body (protobuf) to the test, which decodes it with the
//! OpenTelemetry protocol's own message types.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, channel};

use crate::harness::Result;

/// An OTLP/HTTP receiver on loopback that keeps what it is sent, for tests.
pub struct OtlpReceiver {
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// (path, body) of each request, in arrival order.
    pub requests: Receiver<(String, Vec<u8>)>,
}

impl OtlpReceiver {
    /// Starts listening; runs until the process ends.
    pub fn start() -> Result<Self> {
        let (sender, requests) = channel();
        let sender = Mutex::new(sender);
        let url = crate::http_server::serve(move |request| {
            if let Ok(sender) = sender.lock() {
                let _ = sender.send((request.path.clone(), request.body.clone()));
            }
            (200, String::new())
        })?;
        Ok(Self { url, requests })
    }
}
