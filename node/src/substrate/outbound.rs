//! Outgoing HTTP from functions (`wasi:http/outgoing-handler`): a request goes out only to a
//! host the function's YAML allows (`allowed_outbound_hosts`), and only to an address that is
//! not private, loopback, link-local (cloud metadata), CGNAT or otherwise reserved
//! ([`tau_proto::outbound::FORBIDDEN`]) unless the node's `substrate.outbound_allow` allows it.
//! The name is resolved here, every address checked, and the connection made to a checked
//! address, so a name that resolves once to a public address and then to a private one (DNS
//! rebinding) reaches nothing it should not. Redirects are not followed here: a function that
//! follows one makes a new request, checked in turn. The request shares the invocation's
//! deadline. https is checked against Mozilla's roots and the operator's own
//! (`substrate.outbound_roots`), with rustls. Every byte a request's connection sends and
//! receives (headers, bodies, TLS) counts in the function's counters.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tau_proto::outbound::{Cidr, HostPattern, Scheme, reachable};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use wasmtime_wasi_http::{Error, WasiBody, WasiHttpHooks};

/// What every function on this node may reach, by the operator's settings.
#[derive(Debug, Default)]
pub struct NodePolicy {
    /// The blocks the node's operator lets functions reach although they are private.
    pub blocks: Vec<Cidr>,
    /// The TLS client of outgoing https (none: https is refused).
    pub tls: Option<Arc<ClientConfig>>,
}

impl NodePolicy {
    /// The operator's `blocks`, and a TLS client trusting Mozilla's roots and the
    /// certificates in the PEM files `roots`; the error names the file at fault.
    pub fn new(blocks: Vec<Cidr>, roots: &[PathBuf]) -> Result<Self, String> {
        let mut store = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        for path in roots {
            let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
            let mut added = 0;
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| at(&e))? {
                store.add(cert.map_err(|e| at(&e))?).map_err(|e| at(&e))?;
                added += 1;
            }
            if added == 0 {
                return Err(at(&"no PEM certificate in it"));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Self { blocks, tls: Some(Arc::new(tls)) })
    }
}

/// What a function may reach.
#[derive(Debug, Default)]
pub struct Allowed {
    /// The hosts its YAML allows.
    pub hosts: Vec<HostPattern>,
    /// What the node allows every function.
    pub node: Arc<NodePolicy>,
}

/// A connection, plain or over TLS.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// The most outgoing requests one invocation may start: each holds a socket and a task.
pub const MAX_REQUESTS: u32 = 64;

/// One invocation's outgoing requests.
pub struct Outbound {
    allowed: Arc<Allowed>,
    deadline: Instant,
    /// Requests started so far.
    started: u32,
    /// Bytes on the wire, both ways, of every request so far.
    traffic: Arc<Traffic>,
}

/// Bytes sent and received on outgoing connections.
#[derive(Debug, Default)]
pub struct Traffic {
    sent: AtomicU64,
    received: AtomicU64,
}

impl Outbound {
    /// Requests allowed by `allowed`, each cut at `deadline`.
    pub fn new(allowed: Arc<Allowed>, deadline: Instant) -> Self {
        Self { allowed, deadline, started: 0, traffic: Arc::default() }
    }

    /// Requests started, bytes sent and bytes received so far.
    pub fn used(&self) -> (u64, u64, u64) {
        let traffic = &self.traffic;
        let (sent, received) =
            (traffic.sent.load(Ordering::Relaxed), traffic.received.load(Ordering::Relaxed));
        (u64::from(self.started), sent, received)
    }
}

/// A connection that counts its bytes into a [`Traffic`].
struct Counted<S> {
    inner: S,
    traffic: Arc<Traffic>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.traffic.received.fetch_add(read, Ordering::Relaxed);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.traffic.sent.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What `send_request` hands back.
pub type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        if self.started >= MAX_REQUESTS {
            return Box::new(async { Err(Error::ConnectionLimitReached) });
        }
        self.started += 1;
        let allowed = self.allowed.clone();
        let deadline = self.deadline;
        Box::new(send(request, allowed, deadline, self.traffic.clone()))
    }
}

/// The scheme, host and port a request goes to, if its function may send it there.
fn destination(
    request: &http::Request<WasiBody>,
    allowed: &Allowed,
) -> Result<(Scheme, String, u16), Error> {
    let uri = request.uri();
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        _ => return Err(Error::HttpProtocolError),
    };
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?.to_string();
    let port = uri.port_u16().unwrap_or(scheme.default_port());
    if !allowed.hosts.iter().any(|p| p.allows(scheme, &host, port)) {
        tracing::debug!(%host, port, "outgoing request to a host the function does not allow");
        return Err(Error::HttpRequestDenied);
    }
    Ok((scheme, host, port))
}

