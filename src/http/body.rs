//! The response body type: empty, a buffer, a bounded channel fed by a reader task, or a
//! file sent with `sendfile` (`super::sendfile`).
//!
//! A stream that fails yields an error frame, which makes hyper abort the response (the
//! connection closes short of `Content-Length`): a client never sees a clean end of body
//! on bytes that failed verification.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

pub enum Body {
    Empty,
    Full(Option<Bytes>),
    Stream {
        rx: mpsc::Receiver<io::Result<Bytes>>,
        remaining: Option<u64>,
    },
    File(super::sendfile::FileBody),
}

impl Body {
    pub fn empty() -> Body {
        Body::Empty
    }

    pub fn full(b: impl Into<Bytes>) -> Body {
        Body::Full(Some(b.into()))
    }

    /// A body fed through a channel of `capacity` chunks; `len` is the exact length if known.
    pub fn channel(capacity: usize, len: Option<u64>) -> (mpsc::Sender<io::Result<Bytes>>, Body) {
        let (tx, rx) = mpsc::channel(capacity);
        (tx, Body::Stream { rx, remaining: len })
    }
}

/// A blob streamed by the cache (`cache::follow`).
impl From<crate::cache::follow::Chunks> for Body {
    fn from(c: crate::cache::follow::Chunks) -> Body {
        Body::Stream {
            rx: c.rx,
            remaining: c.len,
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream { rx, remaining } => match rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(b))) => {
                    if let Some(r) = remaining {
                        *r = r.saturating_sub(b.len() as u64);
                    }
                    Poll::Ready(Some(Ok(Frame::data(b))))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) if remaining.is_some_and(|r| r > 0) => Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "body ended early",
                )))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            Body::File(f) => f.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Stream { .. } => false,
            Body::File(f) => f.remaining() == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream { remaining: Some(r), .. } => SizeHint::with_exact(*r),
            Body::Stream { remaining: None, .. } => SizeHint::default(),
            Body::File(f) => SizeHint::with_exact(f.remaining()),
        }
    }
}
