//! q's signing key: a secp256k1 key (an Ethereum account) kept as one line of hex in a file of
//! mode 0600, made on first use. Its contents never appear in an error or on screen; only its
//! address does.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use alloy_primitives::{Address, B256, Signature};
use k256::ecdsa::SigningKey as K256Key;

/// q's signing key: secp256k1 (RustCrypto's k256), whose address contracts trust.
#[derive(Clone)]
pub struct SigningKey(K256Key);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret: only the address.
        write!(f, "SigningKey({})", self.address())
    }
}

impl SigningKey {
    /// A new random key.
    pub fn random() -> Self {
        loop {
            // Almost every 32 random bytes are a valid scalar; retry the rare one that is not.
            if let Some(key) = Self::from_bytes(&rand::random::<[u8; 32]>()) {
                return key;
            }
        }
    }

    /// The key with this secret scalar, if it is one.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<Self> {
        K256Key::from_bytes(bytes.into()).ok().map(SigningKey)
    }

    /// The secret scalar (for the key file only).
    fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes().into()
    }

    /// The Ethereum address of the key.
    pub fn address(&self) -> Address {
        Address::from_public_key(self.0.verifying_key())
    }

    /// Signs a 32-byte digest (an EIP-712 signing hash): r, s (low) and the recovery parity.
    pub fn sign_hash(&self, digest: &B256) -> Result<Signature, k256::ecdsa::Error> {
        let (signature, recovery) = self.0.sign_prehash_recoverable(digest.as_slice())?;
        Ok(Signature::from_signature_and_parity(signature, recovery.is_y_odd()))
    }
}

/// Why the key could not be had.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum KeyError {
    /// Reading or writing the file failed.
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The file does not hold a key.
    #[error("key file {0} does not hold a secp256k1 key (one line of 64 hex digits)")]
    Malformed(String),
    /// Others may read the file.
    #[error("key file {0} may be read by others (mode {1:o}): chmod 600 it")]
    Open(String, u32),
}

/// Loads the key at `path`, or makes one there if there is no file. The flag says it was made.
pub fn load_or_create(path: &Path) -> Result<(SigningKey, bool), KeyError> {
    let shown = path.display().to_string();
    let io = |source| KeyError::Io { path: shown.clone(), source };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Open(shown, mode));
            }
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut bytes)
                .map_err(|_| KeyError::Malformed(shown.clone()))?;
            let key = SigningKey::from_bytes(&bytes).ok_or(KeyError::Malformed(shown))?;
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::random();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            writeln!(file, "{}", hex::encode(key.to_bytes())).map_err(io)?;
            file.sync_all().map_err(io)?;
            Ok((key, true))
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_private_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q.key");
        let (made, created) = load_or_create(&path).expect("made");
        assert!(created);
        let mode = std::fs::metadata(&path).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (read, created) = load_or_create(&path).expect("read");
        assert!(!created);
        assert_eq!(read.address(), made.address());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(load_or_create(&path).unwrap_err().to_string().contains("chmod 600"));
        std::fs::write(&path, "secret-ish garbage\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("does not hold") && !err.contains("garbage"), "{err}");
    }
}