/// The first address of `host` a function may reach.
async fn resolve(
    host: &str,
    port: u16,
    blocks: &[Cidr],
    deadline: Instant,
) -> Result<SocketAddr, Error> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout_at(deadline.into(), tokio::net::lookup_host((bare, port)))
            .await
            .map_err(|_| Error::DnsTimeout)?
            .map_err(|e| Error::DnsError { rcode: Some(e.to_string()), info_code: None })?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(Error::DestinationNotFound);
    }
    addrs.into_iter().find(|a| reachable(a.ip(), blocks)).ok_or_else(|| {
        tracing::debug!(%host, "outgoing request to a name that resolves to forbidden addresses");
        Error::DestinationIpProhibited
    })
}

async fn send(
    mut request: http::Request<WasiBody>,
    allowed: Arc<Allowed>,
    deadline: Instant,
    traffic: Arc<Traffic>,
) -> wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)> {
    let (scheme, host, port) = destination(&request, &allowed)?;
    let addr = resolve(&host, port, &allowed.node.blocks, deadline).await?;
    let until = tokio::time::Instant::from(deadline);
    let tcp = tokio::time::timeout_at(until, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;
    let tcp = Counted { inner: tcp, traffic };
    let stream: Box<dyn Stream> = match scheme {
        Scheme::Http => Box::new(tcp),
        Scheme::Https => {
            let tls = allowed.node.tls.clone().ok_or(Error::ConfigurationError)?;
            let bare = host.trim_start_matches('[').trim_end_matches(']').to_string();
            let name = ServerName::try_from(bare).map_err(|_| Error::HttpRequestUriInvalid)?;
            let connect = tokio_rustls::TlsConnector::from(tls).connect(name, tcp);
            let tls = tokio::time::timeout_at(until, connect)
                .await
                .map_err(|_| Error::ConnectionTimeout)?
                .map_err(|e| {
                    tracing::debug!(%host, error = %e, "outgoing https: the TLS handshake failed");
                    Error::TlsCertificateError
                })?;
            Box::new(tls)
        }
    };
    let handshake = hyper::client::conn::http1::handshake::<_, WasiBody>(TokioIo::new(stream));
    let (mut sender, connection) =
        tokio::time::timeout_at(until, handshake).await.map_err(|_| Error::ConnectionTimeout)??;
    // The connection runs beside the request, never past the deadline.
    let connection = tokio::spawn(async move {
        match tokio::time::timeout_at(until, connection).await {
            Ok(result) => result.map_err(Error::from),
            Err(_) => Err(Error::ConnectionReadTimeout),
        }
    });
    // On the wire, a request names only its path; the Host header names the host.
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;
    let response = tokio::time::timeout_at(until, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    let done = async move { connection.await.unwrap_or(Err(Error::ConnectionTerminated)) };
    Ok((response, Box::new(done) as Box<dyn Future<Output = _> + Send>))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::Empty;

    use super::*;

    fn request(url: &str) -> http::Request<WasiBody> {
        let body = Empty::new().map_err(|never: std::convert::Infallible| match never {});
        http::Request::builder().uri(url).body(body.boxed_unsync()).expect("a valid request")
    }

    async fn send_one(outbound: &mut Outbound, url: &str) -> Option<Error> {
        let done: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
            Box::new(async { Ok(()) });
        Box::into_pin(outbound.send_request(request(url), None, done)).await.err()
    }

    #[tokio::test]
    async fn unlisted_hosts_forbidden_addresses_and_too_many_requests_are_refused() {
        let deadline = Instant::now() + Duration::from_secs(5);
        let hosts = vec![
            HostPattern::parse("http://127.0.0.1:9").unwrap(),
            HostPattern::parse("http://169.254.169.254").unwrap(),
        ];
        let allowed = Arc::new(Allowed { hosts, node: Arc::default() });
        let mut outbound = Outbound::new(allowed, deadline);
        let denied = send_one(&mut outbound, "http://example.com/").await;
        assert!(matches!(denied, Some(Error::HttpRequestDenied)), "{denied:?}");
        let wrong_port = send_one(&mut outbound, "http://127.0.0.1:10/").await;
        assert!(matches!(wrong_port, Some(Error::HttpRequestDenied)), "{wrong_port:?}");
        for url in ["http://127.0.0.1:9/", "http://169.254.169.254/latest/meta-data/"] {
            let prohibited = send_one(&mut outbound, url).await;
            assert!(matches!(prohibited, Some(Error::DestinationIpProhibited)), "{prohibited:?}");
        }
        for _ in 4..MAX_REQUESTS {
            send_one(&mut outbound, "http://example.com/").await;
        }
        let over = send_one(&mut outbound, "http://example.com/").await;
        assert!(matches!(over, Some(Error::ConnectionLimitReached)), "{over:?}");
    }
}
