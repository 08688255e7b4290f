//! `q push`: sends every stored record's usage events ([`crate::events`]) to a billing system's
//! ingest endpoint, in batches, in the order q stored the records.
//!
//! Exactly once at the receiver, however often q is killed: each target (format and URL) has
//! a cursor in the store, the last record whose batch the receiver acknowledged (a 2xx answer),
//! and the cursor moves only after that acknowledgement. A kill before it resends the batch
//! on the next run, with the same event ids ([`crate::events::event_id`]), which a receiver
//! deduplicates; a kill after it sends the next batch. No event is skipped: a batch holds
//! whole records, and the cursor moves past only records whose events were acknowledged.
//!
//! A refused batch is retried with exponential backoff (with jitter) while the refusal may
//! pass: no answer, a timeout, 408, 429 and 5xx. Any other answer stops the push and names it.
//! Batches are read and rendered ahead of the one being sent, so the receiver sets the pace.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::keccak256;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::collections::VecDeque;

use tokio::sync::mpsc;

use crate::events::{Customers, NoCustomer, Shape, events_of};
use crate::store::{Received, Store, StoreError, StoredRecord};

/// The most events in a batch.
pub const MAX_BATCH: usize = 10_000;
/// The most bytes of a refusal's body quoted in an error.
const QUOTED: usize = 300;

/// Where events go.
#[derive(Debug, Clone)]
pub struct Target {
    /// The ingest endpoint.
    pub url: reqwest::Url,
    /// The events' shape.
    pub shape: Shape,
    /// Headers sent with every batch (values marked sensitive: never printed).
    pub headers: HeaderMap,
}

impl Target {
    /// The target's key in the store: a hash of the shape and the URL, so a URL with a token
    /// in it is not stored.
    pub fn key(&self) -> String {
        let hash = keccak256(format!("{}\0{}", self.shape.name(), self.url));
        format!("push-{}", hex::encode(&hash[..16]))
    }

    /// The URL for messages: without user info or query.
    pub fn shown(&self) -> String {
        let mut url = self.url.clone();
        let _ = url.set_password(None);
        let _ = url.set_username("");
        url.set_query(None);
        url.to_string()
    }
}

/// A header given as `NAME: VALUE`, where VALUE may hold one `{env:VAR}` (an environment
/// variable's value) or `{file:PATH}` (a file's contents, its final newline dropped), so an API
/// key is never written on the command line.
pub fn header(spec: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, template) =
        spec.split_once(':').ok_or_else(|| format!("`{spec}` is not NAME: VALUE"))?;
    let name = name.trim();
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not a header name"))?;
    let template = template.trim_start();
    let value = match (template.find('{'), template.rfind('}')) {
        (Some(open), Some(close)) if open < close => {
            let inner = &template[open + 1..close];
            let secret = if let Some(var) = inner.strip_prefix("env:") {
                std::env::var(var).map_err(|_| {
                    format!("header {name}: the environment variable {var} is not set")
                })?
            } else if let Some(path) = inner.strip_prefix("file:") {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("header {name}: cannot read {path}: {e}"))?;
                text.strip_suffix('\n').unwrap_or(&text).to_string()
            } else {
                return Err(format!(
                    "header {name}: `{{...}}` holds `{{env:VAR}}` or `{{file:PATH}}`"
                ));
            };
            format!("{}{secret}{}", &template[..open], &template[close + 1..])
        }
        _ => template.to_string(),
    };
    let mut value = HeaderValue::from_str(&value)
        .map_err(|_| format!("header {name}: its value holds a character a header cannot carry"))?;
    value.set_sensitive(true);
    Ok((header, value))
}

/// How to push.
#[derive(Debug, Clone)]
pub struct Options {
    /// The most events in a batch (a batch holds whole records, and at least one).
    pub batch: usize,
    /// Keep going: wait for new records when all are sent.
    pub follow: bool,
    /// How long to wait for new records, following.
    pub poll: Duration,
    /// The longest wait between retries of a refused batch.
    pub max_backoff: Duration,
    /// How long a receiver may take to answer.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            batch: 1_000,
            follow: false,
            poll: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Why a push stopped.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record's project has no customer.
    #[error(transparent)]
    NoCustomer(#[from] NoCustomer),
    /// The receiver refused a batch in a way a retry will not mend.
    #[error("{url} refused a batch of {events} events with {status}: {body}")]
    Refused {
        /// The target, shown.
        url: String,
        /// The batch's size.
        events: usize,
        /// The answer's status.
        status: reqwest::StatusCode,
        /// The start of the answer's body.
        body: String,
    },
    /// The HTTP client could not be made.
    #[error("the HTTP client: {0}")]
    Client(String),
}

/// How far a push got.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    /// Events the receiver acknowledged in this run.
    pub events: u64,
    /// Batches acknowledged in this run.
    pub batches: u64,
    /// Batches sent again after a refusal or no answer.
    pub retries: u64,
    /// Events acknowledged for this target over every run.
    pub total_events: u64,
    /// The cursor: the last record acknowledged.
    pub cursor: Received,
}

