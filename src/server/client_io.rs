//! The IO under hyper on every accepted client connection (plain and TLS, HTTP/1.1 and h2): a
//! send timeout toward callers, and problem documents where hyper would answer on its own.
//!
//! **Send timeout.** A caller that stops reading its answer stops the gateway's writes; without
//! a bound, the response body (and the upstream connection it streams from) would be held for
//! as long as the caller keeps the socket open. As nginx's `send_timeout`, the bound is on the
//! time between two writes that make progress, not on the whole response: a write (or flush, or
//! shutdown) that cannot go on starts the timer, any progress stops it, and when it runs out the
//! write fails with `TimedOut`. hyper then closes the connection and drops what it was sending,
//! and with it the upstream body, whose connection is closed rather than pooled
//! (`upstream::UpstreamBody`).
//!
//! **hyper's own answers.** When an HTTP/1.1 request head does not parse (bad framing, a head
//! over `max_header_bytes` or with more than `max_headers` headers, a target too long), hyper
//! answers by itself, before any response on that message, with a bare status line,
//! `connection: close` (or nothing, after an HTTP/1.0 message), `content-length: 0` and `date`
//! (`Server::on_error` and `Conn::on_parse_error` in hyper's `proto/h1`). It offers no hook, so
//! this layer recognises those bytes — the last thing hyper writes on the connection — and writes
//! the problem document of SPEC §10 instead (`malformed-request`, `header-too-large`,
//! `uri-too-long`: a fresh request id, English, `Connection: close`). The gateway's own
//! responses of those statuses always carry `content-type` or `x-request-id`
//! ([`mark_own_response`]), so a head of theirs never looks like hyper's. A streamed provider
//! body could end with the same bytes; it would then be cut there and the connection closed,
//! which a provider can do to its own answers anyway.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::headers::{self, X_REQUEST_ID};
use crate::problem::ExchangeError;
use xgate_core::i18n::Lang;

/// A client connection's stream, watched as described in the module documentation.
pub(crate) struct ClientIo<S> {
    inner: S,
    send_timeout: Duration,
    /// The send timer, made the first time a write has to wait, reset after.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the timer is running: a write is waiting for the caller to read.
    waiting: bool,
    /// What the connection speaks, learnt from its first write.
    protocol: Protocol,
    /// The problem response written instead of hyper's own, and how much of it is out.
    replacement: Option<Replacement>,
}

/// What a connection speaks, as far as replacing hyper's answers goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Nothing written yet.
    Unknown,
    /// HTTP/1.x: its first write was a status line.
    Http1,
    /// h2 (its first write is a SETTINGS frame): h2 never answers with HTTP/1.1 bytes.
    Other,
}

/// A problem response standing in for hyper's automatic one.
struct Replacement {
    bytes: Vec<u8>,
    written: usize,
}

impl<S> ClientIo<S> {
    /// Watches `inner` with the given send timeout.
    pub fn new(inner: S, send_timeout: Duration) -> ClientIo<S> {
        ClientIo {
            inner,
            send_timeout,
            timer: None,
            waiting: false,
            protocol: Protocol::Unknown,
            replacement: None,
        }
    }

    /// Passes on what a write, flush or shutdown of the inner stream returned, and keeps the
    /// send timer: started when it could not go on, stopped when it did; a timer that ran out
    /// turns the wait into a `TimedOut` error.
    fn watch<T>(
        &mut self,
        context: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = false;
            return polled;
        }
        if !self.waiting {
            self.waiting = true;
            let deadline = Instant::now() + self.send_timeout;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let Some(timer) = self.timer.as_mut() else {
            return Poll::Pending;
        };
        ready!(timer.as_mut().poll(context));
        tracing::debug!("closing a connection whose caller stopped reading (send timeout)");
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the caller read nothing within the send timeout",
        )))
    }
}

impl<S: AsyncWrite + Unpin> ClientIo<S> {
    /// Writes out the replacement, if there is one; ready once all of it is out.
    fn poll_replacement(&mut self, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let Some(replacement) = &self.replacement else {
                return Poll::Ready(Ok(()));
            };
            let rest = &replacement.bytes[replacement.written..];
            if rest.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let polled = Pin::new(&mut self.inner).poll_write(context, rest);
            match ready!(self.watch(context, polled))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                count => {
                    if let Some(replacement) = &mut self.replacement {
                        replacement.written += count;
                    }
                }
            }
        }
    }

    /// Starts writing the replacement just set, reporting hyper's `answered` bytes as written
    /// (they are taken care of): what does not go out now goes with the flush and shutdown
    /// hyper makes after its answer.
    fn start_replacement(
        &mut self,
        context: &mut Context<'_>,
        answered: usize,
    ) -> Poll<io::Result<usize>> {
        match self.poll_replacement(context) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            _ => Poll::Ready(Ok(answered)),
        }
    }

    /// Whether `bytes`, about to be written, should be looked at for hyper's answer.
    fn speaks_http1(&mut self, bytes: &[u8]) -> bool {
        if self.protocol == Protocol::Unknown && !bytes.is_empty() {
            self.protocol = if bytes.starts_with(b"HTTP/1.") {
                Protocol::Http1
            } else {
                Protocol::Other
            };
        }
        self.protocol == Protocol::Http1
    }
}

