//! The DNS server: UDP and TCP, authoritative for the cloud's names.
//!
//! - `<service>.tau.<domain>`: A/AAAA of the healthy nodes running that service
//!   (`patrick.tau.<domain>`: the `ci` nodes, where push webhooks go).
//! - a domain registered in TNS (and validated, see [`super::domains`]): A/AAAA of the healthy
//!   substrate nodes, least loaded first.
//! - anything else: NXDOMAIN.
//!
//! UDP answers are rate-limited per source ([`super::rate`]): a query over the rate gets a short
//! truncated answer (every `slip`-th) or none.
//!
//! Packets are parsed with `hickory-proto`; a packet that does not parse as one standard query
//! is dropped without an answer (hickory-server would answer FORMERR to one whose header
//! parses, which lets a fuzzer probe the server). Answers from the heartbeat table and the
//! domain cache are sent from the receiving loop; a domain not decided yet is decided in a task
//! of its own, so a slow TXT lookup never holds other queries up.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::rate::Decision;
use crate::config::SERVICES;

/// The most address records in one answer (keeps a UDP answer under 512 bytes).
const MAX_RECORDS: usize = 16;
/// How long a TCP client may take to send a query.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// These addresses (possibly none: the name exists, without records of that type).
    Addrs(Vec<IpAddr>),
    /// The name does not exist.
    NxDomain,
    /// This server cannot say now (its registry is catching up): resolvers ask another.
    ServFail,
}

/// A parsed query: the whole message and its one question's name and type.
pub struct Query {
    message: Message,
    name: Name,
    /// The name, lower case, without the final dot.
    pub fqdn: String,
    kind: RecordType,
}

impl Query {
    /// Parses a packet; `None` for anything but one standard query.
    pub fn parse(packet: &[u8]) -> Option<Self> {
        let message = Message::from_vec(packet).ok()?;
        if message.metadata.message_type != MessageType::Query
            || message.metadata.op_code != OpCode::Query
            || message.queries.len() != 1
        {
            return None;
        }
        let question = &message.queries[0];
        let name = question.name().clone();
        let fqdn = name.to_ascii().trim_end_matches('.').to_ascii_lowercase();
        let kind = question.query_type();
        Some(Self { message, name, fqdn, kind })
    }

    /// The reply that sends the client to TCP: the truncated flag, the question, no records
    /// (never larger than the query).
    pub fn truncated(&self) -> Option<Vec<u8>> {
        let mut response = Message::response(self.message.metadata.id, OpCode::Query);
        response.metadata.truncation = true;
        response.metadata.recursion_desired = self.message.metadata.recursion_desired;
        response.queries = self.message.queries.clone();
        response.to_vec().ok()
    }

    /// `answer` encoded as the reply to this query, with `ttl` seconds; `None` if it does not encode.
    pub fn respond(&self, answer: &Answer, ttl: u32) -> Option<Vec<u8>> {
        let mut response = Message::response(self.message.metadata.id, OpCode::Query);
        response.metadata.authoritative = true;
        response.metadata.recursion_desired = self.message.metadata.recursion_desired;
        response.queries = self.message.queries.clone();
        match answer {
            Answer::NxDomain => response.metadata.response_code = ResponseCode::NXDomain,
            Answer::ServFail => {
                response.metadata.authoritative = false;
                response.metadata.response_code = ResponseCode::ServFail;
            }
            Answer::Addrs(addrs) => {
                for addr in addrs.iter().take(MAX_RECORDS) {
                    let data = match (addr, self.kind) {
                        (IpAddr::V4(ip), RecordType::A) => RData::A(A(*ip)),
                        (IpAddr::V6(ip), RecordType::AAAA) => RData::AAAA(AAAA(*ip)),
                        _ => continue,
                    };
                    response.answers.push(Record::from_rdata(self.name.clone(), ttl, data));
                }
            }
        }
        response.to_vec().ok()
    }
}

/// What the table says of `fqdn` without waiting, or `None` if a registered domain must be
/// looked up first.
pub fn answer_now(shared: &Shared, query: &Query, now: Instant) -> Option<Answer> {
    let domain = &shared.config.domain;
    let v6 = query.kind == RecordType::AAAA;
    if let Some(service) = query.fqdn.strip_suffix(&format!(".tau.{domain}")) {
        // patrick, the webhook endpoint, runs on the ci nodes.
        let service = if service == "patrick" { "ci" } else { service };
        return Some(if SERVICES.contains(&service) {
            Answer::Addrs(shared.table().addresses(service, now, v6))
        } else {
            Answer::NxDomain
        });
    }
    match shared.domains.cached(&query.fqdn, now)? {
        true => Some(Answer::Addrs(shared.table().addresses("substrate", now, v6))),
        false => Some(Answer::NxDomain),
    }
}

/// The answer to `query`, deciding on its domain first if need be.
pub async fn answer(shared: &Shared, query: &Query) -> Answer {
    if let Some(answer) = answer_now(shared, query, Instant::now()) {
        return answer;
    }
    match shared.domains.servable(&query.fqdn).await {
        Some(true) => {
            let v6 = query.kind == RecordType::AAAA;
            Answer::Addrs(shared.table().addresses("substrate", Instant::now(), v6))
        }
        Some(false) => Answer::NxDomain,
        None => Answer::ServFail,
    }
}

