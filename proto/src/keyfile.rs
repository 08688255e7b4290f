//! Ed25519 key files: node identities and the operator key.
//!
//! A key file holds the libp2p protobuf encoding of the keypair (the format go-libp2p and
//! Taubyte use for identity files). Files are created with mode 0600 and never overwritten by
//! [`write_new`]: losing a node's identity changes its peer id.

use std::io::Write;
use std::path::Path;

use libp2p::identity::Keypair;

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum KeyFileError {
    /// Reading failed.
    #[error("cannot read key file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// Writing failed (including: the file already exists).
    #[error("cannot write key file {path}: {source}")]
    Write { path: String, source: std::io::Error },
    /// The file is not an ed25519 key in the libp2p encoding.
    #[error("{path}: not an ed25519 key file")]
    Format { path: String },
}

/// Reads an ed25519 keypair from `path`.
pub fn read(path: &Path) -> Result<Keypair, KeyFileError> {
    let bytes = std::fs::read(path)
        .map_err(|source| KeyFileError::Read { path: path.display().to_string(), source })?;
    let format = || KeyFileError::Format { path: path.display().to_string() };
    let keypair = Keypair::from_protobuf_encoding(&bytes).map_err(|_| format())?;
    keypair.clone().try_into_ed25519().map_err(|_| format())?;
    Ok(keypair)
}

/// Writes `keypair` to a new file at `path` with mode 0600; fails if the file exists.
pub fn write_new(path: &Path, keypair: &Keypair) -> Result<(), KeyFileError> {
    let bytes = keypair
        .to_protobuf_encoding()
        .map_err(|_| KeyFileError::Format { path: path.display().to_string() })?;
    write_secret_file(path, &bytes)
        .map_err(|source| KeyFileError::Write { path: path.display().to_string(), source })
}

/// Creates `path` (which must not exist) with mode 0600 and writes `bytes` to it, synced to
/// disk. Used for every secret the tools write: keys, swarm keys.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Reads `path` if it exists, or generates a new ed25519 keypair and writes it there.
/// Returns the keypair and whether it was created.
pub fn read_or_create(path: &Path) -> Result<(Keypair, bool), KeyFileError> {
    if path.exists() {
        return Ok((read(path)?, false));
    }
    let keypair = Keypair::generate_ed25519();
    write_new(path, &keypair)?;
    Ok((keypair, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_0600_and_reads_back() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("identity.key");
        let keypair = Keypair::generate_ed25519();
        write_new(&path, &keypair)?;
        assert_eq!(read(&path)?.public(), keypair.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        }
        // Never overwrites an identity.
        assert!(matches!(write_new(&path, &keypair), Err(KeyFileError::Write { .. })));
        Ok(())
    }

    #[test]
    fn rejects_garbage_naming_the_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bad.key");
        std::fs::write(&path, b"not a key")?;
        let err = read(&path).unwrap_err();
        assert!(err.to_string().contains("bad.key"), "{err}");
        Ok(())
    }
}
