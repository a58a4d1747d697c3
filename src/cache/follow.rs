//! Streaming blob bytes to a client: from a committed file, or from a fill in progress by
//! following its published progress: as ranges of the ingest file where the response can
//! send them with `sendfile` (plain HTTP/1), else from the batch in memory while it keeps
//! up and from the file when it falls behind. Each response has its own reader task and a
//! channel of two chunks, so a transfer holds at most a few MiB whatever the blob size.

use std::fs::File;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::fill::{Fill, Phase};
use super::sweep::Serving;
use crate::store::blobs::BlobReader;
use crate::store::pages;

/// A blob's bytes for one client, fed by its reader task through a bounded channel. An
/// `Err` item ends the transfer short: whoever sends it on must abort, never end cleanly.
pub struct Chunks {
    pub rx: mpsc::Receiver<io::Result<Piece>>,
    /// The exact length, when known.
    pub len: Option<u64>,
}

/// One step of a transfer: bytes, or (for a response that can send from a file) a range
/// of the fill's ingest file whose pages were just written, sent by the kernel without
/// passing through user space again.
pub enum Piece {
    Bytes(Bytes),
    File { file: Arc<File>, pos: u64, len: usize },
}

impl Piece {
    pub fn size(&self) -> usize {
        match self {
            Piece::Bytes(b) => b.len(),
            Piece::File { len, .. } => *len,
        }
    }
}

/// The most a file piece spans: one `sendfile` frame of the HTTP layer at most.
pub const FILE_PIECE: usize = 1 << 20;

fn chunks(len: Option<u64>) -> (mpsc::Sender<io::Result<Piece>>, Chunks) {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    (tx, Chunks { rx, len })
}

/// Reads of a committed blob: large, for throughput (a transfer holds three at most).
const COMMITTED_CHUNK: usize = 1 << 20;
/// Reads of the file behind a download in progress, by a follower that fell behind the
/// batches in memory.
const FOLLOW_CHUNK: usize = 1 << 20;
const CHANNEL_CHUNKS: usize = 2;

/// Streams `len` bytes of a committed blob from `start`. `serving` is held until the end.
pub fn committed(blob: BlobReader, start: u64, len: u64, serving: Serving) -> Chunks {
    let (tx, body) = chunks(Some(len));
    tokio::spawn(async move {
        let mut pos = start;
        let end = start + len;
        while pos < end {
            let want = COMMITTED_CHUNK.min(usize::try_from(end - pos).unwrap_or(COMMITTED_CHUNK));
            let chunk = read_at(&blob, pos, want).await;
            let failed = chunk.is_err();
            if let Ok(c) = &chunk {
                pos += c.len() as u64;
                serving.sent(c.len(), true);
            }
            if tx.send(chunk.map(Piece::Bytes)).await.is_err() || failed {
                return;
            }
        }
    });
    body
}

/// `want` bytes at `pos`, read on the blocking pool.
async fn read_at(blob: &BlobReader, pos: u64, want: usize) -> io::Result<Bytes> {
    let blob = blob.clone();
    tokio::task::spawn_blocking(move || blob.read_at(pos, want))
        .await
        .map_err(io::Error::other)?
}

/// Streams bytes `start..end` (or to the end of the blob) of a fill in progress, through
/// the reader the fill publishes (valid through its commit: no file is looked up by name).
///
/// Until the fill is committed, the last byte written is held back: a client reading the
/// whole blob reaches a clean end of body only once the blob is verified and stored (a
/// pull that completed is in the cache), and a failed fill ends every follower's body with
/// an error.
///
/// With `zero_copy` (the response can send from a file), bytes written lately go as
/// ranges of the ingest file: their pages are in the page cache, and the copy into the
/// socket is the kernel's.
pub fn following(
    fill: Arc<Fill>,
    start: u64,
    end: Option<u64>,
    len: Option<u64>,
    serving: Serving,
    zero_copy: bool,
) -> Chunks {
    let (tx, body) = chunks(len);
    tokio::spawn(async move {
        if let Err(e) = follow(&tx, &fill, start, end, &serving, zero_copy).await {
            tracing::debug!(digest = %fill.digest, error = %e, "follower aborted");
            let _ = tx.send(Err(e)).await;
        }
    });
    body
}

async fn follow(
    tx: &mpsc::Sender<io::Result<Piece>>,
    fill: &Fill,
    start: u64,
    end: Option<u64>,
    serving: &Serving,
    zero_copy: bool,
) -> io::Result<()> {
    let mut rx = fill.subscribe();
    let mut pos = start;
    loop {
        let state = rx.borrow_and_update().clone();
        let committed = match state.phase {
            Phase::Failed(e) => return Err(io::Error::other(e)),
            Phase::Committed => true,
            Phase::Connecting | Phase::Streaming => false,
        };
        let stop = end.or(state.total);
        if stop.is_some_and(|s| pos >= s) || (committed && pos >= state.written) {
            return Ok(());
        }
        let readable = if committed {
            state.written
        } else {
            state.written.saturating_sub(1)
        };
        let target = stop.map_or(readable, |s| s.min(readable));
        if let Some(blob) = state.reader.as_ref().filter(|_| pos < target) {
            let chunk = if let Some(file) = blob.file().filter(|_| zero_copy) {
                let len = FILE_PIECE.min(usize::try_from(target - pos).unwrap_or(FILE_PIECE));
                // Bytes written with the recent batches are in the page cache; older ones
                // almost always, but a follower far behind may find them gone.
                if !state.recent.covers(pos) && !pages::resident(&file, pos, len) {
                    let f = file.clone();
                    tokio::task::spawn_blocking(move || pages::warm(&f, pos, len))
                        .await
                        .map_err(io::Error::other)??;
                }
                Piece::File { file, pos, len }
            } else if let Some(bytes) = state.recent.slice(pos, target) {
                Piece::Bytes(bytes)
            } else {
                let want = FOLLOW_CHUNK.min(usize::try_from(target - pos).unwrap_or(FOLLOW_CHUNK));
                Piece::Bytes(read_at(blob, pos, want).await?)
            };
            pos += chunk.size() as u64;
            serving.sent(chunk.size(), false);
            if tx.send(Ok(chunk)).await.is_err() {
                return Ok(());
            }
            continue;
        }
        if rx.changed().await.is_err() {
            // The fill is gone without a final word: only possible at shutdown.
            return Err(io::Error::other("blob fill went away"));
        }
    }
}
