//! Running shell scripts on a host: over SSH, or on this machine for the `local` transport.
//! Both run the same `sh` scripts, so a deploy does the same thing either way.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::ssh;

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
pub enum ShellError {
    /// No connection (refused, timed out, dropped).
    #[error("{host}: unreachable: {reason}")]
    Unreachable {
        /// The host.
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
        /// The host.
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
        /// The host.
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
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
    /// A command took too long.
    #[error("{host}: a command did not finish within {secs}s")]
    Timeout {
        /// The host.
        host: String,
        /// The limit.
        secs: u64,
    },
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

/// A connection to a host: where scripts run.
#[derive(Debug)]
pub enum Conn {
    /// Over SSH.
    Ssh(ssh::Session),
    /// On this machine (the `local` transport).
    Local {
        /// The host's name, for messages.
        host: String,
    },
}

impl Conn {
    /// Runs `script` with `sh`, feeding it `stdin`, within `timeout`.
    pub async fn run(
        &self,
        script: &str,
        stdin: Stdin,
        timeout: Duration,
    ) -> Result<Output, ShellError> {
        match self {
            Self::Ssh(session) => session.run(script, stdin, timeout).await,
            Self::Local { host } => match tokio::time::timeout(timeout, local(script, stdin)).await
            {
                Ok(Ok(output)) => Ok(output),
                Ok(Err(e)) => Err(ShellError::Unreachable {
                    host: host.clone(),
                    reason: format!("cannot run sh: {e}"),
                }),
                Err(_) => Err(ShellError::Timeout { host: host.clone(), secs: timeout.as_secs() }),
            },
        }
    }

    /// Closes the connection.
    pub async fn close(&self) {
        if let Self::Ssh(session) = self {
            session.close().await;
        }
    }
}

async fn local(script: &str, stdin: Stdin) -> std::io::Result<Output> {
    use std::process::Stdio;
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut input = child.stdin.take().ok_or_else(|| std::io::Error::other("no stdin"))?;
    let feed = async move {
        match stdin {
            Stdin::Null => {}
            Stdin::Bytes(bytes) => input.write_all(&bytes).await?,
            Stdin::Shared(bytes) => input.write_all(&bytes).await?,
        }
        input.shutdown().await
    };
    let (fed, out) = tokio::join!(feed, child.wait_with_output());
    let out = out?;
    // A script that exits without reading all its input is not an error of ours.
    if let Err(e) = fed
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(e);
    }
    let mut output = Output { status: out.status.code(), ..Output::default() };
    output.push_stdout(&out.stdout);
    output.push_stderr(&out.stderr);
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_scripts_get_their_stdin_and_report_failures() -> Result<(), ShellError> {
        let conn = Conn::Local { host: "h".into() };
        let out = conn
            .run(
                "cat; echo done >&2; exit 3",
                Stdin::Bytes(b"hello".to_vec()),
                Duration::from_secs(5),
            )
            .await?;
        assert_eq!(out.text(), "hello");
        assert_eq!(out.status, Some(3));
        assert_eq!(out.reason(), "done");
        let slow = conn.run("sleep 5", Stdin::Null, Duration::from_millis(200)).await;
        assert!(matches!(slow, Err(ShellError::Timeout { .. })), "{slow:?}");
        Ok(())
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
