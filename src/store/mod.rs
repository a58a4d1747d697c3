//! The store: blob bytes behind the blob-store seam (`blobs`; `content` keeps them in local
//! files) plus the sled index (`index`), and the start-up reconciliation that makes the two
//! agree after a crash. `shared` is the tier several nodes share on object storage, behind
//! each node's local files.

pub mod blobs;
pub mod content;
pub mod index;
pub mod pages;
pub mod shared;

use std::path::Path;
use std::time::Instant;

pub use blobs::BlobStore;
pub use index::{Index, MetaStore};

use crate::error::{Error, Result};

pub struct Store {
    pub blobs: std::sync::Arc<dyn BlobStore>,
    pub index: std::sync::Arc<dyn MetaStore>,
}

/// What reconciliation found, for the log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub records_dropped: usize,
    pub files_adopted: usize,
    pub blobs: usize,
    pub bytes: u64,
}

impl Store {
    /// Opens the blob directory and the index, and removes ingests a previous process left
    /// in `tmp/`. Files and records are not compared here (`reconcile` does that): serving
    /// needs only the files, so `serve` accepts before a million records are read.
    pub fn open(data_dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::Internal(format!("cannot create data_dir {}: {e}", data_dir.display())))?;
        let blobs = std::sync::Arc::new(content::LocalBlobs::open(data_dir)?);
        Store::with_blobs(data_dir, blobs)
    }

    /// `open`, with blob bytes kept by another backend than local files.
    pub fn with_blobs(data_dir: &Path, blobs: std::sync::Arc<dyn BlobStore>) -> Result<Store> {
        let removed = blobs.clear_tmp()?;
        if removed > 0 {
            tracing::info!(removed, "removed interrupted downloads");
        }
        let index = std::sync::Arc::new(Index::open(&data_dir.join("index"))?);
        Ok(Store { blobs, index })
    }

    /// Drops records whose file is gone (removed by hand), and adopts committed files that
    /// have no record (a crash between rename and index write). Committed files were
    /// verified before their rename, so adopting them is safe; file sizes are not read back
    /// (a file is never rewritten after its rename, and serving reads the size of the file
    /// itself). Blocking.
    ///
    /// It runs while blobs are served and fetched: a record is dropped only if its file is
    /// still missing when looked at again, and a file is adopted only where no record has
    /// appeared meanwhile, so a fill committing during the walk keeps its own record.
    pub fn reconcile(&self) -> Result<Reconciled> {
        let started = Instant::now();
        let mut r = Reconciled::default();
        // One scan of the records and one walk of the file names, both in digest order and
        // merged: no `stat` and no hash map per blob, so a million blobs take seconds.
        let records = self.index.blob_sizes()?;
        let files = self.blobs.list()?;
        r.blobs = files.len();
        let (mut records, mut files) = (records.into_iter().peekable(), files.iter().peekable());
        loop {
            let order = match (records.peek(), files.peek()) {
                (None, None) => break,
                (Some((d, _)), Some(f)) => d.cmp(f),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Equal => {
                    let (_, size) = records.next().expect("peeked");
                    files.next();
                    r.bytes += size;
                }
                std::cmp::Ordering::Less => {
                    let (d, size) = records.next().expect("peeked");
                    if self.blobs.size(&d)?.is_some() {
                        // Committed after the walk read its directory.
                        r.bytes += size;
                    } else {
                        self.index.remove_blob(&d)?;
                        r.records_dropped += 1;
                    }
                }
                std::cmp::Ordering::Greater => {
                    let d = files.next().expect("peeked");
                    let Some(size) = self.blobs.size(d)? else { continue };
                    r.bytes += size;
                    let rec = index::BlobRecord::fresh(size, None, String::new());
                    if self.index.adopt_blob(d, &rec)? {
                        r.files_adopted += 1;
                    }
                }
            }
        }
        tracing::info!(
            ?r,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "store reconciled"
        );
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Digest;

    #[tokio::test]
    async fn reconcile_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let kept = Digest::sha256_of(b"kept");
        let orphan = Digest::sha256_of(b"orphan");
        let ghost = Digest::sha256_of(b"ghost");
        {
            let store = Store::open(dir.path()).unwrap();
            for (d, bytes) in [(&kept, b"kept" as &[u8]), (&orphan, b"orphan")] {
                let mut ing = store.blobs.ingest(d).unwrap();
                ing.write(bytes).unwrap();
                ing.verify(&Digest::sha256_of(bytes), d, None).unwrap();
                ing.commit().unwrap();
            }
            let rec = |size| index::BlobRecord {
                size,
                media_type: None,
                cached_at: 0,
                last_access: 0,
                hits: 0,
                upstream: "u".into(),
            };
            store.index.put_blob(&kept, &rec(4)).unwrap();
            store.index.put_blob(&ghost, &rec(5)).unwrap();
            let half = store.blobs.ingest(&ghost).unwrap();
            std::mem::forget(half);
            store.index.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        let r = store.reconcile().unwrap();
        assert_eq!(
            r,
            Reconciled {
                records_dropped: 1,
                files_adopted: 1,
                blobs: 2,
                bytes: 10
            }
        );
        assert!(store.index.blob(&ghost).unwrap().is_none());
        assert_eq!(store.index.blob(&orphan).unwrap().unwrap().size, 6);
    }
}
