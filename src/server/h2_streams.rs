//! The send timeout of one HTTP/2 stream, and HTTP/2's header limit with a problem answer.
//!
//! **A stream's send timeout.** On HTTP/2 a caller can keep its connection busy (pings, other
//! calls) and never open one stream's flow-control window. hyper then simply stops asking that
//! stream's body for more; the connection's socket never waits, so [`super::client_io`]'s timer
//! never starts, and the body (with the upstream connection it reads from) would be held for as
//! long as the connection lives. hyper runs each stream as a task of its own through the
//! connection's executor, so [`StreamExecutor`] wraps each in a [`StreamSendTimeout`]; every
//! response body is a [`ServedBody`], which, each time hyper polls it, leaves a note in a
//! thread-local cell ([`BodyNote`]). The body is polled synchronously inside its stream task's
//! poll, on the same thread, so after polling the stream the wrapper reads what its body last
//! said: it handed over data (and hyper has not asked again: the stream waits for the caller's
//! window) → the timer (re)starts; it had nothing yet (it waits for the upstream, which has its
//! own timeouts) or ended → the timer stops. When the timer runs out, the stream task is
//! dropped: h2 resets the stream (`CANCEL`), the body is dropped, and its upstream connection
//! is closed rather than pooled. The connection and its other streams go on.
//!
//! A small answer, handed over and finished in one poll, never takes the time or a timer; the
//! cost per stream is the wrapper and one thread-local write per body poll.
//!
//! **Header limit.** h2 answers a header list over its `max_header_list_size` with a bare 431 of
//! its own. The gateway lets h2 take up to [`H2_HEADER_LIST_FACTOR`] × `max_header_bytes`
//! (still bounded) and refuses heads over `max_header_bytes` itself ([`header_list_size`]) with
//! the problem document; only heads past h2's own bound get h2's bare answer.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::Request;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// How much more than `max_header_bytes` h2 itself accepts, so that heads a little over the
/// limit reach the gateway's own refusal (a problem document).
pub(crate) const H2_HEADER_LIST_FACTOR: usize = 2;

/// What a response body said the last time it was polled.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyNote {
    /// Not polled (since the note was last read).
    Silent,
    /// It handed over a data frame: what comes next waits for hyper to ask again.
    HandedOver,
    /// It had nothing yet, or it ended: nothing waits for the caller.
    NotWaitingForTheCaller,
}

thread_local! {
    /// The note of the response body polled last on this thread.
    static BODY_NOTE: Cell<BodyNote> = const { Cell::new(BodyNote::Silent) };
}

/// Every response body the gateway serves, leaving its [`BodyNote`] when polled.
pub(crate) struct ServedBody {
    inner: Body,
}

impl ServedBody {
    /// Wraps a response body.
    pub fn new(inner: Body) -> ServedBody {
        ServedBody { inner }
    }
}

impl http_body::Body for ServedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(context);
        let note = match &polled {
            Poll::Ready(Some(Ok(frame))) if frame.is_data() => BodyNote::HandedOver,
            _ => BodyNote::NotWaitingForTheCaller,
        };
        BODY_NOTE.set(note);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The executor hyper runs HTTP/2 streams on: tokio, each stream under its send timeout.
#[derive(Clone, Copy)]
pub(crate) struct StreamExecutor {
    send_timeout: Duration,
}

impl StreamExecutor {
    /// Streams get `send_timeout` to take each next piece of their answer.
    pub fn new(send_timeout: Duration) -> StreamExecutor {
        StreamExecutor { send_timeout }
    }
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        tokio::spawn(StreamSendTimeout {
            stream: Box::pin(stream),
            send_timeout: self.send_timeout,
            deadline: None,
            timer: None,
        });
    }
}

/// One stream's task under its send timeout (see the module documentation).
struct StreamSendTimeout<F> {
    stream: Pin<Box<F>>,
    send_timeout: Duration,
    /// When the stream is given up, while its body's handed-over data waits for the caller.
    deadline: Option<Instant>,
    /// The timer, made the first time the stream has to wait with a deadline.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<F: Future<Output = ()>> Future for StreamSendTimeout<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        BODY_NOTE.set(BodyNote::Silent);
        let polled = this.stream.as_mut().poll(context);
        let note = BODY_NOTE.replace(BodyNote::Silent);
        if polled.is_ready() {
            return Poll::Ready(());
        }
        match note {
            BodyNote::HandedOver => this.deadline = Some(Instant::now() + this.send_timeout),
            BodyNote::NotWaitingForTheCaller => this.deadline = None,
            BodyNote::Silent => {}
        }
        let Some(deadline) = this.deadline else {
            return Poll::Pending;
        };
        let timer = match &mut this.timer {
            Some(timer) => {
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => this
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        if timer.as_mut().poll(context).is_pending() {
            return Poll::Pending;
        }
        tracing::debug!("resetting an HTTP/2 stream whose caller stopped reading (send timeout)");
        // Dropping the stream's task resets the stream and drops its body.
        Poll::Ready(())
    }
}

/// The size of an HTTP/2 request's header list as h2 counts it against
/// `max_header_list_size` (RFC 9113 §6.5.2): name, value and 32 bytes per field, the
/// pseudo-header fields included.
pub(crate) fn header_list_size<B>(request: &Request<B>) -> usize {
    const FIELD_OVERHEAD: usize = 32;
    let uri = request.uri();
    let pseudo = [
        Some(":method".len() + request.method().as_str().len()),
        uri.scheme_str()
            .map(|scheme| ":scheme".len() + scheme.len()),
        uri.authority()
            .map(|authority| ":authority".len() + authority.as_str().len()),
        Some(
            ":path".len()
                + uri
                    .path_and_query()
                    .map_or(0, |path_and_query| path_and_query.as_str().len()),
        ),
    ];
    let pseudo_size: usize = pseudo
        .into_iter()
        .flatten()
        .map(|size| size + FIELD_OVERHEAD)
        .sum();
    request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + FIELD_OVERHEAD)
        .sum::<usize>()
        + pseudo_size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_list_size_counts_as_h2_does() {
        let request = Request::builder()
            .method("GET")
            .uri("https://gateway/healthz")
            .header("x-a", "bc")
            .body(())
            .unwrap();
        // :method GET, :scheme https, :authority gateway, :path /healthz, x-a bc.
        let expected = (7 + 3) + (7 + 5) + (10 + 7) + (5 + 8) + (3 + 2) + 5 * 32;
        assert_eq!(header_list_size(&request), expected);
    }
}
