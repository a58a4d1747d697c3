//! Blob fills: one upstream download per digest, written to an ingest file while it is
//! hashed, and followed by every client that wants the blob meanwhile.
//!
//! The fill is a task owned by the cache, not by a request: a client that hangs up does not
//! cancel it. Its progress is published on a `watch` channel with the batch of bytes last
//! written: a follower that keeps up takes its bytes from that batch, in memory; one that
//! falls behind (or joins late) reads the ingest file up to the published byte count. So
//! memory stays bounded whatever the number of clients, and a slow client slows no one.
//!
//! The kernel copies the bytes into hyper's read buffer; each frame is copied once more,
//! into a batch buffer of 1 MiB, and dropped, so hyper reads into the same memory again.
//! Batches travel as they are (shared `Bytes`) to the writer and the hasher, and their
//! buffers are reused once everyone let go: fresh buffers fault their pages in, which cost
//! more than the copy (14% of a fill's CPU against 6%). Followers on plain HTTP/1 send the
//! ingest file's pages (`sendfile`), the others the batches in memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{mpsc, watch};

use crate::error::{Error, Result};
use crate::oci::digest::{Algorithm, Hasher};
use crate::oci::Digest;
use crate::store::blobs::{BlobReader, Ingest, Mismatch};
use crate::store::index::BlobRecord;
use crate::sync::Locked;
use crate::upstream::{BlobBody, Origin, Upstream};

use super::Cache;

/// Bytes gathered from the upstream before they are handed on: each hand-off wakes a
/// thread, so a large batch keeps a GiB to a thousand of them.
const BATCH_BYTES: usize = 1 << 20;
/// Batches in flight between the network and the disk side of a fill.
const WRITE_QUEUE: usize = 2;
/// Batches written last that followers may still read from memory: the one just published
/// and the one before it, which a follower keeping up may be halfway through.
const RECENT_BATCHES: usize = 2;
/// A slow upstream's bytes are published at least this often, so followers keep moving.
const PUBLISH_EVERY: Duration = Duration::from_millis(20);

/// The last `RECENT_BATCHES` batches written, newest first.
#[derive(Debug, Clone, Default)]
pub struct Recent([Option<Batch>; RECENT_BATCHES]);

impl Recent {
    fn push(&mut self, batch: Batch) {
        self.0.rotate_right(1);
        self.0[0] = Some(batch);
    }

    /// The bytes at `pos`, up to `limit`, when a recent batch holds them (see [`Batch::slice`]).
    pub fn slice(&self, pos: u64, limit: u64) -> Option<Bytes> {
        self.0.iter().flatten().find_map(|b| b.slice(pos, limit))
    }

    /// Whether byte `pos` was written with the recent batches or after them: written that
    /// lately, its page is still in the page cache.
    pub fn covers(&self, pos: u64) -> bool {
        self.0.iter().flatten().any(|b| b.at <= pos)
    }
}

/// A run of the upstream's bytes starting at byte `at`, in one buffer.
#[derive(Debug, Clone)]
pub struct Batch {
    at: u64,
    bytes: Bytes,
}

impl Batch {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The bytes from `pos` to the end of the batch, no further than `limit`; `None` when
    /// this batch does not hold `pos`. Shared, not copied.
    pub fn slice(&self, pos: u64, limit: u64) -> Option<Bytes> {
        let end = self.at + self.len();
        if !(self.at..end).contains(&pos) || pos >= limit {
            return None;
        }
        let from = (pos - self.at) as usize;
        let to = (end.min(limit) - self.at) as usize;
        Some(self.bytes.slice(from..to))
    }
}

/// The buffers batches are gathered in, shared by all fills and reused once every holder
/// (the writer, the hasher, the recent batches, followers reading them) has let go. hyper's
/// frames are copied in and dropped at once, so hyper reads into the same buffer again:
/// fresh buffers on either side fault their pages in, which measured more than the copy.
#[derive(Default)]
pub struct Buffers(Mutex<VecDeque<Bytes>>);

/// Buffers kept for reuse (16 MiB): enough for a few concurrent fills, each with batches in
/// flight to the writer and the hasher, two recent ones and one being gathered. More fills
/// at once allocate more, which are freed as they go.
const KEPT_BUFFERS: usize = 16;

