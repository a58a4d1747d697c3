//! Blob bytes in content-addressed files.
//!
//! ```text
//! <data_dir>/blobs/sha256/ab/abcdef…   committed, verified bytes (read-only)
//! <data_dir>/tmp/<ingest-id>           bytes being fetched; renamed into blobs/ only when verified
//! <data_dir>/quarantine/<alg>-<hex>     content that no longer matched its digest (scrub)
//! ```
//!
//! This is the narrow seam behind which blob bytes live: open to read, ingest, commit,
//! check, quarantine, remove, list. Nothing outside this module builds a blob path: blob
//! bytes are read through a [`BlobReader`], whether committed or still being written.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use std::io::Write;

use crate::oci::digest::{Digest, Hasher};

#[derive(Debug)]
pub struct Blobs {
    blobs_dir: PathBuf,
    tmp_dir: PathBuf,
    quarantine_dir: PathBuf,
}

/// The error for a committed blob file shorter than its record or the range asked of it
/// (removed or truncated by hand): a reader must end its transfer short, never pad it.
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
    /// No such file (evicted meanwhile).
    Gone,
}

static INGEST_SEQ: AtomicU64 = AtomicU64::new(0);

impl Blobs {
    pub fn open(data_dir: &Path) -> io::Result<Blobs> {
        let blobs = Blobs {
            blobs_dir: data_dir.join("blobs"),
            tmp_dir: data_dir.join("tmp"),
            quarantine_dir: data_dir.join("quarantine"),
        };
        std::fs::create_dir_all(&blobs.blobs_dir)?;
        std::fs::create_dir_all(&blobs.tmp_dir)?;
        Ok(blobs)
    }

