//! Zero-copy blob bodies on plain-HTTP/1 connections: the kernel sends page-cache pages to
//! the socket (`sendfile(2)`), and the bytes never pass through user space.
//!
//! hyper owns the connection and writes every body byte itself, so a body cannot hand it a
//! file. Instead a file body yields placeholder frames, slices of one static buffer
//! (`PLACEHOLDER`) as long as the file range each stands for, and queues that range on its
//! connection. Told to write vectored (`writev(true)`), hyper queues body frames without
//! copying them, so the placeholder slices reach the connection's stream (`SendfileStream`)
//! as they are; the stream knows them by address and sends the queued file range in their
//! place. Everything else it writes as given. A placeholder out of step with the queue ends
//! the connection: the client sees a short body, never placeholder bytes.
//!
//! HTTP/2 frames and TLS records need the bytes in user space: those connections get no
//! queue and their bodies read the file.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::cache::sweep::Serving;
use crate::store::pages;
use crate::sync::Locked;

/// The largest frame a file body yields, and so the most one `sendfile` call is asked to
/// send: nginx's `sendfile_max_chunk`. Each frame costs one trip through hyper.
const FRAME: usize = 2 << 20;

/// Never read or written: only its addresses are meaningful. It lives in `.bss`, so its
/// pages are never touched and cost no memory.
static PLACEHOLDER: [u8; FRAME] = [0; FRAME];

/// One placeholder frame: `len` bytes of `file` from `pos`, `sent` of them sent so far.
struct Range {
    file: Arc<File>,
    pos: u64,
    len: usize,
    sent: usize,
}

/// The file ranges a connection's bodies have yielded and its stream has not sent yet, in
/// the order hyper writes them.
#[derive(Clone, Default)]
pub struct Queue(Arc<Mutex<VecDeque<Range>>>);

impl Queue {
    fn push(&self, r: Range) {
        self.0.locked().push_back(r);
    }
}

/// A plain TCP stream that sends placeholder slices as the file ranges they stand for.
pub struct SendfileStream {
    tcp: TcpStream,
    queue: Queue,
}

impl SendfileStream {
    pub fn new(tcp: TcpStream) -> SendfileStream {
        SendfileStream {
            tcp,
            queue: Queue::default(),
        }
    }

    /// The queue that this connection's file bodies feed.
    pub fn queue(&self) -> Queue {
        self.queue.clone()
    }

