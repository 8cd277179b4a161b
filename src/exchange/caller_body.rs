//! A caller's request body on its way to the upstream, watched for breaking.
//!
//! A streamed body (a service without a request schema) is read by the upstream client while it
//! writes the call. When the caller's framing breaks mid-way (a malformed chunk, a connection
//! closed short of `Content-Length`), the upstream client fails the call and the error reads as
//! the upstream's. [`CallerBody`] remembers that it was the caller's body that failed, so the
//! forward phase can answer the caller's 400 instead of blaming the provider.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// A request body that records whether it ended in an error.
pub(crate) struct CallerBody {
    inner: Body,
    broken: Arc<AtomicBool>,
}

/// Tells whether the [`CallerBody`] it was made with broke.
#[derive(Clone)]
pub(crate) struct BrokenWatch(Arc<AtomicBool>);

impl BrokenWatch {
    /// Whether the caller's body failed (its framing broke or its connection went away).
    pub fn broke(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Wraps `body`, returning the watched body (as a [`Body`]) and its watch.
pub fn watch(body: Body) -> (Body, BrokenWatch) {
    let broken = Arc::new(AtomicBool::new(false));
    let watched = CallerBody {
        inner: body,
        broken: broken.clone(),
    };
    (Body::new(watched), BrokenWatch(broken))
}

impl http_body::Body for CallerBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(context);
        if let Poll::Ready(Some(Err(_))) = &polled {
            self.broken.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