    /// `blobs/<alg>/<first two hex>/<hex>`: built only from a validated digest.
    fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs_dir.join(digest.algorithm().name()).join(&hex[..2]).join(hex)
    }

    /// The committed blob, to read, if present. Blocking (an open and a `stat`).
    pub fn committed(&self, digest: &Digest) -> io::Result<Option<BlobReader>> {
        match std::fs::File::open(self.path(digest)) {
            Ok(f) => {
                let size = f.metadata()?.len();
                Ok(Some(BlobReader {
                    file: Arc::new(f),
                    size,
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `committed`, off the async workers.
    pub async fn committed_async(self: &Arc<Self>, digest: &Digest) -> io::Result<Option<BlobReader>> {
        let (this, d) = (self.clone(), digest.clone());
        tokio::task::spawn_blocking(move || this.committed(&d))
            .await
            .map_err(io::Error::other)?
    }

    /// The size of a committed blob, if present. Blocking.
    pub fn size(&self, digest: &Digest) -> io::Result<Option<u64>> {
        match std::fs::metadata(self.path(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Starts writing a blob whose digest is `expected`. Ingests do blocking file I/O: they
    /// are driven from the blocking pool, off the async workers.
    pub fn ingest(&self, expected: &Digest) -> io::Result<Ingest> {
        let id = format!(
            "{}-{}-{}",
            std::process::id(),
            INGEST_SEQ.fetch_add(1, Ordering::Relaxed),
            &expected.hex()[..16]
        );
        let path = self.tmp_dir.join(id);
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
        // Followers read through a descriptor of their own, opened now: it stays valid when
        // the file is renamed into place, so they never look for it by name.
        let reader = Arc::new(std::fs::File::open(&path)?);
        Ok(Ingest {
            path,
            file,
            reader,
            written: 0,
        })
    }

    /// Publishes a verified ingest: fsync, rename into place, fsync the directory. On failure
    /// the temporary file is removed. Blocking.
    pub fn commit(&self, ingest: Ingest, digest: &Digest) -> io::Result<u64> {
        self.publish(ingest.stage()?, digest)
    }

    /// Renames a staged (written, fsynced, verified) blob into place and fsyncs the directory.
    pub fn publish(&self, staged: Staged, digest: &Digest) -> io::Result<u64> {
        let result = (|| {
            let target = self.path(digest);
            let parent = target.parent().expect("blob paths have a parent");
            std::fs::create_dir_all(parent)?;
            std::fs::rename(&staged.path, &target)?;
            std::fs::File::open(parent)?.sync_all()?;
            Ok(staged.size)
        })();
        if result.is_err() {
            staged.discard();
        }
        result
    }

    /// Deletes a committed blob (blocking). Readers that have it open keep reading.
    pub fn remove(&self, digest: &Digest) -> io::Result<()> {
        match std::fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Reads a committed blob again and hashes it, calling `paced` with each chunk's length
    /// (the caller's rate limit). Blocking.
    pub fn check(&self, digest: &Digest, mut paced: impl FnMut(usize)) -> io::Result<Check> {
        use std::io::Read;
        let mut file = match std::fs::File::open(self.path(digest)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Check::Gone),
            Err(e) => return Err(e),
        };
        let mut hasher = Hasher::new(digest.algorithm());
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
            paced(n);
        }
        let got = hasher.finish();
        Ok(if &got == digest {
            Check::Intact(size)
        } else {
            Check::Corrupt(got, size)
        })
    }

    /// Moves a committed blob out of serving into `quarantine/`, kept for an operator to
    /// look at. Readers that have it open keep reading. Blocking.
    pub fn quarantine(&self, digest: &Digest) -> io::Result<PathBuf> {
        let to = self.quarantine_path(digest, "")?;
        std::fs::rename(self.path(digest), &to)?;
        Ok(to)
    }

    /// Keeps bytes that failed verification elsewhere (a manifest from the index) beside
    /// the quarantined blobs. Blocking.
    pub fn quarantine_bytes(&self, digest: &Digest, what: &str, bytes: &[u8]) -> io::Result<PathBuf> {
        let to = self.quarantine_path(digest, what)?;
        std::fs::write(&to, bytes)?;
        Ok(to)
    }

    /// `quarantine/<alg>-<hex>[.<what>]`, with a suffix when that name is taken already.
    fn quarantine_path(&self, digest: &Digest, what: &str) -> io::Result<PathBuf> {
        std::fs::create_dir_all(&self.quarantine_dir)?;
        let base = format!("{}-{}{}", digest.algorithm().name(), digest.hex(), what);
        let mut to = self.quarantine_dir.join(&base);
        for n in 1.. {
            if !to.exists() {
                break;
            }
            to = self.quarantine_dir.join(format!("{base}.{n}"));
        }
        Ok(to)
    }

    /// Removes ingests left behind by a previous process. Returns how many.
    pub fn clear_tmp(&self) -> io::Result<usize> {
        let mut n = 0;
        for entry in std::fs::read_dir(&self.tmp_dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Every committed blob, in digest order. Names only, no `stat`: a million files are
    /// listed in the time it takes to read their directories. Files whose name is not a
    /// digest are skipped.
    pub fn list(&self) -> io::Result<Vec<Digest>> {
        let mut dirs = Vec::new();
        for alg in read_dir_or_empty(&self.blobs_dir)? {
            let alg = alg?;
            let Some(alg_name) = alg.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            for prefix in read_dir_or_empty(&alg.path())? {
                dirs.push((alg_name.clone(), prefix?.path()));
            }
        }
        // The 256 prefix directories are read by a few threads: a walk is mostly waiting on
        // the file system, and start-up work is what an operator waits on. Each directory is
        // sorted on its own and they are joined in name order, so the final sort only checks.
        dirs.sort();
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut listed = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| -> io::Result<Vec<(usize, Vec<Digest>)>> {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some((alg, dir)) = dirs.get(i) else { break };
                            let mut found = Vec::new();
                            for file in read_dir_or_empty(dir)? {
                                let name = file?.file_name();
                                let Some(hex) = name.to_str() else { continue };
                                if let Ok(d) = format!("{alg}:{hex}").parse::<Digest>() {
                                    found.push(d);
                                }
                            }
                            found.sort_unstable();
                            out.push((i, found));
                        }
                        Ok(out)
                    })
                })
                .collect();
            let mut listed = Vec::new();
            for h in handles {
                listed.extend(h.join().map_err(|_| io::Error::other("a blob walker panicked"))??);
            }
            Ok::<_, io::Error>(listed)
        })?;
        listed.sort_unstable_by_key(|(i, _)| *i);
        let mut all: Vec<Digest> = listed.into_iter().flat_map(|(_, found)| found).collect();
        all.sort_unstable();
        Ok(all)
    }
}

fn read_dir_or_empty(p: &Path) -> io::Result<Box<dyn Iterator<Item = io::Result<std::fs::DirEntry>>>> {
    match std::fs::read_dir(p) {
        Ok(rd) => Ok(Box::new(rd)),
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory => {
            Ok(Box::new(std::iter::empty()))
        }
        Err(e) => Err(e),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("content does not match its digest: {0}")]
pub struct Mismatch(pub String);

/// A blob's bytes to read: a committed blob, or one being written (readable up to what its
/// writer has published).
#[derive(Clone, Debug)]
pub struct BlobReader {
    file: Arc<std::fs::File>,
    size: u64,
}

impl BlobReader {
    /// The committed size (for an ingest: 0, its writer says how far it got).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The file, for `sendfile(2)`.
    pub fn file(&self) -> Arc<std::fs::File> {
        self.file.clone()
    }

    /// Exactly `len` bytes from `at`, into a fresh buffer (no zeroing, no intermediate
    /// copy). Fewer bytes on disk than asked is `truncated()`. Blocking.
    pub fn read_at(&self, at: u64, len: usize) -> io::Result<Bytes> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            let n = self.file.read_at(&mut buf[filled..], at + filled as u64)?;
            if n == 0 {
                return Err(truncated());
            }
            filled += n;
        }
        Ok(Bytes::from(buf))
    }

    /// A `Read` over the committed bytes from byte 0. Positioned reads: readers sharing the
    /// descriptor do not move each other.
    pub fn reader(&self) -> impl io::Read + '_ {
        Cursor {
            file: &self.file,
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
    file: &'a std::fs::File,
    pos: u64,
    end: u64,
}

impl io::Read for Cursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let want = buf
            .len()
            .min(usize::try_from(self.end - self.pos).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(truncated());
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// A blob being written. The caller hashes the same bytes it writes (on another thread,
/// so that hashing and writing overlap) and hands the digest to `verify`.
pub struct Ingest {
    path: PathBuf,
    file: std::fs::File,
    reader: Arc<std::fs::File>,
    written: u64,
}

impl Ingest {
    /// What followers of this ingest read, behind the count its writer publishes; valid
    /// through the commit.
    pub fn reader(&self) -> BlobReader {
        BlobReader {
            file: self.reader.clone(),
            size: 0,
        }
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends bytes; they are readable at `path()` when this returns (no user-space buffer).
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
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

    /// Gives up: the temporary file is removed.
    pub fn abort(self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Flushes the bytes to disk and closes the file: a staged blob holds no descriptor, so
    /// an import can stage thousands before it publishes any.
    pub fn stage(self) -> io::Result<Staged> {
        if let Err(e) = self.file.sync_all() {
            self.abort();
            return Err(e);
        }
        Ok(Staged {
            path: self.path,
            size: self.written,
        })
    }
}

/// A verified blob on disk under `tmp/`, not yet visible under its digest.
#[derive(Debug)]
pub struct Staged {
    path: PathBuf,
    size: u64,
}

impl Staged {
    /// Every staged byte. Blocking; for small blobs (a manifest in a bundle).
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        std::fs::read(&self.path)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commit_only_verified_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let good = Digest::sha256_of(b"hello");
        let mut ing = blobs.ingest(&good).unwrap();
        ing.write(b"hel").unwrap();
        ing.write(b"lo").unwrap();
        ing.verify(&Digest::sha256_of(b"hello"), &good, Some(5)).unwrap();
        assert_eq!(blobs.commit(ing, &good).unwrap(), 5);
        let len = blobs.committed(&good).unwrap().unwrap().size();
        assert_eq!(len, 5);

        let other = Digest::sha256_of(b"other");
        let mut ing = blobs.ingest(&other).unwrap();
        ing.write(b"not other").unwrap();
        assert!(ing.verify(&Digest::sha256_of(b"not other"), &other, None).is_err());
        ing.abort();
        assert!(blobs.committed(&other).unwrap().is_none());
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(blobs.list().unwrap(), vec![good]);
    }

    #[test]
    fn size_mismatch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"abc");
        let mut ing = blobs.ingest(&d).unwrap();
        ing.write(b"abc").unwrap();
        assert!(ing.verify(&d, &d, Some(4)).is_err());
        ing.abort();
        assert!(!blobs.exists(&d));
    }
}
