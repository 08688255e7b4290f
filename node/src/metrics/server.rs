//! The admin HTTP port: `GET /metrics` answers the Prometheus text; anything else is a 404.
//! Bounded like patrick's endpoint (`crate::http_server`): at most 64 connections open, 10 s
//! to send a request's headers, no body read.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{CONTENT_TYPE, Sources, render};

/// The most connections open at once.
const MAX_CONNECTIONS: usize = 64;

/// Answers scrapes until `shutdown`.
pub async fn serve(sources: Sources, listener: TcpListener, shutdown: CancellationToken) {
    let sources = Arc::new(sources);
    let answer = move |request| {
        let sources = sources.clone();
        async move { answer(&sources, request).await }
    };
    crate::http_server::serve("admin port", listener, MAX_CONNECTIONS, answer, shutdown).await;
}

async fn answer(sources: &Sources, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            (StatusCode::OK, CONTENT_TYPE, render(&sources.gather().await))
        }
        (_, "/metrics") => {
            (StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET /metrics\n".to_string())
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "this is a tau node's admin port: GET /metrics\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}
