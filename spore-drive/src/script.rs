//! What a script run on a host takes and gives, whichever way it runs (over SSH in [`crate::ssh`],
//! or on this machine in [`crate::shell`]): its stdin, its output, and why it could not run.

use std::sync::Arc;

/// At most this much of a command's stdout and of its stderr is kept.
const MAX_OUTPUT: usize = 1 << 20;

/// What a script reads on stdin.
#[derive(Clone)]
pub enum Stdin {
    /// Nothing.
    Null,
    /// These bytes (config files, secrets: never on a command line).
    Bytes(Vec<u8>),
    /// Bytes every host gets the same of (the node binary).
    Shared(Arc<Vec<u8>>),
}

impl std::fmt::Debug for Stdin {
    // Lengths only: the bytes may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stdin::Null => write!(f, "Null"),
            Stdin::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            Stdin::Shared(bytes) => write!(f, "Shared({} bytes)", bytes.len()),
        }
    }
}

/// What a script printed and how it ended.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Its exit status, when it exited.
    pub status: Option<i32>,
    /// Its standard output (at most 1 MiB).
    pub stdout: Vec<u8>,
    /// Its standard error (at most 1 MiB).
    pub stderr: Vec<u8>,
}

impl Output {
    pub(crate) fn push_stdout(&mut self, data: &[u8]) {
        let room = MAX_OUTPUT.saturating_sub(self.stdout.len());
        self.stdout.extend_from_slice(&data[..data.len().min(room)]);
    }

    pub(crate) fn push_stderr(&mut self, data: &[u8]) {
        let room = MAX_OUTPUT.saturating_sub(self.stderr.len());
        self.stderr.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// Its stdout as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The last non-empty line of stderr (or stdout), for error messages.
    pub fn reason(&self) -> String {
        for stream in [&self.stderr, &self.stdout] {
            let text = String::from_utf8_lossy(stream);
            if let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) {
                return line.trim().to_string();
            }
        }
        match self.status {
            Some(code) => format!("exit status {code}"),
            None => "no exit status".into(),
        }
    }
}

/// Why a host could not be worked on.
#[derive(Debug, Clone, thiserror::Error)]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum ShellError {
    /// No connection (refused, timed out, dropped).
    #[error("{host}: unreachable: {reason}")]
    Unreachable {
        host: String,
        /// Why.
        reason: String,
    },
    /// The host's key is not in known_hosts and `host_keys` is `strict`.
    #[error(
        "{host}: unknown host key for {addr} ({fingerprint}); refused because host_keys is \
         strict. Check the fingerprint on the host (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), \
         then add the key to {known_hosts} or deploy once with `host_keys: accept-new`"
    )]
    UnknownHostKey {
        host: String,
        /// Its address and port.
        addr: String,
        /// The offered key's SHA256 fingerprint.
        fingerprint: String,
        /// The known_hosts file.
        known_hosts: String,
    },
    /// The host's key differs from the one recorded: never accepted, never retried.
    #[error(
        "{host}: HOST KEY CHANGED for {addr}: it now offers {fingerprint}, which differs from \
         {known_hosts} line {line}. Refused (someone may be intercepting the connection); if the \
         host was reinstalled, remove that line and deploy again"
    )]
    HostKeyChanged {
        host: String,
        /// Its address and port.
        addr: String,
        /// The offered key's SHA256 fingerprint.
        fingerprint: String,
        /// The known_hosts file.
        known_hosts: String,
        /// The line that holds the recorded key.
        line: usize,
    },
    /// Authentication or a host key check could not succeed.
    #[error("{host}: {reason}")]
    Refused {
        host: String,
        /// Why.
        reason: String,
    },
    /// A command took too long.
    #[error("{host}: a command did not finish within {secs}s")]
    Timeout { host: String, secs: u64 },
}

impl ShellError {
    /// Whether trying again could help (never for host keys or refused logins).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// Quotes `text` for `sh` (single quotes; a single quote becomes `'\''`).
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
