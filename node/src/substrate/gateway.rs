//! The HTTP gateway: HTTP/1.1 (hyper) on the node's http port. Each request is routed by host
//! and path to a function, run in a fresh instance, and counted.
//!
//! Answers the gateway gives itself: 404 when no function serves the host and path (and always
//! without a Host or for an IP address), 500 when the function fails (trap, out of memory, no
//! response) or its component does not load, 503 when the registry cannot be read or no
//! instance slot frees within the node's `slot_wait` (with `Retry-After: 1`), 504 when the
//! function runs past its timeout. Each is a one-line `text/plain` reason. A function's timeout
//! and memory are cut to the node's caps ([`Caps`]).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::counters::FunctionStats;
use super::engine::{Engine, Failure, Limits};
use super::functions::Functions;
use super::routes::Routes;
use crate::tns::RegistryError;

/// What the gateway's connections share.
pub struct Gateway {
    /// Shared wasmtime engine and limits.
    pub engine: Arc<Engine>,
    /// Compiled components, cached by artifact.
    pub functions: Functions,
    /// Host and path to function, kept in step with TNS.
    pub routes: Routes,
    /// Instance slots: one per function running.
    pub slots: Arc<Semaphore>,
    /// This node's caps on functions' limits, and how long a request waits for a slot.
    pub caps: Caps,
    /// Requests being served now (for heartbeats).
    pub in_flight: Arc<std::sync::atomic::AtomicU64>,
}

/// This node's caps (`substrate` in `node.yaml`): a function's timeout and memory are cut to
/// them, and a request that finds no free instance slot within `slot_wait` is answered 503.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// The longest a function runs here.
    pub max_timeout: Duration,
    /// The most memory a function has here, bytes.
    pub max_memory: u64,
    /// How long a request waits for a free slot.
    pub slot_wait: Duration,
    /// How long a connection may take to send a request's headers, or idle between requests.
    pub header_timeout: Duration,
    /// The most connections open at once.
    pub max_connections: usize,
    /// The most connections open at once from one IP address.
    pub max_connections_per_ip: usize,
}

/// The gateway's open connections per source address; a connection counts until its guard
/// drops.
#[derive(Default)]
struct Open {
    by_ip: std::collections::HashMap<std::net::IpAddr, usize>,
    total: usize,
}

/// One open connection, counted in [`Open`] while it lives.
struct OpenConnection {
    open: Arc<std::sync::Mutex<Open>>,
    ip: std::net::IpAddr,
}

impl Open {
    /// Counts a connection from `ip`, unless that would pass a cap.
    fn take(
        open: &Arc<std::sync::Mutex<Self>>,
        ip: std::net::IpAddr,
        caps: &Caps,
    ) -> Option<OpenConnection> {
        let mut this = open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = this.by_ip.get(&ip).copied().unwrap_or(0);
        if this.total >= caps.max_connections || mine >= caps.max_connections_per_ip {
            return None;
        }
        this.total += 1;
        this.by_ip.insert(ip, mine + 1);
        Some(OpenConnection { open: open.clone(), ip })
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
    }
}

/// How long a stopping gateway waits for the requests it is serving.
pub const FINISH: Duration = Duration::from_secs(10);

