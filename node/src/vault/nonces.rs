//! The nonces of the decrypt requests this node answered, each kept until its request expires,
//! so that a request is answered once: a copy replayed to this node within its lifetime is
//! refused. Bounded: past [`MAX_NONCES`] live entries new requests are refused until some
//! expire (only owner-signed requests reach this table).

use std::collections::HashMap;

/// The most nonces kept at once.
pub const MAX_NONCES: usize = 100_000;

/// Why a nonce was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NonceError {
    /// This node answered a request with this nonce already.
    #[error("this request was answered already: each decrypt request is answered once")]
    Seen,
    /// The table is full of requests that have not expired.
    #[error("this vault node is answering too many requests; try again in a minute")]
    Full,
}

/// Nonces to the Unix second their request expires.
#[derive(Debug, Default)]
pub struct Nonces {
    seen: HashMap<Vec<u8>, u64>,
}

impl Nonces {
    /// Takes `nonce`, remembered until `expires` (Unix seconds); `now` drops the expired ones.
    pub fn take(&mut self, nonce: &[u8], expires: u64, now: u64) -> Result<(), NonceError> {
        if self.seen.get(nonce).is_some_and(|&until| until >= now) {
            return Err(NonceError::Seen);
        }
        if self.seen.len() >= MAX_NONCES {
            self.seen.retain(|_, until| *until >= now);
            if self.seen.len() >= MAX_NONCES {
                return Err(NonceError::Full);
            }
        }
        self.seen.insert(nonce.to_vec(), expires);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_taken_once_until_its_request_expires() {
        let mut nonces = Nonces::default();
        assert_eq!(nonces.take(b"a", 100, 10), Ok(()));
        assert_eq!(nonces.take(b"a", 100, 50), Err(NonceError::Seen));
        assert_eq!(nonces.take(b"b", 100, 50), Ok(()));
        // Expired, the request itself is refused for its age; the entry may go.
        assert_eq!(nonces.take(b"a", 300, 101), Ok(()));
    }

    #[test]
    fn a_full_table_drops_the_expired_and_refuses_the_rest() {
        let mut nonces = Nonces::default();
        for i in 0..MAX_NONCES as u64 {
            nonces.take(&i.to_be_bytes(), if i % 2 == 0 { 5 } else { 100 }, 1).unwrap();
        }
        assert_eq!(nonces.take(b"new", 100, 10), Ok(()), "half had expired");
        assert_eq!(nonces.seen.len(), MAX_NONCES / 2 + 1);
        for i in 0..(MAX_NONCES / 2) as u64 - 1 {
            nonces.take(&(i + 1_000_000).to_be_bytes(), 100, 10).unwrap();
        }
        assert_eq!(nonces.take(b"one more", 100, 10), Err(NonceError::Full));
    }
}
