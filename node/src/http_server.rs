//! The node's small HTTP/1.1 endpoints (patrick's webhooks, the admin port's metrics): one
//! accept loop, bounded the same way. At most `max_connections` open (more are closed at
//! once), 10 s to send a request's headers; at shutdown open connections finish gracefully
//! within 10 s. The gateway has its own loop: it streams bodies and counts bytes.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long a connection may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers requests on `listener` with `answer` until `shutdown`; `name` says which endpoint
/// in the log.
pub async fn serve<A, F>(
    name: &'static str,
    listener: TcpListener,
    max_connections: usize,
    answer: A,
    shutdown: CancellationToken,
) where
    A: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let open = Arc::new(AtomicUsize::new(0));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(endpoint = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if open.load(Ordering::Relaxed) >= max_connections {
            tracing::debug!(endpoint = name, %peer, "connection refused: too many open");
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let (answer, open, shutdown) = (answer.clone(), open.clone(), shutdown.clone());
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let answer = answer.clone();
                async move { Ok::<_, Infallible>(answer(request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.as_mut().await
                }
            };
            if let Err(e) = result {
                tracing::debug!(endpoint = name, %peer, error = %e, "connection ended");
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(listener);
    let finished = tokio::time::timeout(Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        connections.abort_all();
    }
}