impl Buffers {
    /// An empty buffer of `BATCH_BYTES`: one passed on before that nobody holds any more,
    /// else a new one.
    fn take(&self) -> BytesMut {
        let mut passed = self.0.locked();
        for _ in 0..passed.len() {
            let Some(oldest) = passed.pop_front() else { break };
            match oldest.try_into_mut() {
                Ok(mut reused) => {
                    reused.clear();
                    return reused;
                }
                Err(held) => passed.push_back(held),
            }
        }
        if passed.len() >= KEPT_BUFFERS {
            passed.pop_front();
        }
        BytesMut::with_capacity(BATCH_BYTES)
    }

    /// The gathered bytes as a batch at `at`. A buffer at least half full goes with the
    /// batch and is kept to be reused; a smaller run (a slow upstream's, passed on the
    /// timer) is copied out and the buffer stays with the gatherer: a slow fill holds a
    /// few KiB per batch, not a MiB.
    fn pass(&self, at: u64, gathered: &mut BytesMut) -> Batch {
        if gathered.len() < gathered.capacity() / 2 {
            let bytes = Bytes::copy_from_slice(gathered);
            gathered.clear();
            return Batch { at, bytes };
        }
        let bytes = std::mem::take(gathered).freeze();
        self.0.locked().push_back(bytes.clone());
        Batch { at, bytes }
    }
}

#[derive(Debug, Clone)]
pub enum Phase {
    Connecting,
    Streaming,
    Committed,
    Failed(Error),
}

#[derive(Debug, Clone)]
pub struct FillState {
    pub phase: Phase,
    /// The upstream's `Content-Length`, when it sent one.
    pub total: Option<u64>,
    /// Bytes written to the ingest file and readable there.
    pub written: u64,
    /// The bytes written so far, to read, once the upstream has answered: valid through
    /// the commit.
    pub reader: Option<BlobReader>,
    /// The batches written last: a follower that keeps up reads them here, not from the file.
    pub recent: Recent,
}

pub struct Fill {
    pub digest: Digest,
    pub upstream: String,
    pub repo: String,
    state: watch::Sender<FillState>,
}

impl Fill {
    pub fn subscribe(&self) -> watch::Receiver<FillState> {
        self.state.subscribe()
    }

    fn publish(&self, f: impl FnOnce(&mut FillState)) {
        self.state.send_modify(f);
    }

    /// Waits until the upstream has answered (or the fill is over) and returns that state.
    pub async fn started(&self) -> FillState {
        let mut rx = self.subscribe();
        let started = rx
            .wait_for(|s| !matches!(s.phase, Phase::Connecting))
            .await
            .map(|s| s.clone());
        match started {
            Ok(s) => s,
            Err(_) => rx.borrow().clone(),
        }
    }

    /// Waits until the fill is over: the committed size, or why it failed.
    pub async fn finished(&self) -> Result<u64, Error> {
        let mut rx = self.subscribe();
        let state = rx
            .wait_for(|s| matches!(s.phase, Phase::Committed | Phase::Failed(_)))
            .await
            .map(|s| s.clone());
        match state {
            Ok(FillState {
                phase: Phase::Committed,
                written,
                ..
            }) => Ok(written),
            Ok(FillState {
                phase: Phase::Failed(e),
                ..
            }) => Err(e),
            _ => Err(Error::internal("blob fill went away")),
        }
    }
}

/// Ends a fill: takes it out of the table, then publishes how it ended. In that order, so
/// that a request arriving after a failure starts afresh instead of joining the failure.
/// Dropped without `finish` (the task panicked), it fails the followers: no follower waits
/// on a fill that is gone.
struct FillGuard {
    cache: Arc<Cache>,
    fill: Arc<Fill>,
}

impl FillGuard {
    fn finish(&self, phase: Phase) {
        self.cache.forget_fill(&self.fill);
        self.fill.publish(|s| s.phase = phase);
    }
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        self.cache.forget_fill(&self.fill);
        self.fill.publish(|s| {
            if matches!(s.phase, Phase::Connecting | Phase::Streaming) {
                s.phase = Phase::Failed(Error::internal("blob fill ended unexpectedly"));
            }
        });
    }
}

