//! Where a WASI guest's stdout and stderr go: the host's `tracing` log, one event per line,
//! never the host process's own stdout/stderr.
//!
//! A plugin's output is its ABI result; what it prints is diagnostics (a Rust guest's panic
//! message, a C guest's `fprintf(stderr, ...)`), so it belongs in the log next to the
//! `bilayer.log` messages, tagged with the plugin id, not interleaved with the host's own
//! output (which, for `bilayer exec`, is the result itself). Lines go to target
//! `bilayer::wasm` with fields `plugin` and `stream`: stdout at `debug`, stderr at `warn`.
//!
//! The stream never blocks and never fails, so printing cannot stall or trap a guest. A line
//! longer than the plugin's `max_log_bytes` is cut there and ends with `…`; a last line
//! without a newline is written when the instance is dropped (after the call for a fresh
//! instance; on reset or reload for a reused one).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes the guest may write per `write` call (the usual WASI stream permit).
const WRITE_PERMIT: usize = 64 << 10;

/// Which of the guest's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GuestStream {
    Stdout,
    Stderr,
}

/// A guest output stream that ends in the `tracing` log (see the [module docs](self)).
/// Clones share one line buffer, as WASI's handles to one stream must.
#[derive(Clone)]
pub(crate) struct GuestOutput(Arc<Mutex<LineBuffer>>);

struct LineBuffer {
    plugin: Arc<str>,
    stream: GuestStream,
    max_line: usize,
    pending: Vec<u8>,
    cut: bool,
}

impl GuestOutput {
    pub(super) fn new(plugin: Arc<str>, stream: GuestStream, max_line: usize) -> Self {
        Self(Arc::new(Mutex::new(LineBuffer {
            plugin,
            stream,
            max_line: max_line.max(1),
            pending: Vec::new(),
            cut: false,
        })))
    }

    fn push(&self, bytes: &[u8]) {
        let mut buffer = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut lines = bytes.split(|&b| b == b'\n').peekable();
        while let Some(part) = lines.next() {
            buffer.append(part);
            if lines.peek().is_some() {
                buffer.emit();
            }
        }
    }
}

impl LineBuffer {
    fn append(&mut self, part: &[u8]) {
        if self.cut {
            return;
        }
        let room = self.max_line - self.pending.len();
        if part.len() > room {
            self.pending.extend_from_slice(&part[..room]);
            self.cut = true;
        } else {
            self.pending.extend_from_slice(part);
        }
    }

    fn emit(&mut self) {
        let mut line = String::from_utf8_lossy(&self.pending).into_owned();
        if self.cut {
            line.push('…');
        }
        let plugin = &*self.plugin;
        match self.stream {
            GuestStream::Stdout => {
                tracing::debug!(target: "bilayer::wasm", plugin, stream = "stdout", "{line}")
            }
            GuestStream::Stderr => {
                tracing::warn!(target: "bilayer::wasm", plugin, stream = "stderr", "{line}")
            }
        }
        self.pending.clear();
        self.cut = false;
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if !self.pending.is_empty() || self.cut {
            self.emit();
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    /// Always ready: writing is a copy into the line buffer.
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffered(output: &GuestOutput) -> (Vec<u8>, bool) {
        let buffer = output.0.lock().unwrap();
        (buffer.pending.clone(), buffer.cut)
    }

    #[test]
    fn complete_lines_leave_the_buffer_and_long_lines_are_cut() {
        let output = GuestOutput::new(Arc::from("p"), GuestStream::Stderr, 4);
        output.push(b"one\ntw");
        assert_eq!(buffered(&output), (b"tw".to_vec(), false));
        output.push(b"o\n");
        assert_eq!(buffered(&output), (Vec::new(), false));
        output.push(b"abcdefgh");
        assert_eq!(buffered(&output), (b"abcd".to_vec(), true));
        output.push(b"ij\nk");
        assert_eq!(buffered(&output), (b"k".to_vec(), false));
    }
}
