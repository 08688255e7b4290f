//! Response-rate limiting for the UDP DNS server.
//!
//! A UDP query's source address is not checked by anyone: a DNS server that answers every
//! query can be aimed at a victim, who receives answers larger than the queries. Like BIND's
//! RRL, seer answers one source (an IPv4 /24, an IPv6 /56) at most `rate` times a second, with
//! a burst of as many; of the queries over that, every `slip`-th gets a short truncated answer
//! (no larger than the query, so a real client behind a busy source retries over TCP, which a
//! spoofed source cannot), the others none.
//!
//! Memory and time are bounded: at most [`MAX_SOURCES`] sources are followed; when that many
//! are, the idle ones (whose bucket is full again) are forgotten, at most once a second (a sweep
//! reads every bucket, so a flood from ever new addresses cannot make every query pay for one),
//! and until then new sources share one bucket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// The most sources followed at once.
pub const MAX_SOURCES: usize = 100_000;

/// How often, at most, idle sources are looked for once [`MAX_SOURCES`] are followed.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What to do with one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Answer it.
    Answer,
    /// Answer with the truncated flag and no records.
    Slip,
    /// Do not answer.
    Drop,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// Queries over the rate since the bucket was last empty of them: picks which ones slip.
    limited: u64,
}

/// Token buckets per source.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    slip: u64,
    /// Each address is its own source (not its /24 or /56).
    exact: bool,
    sources: HashMap<IpAddr, Bucket>,
    /// Shared by new sources while [`MAX_SOURCES`] busy ones are followed.
    overflow: Option<Bucket>,
    /// When idle sources were last forgotten, and how many times.
    swept: Option<Instant>,
    sweeps: u64,
}

/// The source `ip` counts as: its /24 (IPv4) or /56 (IPv6).
fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return source(IpAddr::V4(v4));
            }
            let mut octets = v6.octets();
            octets[7..].fill(0);
            IpAddr::from(octets)
        }
    }
}

impl RateLimit {
    /// `rate` answers a second per source (0: no limit); every `slip`-th query over it slips (0:
    /// none).
    pub fn new(rate: u32, slip: u32) -> Self {
        Self {
            rate: f64::from(rate),
            slip: u64::from(slip),
            exact: false,
            sources: HashMap::new(),
            overflow: None,
            swept: None,
            sweeps: 0,
        }
    }

    /// `rate` a second per address (each address its own source), nothing slipping: how many
    /// heartbeat datagrams one address may send.
    pub fn per_address(rate: u32) -> Self {
        Self { exact: true, ..Self::new(rate, 0) }
    }

    /// Sources followed now.
    pub fn followed(&self) -> usize {
        self.sources.len()
    }