/// A batch read and rendered: its body, its size, and the record it ends at.
#[derive(Debug, Clone)]
pub struct Batch {
    /// What is posted.
    pub body: Vec<u8>,
    /// Events in it.
    pub events: usize,
    /// The last record in it: the cursor once it is acknowledged.
    pub last: Received,
}

/// Makes rustls on ring the process's TLS provider (once; later calls do nothing), for HTTP
/// clients q does not configure itself (the OpenTelemetry exporter's).
pub fn install_tls_provider() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}

/// An HTTP client for pushes: rustls on ring with Mozilla's roots.
pub fn client(timeout: Duration) -> Result<reqwest::Client, PushError> {
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};
    let roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let tls = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| PushError::Client(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
        .map_err(|e| PushError::Client(e.to_string()))
}

/// Records read from the store ahead of the batches made of them.
const READ_AHEAD: u64 = 2_000;

/// Makes the batches after a cursor: up to `max` events of whole records each (at least one
/// record), read from the store a few thousand records at a time.
pub struct Reader {
    store: Store,
    shape: Shape,
    customers: Customers,
    max: usize,
    /// The last record read from the store.
    read: Received,
    /// Records read and not yet in a batch.
    pending: VecDeque<(Received, StoredRecord)>,
}

impl Reader {
    /// Batches of the records after `cursor`.
    pub fn new(
        store: &Store,
        cursor: Received,
        shape: Shape,
        customers: &Customers,
        max: usize,
    ) -> Reader {
        Reader {
            store: store.clone(),
            shape,
            customers: customers.clone(),
            max: max.clamp(1, MAX_BATCH),
            read: cursor,
            pending: VecDeque::new(),
        }
    }

    /// The next batch; `None` when no record is stored after the last one.
    pub async fn next(&mut self) -> Result<Option<Batch>, PushError> {
        if self.pending.is_empty() {
            let pending = &mut self.pending;
            self.store
                .records_after(&self.read, READ_AHEAD, |at, record| {
                    pending.push_back((at, record));
                    Ok(())
                })
                .await?;
            match self.pending.back() {
                Some((last, _)) => self.read = last.clone(),
                None => return Ok(None),
            }
        }
        let lago = self.shape == Shape::Lago;
        let mut body = Vec::with_capacity(400 * self.max);
        body.extend_from_slice(if lago { b"{\"events\":[" } else { b"[" });
        let mut events = 0usize;
        let mut last: Option<Received> = None;
        while let Some((_, record)) = self.pending.front() {
            let customer = match self.customers.of(&record.project) {
                Ok(customer) => customer,
                // The batch up to this record goes first; the next one stops here.
                Err(_) if last.is_some() => break,
                Err(e) => return Err(e.into()),
            };
            let these = events_of(record);
            if last.is_some() && events + these.len() > self.max {
                break;
            }
            for event in &these {
                if events > 0 {
                    body.push(b',');
                }
                self.shape.write(&mut body, event, customer).map_err(StoreError::Stopped)?;
                events += 1;
            }
            let (at, _) = self.pending.pop_front().expect("looked at above");
            last = Some(at);
        }
        body.extend_from_slice(if lago { b"]}" } else { b"]" });
        Ok(last.map(|last| Batch { body, events, last }))
    }
}

/// Whether a refusal may pass on a retry.
fn retryable(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429
}

/// Sends one batch of `events` until the receiver acknowledges it; counts the retries. (The
/// body is shared, not copied, by each try.)
async fn send(
    client: &reqwest::Client,
    target: &Target,
    body: &bytes::Bytes,
    events: usize,
    options: &Options,
    progress: &mut Progress,
    report: &mut impl FnMut(&str),
) -> Result<(), PushError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let answer = client
            .post(target.url.clone())
            .headers(target.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, target.shape.content_type())
            .body(body.clone())
            .send()
            .await;
        let why = match answer {
            Ok(answer) if answer.status().is_success() => return Ok(()),
            Ok(answer) if retryable(answer.status()) => format!("answered {}", answer.status()),
            Ok(answer) => {
                let status = answer.status();
                let quoted = quote(answer).await;
                return Err(PushError::Refused {
                    url: target.shown(),
                    events,
                    status,
                    body: tau_proto::text::printable(&quoted).to_string(),
                });
            }
            Err(e) if e.is_timeout() => "did not answer in time".to_string(),
            Err(e) => format!("could not be reached ({})", without_url(&e)),
        };
        progress.retries += 1;
        let jitter = rand::random_range(0.8..1.2);
        let wait = backoff.mul_f64(jitter);
        report(&format!(
            "{} {why}; the batch of {} events is sent again in {:.1} s",
            target.shown(),
            events,
            wait.as_secs_f64()
        ));
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(options.max_backoff);
    }
}