impl Cache {
    /// Joins the fill of `digest` in progress or starts one. `None` if the blob is already
    /// committed (a fill finished between the caller's lookup and now).
    pub(super) fn join_or_start_fill(
        self: &Arc<Self>,
        up: &Arc<Upstream>,
        repo: &str,
        digest: &Digest,
    ) -> Option<(Arc<Fill>, bool)> {
        let mut fills = self.blobs.fills.locked();
        if let Some(f) = fills.get(digest) {
            return Some((f.clone(), true));
        }
        // A fill records the blob before it leaves the table, so this check under the lock
        // closes the gap between a caller's miss and a fill that just committed.
        if matches!(self.store.index.blob(digest), Ok(Some(_))) {
            return None;
        }
        let initial = FillState {
            phase: Phase::Connecting,
            total: None,
            written: 0,
            reader: None,
            recent: Recent::default(),
        };
        let fill = Arc::new(Fill {
            digest: digest.clone(),
            upstream: up.name().to_owned(),
            repo: repo.to_owned(),
            state: watch::Sender::new(initial),
        });
        fills.insert(digest.clone(), fill.clone());
        let guard = FillGuard {
            cache: self.clone(),
            fill: fill.clone(),
        };
        let up = up.clone();
        tokio::spawn(async move {
            let result = guard.cache.clone().run_fill(guard.fill.clone(), up.clone()).await;
            match result {
                Ok(size) => {
                    tracing::info!(digest = %guard.fill.digest, upstream = %up.name(), size, "blob cached");
                    guard.finish(Phase::Committed);
                }
                Err(e) => {
                    tracing::warn!(digest = %guard.fill.digest, upstream = %up.name(), error = %e, "blob fill failed");
                    guard.finish(Phase::Failed(e));
                }
            }
        });
        Some((fill, false))
    }

    /// Removes this fill from the table, unless a newer fill of the digest took its place.
    fn forget_fill(&self, fill: &Arc<Fill>) {
        let mut fills = self.blobs.fills.locked();
        if fills.get(&fill.digest).is_some_and(|f| Arc::ptr_eq(f, fill)) {
            fills.remove(&fill.digest);
        }
    }

    async fn run_fill(self: Arc<Self>, fill: Arc<Fill>, up: Arc<Upstream>) -> Result<u64> {
        let _turn = up.fetch_permit().await;
        let BlobBody { total, body, origin } = up.get_blob(&fill.repo, &fill.digest, None).await?;
        // The upstream serves it in this repository: it may be served there from the cache.
        self.store.index.link(up.name(), &fill.repo, &[&fill.digest])?;
        // Make room early when this download will take the cache past the high watermark;
        // the commit checks again once the bytes are in.
        let high = self.settings.retention.limits.high_bytes();
        if let Some(size) = total {
            self.retention.wake_if_over(self.retention.stored() + size, high);
        }
        let ingest = self.store.blobs.ingest(&fill.digest)?;
        fill.publish(|s| {
            s.phase = Phase::Streaming;
            s.total = total;
            s.reader = Some(ingest.reader());
        });
        // Three stages run side by side: the network side reads, one blocking thread writes
        // and publishes, another hashes the same batches. A few batches are in flight between
        // them, so memory stays bounded and no stage waits on another's work.
        let (to_writer, rx) = mpsc::channel(WRITE_QUEUE);
        let writer = tokio::task::spawn_blocking({
            let fill = fill.clone();
            move || write_chunks(ingest, rx, &fill)
        });
        let (to_hasher, rx) = mpsc::channel(WRITE_QUEUE);
        let hasher = tokio::task::spawn_blocking({
            let algorithm = fill.digest.algorithm();
            move || hash_chunks(algorithm, rx)
        });
        let stages = [to_writer, to_hasher];
        let read = read_resuming(body, origin, &stages, total, &up, &fill, &self.blobs.buffers).await;
        drop(stages);
        let written = writer.await.map_err(Error::internal)?;
        let actual = hasher.await.map_err(Error::internal)?;
        let ingest = match (read, written) {
            (Ok(()), Ok(ingest)) => ingest,
            (Err(e), Ok(ingest)) => {
                ingest.abort();
                return Err(e);
            }
            (_, Err(e)) => return Err(e.into()),
        };
        if let Err(Mismatch(detail)) = ingest.verify(&actual, &fill.digest, total) {
            ingest.abort();
            self.metrics.digest_mismatches.add(&[], 1);
            tracing::error!(digest = %fill.digest, upstream = %up.name(), %detail, "upstream blob failed verification; not cached");
            return Err(Error::DigestMismatch {
                upstream: up.name().to_owned(),
                expected: fill.digest.to_string(),
                detail,
            });
        }
        let size = tokio::task::spawn_blocking(move || ingest.commit())
            .await
            .map_err(Error::internal)??;
        let record = BlobRecord::fresh(size, self.store.index.media_type(&fill.digest)?, up.name().to_owned());
        self.store.index.put_blob(&fill.digest, &record)?;
        let stored = self.retention.add(size);
        self.retention.wake_if_over(stored, high);
        if origin == Origin::Upstream {
            self.share(&up, &fill.repo, &fill.digest);
        }
        Ok(size)
    }