/// Accepts connections until `shutdown`; then lets every open connection finish the request it
/// is serving ([`FINISH`] at most) and close, and returns when they have.
pub async fn serve(gateway: Arc<Gateway>, listener: TcpListener, shutdown: CancellationToken) {
    let mut connections = tokio::task::JoinSet::new();
    let open = Arc::new(std::sync::Mutex::new(Open::default()));
    let mut refused: u64 = 0;
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            // Reap finished connections as we go, so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: wait a little rather than spin.
                    tracing::warn!(error = %e, "gateway accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(counted) = Open::take(&open, peer.ip(), &gateway.caps) else {
            // Closed at once: past the node's caps on connections, in all or from this address.
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(%peer, refused, "gateway connection refused: too many open");
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _counted = counted;
            let header_timeout = gateway.caps.header_timeout;
            let service = hyper::service::service_fn(move |request| {
                let gateway = gateway.clone();
                async move { Ok::<_, Infallible>(gateway.handle(request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = shutdown.cancelled() => {
                    // Finish the request in progress, if any, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.as_mut().await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "gateway connection ended");
            }
        });
    }
    drop(listener);
    let open = connections.len();
    let finished =
        tokio::time::timeout(FINISH, async { while connections.join_next().await.is_some() {} })
            .await;
    if finished.is_err() {
        tracing::warn!(
            left = connections.len(),
            "gateway stopped with requests still running after {FINISH:?}"
        );
        connections.abort_all();
    }
    tracing::debug!(open, "gateway stopped");
}

impl Gateway {
    async fn handle(&self, request: Request<Incoming>) -> Response<HyperOutgoingBody> {
        use std::sync::atomic::Ordering::Relaxed;
        self.in_flight.fetch_add(1, Relaxed);
        let response = self.route(request).await;
        self.in_flight.fetch_sub(1, Relaxed);
        response
    }

    async fn route(&self, request: Request<Incoming>) -> Response<HyperOutgoingBody> {
        let Some(host) = host_of(&request) else {
            return plain(
                StatusCode::NOT_FOUND,
                "no function serves a request without a Host".into(),
            );
        };
        let method = request.method().as_str().to_string();
        let path = request.uri().path().to_string();
        let target = match self.routes.lookup(&host, &method, &path).await {
            Ok(Some(target)) => target,
            Ok(None) => {
                return plain(
                    StatusCode::NOT_FOUND,
                    format!("no function serves {method} {host}{path}"),
                );
            }
            Err(e) => {
                match e {
                    RegistryError::CatchingUp => tracing::debug!(%host, "{e}"),
                    _ => tracing::warn!(%host, error = %e, "registry lookup failed"),
                }
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the registry cannot be read now: {e}"),
                );
            }
        };
        let function = &target.function;
        let ready = match self.functions.get(function.source.cid, function.source.size).await {
            Ok(ready) => ready,
            Err(e) => {
                target.stats.failed_early();
                tracing::warn!(project = %target.project, function = %function.name, error = %e, "component not loaded");
                return plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("function {} cannot run: {e}", function.name),
                );
            }
        };
        let slot =
            match tokio::time::timeout(self.caps.slot_wait, self.slots.clone().acquire_owned())
                .await
            {
                Ok(Ok(slot)) => slot,
                Ok(Err(_)) => {
                    return plain(StatusCode::SERVICE_UNAVAILABLE, "the node is stopping".into());
                }
                Err(_) => {
                    let mut busy = plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "every instance slot of this node is busy (waited {:?}): try again",
                            self.caps.slot_wait
                        ),
                    );
                    busy.headers_mut()
                        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                    return busy;
                }
            };
        let limits = Limits {
            timeout: Duration::from_millis(function.execution.timeout_ms)
                .min(self.caps.max_timeout),
            memory: function.execution.memory_bytes.min(self.caps.max_memory),
        };
        let stats = target.stats.clone();
        let request = request.map(|body| Counted::new(body, stats.clone(), Direction::In));
        let finished = {
            let stats = stats.clone();
            move |outcome: &super::engine::Outcome| {
                drop(slot);
                stats.finished(outcome);
            }
        };
        let capabilities = target.capabilities.clone();
        // Every line the invocation prints goes to its function's log, tagged with this id,
        // which the answer carries in `x-tau-request`.
        let request_id = format!("{:016x}", rand::random::<u64>());
        let source = tau_proto::logs::LogSource::Function {
            project: target.project.clone(),
            function: function.name.clone(),
        };
        let logs = crate::logs::global();
        let stdio = super::output::Stdio {
            stdout: super::output::Output::new(crate::logs::FunctionLog::new(
                logs.clone(),
                source.clone(),
                &request_id,
                false,
            )),
            stderr: super::output::Output::new(crate::logs::FunctionLog::new(
                logs.clone(),
                source,
                &request_id,
                true,
            )),
        };
        let invocation = match self.engine.invoke(
            &ready,
            limits,
            capabilities,
            Some(stdio),
            request,
            finished,
        ) {
            Ok(invocation) => invocation,
            Err(e) => {
                return plain(StatusCode::BAD_REQUEST, format!("cannot pass the request on: {e}"));
            }
        };
        let mut response = invocation.response;
        let mut done = invocation.done;
        let answer = tokio::select! {
            answer = &mut response => answer.ok(),
            outcome = &mut done => {
                // The handler ended; it may have set a response just before.
                match response.try_recv() {
                    Ok(answer) => Some(answer),
                    Err(_) => return failed(&function.name, outcome.ok().and_then(|o| o.failure)),
                }
            }
        };
        match answer {
            Some(Ok(response)) => {
                let mut response =
                    response.map(|body| Counted::new(body, stats, Direction::Out).boxed_unsync());
                if let Ok(value) = header::HeaderValue::from_str(&request_id) {
                    response.headers_mut().insert(REQUEST_HEADER, value);
                }
                response
            }
            Some(Err(code)) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("function {} answered with an error: {code:?}", function.name),
            ),
            None => failed(&function.name, done.await.ok().and_then(|o| o.failure)),
        }
    }
}