/// After the problem response nothing more may go out on the connection (hyper's automatic
/// answer is always its last): a write then is refused.
fn closed_after_problem() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the connection was closed with a problem response",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for ClientIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(context, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacement.is_some() {
            ready!(this.poll_replacement(context))?;
            return Poll::Ready(Err(closed_after_problem()));
        }
        let mut to_write = buf;
        if this.speaks_http1(buf)
            && let Some((start, error, version)) = automatic_answer(buf)
        {
            if start > 0 {
                // What comes before it first; hyper writes the rest again.
                to_write = &buf[..start];
            } else {
                this.replacement = Some(Replacement {
                    bytes: problem_bytes(&error, version, date_of(buf)),
                    written: 0,
                });
                return this.start_replacement(context, buf.len());
            }
        }
        let polled = Pin::new(&mut this.inner).poll_write(context, to_write);
        this.watch(context, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacement.is_some() {
            ready!(this.poll_replacement(context))?;
            return Poll::Ready(Err(closed_after_problem()));
        }
        let first = bufs.iter().position(|buf| !buf.is_empty());
        let looked_at = first.is_some_and(|first| this.speaks_http1(&bufs[first]));
        // hyper's answer is a head of its own, so all of it is in one buffer, the last.
        let last = bufs.iter().rposition(|buf| !buf.is_empty());
        if looked_at
            && let (Some(first), Some(last)) = (first, last)
            && let Some((start, error, version)) = automatic_answer(&bufs[last])
        {
            if first < last {
                // The buffers before its own first; hyper hands the rest over again.
                return self.as_mut().poll_write_vectored(context, &bufs[..last]);
            }
            if start > 0 {
                return self.as_mut().poll_write(context, &bufs[last][..start]);
            }
            let written = bufs[last].len();
            this.replacement = Some(Replacement {
                bytes: problem_bytes(&error, version, date_of(&bufs[last])),
                written: 0,
            });
            return this.start_replacement(context, written);
        }
        let polled = Pin::new(&mut this.inner).poll_write_vectored(context, bufs);
        this.watch(context, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_replacement(context))?;
        let polled = Pin::new(&mut this.inner).poll_flush(context);
        this.watch(context, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_replacement(context))?;
        let polled = Pin::new(&mut this.inner).poll_shutdown(context);
        this.watch(context, polled)
    }
}

/// The length of hyper's `date` value (`Sun, 06 Nov 1994 08:49:37 GMT`).
const DATE_LENGTH: usize = 29;
/// How hyper's automatic answer ends: its last two headers, the date's value in between.
const CONTENT_LENGTH_ZERO: &[u8] = b"content-length: 0\r\ndate: ";
const HEAD_END: &[u8] = b"\r\n\r\n";
/// The header hyper adds to its answer to an HTTP/1.1 message (keep-alive is off by then).
const CONNECTION_CLOSE: &[u8] = b"connection: close\r\n";

/// The status lines of hyper's automatic answers (`Server::on_error`), and the problem each is.
const AUTOMATIC_STATUS_LINES: [(&[u8], ExchangeError); 3] = [
    (b" 400 Bad Request\r\n", ExchangeError::MalformedRequest),
    (
        b" 431 Request Header Fields Too Large\r\n",
        ExchangeError::HeaderTooLarge,
    ),
    (b" 414 URI Too Long\r\n", ExchangeError::UriTooLong),
];

/// When `bytes` ends with hyper's automatic answer: where it starts, the problem it stands
/// for, and its HTTP version (`HTTP/1.1` or `HTTP/1.0`).
fn automatic_answer(bytes: &[u8]) -> Option<(usize, ExchangeError, &'static [u8])> {
    // The common case (every write of a body, every head of the gateway's own) stops here.
    if !bytes.ends_with(b" GMT\r\n\r\n") {
        return None;
    }
    let before_date = bytes.len().checked_sub(DATE_LENGTH + HEAD_END.len())?;
    let mut head = bytes[..before_date].strip_suffix(CONTENT_LENGTH_ZERO)?;
    head = head.strip_suffix(CONNECTION_CLOSE).unwrap_or(head);
    for (line, problem) in AUTOMATIC_STATUS_LINES {
        let Some(before_status) = head.strip_suffix(line) else {
            continue;
        };
        for version in [&b"HTTP/1.1"[..], b"HTTP/1.0"] {
            if let Some(before) = before_status.strip_suffix(version) {
                return Some((before.len(), problem, version));
            }
        }
    }
    None
}

