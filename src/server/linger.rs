//! Lingering close: a client connection the gateway ends while its client may still be sending
//! is not closed at once, but read to its end (bounded in time) first.
//!
//! A gateway refuses some requests before reading their bodies (413 on a declared length, 401
//! before an upload). Closing a socket whose receive buffer still holds data makes the kernel
//! reset the connection, and a client still sending its body then sees a broken pipe instead of
//! the refusal it was sent (as nginx's `lingering_close` explains). Here the connection's IO,
//! when it is dropped before its client closed (bytes waiting, or none yet: a client slowed
//! down between two writes has sent nothing for a moment), sends its end of the stream and
//! moves to a task that reads and discards until the client closes, for at most
//! [`LINGER_TIME`] (and [`LINGER_READ_TIMEOUT`] without a byte), still holding the
//! connection's place under `max_connections`. A connection its client closed first (the
//! usual end, and every caller that hangs up) closes at once.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

/// The longest a connection lingers.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(5);
/// The longest a lingering connection waits for its client's next bytes.
pub(crate) const LINGER_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// A client connection's stream and its place under the listener's connection limit, both
/// kept until the connection has lingered.
pub(crate) struct Lingering {
    /// `None` only once dropped.
    stream: Option<TcpStream>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Lingering {
    /// Wraps an accepted stream with its connection permit.
    pub fn new(stream: TcpStream, permit: OwnedSemaphorePermit) -> Lingering {
        Lingering {
            stream: Some(stream),
            permit: Some(permit),
        }
    }

    fn stream(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        self.stream
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_read(context, buf),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_write(context, buf),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_write_vectored(context, bufs),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_flush(context),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_shutdown(context),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        // The client closed already (or the socket failed): closing resets nothing.
        if client_has_closed(&stream) {
            return;
        }
        let permit = self.permit.take();
        // Outside a runtime (it is shutting down) the stream just closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                linger(stream).await;
                drop(permit);
            });
        }
    }
}

/// Whether the client has closed its end with nothing left unread, or the socket failed (a
/// non-blocking peek: end of stream or an error). Bytes waiting, or none yet, mean the client
/// may still be sending.
fn client_has_closed(stream: &TcpStream) -> bool {
    let mut probe = [MaybeUninit::<u8>::uninit(); 1];
    match SockRef::from(stream).recv_with_flags(&mut probe, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
        Ok(peeked) => peeked == 0,
        Err(error) => error.kind() != io::ErrorKind::WouldBlock,
    }
}

/// Reads and discards until the client closes, a read waits too long, or the time is up.
async fn linger(mut stream: TcpStream) {
    // The answer is sent: say so, in case the connection ended without it.
    SockRef::from(&stream)
        .shutdown(std::net::Shutdown::Write)
        .ok();
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let mut discarded = vec![0u8; 16 * 1024];
    loop {
        let until = deadline.min(tokio::time::Instant::now() + LINGER_READ_TIMEOUT);
        match tokio::time::timeout_at(until, stream.read(&mut discarded)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
    }
}
