//! Blob bytes in content-addressed files: the local implementation of the blob-store
//! seam (`super::blobs`).
//!
//! ```text
//! <data_dir>/blobs/sha256/ab/abcdef…   committed, verified bytes (read-only)
//! <data_dir>/tmp/<ingest-id>           bytes being fetched; renamed into blobs/ only when verified
//! <data_dir>/quarantine/<alg>-<hex>     content that no longer matched its digest (scrub)
//! ```
//!
//! Nothing outside this module builds a blob path. Committed blobs are read through a
//! descriptor (and sent with `sendfile` when the client allows); an ingest is written
//! through one descriptor and followed through another, opened at its creation, which stays
//! valid when the file is renamed into place.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::blobs::{BlobReader, BlobStore, Ingest, IngestTarget, ReadAt, StagedTarget};
use crate::oci::digest::Digest;

#[derive(Debug)]
pub struct LocalBlobs {
    blobs_dir: PathBuf,
    tmp_dir: PathBuf,
    quarantine_dir: PathBuf,
}

static INGEST_SEQ: AtomicU64 = AtomicU64::new(0);

impl LocalBlobs {
    pub fn open(data_dir: &Path) -> io::Result<LocalBlobs> {
        let blobs = LocalBlobs {
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
}

impl BlobStore for LocalBlobs {
    fn committed(&self, digest: &Digest) -> io::Result<Option<BlobReader>> {
        match std::fs::File::open(self.path(digest)) {
            Ok(f) => {
                let size = f.metadata()?.len();
                Ok(Some(BlobReader::new(Arc::new(FileSource(Arc::new(f))), size)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn size(&self, digest: &Digest) -> io::Result<Option<u64>> {
        match std::fs::metadata(self.path(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Ingests do blocking file I/O: they are driven from the blocking pool.
    fn ingest(&self, expected: &Digest) -> io::Result<Ingest> {
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
        Ok(Ingest::new(Box::new(FileIngest {
            path,
            file,
            reader,
            target: self.path(expected),
        })))
    }

    fn remove(&self, digest: &Digest) -> io::Result<()> {
        match std::fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every committed blob, in digest order. Names only, no `stat`: a million files are
    /// listed in the time it takes to read their directories. Files whose name is not a
    /// digest are skipped.
    fn list(&self) -> io::Result<Vec<Digest>> {
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

    fn clear_tmp(&self) -> io::Result<usize> {
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

    fn quarantine(&self, digest: &Digest) -> io::Result<String> {
        let to = self.quarantine_path(digest, "")?;
        std::fs::rename(self.path(digest), &to)?;
        Ok(to.display().to_string())
    }

    fn quarantine_bytes(&self, digest: &Digest, what: &str, bytes: &[u8]) -> io::Result<String> {
        let to = self.quarantine_path(digest, what)?;
        std::fs::write(&to, bytes)?;
        Ok(to.display().to_string())
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

/// A file read at offsets; `sendfile` can take it.
struct FileSource(Arc<std::fs::File>);

impl ReadAt for FileSource {
    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self.0.as_ref(), buf, at)
    }

    fn file(&self) -> Option<Arc<std::fs::File>> {
        Some(self.0.clone())
    }
}

/// An ingest in `tmp/`, renamed to `target` once verified.
struct FileIngest {
    path: PathBuf,
    file: std::fs::File,
    reader: Arc<std::fs::File>,
    target: PathBuf,
}

impl IngestTarget for FileIngest {
    /// No user-space buffer: the bytes are readable when this returns.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn reader(&self) -> BlobReader {
        BlobReader::new(Arc::new(FileSource(self.reader.clone())), 0)
    }

    /// Flushes the bytes to disk and closes the file: a staged blob holds no descriptor, so
    /// an import can stage thousands before it publishes any.
    fn stage(self: Box<Self>) -> io::Result<Box<dyn StagedTarget>> {
        if let Err(e) = self.file.sync_all() {
            let _ = std::fs::remove_file(&self.path);
            return Err(e);
        }
        Ok(Box::new(StagedFile {
            path: self.path,
            target: self.target,
        }))
    }

    fn abort(self: Box<Self>) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A verified blob on disk under `tmp/`, not yet visible under its digest.
#[derive(Debug)]
struct StagedFile {
    path: PathBuf,
    target: PathBuf,
}

impl StagedTarget for StagedFile {
    fn read_all(&self) -> io::Result<Vec<u8>> {
        std::fs::read(&self.path)
    }

    /// Rename into place, then fsync the directory; on failure the file is removed.
    fn publish(self: Box<Self>) -> io::Result<()> {
        let result = (|| {
            let parent = self.target.parent().expect("blob paths have a parent");
            std::fs::create_dir_all(parent)?;
            std::fs::rename(&self.path, &self.target)?;
            std::fs::File::open(parent)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&self.path);
        }
        result
    }

    fn discard(self: Box<Self>) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commit_only_verified_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(dir.path()).unwrap();
        let good = Digest::sha256_of(b"hello");
        let mut ing = blobs.ingest(&good).unwrap();
        ing.write(b"hel").unwrap();
        ing.write(b"lo").unwrap();
        ing.verify(&Digest::sha256_of(b"hello"), &good, Some(5)).unwrap();
        assert_eq!(ing.commit().unwrap(), 5);
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
        let blobs = LocalBlobs::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"abc");
        let mut ing = blobs.ingest(&d).unwrap();
        ing.write(b"abc").unwrap();
        assert!(ing.verify(&d, &d, Some(4)).is_err());
        ing.abort();
        assert!(!blobs.exists(&d));
    }
}