/// The `date` value of hyper's answer at the end of `bytes` (reused, to need no clock here).
fn date_of(bytes: &[u8]) -> &[u8] {
    let end = bytes.len().saturating_sub(HEAD_END.len());
    &bytes[end.saturating_sub(DATE_LENGTH)..end]
}

/// The problem response for `error` as HTTP/1.x bytes: the document of `problem`, English, a
/// fresh request id, `Connection: close`.
fn problem_bytes(error: &ExchangeError, version: &[u8], date: &[u8]) -> Vec<u8> {
    let response = error.problem_response(Lang::En, &headers::new_request_id());
    let (parts, body) = response.into_parts();
    let mut bytes = Vec::with_capacity(512 + body.len());
    bytes.extend_from_slice(version);
    bytes.push(b' ');
    bytes.extend_from_slice(parts.status.as_str().as_bytes());
    bytes.push(b' ');
    bytes.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    bytes.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        bytes.extend_from_slice(name.as_str().as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(value.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"content-length: ");
    bytes.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    bytes.extend_from_slice(b"\r\nconnection: close\r\ndate: ");
    bytes.extend_from_slice(date);
    bytes.extend_from_slice(HEAD_END);
    bytes.extend_from_slice(&body);
    bytes
}

/// Makes sure a response of the gateway's own can never be taken for hyper's automatic answer:
/// one of those statuses with neither `content-type` nor `x-request-id` (none is expected; a
/// route that answers so gets a request id) is given a fresh `x-request-id`.
pub(crate) fn mark_own_response<B>(response: &mut Response<B>) {
    let status = response.status();
    if matches!(
        status,
        StatusCode::BAD_REQUEST
            | StatusCode::URI_TOO_LONG
            | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    ) && !response.headers().contains_key(header::CONTENT_TYPE)
        && !response.headers().contains_key(X_REQUEST_ID)
        && let Ok(id) = HeaderValue::from_str(&headers::new_request_id())
    {
        response.headers_mut().insert(X_REQUEST_ID, id);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::AsyncWriteExt;

    use super::*;

    /// A caller's socket that takes at most `per_write` bytes a call, and every other call none
    /// yet (it wakes the writer at once): partial writes everywhere.
    struct Trickle {
        received: Arc<Mutex<Vec<u8>>>,
        per_write: usize,
        vectored: bool,
        ready: bool,
    }

    impl Trickle {
        fn new(per_write: usize, vectored: bool) -> (Trickle, Arc<Mutex<Vec<u8>>>) {
            let received = Arc::new(Mutex::new(Vec::new()));
            let trickle = Trickle {
                received: received.clone(),
                per_write,
                vectored,
                ready: false,
            };
            (trickle, received)
        }

        fn take(
            &mut self,
            context: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.ready = !self.ready;
            if !self.ready {
                context.waker().wake_by_ref();
                return Poll::Pending;
            }
            let mut room = self.per_write;
            let mut received = self.received.lock().unwrap();
            for buf in bufs {
                let taken = room.min(buf.len());
                received.extend_from_slice(&buf[..taken]);
                room -= taken;
            }
            Poll::Ready(Ok(self.per_write - room))
        }
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            context: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.take(context, &[io::IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            context: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.take(context, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            self.vectored
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A caller that never reads: every write waits.
    struct Stuck;

    impl AsyncWrite for Stuck {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    const EARLIER: &str =
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";

    fn automatic(date: &str) -> String {
        format!(
            "HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: {date}\r\n\r\n"
        )
    }

    /// What the caller must receive after `EARLIER`: the problem response, whole, then nothing.
    fn assert_replaced(received: &[u8]) {
        let text = String::from_utf8(received.to_vec()).unwrap();
        let rest = text
            .strip_prefix(EARLIER)
            .expect("the earlier answer first, intact");
        let (head, body) = rest.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
            "{head}"
        );
        assert!(head.ends_with(&format!("date: {DATE}")), "{head}");
        let document: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(document["type"], "urn:xgate:problem:header-too-large");
    }

    #[tokio::test]
    async fn the_replacement_survives_partial_writes() {
        for per_write in [1, 7, 64, 4096] {
            let (trickle, received) = Trickle::new(per_write, false);
            let mut io = ClientIo::new(trickle, Duration::from_secs(1));
            io.write_all(format!("{EARLIER}{}", automatic(DATE)).as_bytes())
                .await
                .unwrap();
            io.flush().await.unwrap();
            assert!(
                io.write_all(b"more").await.is_err(),
                "nothing goes out after it"
            );
            io.shutdown().await.unwrap();
            assert_replaced(&received.lock().unwrap());
        }
    }

    #[tokio::test]
    async fn the_replacement_survives_partial_vectored_writes() {
        for per_write in [1, 7, 64, 4096] {
            let (trickle, received) = Trickle::new(per_write, true);
            let mut io = ClientIo::new(trickle, Duration::from_secs(1));
            assert!(io.is_write_vectored());
            // As hyper's queued writes: the earlier head, its body, then the automatic head.
            let (earlier_head, earlier_body) = EARLIER.split_at(EARLIER.len() - 2);
            let answer = automatic(DATE);
            let pieces = [
                earlier_head.as_bytes(),
                earlier_body.as_bytes(),
                answer.as_bytes(),
            ];
            let mut slices: Vec<io::IoSlice<'_>> =
                pieces.iter().map(|piece| io::IoSlice::new(piece)).collect();
            let mut remaining = &mut slices[..];
            while !remaining.is_empty() {
                let written = io.write_vectored(remaining).await.unwrap();
                io::IoSlice::advance_slices(&mut remaining, written);
            }
            io.shutdown().await.unwrap();
            assert_replaced(&received.lock().unwrap());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_never_reads_is_cut_off_at_the_send_timeout() {
        let mut io = ClientIo::new(Stuck, Duration::from_secs(30));
        let started = Instant::now();
        let error = io.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_secs(30));
        assert_eq!(
            io.flush().await.unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
        // One byte every 20 s against a 30 s timeout: the timer restarts at every progress.
        struct Slow(Option<Pin<Box<Sleep>>>);
        impl AsyncWrite for Slow {
            fn poll_write(
                mut self: Pin<&mut Self>,
                context: &mut Context<'_>,
                _: &[u8],
            ) -> Poll<io::Result<usize>> {
                let sleep = self
                    .0
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_secs(20))));
                ready!(sleep.as_mut().poll(context));
                self.0 = None;
                Poll::Ready(Ok(1))
            }
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
        }
        let mut io = ClientIo::new(Slow(None), Duration::from_secs(30));
        io.write_all(b"0123456789").await.unwrap();
    }

    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    #[test]
    fn hypers_automatic_answers_are_recognised_where_they_start() {
        let cases = [
            ("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n", 400),
            (
                "HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n",
                431,
            ),
            ("HTTP/1.1 414 URI Too Long\r\nconnection: close\r\n", 414),
            ("HTTP/1.0 400 Bad Request\r\n", 400),
        ];
        for (head, status) in cases {
            let answer = format!("{head}content-length: 0\r\ndate: {DATE}\r\n\r\n");
            for before in ["", "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"] {
                let bytes = format!("{before}{answer}");
                let (start, error, _) = automatic_answer(bytes.as_bytes()).expect(head);
                assert_eq!(start, before.len());
                assert_eq!(error.status().as_u16(), status);
                assert_eq!(date_of(bytes.as_bytes()), DATE.as_bytes());
            }
        }
    }

    #[test]
    fn the_gateways_own_heads_are_not_taken_for_hypers() {
        for bytes in [
            format!(
                "HTTP/1.1 400 Bad Request\r\nx-request-id: a\r\nconnection: close\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n"
            ),
            format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n"
            ),
            format!(
                "HTTP/1.1 204 No Content\r\nconnection: close\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n"
            ),
            format!("HTTP/1.1 200 OK\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n"),
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc".to_owned(),
        ] {
            assert!(automatic_answer(bytes.as_bytes()).is_none(), "{bytes}");
        }
    }

    #[test]
    fn the_problem_bytes_are_a_whole_response() {
        let bytes = problem_bytes(&ExchangeError::HeaderTooLarge, b"HTTP/1.1", DATE.as_bytes());
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{head}"
        );
        assert!(
            head.contains("\r\ncontent-type: application/problem+json\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(
            head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
            "{head}"
        );
        assert!(head.ends_with(&format!("date: {DATE}")), "{head}");
        let document: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(document["type"], "urn:xgate:problem:header-too-large");
        assert_eq!(document["status"], 431);
    }

    #[test]
    fn a_bare_response_of_the_gateways_own_gets_a_request_id() {
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::BAD_REQUEST;
        mark_own_response(&mut response);
        assert!(response.headers().contains_key(X_REQUEST_ID));
        let mut ok = Response::new(());
        mark_own_response(&mut ok);
        assert!(ok.headers().is_empty());
    }
}
