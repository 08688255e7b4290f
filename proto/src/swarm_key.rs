//! The cloud's swarm key: a 32-byte pre-shared key that every peer of a cloud holds.
//!
//! The file format is the one go-libp2p and IPFS use:
//!
//! ```text
//! /key/swarm/psk/1.0.0/
//! /base16/
//! <64 hex digits>
//! ```
//!
//! A peer without the key (or with another one) cannot complete the pnet handshake, so it never
//! reaches noise, let alone a protocol. The key is a secret: [`SwarmKey`]'s `Debug` prints only its
//! fingerprint, and no error message ever contains key material.

use std::fmt;
use std::path::Path;

use libp2p::pnet::PreSharedKey;

const HEADER: &str = "/key/swarm/psk/1.0.0/";
const ENCODING: &str = "/base16/";

/// Why a swarm key could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum SwarmKeyError {
    /// The file could not be read.
    #[error("cannot read swarm key file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// The contents are not a swarm key.
    #[error("{path}: not a swarm key: {reason}")]
    Format {
        /// The file (or `<input>` when parsed from a string).
        path: String,
        /// What is wrong, without any key material.
        reason: &'static str,
    },
}

/// A cloud's pre-shared swarm key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SwarmKey([u8; 32]);

impl SwarmKey {
    /// A new random key.
    pub fn generate() -> Self {
        Self(rand::random())
    }

    /// Parses the standard file format. Line endings may be `\n` or `\r\n`; trailing blank lines
    /// are allowed; anything else is an error.
    pub fn parse(text: &str) -> Result<Self, SwarmKeyError> {
        Self::parse_named(text, "<input>")
    }

    /// Reads and parses a key file; errors name the file.
    pub fn load(path: &Path) -> Result<Self, SwarmKeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SwarmKeyError::Read { path: path.display().to_string(), source })?;
        Self::parse_named(&text, &path.display().to_string())
    }

    fn parse_named(text: &str, path: &str) -> Result<Self, SwarmKeyError> {
        let err = |reason| SwarmKeyError::Format { path: path.to_string(), reason };
        let mut lines = text.lines().map(str::trim_end).skip_while(|l| l.is_empty());
        if lines.next() != Some(HEADER) {
            return Err(err("the first line must be /key/swarm/psk/1.0.0/"));
        }
        match lines.next() {
            Some(ENCODING) => {}
            Some(_) => return Err(err("only the /base16/ encoding is supported")),
            None => return Err(err("the encoding line (/base16/) is missing")),
        }
        let digits = lines.next().ok_or_else(|| err("the key line is missing"))?;
        if lines.any(|l| !l.is_empty()) {
            return Err(err("unexpected lines after the key"));
        }
        if digits.len() != 64 {
            return Err(err("the key must be exactly 64 hex digits"));
        }
        let mut key = [0u8; 32];
        hex::decode_to_slice(digits, &mut key).map_err(|_| err("the key has a non-hex digit"))?;
        Ok(Self(key))
    }

    /// The key in the standard file format, with a trailing newline. This is the secret itself:
    /// write it to a 0600 file or to stdout when asked to, never to a log.
    pub fn to_file_format(&self) -> String {
        format!("{HEADER}\n{ENCODING}\n{}\n", hex::encode(self.0))
    }

    /// A short public fingerprint of the key, safe to print: peers with the same fingerprint
    /// share the key.
    pub fn fingerprint(&self) -> String {
        self.psk().fingerprint().to_string()
    }

    /// The key as libp2p's pnet type.
    pub fn psk(&self) -> PreSharedKey {
        PreSharedKey::new(self.0)
    }

    /// A key for `purpose` derived from this one (BLAKE3's key derivation): what the cloud's
    /// own messages outside libp2p (heartbeats over UDP) are sealed with.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        blake3::derive_key(purpose, &self.0)
    }
}

impl fmt::Debug for SwarmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwarmKey").field("fingerprint", &self.fingerprint()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "/key/swarm/psk/1.0.0/\n/base16/\n\
        8a3ce1e4e1f1d1c1b1a191817161514131211101f0e0d0c0b0a0908070605040\n";

    #[test]
    fn round_trips_through_the_file_format() -> Result<(), SwarmKeyError> {
        let key = SwarmKey::generate();
        assert_eq!(SwarmKey::parse(&key.to_file_format())?, key);
        Ok(())
    }

    #[test]
    fn accepts_the_go_libp2p_format_and_crlf() -> Result<(), SwarmKeyError> {
        let key = SwarmKey::parse(GOOD)?;
        assert_eq!(SwarmKey::parse(&GOOD.replace('\n', "\r\n"))?, key);
        assert_eq!(SwarmKey::parse(&format!("{GOOD}\n\n"))?, key);
        // libp2p's own parser agrees on the key.
        let theirs: PreSharedKey = GOOD.parse().expect("libp2p parses the same file");
        assert_eq!(theirs.fingerprint().to_string(), key.fingerprint());
        Ok(())
    }

    fn reason(text: &str) -> &'static str {
        match SwarmKey::parse(text) {
            Err(SwarmKeyError::Format { reason, .. }) => reason,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn rejects_every_kind_of_bad_key() {
        assert!(reason("").contains("first line"));
        assert!(reason("/key/swarm/psk/2.0.0/\n/base16/\n00\n").contains("first line"));
        assert!(reason("/key/swarm/psk/1.0.0/\n/base64/\nAAAA\n").contains("base16"));
        assert!(reason("/key/swarm/psk/1.0.0/\n").contains("encoding line"));
        assert!(reason("/key/swarm/psk/1.0.0/\n/base16/\n").contains("key line"));
        assert!(reason("/key/swarm/psk/1.0.0/\n/base16/\nabcd\n").contains("64 hex"));
        let bad_digit = GOOD.replace("8a3c", "8g3c");
        assert!(reason(&bad_digit).contains("non-hex"));
        assert!(reason(&format!("{GOOD}extra\n")).contains("after the key"));
    }

    #[test]
    fn errors_and_debug_never_show_the_key() {
        let key = SwarmKey::parse(GOOD).unwrap();
        let debug = format!("{key:?}");
        assert!(!debug.contains("8a3ce1e4"), "{debug}");
        let bad = GOOD.replace("8a3c", "8g3c");
        let msg = SwarmKey::parse(&bad).unwrap_err().to_string();
        assert!(!msg.contains("8g3ce1e4"), "{msg}");
    }

    #[test]
    fn load_names_the_file() {
        let err = SwarmKey::load(Path::new("/nonexistent/swarm.key")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/swarm.key"), "{err}");
    }
}