    /// With `[storage]`: a blob this node fetched from the upstream itself goes up to the
    /// shared tier once committed, in the background (an upload cut short leaves nothing
    /// visible; the next node to fetch the blob uploads it).
    fn share(self: &Arc<Self>, up: &Arc<Upstream>, repo: &str, d: &Digest) {
        let Some(shared) = up.shared().cloned() else {
            return;
        };
        let (this, d) = (self.clone(), d.clone());
        let (upstream, repo) = (up.name().to_owned(), repo.to_owned());
        tokio::spawn(async move {
            let blob = match crate::store::blobs::committed_async(&this.store.blobs, &d).await {
                Ok(Some(blob)) => blob,
                _ => return,
            };
            if let Err(e) = shared.put_link(&upstream, &repo, &d).await {
                tracing::warn!(digest = %d, error = %e, "repository link not shared");
            }
            let result = match shared.put(&d, blob).await {
                Ok(true) => {
                    tracing::info!(digest = %d, "blob shared");
                    "uploaded"
                }
                Ok(false) => "skipped",
                Err(e) => {
                    tracing::warn!(digest = %d, error = %e, "blob not uploaded to the shared tier");
                    "error"
                }
            };
            this.metrics.shared_tier.add(&[("op", "upload"), ("result", result)], 1);
        });
    }
}

/// The disk side of a fill, on the blocking pool: write each batch, then publish it.
fn write_chunks(mut ingest: Ingest, mut rx: mpsc::Receiver<Batch>, fill: &Fill) -> std::io::Result<Ingest> {
    while let Some(batch) = rx.blocking_recv() {
        if let Err(e) = ingest.write(&batch.bytes) {
            ingest.abort();
            return Err(e);
        }
        let written = ingest.written();
        fill.publish(|s| {
            s.written = written;
            s.recent.push(batch);
        });
    }
    Ok(ingest)
}

/// The hashing side of a fill, on the blocking pool.
fn hash_chunks(algorithm: Algorithm, mut rx: mpsc::Receiver<Batch>) -> Digest {
    let mut hasher = Hasher::new(algorithm);
    while let Some(batch) = rx.blocking_recv() {
        hasher.update(&batch.bytes);
    }
    hasher.finish()
}

/// How many times a dropped download is resumed before the fill gives up.
const MAX_RESUMES: u32 = 3;