/// Answers UDP queries on `socket` until `shutdown`.
pub async fn serve_udp(shared: Arc<Shared>, socket: Arc<UdpSocket>, shutdown: CancellationToken) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let (len, from) = tokio::select! {
            _ = shutdown.cancelled() => break,
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(e) => {
                    tracing::debug!(error = %e, "dns udp receive failed");
                    continue;
                }
            },
        };
        let Some(query) = Query::parse(&buffer[..len]) else {
            shared.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        };
        let now = Instant::now();
        let decision = shared.rate().check(from.ip(), now);
        match decision {
            Decision::Answer => {}
            decision => {
                shared.limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if decision == Decision::Slip
                    && let Some(packet) = query.truncated()
                {
                    let _ = socket.send_to(&packet, from).await;
                }
                continue;
            }
        }
        let ttl = shared.config.ttl;
        match answer_now(&shared, &query, now) {
            Some(answer) => send(&socket, &query, &answer, ttl, from).await,
            None => {
                let (shared, socket) = (shared.clone(), socket.clone());
                tokio::spawn(async move {
                    let answer = answer(&shared, &query).await;
                    send(&socket, &query, &answer, ttl, from).await;
                });
            }
        }
    }
}

async fn send(socket: &UdpSocket, query: &Query, answer: &Answer, ttl: u32, to: SocketAddr) {
    if let Some(packet) = query.respond(answer, ttl)
        && let Err(e) = socket.send_to(&packet, to).await
    {
        tracing::debug!(error = %e, "dns udp send failed");
    }
}

/// Answers TCP connections on `listener` until `shutdown`: length-prefixed queries, one after
/// another; a connection that sends something unparsable is closed.
pub async fn serve_tcp(shared: Arc<Shared>, listener: TcpListener, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "dns tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let (shared, shutdown) = (shared.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = connection(&shared, stream) => {}
            }
        });
    }
}

async fn connection(shared: &Shared, mut stream: TcpStream) {
    loop {
        let mut length = [0u8; 2];
        let read = tokio::time::timeout(TCP_TIMEOUT, stream.read_exact(&mut length)).await;
        if !matches!(read, Ok(Ok(_))) {
            return;
        }
        let mut packet = vec![0u8; usize::from(u16::from_be_bytes(length))];
        if !matches!(
            tokio::time::timeout(TCP_TIMEOUT, stream.read_exact(&mut packet)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let Some(query) = Query::parse(&packet) else {
            shared.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        };
        let Some(response) = query.respond(&answer(shared, &query).await, shared.config.ttl) else {
            return;
        };
        let Ok(length) = u16::try_from(response.len()) else { return };
        if stream.write_all(&length.to_be_bytes()).await.is_err()
            || stream.write_all(&response).await.is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query as Question;

    use super::*;

    fn packet(name: &str, kind: RecordType) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = 4242;
        message.add_query(Question::query(Name::from_ascii(name).unwrap(), kind));
        message.to_vec().unwrap()
    }

    #[test]
    fn answers_carry_the_addresses_of_the_asked_family() {
        let query = Query::parse(&packet("Ping.Example.TAU.", RecordType::A)).unwrap();
        assert_eq!(query.fqdn, "ping.example.tau");
        let addrs: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()];
        let bytes = query.respond(&Answer::Addrs(addrs.clone()), 5).unwrap();
        let response = Message::from_vec(&bytes).unwrap();
        assert_eq!(response.metadata.id, 4242);
        assert!(response.metadata.authoritative);
        assert_eq!(response.metadata.response_code, ResponseCode::NoError);
        let answers: Vec<String> = response.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(answers, ["10.0.0.1"]);
        assert!(response.answers.iter().all(|r| r.ttl == 5));
        let aaaa = Query::parse(&packet("ping.example.tau.", RecordType::AAAA)).unwrap();
        let response = Message::from_vec(&aaaa.respond(&Answer::Addrs(addrs), 5).unwrap()).unwrap();
        assert_eq!(response.answers.len(), 1);
        let nx = Message::from_vec(&query.respond(&Answer::NxDomain, 5).unwrap()).unwrap();
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert!(nx.answers.is_empty());
        let fail = Message::from_vec(&query.respond(&Answer::ServFail, 5).unwrap()).unwrap();
        assert_eq!(fail.metadata.response_code, ResponseCode::ServFail);
        assert!(!fail.metadata.authoritative && fail.answers.is_empty());
        // Many nodes still fit a plain UDP answer.
        let many = (1..=40).map(|i| IpAddr::from([10, 0, 0, i])).collect();
        assert!(query.respond(&Answer::Addrs(many), 5).unwrap().len() <= 512);
    }

    #[test]
    fn anything_but_one_standard_query_is_dropped() {
        let good = packet("ping.example.tau.", RecordType::A);
        assert!(Query::parse(&good).is_some());
        for cut in [0, 5, 11, 12, 20, good.len() - 1] {
            assert!(Query::parse(&good[..cut]).is_none(), "cut at {cut}");
        }
        let mut seed = 7u64;
        for len in [1, 12, 13, 40, 512] {
            let garbage: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 33) as u8
                })
                .collect();
            let parsed = Query::parse(&garbage);
            assert!(parsed.is_none(), "{len} random bytes parsed as a query");
        }
        let mut response = Message::from_vec(&good).unwrap();
        response.metadata.message_type = MessageType::Response;
        assert!(Query::parse(&response.to_vec().unwrap()).is_none(), "a response is not a query");
        let mut two = Message::from_vec(&good).unwrap();
        two.add_query(Question::query(Name::from_ascii("a.tau.").unwrap(), RecordType::A));
        assert!(Query::parse(&two.to_vec().unwrap()).is_none(), "two questions");
    }
}