    /// What to do with a query from `ip` received at `now`.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Decision {
        if self.rate <= 0.0 {
            return Decision::Answer;
        }
        let key = if self.exact { ip } else { source(ip) };
        let (rate, slip) = (self.rate, self.slip);
        if !self.sources.contains_key(&key)
            && self.sources.len() >= MAX_SOURCES
            && self.swept.is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_EVERY)
        {
            self.swept = Some(now);
            self.sweeps += 1;
            self.forget_idle(now);
        }
        let fresh = Bucket { tokens: rate, at: now, limited: 0 };
        let bucket = if self.sources.len() < MAX_SOURCES || self.sources.contains_key(&key) {
            self.sources.entry(key).or_insert(fresh)
        } else {
            self.overflow.get_or_insert(fresh)
        };
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.limited = 0;
            return Decision::Answer;
        }
        bucket.limited += 1;
        if slip > 0 && bucket.limited.is_multiple_of(slip) {
            Decision::Slip
        } else {
            Decision::Drop
        }
    }

    /// Forgets the sources whose bucket has filled up again: they have been quiet long enough
    /// that a fresh bucket treats them the same.
    fn forget_idle(&mut self, now: Instant) {
        let rate = self.rate;
        self.sources.retain(|_, bucket| {
            let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
            bucket.tokens + elapsed * rate < rate
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_source_gets_its_rate_and_every_slipth_query_over_it_slips() {
        let mut limit = RateLimit::new(10, 2);
        let start = Instant::now();
        let decisions: Vec<Decision> =
            (0..20).map(|_| limit.check(ip("10.0.0.1"), start)).collect();
        assert!(decisions[..10].iter().all(|d| *d == Decision::Answer));
        let over = &decisions[10..];
        assert_eq!(over.iter().filter(|d| **d == Decision::Slip).count(), 5, "{over:?}");
        assert_eq!(over.iter().filter(|d| **d == Decision::Drop).count(), 5, "{over:?}");
        // The same /24 shares the bucket; another /24 has its own.
        assert_eq!(limit.check(ip("10.0.0.200"), start), Decision::Drop);
        assert_eq!(limit.check(ip("10.0.1.1"), start), Decision::Answer);
        // A tenth of a second later, one more answer.
        let later = start + Duration::from_millis(100);
        assert_eq!(limit.check(ip("10.0.0.1"), later), Decision::Answer);
        assert_ne!(limit.check(ip("10.0.0.1"), later), Decision::Answer);
        // A second later, the whole burst again.
        let much_later = later + Duration::from_secs(1);
        for _ in 0..10 {
            assert_eq!(limit.check(ip("10.0.0.1"), much_later), Decision::Answer);
        }
    }

    #[test]
    fn ipv6_sources_are_their_56_and_mapped_addresses_their_24() {
        let mut limit = RateLimit::new(1, 0);
        let now = Instant::now();
        assert_eq!(limit.check(ip("2001:db8:0:1200::1"), now), Decision::Answer);
        assert_eq!(limit.check(ip("2001:db8:0:12ff::2"), now), Decision::Drop, "same /56");
        assert_eq!(limit.check(ip("2001:db8:0:1300::1"), now), Decision::Answer, "next /56");
        assert_eq!(limit.check(ip("192.0.2.1"), now), Decision::Answer);
        assert_eq!(limit.check(ip("::ffff:192.0.2.9"), now), Decision::Drop, "mapped");
    }

    #[test]
    fn no_limit_answers_everything() {
        let mut limit = RateLimit::new(0, 2);
        let now = Instant::now();
        assert!((0..1000).all(|_| limit.check(ip("10.0.0.1"), now) == Decision::Answer));
        assert_eq!(limit.followed(), 0);
    }

    #[test]
    fn memory_stays_bounded_and_idle_sources_are_forgotten() {
        let mut limit = RateLimit::new(1, 0);
        let start = Instant::now();
        for i in 0..MAX_SOURCES as u32 {
            let [_, a, b, c] = i.to_be_bytes();
            limit.check(IpAddr::from([a, b, c, 1]), start);
        }
        assert_eq!(limit.followed(), MAX_SOURCES);
        // While every followed source is busy, a new one shares the overflow bucket.
        assert_eq!(limit.check(ip("203.0.113.1"), start), Decision::Answer);
        assert_eq!(limit.check(ip("198.51.100.1"), start), Decision::Drop);
        assert_eq!(limit.followed(), MAX_SOURCES);
        // Idle sources are looked for at most once a second: the overflow bucket is still shared.
        let soon = start + Duration::from_millis(500);
        for i in 0..1000u32 {
            let [_, _, a, b] = i.to_be_bytes();
            assert_eq!(limit.check(IpAddr::from([192, a, b, 1]), soon), Decision::Drop);
        }
        assert_eq!((limit.followed(), limit.sweeps), (MAX_SOURCES, 1));
        // Once they are idle, they are forgotten and the new source gets its own bucket.
        let later = start + Duration::from_secs(2);
        assert_eq!(limit.check(ip("198.51.100.1"), later), Decision::Answer);
        assert_eq!(limit.followed(), 1);
    }
}
