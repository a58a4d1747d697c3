//! The blob-store seam: the only way to blob bytes.
//!
//! A backend keeps committed blobs by digest and takes new ones through ingests that
//! followers can read while they are written (behind the count the writer publishes, which
//! the cache holds back until verified), that are committed only once verified, and that
//! vanish when aborted. `content::LocalBlobs` (content-addressed files) is today's; a second
//! backend implements [`BlobStore`], [`IngestTarget`], [`StagedTarget`] and [`ReadAt`], and
//! nothing in `cache`, `http`, `layout` or the operator commands changes.

use std::fmt;
use std::io;
use std::sync::Arc;

use bytes::Bytes;

use crate::oci::digest::{Digest, Hasher};

pub trait BlobStore: Send + Sync {
    /// The committed blob, to read, if present. Blocking.
    fn committed(&self, digest: &Digest) -> io::Result<Option<BlobReader>>;
    /// The size of a committed blob, if present. Blocking.
    fn size(&self, digest: &Digest) -> io::Result<Option<u64>>;
    fn exists(&self, digest: &Digest) -> bool;
    /// Starts writing a blob whose digest should be `expected`. Blocking.
    fn ingest(&self, expected: &Digest) -> io::Result<Ingest>;
    /// Deletes a committed blob; readers that have it open keep reading. Blocking.
    fn remove(&self, digest: &Digest) -> io::Result<()>;
    /// Every committed blob, in digest order. Blocking.
    fn list(&self) -> io::Result<Vec<Digest>>;
    /// Removes ingests a previous process left. Returns how many. Blocking.
    fn clear_tmp(&self) -> io::Result<usize>;
    /// Takes a committed blob out of serving, kept for an operator; says where. Blocking.
    fn quarantine(&self, digest: &Digest) -> io::Result<String>;
    /// Keeps bytes that failed verification elsewhere (a manifest from the index) beside
    /// the quarantined blobs; says where. Blocking.
    fn quarantine_bytes(&self, digest: &Digest, what: &str, bytes: &[u8]) -> io::Result<String>;

    /// Reads a committed blob again and hashes it, calling `paced` with each chunk's length
    /// (the caller's rate limit). Blocking.
    fn check(&self, digest: &Digest, paced: &mut dyn FnMut(usize)) -> io::Result<Check> {
        let Some(blob) = self.committed(digest)? else {
            return Ok(Check::Gone);
        };
        let mut hasher = Hasher::new(digest.algorithm());
        let mut at = 0;
        while at < blob.size() {
            let chunk = blob.read_at(at, CHECK_CHUNK.min((blob.size() - at) as usize))?;
            hasher.update(&chunk);
            at += chunk.len() as u64;
            paced(chunk.len());
        }
        let got = hasher.finish();
        Ok(if &got == digest {
            Check::Intact(at)
        } else {
            Check::Corrupt(got, at)
        })
    }
}

const CHECK_CHUNK: usize = 1 << 20;

/// A committed blob, off the async workers.
pub async fn committed_async(blobs: &Arc<dyn BlobStore>, digest: &Digest) -> io::Result<Option<BlobReader>> {
    let (blobs, d) = (blobs.clone(), digest.clone());
    tokio::task::spawn_blocking(move || blobs.committed(&d))
        .await
        .map_err(io::Error::other)?
}

/// The error for a blob shorter than its record or the range asked of it (a file removed
/// or truncated by hand): a reader must end its transfer short, never pad it.
pub fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "blob file shorter than expected")
}

/// What re-reading a committed blob found.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Its bytes match its name; its size.
    Intact(u64),
    /// Its bytes no longer match its name: what they hash to instead, and their size.
    Corrupt(Digest, u64),
    /// Not there (evicted meanwhile).
    Gone,
}

#[derive(Debug, thiserror::Error)]
#[error("content does not match its digest: {0}")]
pub struct Mismatch(pub String);

/// Bytes a backend can read at an offset, from any thread.
pub trait ReadAt: Send + Sync {
    /// Up to `buf.len()` bytes at `at`; 0 at the end of what is there. Blocking.
    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<usize>;

    /// The local file behind the bytes, when there is one: `sendfile(2)` can send it.
    fn file(&self) -> Option<Arc<std::fs::File>> {
        None
    }
}

/// A blob's bytes to read: a committed blob, or one being written (readable up to what its
/// writer has published).
#[derive(Clone)]
pub struct BlobReader {
    source: Arc<dyn ReadAt>,
    size: u64,
}