    fn poll_sendfile(&mut self, cx: &mut Context<'_>, offset: usize, len: usize) -> Poll<io::Result<usize>> {
        let mut queue = self.queue.0.locked();
        let Some(range) = queue.front_mut() else {
            return Poll::Ready(Err(io::Error::other("placeholder bytes with no file range queued")));
        };
        if offset != range.sent || len > range.len - range.sent {
            return Poll::Ready(Err(io::Error::other(
                "placeholder bytes out of step with the file ranges",
            )));
        }
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            let mut at = range.pos + range.sent as u64;
            let sent = self.tcp.try_io(Interest::WRITABLE, || {
                Ok(rustix::fs::sendfile(&self.tcp, &*range.file, Some(&mut at), len)?)
            });
            match sent {
                Ok(0) => return Poll::Ready(Err(crate::store::blobs::truncated())),
                Ok(n) => {
                    range.sent += n;
                    if range.sent == range.len {
                        queue.pop_front();
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Where `buf` starts within `PLACEHOLDER`, if it is a slice of it.
fn placeholder_offset(buf: &[u8]) -> Option<usize> {
    let base = PLACEHOLDER.as_ptr() as usize;
    let start = buf.as_ptr() as usize;
    (!buf.is_empty() && start >= base && start + buf.len() <= base + FRAME).then(|| start - base)
}

impl AsyncWrite for SendfileStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    /// Ordinary bytes up to the first placeholder go out with one `writev`; a placeholder
    /// first goes out with `sendfile`. hyper calls again for the rest.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(first) = bufs.iter().position(|b| !b.is_empty()) else {
            return Poll::Ready(Ok(0));
        };
        if let Some(offset) = placeholder_offset(&bufs[first]) {
            return this.poll_sendfile(cx, offset, bufs[first].len());
        }
        let plain = bufs[first..]
            .iter()
            .position(|b| placeholder_offset(b).is_some())
            .map_or(bufs.len(), |n| first + n);
        Pin::new(&mut this.tcp).poll_write_vectored(cx, &bufs[first..plain])
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl AsyncRead for SendfileStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

/// The body of a committed blob on a connection with a queue: placeholder frames for
/// `pos..end` of `file`.
///
/// `sendfile` runs on an async worker, so it must not wait on the disk: a frame is queued
/// only once its pages are in the page cache. `posix_fadvise(WILLNEED)` asks for the next
/// frame ahead of time; a frame still not cached when its turn comes (a cold blob in a cache
/// larger than memory) is read on the blocking pool first.
pub struct FileBody {
    queue: Queue,
    file: Arc<File>,
    pos: u64,
    end: u64,
    serving: Serving,
    warming: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

impl FileBody {
    pub fn new(queue: Queue, file: Arc<File>, start: u64, len: u64, serving: Serving) -> FileBody {
        let body = FileBody {
            queue,
            file,
            pos: start,
            end: start + len,
            serving,
            warming: None,
        };
        body.read_ahead(start);
        body
    }

    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    /// Asks the kernel to start reading the frame at `from` into the page cache.
    fn read_ahead(&self, from: u64) {
        let len = (self.end.saturating_sub(from)).min(FRAME as u64);
        if len > 0 {
            let _ = rustix::fs::fadvise(
                &*self.file,
                from,
                std::num::NonZeroU64::new(len),
                rustix::fs::Advice::WillNeed,
            );
        }
    }

    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let len = usize::try_from(self.remaining()).unwrap_or(FRAME).min(FRAME);
        if len == 0 {
            return Poll::Ready(None);
        }
        if self.warming.is_none() && !pages::resident(&self.file, self.pos, len) {
            let (file, pos) = (self.file.clone(), self.pos);
            self.warming = Some(tokio::task::spawn_blocking(move || pages::warm(&file, pos, len)));
        }
        if let Some(warming) = self.warming.as_mut() {
            let warmed = ready!(Pin::new(warming).poll(cx));
            self.warming = None;
            if let Err(e) = warmed.map_err(io::Error::other).and_then(|r| r) {
                return Poll::Ready(Some(Err(e)));
            }
        }
        let frame = placeholder(&self.queue, self.file.clone(), self.pos, len);
        self.pos += len as u64;
        self.read_ahead(self.pos);
        self.serving.sent(len, true);
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }
}

/// Queues `len` bytes of `file` from `pos` (pages in the page cache: `sendfile` runs on an
/// async worker) and gives the placeholder frame that stands for them.
pub fn placeholder(queue: &Queue, file: Arc<File>, pos: u64, len: usize) -> Bytes {
    queue.push(Range {
        file,
        pos,
        len,
        sent: 0,
    });
    Bytes::from_static(&PLACEHOLDER[..len])
}

// A follower's file piece fits one placeholder frame.
const _: () = assert!(crate::cache::follow::FILE_PIECE <= FRAME);

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (SendfileStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (SendfileStream::new(server), client)
    }

    fn file_with(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    fn placeholder(r: Range) -> (Range, &'static [u8]) {
        let len = r.len;
        (r, &PLACEHOLDER[..len])
    }

    #[tokio::test]
    async fn placeholders_become_the_queued_file_ranges() {
        let content: Vec<u8> = (0..3 * FRAME / 2).map(|i| (i % 251) as u8).collect();
        let file = Arc::new(file_with(&content));
        let (mut server, mut client) = pair().await;
        let queue = server.queue();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        server.write_all(b"head:").await.unwrap();
        // Two frames, the second from the middle of the file, as a range request would.
        for (pos, len) in [(0, FRAME), (10, 100)] {
            let (range, slice) = placeholder(Range {
                file: file.clone(),
                pos,
                len,
                sent: 0,
            });
            queue.push(range);
            server.write_all(slice).await.unwrap();
        }
        server.write_all(b":tail").await.unwrap();
        server.shutdown().await.unwrap();
        drop(server);
        let got = reader.await.unwrap();
        let mut want = b"head:".to_vec();
        want.extend_from_slice(&content[..FRAME]);
        want.extend_from_slice(&content[10..110]);
        want.extend_from_slice(b":tail");
        assert!(got == want, "got {} bytes, want {}", got.len(), want.len());
    }

    #[tokio::test]
    async fn a_placeholder_without_its_range_is_an_error_not_zeros() {
        let (mut server, _client) = pair().await;
        let err = server.write_all(&PLACEHOLDER[..10]).await.unwrap_err();
        assert!(err.to_string().contains("no file range"), "{err}");
    }

    #[tokio::test]
    async fn a_file_shorter_than_its_range_is_an_error() {
        let (mut server, _client) = pair().await;
        let (range, slice) = placeholder(Range {
            file: Arc::new(file_with(b"short")),
            pos: 0,
            len: 100,
            sent: 0,
        });
        server.queue().push(range);
        let err = server.write_all(slice).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    }

    /// A file body sends the file's bytes whether its frames were cached or had to be read
    /// in first.
    #[tokio::test]
    async fn a_file_body_queues_its_frames_cached_or_not() {
        let content: Vec<u8> = (0..2 * FRAME + 9).map(|i| (i % 239) as u8).collect();
        let file = file_with(&content);
        file.sync_all().unwrap();
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        let (mut server, mut client) = pair().await;
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let serving =
            Arc::new(crate::cache::sweep::ServingSet::default()).enter(&crate::oci::Digest::sha256_of(b"x"), &metrics);
        let mut body = FileBody::new(server.queue(), Arc::new(file), 3, content.len() as u64 - 3, serving);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        while let Some(frame) = std::future::poll_fn(|cx| body.poll_frame(cx)).await {
            let data = frame.unwrap().into_data().unwrap();
            server.write_all(&data).await.unwrap();
        }
        server.shutdown().await.unwrap();
        drop(server);
        assert!(
            reader.await.unwrap() == content[3..],
            "the bytes of the file, from offset 3"
        );
    }

    #[test]
    fn only_slices_of_the_placeholder_are_recognised() {
        assert_eq!(placeholder_offset(&PLACEHOLDER[5..9]), Some(5));
        assert_eq!(placeholder_offset(&PLACEHOLDER[..0]), None);
        assert_eq!(placeholder_offset(&[0u8; 16]), None);
    }
}
