//! Running shell scripts on a host: over SSH, or on this machine for the `local` transport.
//! Both run the same `sh` scripts, so a deploy does the same thing either way.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::script::{Output, ShellError, Stdin};
use crate::ssh;

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
}