/// The header that names the request in a function's log lines.
pub const REQUEST_HEADER: &str = "x-tau-request";

/// The answer for an invocation that ended without a response.
fn failed(function: &str, failure: Option<Failure>) -> Response<HyperOutgoingBody> {
    let failure = failure.unwrap_or(Failure::NoResponse);
    let status = match failure {
        Failure::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    plain(status, format!("function {function}: {failure}"))
}

/// The request's host, lower case, without port or trailing dot.
fn host_of<B>(request: &Request<B>) -> Option<String> {
    let raw = match request.uri().authority() {
        Some(authority) => authority.host().to_string(),
        None => {
            let value = request.headers().get(header::HOST)?.to_str().ok()?;
            let authority: http::uri::Authority = value.parse().ok()?;
            authority.host().to_string()
        }
    };
    let host = raw.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// A short text answer from the gateway itself.
fn plain(status: StatusCode, message: String) -> Response<HyperOutgoingBody> {
    let body =
        Full::new(Bytes::from(message + "\n")).map_err(|never| match never {}).boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[derive(Clone, Copy)]
enum Direction {
    In,
    Out,
}

/// A body that adds its bytes to a function's counters.
struct Counted<B> {
    inner: B,
    stats: Arc<FunctionStats>,
    direction: Direction,
}

impl<B> Counted<B> {
    fn new(inner: B, stats: Arc<FunctionStats>, direction: Direction) -> Self {
        Self { inner, stats, direction }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &poll
            && let Some(data) = frame.data_ref()
        {
            let n = data.len() as u64;
            match self.direction {
                Direction::In => self.stats.bytes_in(n),
                Direction::Out => self.stats.bytes_out(n),
            }
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_in_all_and_per_address() {
        let caps = Caps {
            max_timeout: Duration::from_secs(1),
            max_memory: 1,
            slot_wait: Duration::from_secs(1),
            header_timeout: Duration::from_secs(1),
            max_connections: 3,
            max_connections_per_ip: 2,
        };
        let open = Arc::new(std::sync::Mutex::new(Open::default()));
        let (a, b, c): (std::net::IpAddr, std::net::IpAddr, std::net::IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap());
        let first = Open::take(&open, a, &caps).unwrap();
        let _second = Open::take(&open, a, &caps).unwrap();
        assert!(Open::take(&open, a, &caps).is_none(), "two per address");
        let _third = Open::take(&open, b, &caps).unwrap();
        assert!(Open::take(&open, c, &caps).is_none(), "three in all");
        drop(first);
        let _fourth = Open::take(&open, c, &caps).expect("a closed connection frees its place");
        assert!(Open::take(&open, a, &caps).is_none());
    }

    #[test]
    fn hosts_are_normalized() {
        let with_host = |h: &str| Request::builder().uri("/x").header("host", h).body(()).unwrap();
        assert_eq!(
            host_of(&with_host("Ping.Example.TAU:8080")).as_deref(),
            Some("ping.example.tau")
        );
        assert_eq!(host_of(&with_host("ping.example.tau.")).as_deref(), Some("ping.example.tau"));
        let absolute = Request::builder().uri("http://a.b:1/x").body(()).unwrap();
        assert_eq!(host_of(&absolute).as_deref(), Some("a.b"));
        let none = Request::builder().uri("/x").body(()).unwrap();
        assert_eq!(host_of(&none), None);
    }
}
