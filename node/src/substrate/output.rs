//! A function's stdout and stderr: every byte an invocation writes goes to its function's log
//! buffer ([`crate::logs::FunctionLog`]), split into lines tagged with the request and the time.
//! Writing never blocks and never fails: the buffer is bounded and lets its oldest lines go.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::logs::FunctionLog;

/// How much a guest may write at once.
const PERMIT: usize = 64 * 1024;

/// One invocation's stdout or stderr.
#[derive(Clone)]
pub struct Output(Arc<Mutex<FunctionLog>>);

impl Output {
    /// Writes into `log`.
    pub fn new(log: FunctionLog) -> Self {
        Self(Arc::new(Mutex::new(log)))
    }

    fn take(&self, bytes: &[u8]) {
        if let Ok(mut log) = self.0.lock() {
            log.write(bytes);
        }
    }
}

/// An invocation's two streams.
pub struct Stdio {
    /// Its stdout.
    pub stdout: Output,
    /// Its stderr.
    pub stderr: Output,
}

impl IsTerminal for Output {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Output {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for Output {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.take(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(PERMIT)
    }
}

#[async_trait::async_trait]
impl Pollable for Output {
    async fn ready(&mut self) {}
}

impl AsyncWrite for Output {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.take(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