/// The start of a refusal's body: at most [`QUOTED`] bytes are read, however much it sends.
async fn quote(mut answer: reqwest::Response) -> String {
    let mut read = Vec::new();
    while read.len() < QUOTED {
        match answer.chunk().await {
            Ok(Some(chunk)) => read.extend_from_slice(&chunk),
            _ => break,
        }
    }
    read.truncate(QUOTED);
    String::from_utf8_lossy(&read).into_owned()
}

/// A client error's message without its URL (which may carry a token).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "the target");
    }
    text
}

/// Pushes every record stored after the target's cursor (and, following, every record stored
/// later), moving the cursor after each acknowledged batch. `report` hears of retries and,
/// at most once a second, progress.
pub async fn push(
    store: &Store,
    target: &Target,
    customers: &Customers,
    options: &Options,
    mut report: impl FnMut(&str),
) -> Result<Progress, PushError> {
    let client = client(options.timeout)?;
    let key = target.key();
    let (cursor, total) = store.push_cursor(&key).await?;
    let mut progress =
        Progress { total_events: total, cursor: cursor.clone(), ..Progress::default() };

    // The reader runs a batch or two ahead of the sender.
    let (tx, mut rx) = mpsc::channel::<Result<Batch, PushError>>(2);
    let reader = {
        let mut reader = Reader::new(store, cursor, target.shape, customers, options.batch);
        let (follow, poll) = (options.follow, options.poll);
        tokio::spawn(async move {
            loop {
                match reader.next().await {
                    Ok(Some(batch)) => {
                        if tx.send(Ok(batch)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) if follow => tokio::time::sleep(poll).await,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        })
    };

    let mut said = Instant::now();
    let result = async {
        while let Some(batch) = rx.recv().await {
            let Batch { body, events, last } = batch?;
            // A batch of records without a figure to bill has nothing to send.
            if events > 0 {
                let body = bytes::Bytes::from(body);
                send(&client, target, &body, events, options, &mut progress, &mut report).await?;
            }
            store.move_push_cursor(&key, &last, events as u64).await?;
            progress.events += events as u64;
            progress.total_events += events as u64;
            progress.batches += 1;
            progress.cursor = last;
            if said.elapsed() >= Duration::from_secs(1) {
                said = Instant::now();
                report(&format!(
                    "{} events acknowledged by {} ({} batches, {} retries)",
                    progress.events,
                    target.shown(),
                    progress.batches,
                    progress.retries
                ));
            }
        }
        Ok::<(), PushError>(())
    }
    .await;
    reader.abort();
    result.map(|()| progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_reads_its_secret_from_the_environment_or_a_file_and_never_shows_it() {
        // PATH is set wherever tests run; its value stands in for a key.
        let path = std::env::var("PATH").unwrap();
        let (name, value) = header("Authorization: Bearer {env:PATH}").unwrap();
        assert_eq!(name, "authorization");
        assert_eq!(value.to_str().unwrap(), format!("Bearer {path}"));
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains(&path), "{value:?}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "lago_key\n").unwrap();
        let (_, value) = header(&format!("X-Api-Key: {{file:{}}}", path.display())).unwrap();
        assert_eq!(value.to_str().unwrap(), "lago_key");

        let missing = header("Authorization: Bearer {env:Q_PUSH_TEST_NOT_SET}").unwrap_err();
        assert!(missing.contains("Q_PUSH_TEST_NOT_SET is not set"), "{missing}");
        assert!(header("no colon").is_err());
        assert!(header("Bad Name: x").is_err());
        assert!(header("X: {vault:key}").is_err());
    }

    #[test]
    fn a_target_is_stored_and_shown_without_its_secrets() {
        let target = Target {
            url: "https://user:pw@billing.example/ingest?token=secret".parse().unwrap(),
            shape: Shape::Lago,
            headers: HeaderMap::new(),
        };
        assert_eq!(target.shown(), "https://billing.example/ingest");
        assert!(!target.key().contains("secret") && target.key().starts_with("push-"));
        let other = Target { shape: Shape::Stripe, ..target.clone() };
        assert_ne!(target.key(), other.key(), "each format has its own cursor");
        assert!(retryable(reqwest::StatusCode::SERVICE_UNAVAILABLE));
        assert!(retryable(reqwest::StatusCode::TOO_MANY_REQUESTS));
        assert!(!retryable(reqwest::StatusCode::UNAUTHORIZED));
    }
}