/// Reads the whole body, resuming with a `Range` request from the byte reached when the
/// connection drops or stalls (up to `MAX_RESUMES` times, backing off), so that a long
/// download is not restarted from zero. Needs the length to know the download is short.
///
/// A resumed download that stops again before its first byte ends the fill: the upstream
/// keeps stalling, and its clients have waited `idle_timeout` plus at most
/// `response_timeout` or another `idle_timeout` without a byte (kubelet cancels a pull
/// after a minute without progress; the defaults keep this under 30 s).
async fn read_resuming(
    mut body: Incoming,
    mut origin: Origin,
    stages: &[mpsc::Sender<Batch>; 2],
    total: Option<u64>,
    up: &Upstream,
    fill: &Fill,
    buffers: &Buffers,
) -> Result<()> {
    let mut seen = 0u64;
    let mut resumes = 0;
    let mut resumed_at = None;
    loop {
        // Bytes from another node or the shared tier are not the upstream's egress.
        let counted = origin == Origin::Upstream;
        let error = match read_upstream(body, stages, buffers, total, up, counted, &mut seen).await {
            Ok(()) => return Ok(()),
            Err(Interrupted::Fatal(e)) => return Err(e),
            Err(Interrupted::Resumable(e)) if total.is_none() || resumes == MAX_RESUMES => return Err(e),
            Err(Interrupted::Resumable(e)) if resumed_at == Some(seen) => return Err(e),
            Err(Interrupted::Resumable(e)) => e,
        };
        resumes += 1;
        resumed_at = Some(seen);
        tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(resumes - 1)).await;
        tracing::warn!(upstream = %up.name(), repo = %fill.repo, digest = %fill.digest, from = seen, %error, "blob download interrupted; resuming");
        let resumed = up.get_blob(&fill.repo, &fill.digest, Some(seen)).await?;
        (body, origin) = (resumed.body, resumed.origin);
    }
}

enum Interrupted {
    /// The connection dropped or stalled: the rest can be asked for.
    Resumable(Error),
    /// The content is wrong, or the fill itself failed.
    Fatal(Error),
}

/// Hands the bytes gathered so far, as one batch, to every stage (a clone shares them),
/// and counts them in `seen`.
async fn pass(
    stages: &[mpsc::Sender<Batch>; 2],
    buffers: &Buffers,
    gathered: &mut BytesMut,
    seen: &mut u64,
) -> Result<(), Interrupted> {
    let batch = buffers.pass(*seen, gathered);
    *seen += batch.len();
    for stage in stages {
        stage
            .send(batch.clone())
            .await
            .map_err(|_| Interrupted::Fatal(Error::internal("blob writer stopped")))?;
    }
    Ok(())
}

