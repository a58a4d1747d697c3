//! Streaming blob bytes to a client: from a committed file, or from a fill in progress by
//! following its published progress. Each response has its own reader task and a channel
//! of two chunks, so a transfer holds at most a few hundred KiB whatever the blob size.

use std::io::{self, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::fill::{Fill, Phase};
use super::sweep::Serving;

/// A blob's bytes for one client, fed by its reader task through a bounded channel. An
/// `Err` item ends the transfer short: whoever sends it on must abort, never end cleanly.
pub struct Chunks {
    pub rx: mpsc::Receiver<io::Result<Bytes>>,
    /// The exact length, when known.
    pub len: Option<u64>,
}

fn chunks(len: Option<u64>) -> (mpsc::Sender<io::Result<Bytes>>, Chunks) {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    (tx, Chunks { rx, len })
}

/// Reads of a committed file: large, for throughput (a transfer holds three at most).
const COMMITTED_CHUNK: usize = 1 << 20;
/// Reads behind a download in progress: smaller, to follow it closely.
const FOLLOW_CHUNK: usize = 256 * 1024;
const CHANNEL_CHUNKS: usize = 2;

/// Streams `len` bytes of a committed file from `start`. `serving` is held until the end.
pub fn committed(mut file: tokio::fs::File, start: u64, len: u64, serving: Serving) -> Chunks {
    let (tx, body) = chunks(Some(len));
    tokio::spawn(async move {
        if let Err(e) = file.seek(SeekFrom::Start(start)).await {
            let _ = tx.send(Err(e)).await;
            return;
        }
        let mut file = file.into_std().await;
        let mut left = len;
        while left > 0 {
            let want = COMMITTED_CHUNK.min(usize::try_from(left).unwrap_or(COMMITTED_CHUNK));
            let (f, chunk) = match tokio::task::spawn_blocking(move || {
                let chunk = read_next(&file, want);
                (file, chunk)
            })
            .await
            {
                Ok(read) => read,
                Err(e) => {
                    let _ = tx.send(Err(io::Error::other(e))).await;
                    return;
                }
            };
            file = f;
            let failed = chunk.is_err();
            if let Ok(c) = &chunk {
                left -= c.len() as u64;
                serving.sent(c.len(), true);
            }
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });
    body
}

/// Reads the next `want` bytes straight into a fresh buffer: no intermediate copy (as
/// `tokio::fs` makes), no zeroing. A file shorter than promised is an error. Blocking.
fn read_next(file: &std::fs::File, want: usize) -> io::Result<Bytes> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(want);
    file.take(want as u64).read_to_end(&mut buf)?;
    if buf.len() < want {
        return Err(crate::store::content::truncated());
    }
    Ok(Bytes::from(buf))
}

/// Streams bytes `start..end` (or to the end of the blob) of a fill in progress.
///
/// Until the fill is verified, the last byte written is held back: a client
/// reading the whole blob can only reach a clean end of body after verification, and a
/// failed fill ends every follower's body with an error.
pub fn following(
    fill: Arc<Fill>,
    committed_path: PathBuf,
    start: u64,
    end: Option<u64>,
    len: Option<u64>,
    serving: Serving,
) -> Chunks {
    let (tx, body) = chunks(len);
    tokio::spawn(async move {
        if let Err(e) = follow(&tx, &fill, committed_path, start, end, &serving).await {
            tracing::debug!(digest = %fill.digest, error = %e, "follower aborted");
            let _ = tx.send(Err(e)).await;
        }
    });
    body
}

async fn follow(
    tx: &mpsc::Sender<io::Result<Bytes>>,
    fill: &Fill,
    committed_path: PathBuf,
    start: u64,
    end: Option<u64>,
    serving: &Serving,
) -> io::Result<()> {
    let mut rx = fill.subscribe();
    let mut file: Option<tokio::fs::File> = None;
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
        if pos < target {
            if file.is_none() {
                let path = if committed {
                    Some(committed_path.clone())
                } else {
                    state.ingest.clone()
                };
                if let Some(p) = path {
                    match tokio::fs::File::open(&p).await {
                        Ok(mut f) => {
                            f.seek(SeekFrom::Start(pos)).await?;
                            file = Some(f);
                        }
                        // The ingest was just renamed into place (or removed): the next state says which.
                        Err(e) if e.kind() == io::ErrorKind::NotFound && !committed => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            if let Some(f) = file.as_mut() {
                let chunk = read_chunk(f, target - pos, FOLLOW_CHUNK).await?;
                pos += chunk.len() as u64;
                serving.sent(chunk.len(), false);
                if tx.send(Ok(chunk)).await.is_err() {
                    return Ok(());
                }
                continue;
            }
        }
        if rx.changed().await.is_err() {
            // The fill is gone without a final word: only possible at shutdown.
            return Err(io::Error::other("blob fill went away"));
        }
    }
}

/// Reads up to `chunk` bytes, at most `left`; a file shorter than promised is an error.
async fn read_chunk(file: &mut tokio::fs::File, left: u64, chunk: usize) -> io::Result<Bytes> {
    let want = chunk.min(usize::try_from(left).unwrap_or(chunk));
    let mut buf = vec![0u8; want];
    let mut filled = 0;
    while filled < want {
        let n = file.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(crate::store::content::truncated());
        }
        filled += n;
    }
    Ok(Bytes::from(buf))
}
