//! The response body type: empty, a buffer, a bounded channel fed by a task (a blob's
//! reader task, whose file pieces go out with `sendfile`), or a file sent with `sendfile`
//! (`super::sendfile`).
//!
//! A stream that fails yields an error frame, which makes hyper abort the response (the
//! connection closes short of `Content-Length`): a client never sees a clean end of body
//! on bytes that failed verification.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

use super::sendfile::{self, Queue};
use crate::cache::follow::{Chunks, Piece};

pub enum Body {
    Empty,
    Full(Option<Bytes>),
    Stream {
        rx: mpsc::Receiver<io::Result<Bytes>>,
        remaining: Option<u64>,
    },
    /// A blob streamed by the cache (`cache::follow`); `queue` is the connection's when it
    /// can send file pieces.
    Blob {
        rx: mpsc::Receiver<io::Result<Piece>>,
        remaining: Option<u64>,
        queue: Option<Queue>,
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

    /// A blob streamed by the cache; file pieces go to `queue` (which the cache only sends
    /// when it was told the response can take them).
    pub fn blob(c: Chunks, queue: Option<Queue>) -> Body {
        Body::Blob {
            rx: c.rx,
            remaining: c.len,
            queue,
        }
    }
}

/// The next item of a channel body as a frame; the channel closing before `remaining` is
/// an error, never a clean end.
fn poll_channel<T>(
    rx: &mut mpsc::Receiver<io::Result<T>>,
    remaining: &mut Option<u64>,
    cx: &mut Context<'_>,
    frame: impl FnOnce(T) -> io::Result<Bytes>,
) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
    match ready!(rx.poll_recv(cx)) {
        Some(item) => Poll::Ready(Some(item.and_then(frame).map(|b| {
            if let Some(r) = remaining {
                *r = r.saturating_sub(b.len() as u64);
            }
            Frame::data(b)
        }))),
        None if remaining.is_some_and(|r| r > 0) => Poll::Ready(Some(Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "body ended early",
        )))),
        None => Poll::Ready(None),
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream { rx, remaining } => poll_channel(rx, remaining, cx, Ok),
            Body::Blob { rx, remaining, queue } => poll_channel(rx, remaining, cx, |piece| match (piece, &*queue) {
                (Piece::Bytes(b), _) => Ok(b),
                (Piece::File { file, pos, len }, Some(queue)) => Ok(sendfile::placeholder(queue, file, pos, len)),
                (Piece::File { .. }, None) => {
                    Err(io::Error::other("a file piece for a response that cannot send files"))
                }
            }),
            Body::File(f) => f.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Stream { .. } | Body::Blob { .. } => false,
            Body::File(f) => f.remaining() == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream { remaining: Some(r), .. } | Body::Blob { remaining: Some(r), .. } => SizeHint::with_exact(*r),
            Body::Stream { remaining: None, .. } | Body::Blob { remaining: None, .. } => SizeHint::default(),
            Body::File(f) => SizeHint::with_exact(f.remaining()),
        }
    }
}