impl fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobReader")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl BlobReader {
    pub fn new(source: Arc<dyn ReadAt>, size: u64) -> BlobReader {
        BlobReader { source, size }
    }

    /// The committed size (for an ingest: 0, its writer says how far it got).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The local file, for `sendfile(2)`, when the backend keeps one.
    pub fn file(&self) -> Option<Arc<std::fs::File>> {
        self.source.file()
    }

    /// Exactly `len` bytes from `at`, into a fresh buffer (no intermediate copy; it is
    /// zeroed first, which positioned reads on a shared source need in safe Rust; the
    /// sendfile path never comes here). Fewer bytes than asked is `truncated()`. Blocking.
    pub fn read_at(&self, at: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            let n = self.source.read_at(&mut buf[filled..], at + filled as u64)?;
            if n == 0 {
                return Err(truncated());
            }
            filled += n;
        }
        Ok(Bytes::from(buf))
    }

    /// A `Read` over the committed bytes from byte 0. Positioned reads: readers sharing the
    /// source do not move each other.
    pub fn reader(&self) -> impl io::Read + '_ {
        Cursor {
            source: self.source.as_ref(),
            pos: 0,
            end: self.size,
        }
    }

    /// Every committed byte. Blocking; for small blobs (a manifest stored as a blob).
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.size as usize);
        io::Read::read_to_end(&mut self.reader(), &mut out)?;
        Ok(out)
    }
}

struct Cursor<'a> {
    source: &'a dyn ReadAt,
    pos: u64,
    end: u64,
}

impl io::Read for Cursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.end - self.pos).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.source.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(truncated());
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Where a backend writes one ingest.
pub trait IngestTarget: Send {
    /// Appends bytes; readable through `reader` when this returns.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// What followers read, valid through the commit.
    fn reader(&self) -> BlobReader;
    /// Makes the bytes durable, not yet visible under the digest.
    fn stage(self: Box<Self>) -> io::Result<Box<dyn StagedTarget>>;
    /// Gives up: the bytes are dropped.
    fn abort(self: Box<Self>);
}

/// A blob written and durable, not yet visible under its digest.
pub trait StagedTarget: Send + Sync + fmt::Debug {
    fn read_all(&self) -> io::Result<Vec<u8>>;
    /// Makes it visible under the digest it was ingested as.
    fn publish(self: Box<Self>) -> io::Result<()>;
    fn discard(self: Box<Self>);
}

/// A blob being written. The caller hashes the same bytes it writes (on another thread,
/// so that hashing and writing overlap) and hands the digest to `verify`.
pub struct Ingest {
    target: Box<dyn IngestTarget>,
    written: u64,
}

impl Ingest {
    pub fn new(target: Box<dyn IngestTarget>) -> Ingest {
        Ingest { target, written: 0 }
    }

    /// What followers of this ingest read, behind the count its writer publishes; valid
    /// through the commit.
    pub fn reader(&self) -> BlobReader {
        self.target.reader()
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.target.write(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Checks the digest of what was written against the expected one, and the size when
    /// known.
    pub fn verify(&self, actual: &Digest, expected: &Digest, size: Option<u64>) -> Result<(), Mismatch> {
        if actual != expected {
            return Err(Mismatch(format!("got {actual} after {} bytes", self.written)));
        }
        if let Some(size) = size.filter(|s| *s != self.written) {
            return Err(Mismatch(format!("got {} bytes, expected {size}", self.written)));
        }
        Ok(())
    }

    pub fn abort(self) {
        self.target.abort();
    }

    /// Makes the bytes durable without publishing them: an import stages a whole bundle
    /// before it publishes any.
    pub fn stage(self) -> io::Result<Staged> {
        Ok(Staged {
            target: self.target.stage()?,
            size: self.written,
        })
    }

    /// Publishes a verified ingest under its digest. Blocking.
    pub fn commit(self) -> io::Result<u64> {
        self.stage()?.publish()
    }
}

/// A verified blob, durable, not yet visible under its digest.
#[derive(Debug)]
pub struct Staged {
    target: Box<dyn StagedTarget>,
    size: u64,
}

impl Staged {
    /// Every staged byte. Blocking; for small blobs (a manifest in a bundle).
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        self.target.read_all()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Makes it visible under its digest; on failure it is discarded. Blocking.
    pub fn publish(self) -> io::Result<u64> {
        self.target.publish()?;
        Ok(self.size)
    }

    pub fn discard(self) {
        self.target.discard();
    }
}
