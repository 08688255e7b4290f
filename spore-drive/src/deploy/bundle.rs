//! The node binary a deploy installs: read once, hashed, its machine read from its ELF header.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::Digest;

use crate::host::{self, ElfError};

/// Why the node binary cannot be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum BundleError {
    /// It could not be read.
    #[error("node binary {path}: {source}")]
    Read {
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// It is not an executable for a known machine.
    #[error("node binary {path}: {source}")]
    NotExecutable {
        path: String,
        /// Why.
        source: ElfError,
    },
}

/// The node binary to install.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Its path here.
    pub path: PathBuf,
    /// Its sha256, hex.
    pub sha256: String,
    /// The machine it is built for (`uname -m` names).
    pub arch: &'static str,
    /// Its contents.
    pub bytes: Arc<Vec<u8>>,
}

impl Bundle {
    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Reads `path` into memory (every host gets the same bytes), hashes it, and reads the
    /// machine it is built for.
    pub fn load(path: &Path) -> Result<Self, BundleError> {
        let shown = || path.display().to_string();
        let bytes =
            std::fs::read(path).map_err(|source| BundleError::Read { path: shown(), source })?;
        let arch = host::elf_arch(&bytes[..bytes.len().min(64)])
            .map_err(|source| BundleError::NotExecutable { path: shown(), source })?;
        Ok(Self {
            path: path.to_path_buf(),
            sha256: hex::encode(sha2::Sha256::digest(&bytes)),
            arch,
            bytes: Arc::new(bytes),
        })
    }

    /// Why this binary cannot run on a host of machine `host_arch`.
    pub(super) fn arch_error(&self, host_arch: &str) -> String {
        format!(
            "the node binary {} is built for {}, but the host is {}: build tau-node for {} \
             (cargo build --release --target ...) and pass it with --node-binary",
            self.path.display(),
            self.arch,
            if host_arch.is_empty() { "of unknown architecture" } else { host_arch },
            if host_arch.is_empty() { "it" } else { host_arch },
        )
    }
}