/// The network side of a fill: gathers the upstream's frames into batches for the writer
/// and the hasher. A slow upstream's bytes are passed on at least every `PUBLISH_EVERY`.
/// `seen` counts the bytes passed on, across resumptions.
async fn read_upstream(
    mut body: Incoming,
    stages: &[mpsc::Sender<Batch>; 2],
    buffers: &Buffers,
    total: Option<u64>,
    up: &Upstream,
    counted: bool,
    seen: &mut u64,
) -> Result<(), Interrupted> {
    let idle = up.config.idle_timeout;
    let mut gathered = BytesMut::new();
    let mut pass_at = tokio::time::Instant::now() + PUBLISH_EVERY;
    let result = loop {
        let frame = tokio::select! {
            frame = tokio::time::timeout(idle, body.frame()) => frame,
            _ = tokio::time::sleep_until(pass_at), if !gathered.is_empty() => {
                pass(stages, buffers, &mut gathered, seen).await?;
                continue;
            }
        };
        match frame {
            Err(_) => {
                break Err(Interrupted::Resumable(
                    up.timeout(format!("blob body idle for {idle:?}")),
                ))
            }
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => break Err(Interrupted::Resumable(up.bad(format!("blob body: {e}")))),
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else { continue };
                if data.is_empty() {
                    continue;
                }
                if counted {
                    up.count_bytes(data.len());
                }
                if total.is_some_and(|t| *seen + (gathered.len() + data.len()) as u64 > t) {
                    return Err(Interrupted::Fatal(
                        up.bad(format!("blob body longer than its Content-Length {total:?}")),
                    ));
                }
                if !gathered.is_empty() && gathered.len() + data.len() > gathered.capacity() {
                    pass(stages, buffers, &mut gathered, seen).await?;
                }
                if gathered.is_empty() {
                    if gathered.capacity() == 0 {
                        gathered = buffers.take();
                    }
                    pass_at = tokio::time::Instant::now() + PUBLISH_EVERY;
                }
                gathered.extend_from_slice(&data);
            }
        }
    };
    // What arrived before an interruption is good: keep it, and resume after it.
    if !gathered.is_empty() {
        pass(stages, buffers, &mut gathered, seen).await?;
    }
    match (result, total) {
        (Ok(()), Some(t)) if *seen < t => Err(Interrupted::Resumable(
            up.bad(format!("blob body ended at {} of {t} bytes", *seen)),
        )),
        (r, _) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(at: u64, bytes: &'static [u8]) -> Batch {
        Batch {
            at,
            bytes: Bytes::from_static(bytes),
        }
    }

    #[test]
    fn a_batch_hands_out_its_bytes_from_a_position_up_to_the_limit() {
        let b = batch(10, b"abcdefgh");
        assert_eq!(b.len(), 8);
        assert_eq!(b.slice(10, 100).unwrap(), &b"abcdefgh"[..]);
        assert_eq!(b.slice(12, 100).unwrap(), &b"cdefgh"[..]);
        assert_eq!(b.slice(14, 16).unwrap(), &b"ef"[..], "the held-back tail stays back");
        assert!(b.slice(16, 16).is_none(), "nothing at or past the limit");
        assert!(b.slice(9, 100).is_none());
        assert!(b.slice(18, 100).is_none());
    }

    #[test]
    fn recent_keeps_the_last_two_batches() {
        let mut r = Recent::default();
        r.push(batch(0, b"ab"));
        r.push(batch(2, b"cd"));
        assert_eq!(r.slice(0, 10).unwrap(), &b"ab"[..]);
        assert!(r.covers(0) && r.covers(7));
        r.push(batch(4, b"ef"));
        assert!(
            r.slice(0, 10).is_none(),
            "the oldest is dropped: a follower that far behind reads the file"
        );
        assert!(!r.covers(1) && r.covers(2));
        assert_eq!(r.slice(3, 10).unwrap(), &b"d"[..]);
        assert_eq!(r.slice(5, 10).unwrap(), &b"f"[..]);
    }

    #[test]
    fn a_buffer_is_reused_only_once_nobody_holds_its_batch() {
        let buffers = Buffers::default();
        let mut gathered = buffers.take();
        let first = gathered.as_ptr();
        gathered.resize(gathered.capacity(), b'x');
        let batch = buffers.pass(0, &mut gathered);
        assert!(
            gathered.is_empty() && gathered.capacity() == 0,
            "the buffer went with the batch"
        );
        let follower = batch.slice(1, 3).unwrap();
        drop(batch);
        let other = buffers.take();
        assert_ne!(other.as_ptr(), first, "a follower still reads the first buffer");
        drop(follower);
        let reused = buffers.take();
        assert_eq!(reused.as_ptr(), first, "the next fill gets it back");
        assert!(reused.is_empty() && reused.capacity() >= BATCH_BYTES);
    }

    #[test]
    fn a_small_run_is_copied_out_and_the_buffer_stays_with_the_gatherer() {
        let buffers = Buffers::default();
        let mut gathered = buffers.take();
        let buffer = gathered.as_ptr();
        gathered.extend_from_slice(b"abc");
        let batch = buffers.pass(7, &mut gathered);
        assert_eq!(batch.slice(7, 100).unwrap(), &b"abc"[..]);
        assert_ne!(batch.bytes.as_ptr(), buffer, "copied out");
        assert!(gathered.is_empty() && gathered.capacity() >= BATCH_BYTES);
        assert_eq!(gathered.as_ptr(), buffer, "the same buffer gathers on");
        assert!(buffers.0.locked().is_empty(), "nothing to reuse: the gatherer has it");
    }

    #[test]
    fn buffers_held_too_long_are_let_go_not_waited_for() {
        let buffers = Buffers::default();
        let held: Vec<Batch> = (0..2 * KEPT_BUFFERS as u64)
            .map(|i| {
                let mut b = buffers.take();
                b.resize(BATCH_BYTES, b'x');
                buffers.pass(i, &mut b)
            })
            .collect();
        assert!(buffers.0.locked().len() <= KEPT_BUFFERS);
        drop(held);
        let reused = buffers.take();
        assert!(reused.capacity() >= BATCH_BYTES);
        assert_eq!(buffers.0.locked().len(), KEPT_BUFFERS - 1, "one kept buffer taken back");
    }
}
