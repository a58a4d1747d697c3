//! The local store: blob files (`content`) plus the sled index (`index`), and the start-up
//! reconciliation that makes the two agree after a crash.

pub mod content;
pub mod index;

use std::path::Path;
use std::time::Instant;

pub use content::Blobs;
pub use index::Index;

use crate::error::{Error, Result};

pub struct Store {
    pub blobs: Blobs,
    pub index: Index,
}

/// What reconciliation found, for the start-up log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub temp_files_removed: usize,
    pub records_dropped: usize,
    pub files_adopted: usize,
    pub blobs: usize,
    pub bytes: u64,
}

impl Store {
    pub fn open(data_dir: &Path) -> Result<(Store, Reconciled)> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::Internal(format!("cannot create data_dir {}: {e}", data_dir.display())))?;
        let blobs = Blobs::open(data_dir)?;
        let index = Index::open(&data_dir.join("index"))?;
        let store = Store { blobs, index };
        let started = Instant::now();
        let report = store.reconcile()?;
        tracing::info!(
            ?report,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "store reconciled"
        );
        Ok((store, report))
    }

    /// Removes leftover ingests, drops records whose file is gone or has the wrong size, and
    /// adopts committed files that have no record (a crash between rename and index write).
    /// Committed files were verified before their rename, so adopting them is safe.
    fn reconcile(&self) -> Result<Reconciled> {
        let mut r = Reconciled {
            temp_files_removed: self.blobs.clear_tmp()?,
            ..Default::default()
        };
        // One walk of the files and one scan of the records, compared in memory: start-up
        // stays in seconds with a million blobs.
        let files: std::collections::HashMap<_, _> = self.blobs.list()?.into_iter().collect();
        let records = self.index.blob_sizes()?;
        for (d, size) in &records {
            if files.get(d) != Some(size) {
                self.index.remove_blob(d)?;
                r.records_dropped += 1;
            }
        }
        let now = index::now_ms();
        for (d, size) in &files {
            if !records.contains_key(d) {
                let rec = index::BlobRecord {
                    size: *size,
                    media_type: None,
                    cached_at: now,
                    last_access: now,
                    hits: 0,
                    upstream: String::new(),
                };
                self.index.put_blob(d, &rec)?;
                r.files_adopted += 1;
            }
        }
        r.blobs = files.len();
        r.bytes = files.values().sum();
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
            let (store, _) = Store::open(dir.path()).unwrap();
            for (d, bytes) in [(&kept, b"kept" as &[u8]), (&orphan, b"orphan")] {
                let mut ing = store.blobs.ingest(d).unwrap();
                ing.write(bytes).unwrap();
                ing.verify(&Digest::sha256_of(bytes), d, None).unwrap();
                store.blobs.commit(ing, d).unwrap();
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
            store.index.flush().await.unwrap();
        }
        let (store, r) = Store::open(dir.path()).unwrap();
        assert_eq!(
            r,
            Reconciled {
                temp_files_removed: 1,
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
