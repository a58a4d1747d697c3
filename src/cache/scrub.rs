//! Scrub: committed content hashed again, so that corruption at rest (a failing disk, a bad
//! copy of the data directory, a slip of the hand) is found and never served as a clean
//! answer.
//!
//! Bytes are verified on the way in; after that, blob files are served as they lie on disk
//! (by `sendfile`, which cannot hash what it sends). The scrub reads every committed blob
//! and manifest back, at a bounded rate so that serving keeps the disk. What no longer
//! matches its digest is moved to `quarantine/`, dropped from the index (the next pull
//! fetches it again from the upstream), logged and counted. Manifests are small: they are
//! also checked whenever they are read from the index (`Cache::cached_manifest`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Cache;
use crate::error::{Error, Result};
use crate::oci::Digest;
use crate::store::blobs::Check;

/// What a scrub read, and what it found wrong.
#[derive(Debug, Default)]
pub struct Scrubbed {
    pub manifests: u64,
    pub blobs: u64,
    pub bytes: u64,
    pub corrupt: Vec<Corrupt>,
    pub elapsed: Duration,
}

#[derive(Debug)]
pub struct Corrupt {
    pub digest: Digest,
    pub kind: &'static str,
    /// What the bytes hash to instead.
    pub found: Digest,
    /// Where the backend keeps it now.
    pub moved_to: String,
}

/// How far a scrub is, for progress lines.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub blobs: u64,
    pub total_blobs: u64,
    pub bytes: u64,
    pub total_bytes: u64,
    pub elapsed: Duration,
}

/// Reading at most `rate` bytes a second (0: no limit), by sleeping when ahead.
struct Pace {
    rate: u64,
    started: Instant,
    taken: u64,
}

impl Pace {
    fn take(&mut self, n: usize) {
        self.taken += n as u64;
        if self.rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.taken as f64 / self.rate as f64);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}

/// How often a scrub reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

impl Cache {
    /// Hashes every committed manifest and blob again, reading at most `rate` bytes a
    /// second; `progress` hears from it every few seconds and at the end.
    pub async fn scrub(self: &Arc<Self>, rate: u64, progress: impl Fn(Progress) + Send + 'static) -> Result<Scrubbed> {
        self.wait_reconciled().await;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.scrub_blocking(rate, progress))
            .await
            .map_err(Error::internal)?
    }

    fn scrub_blocking(&self, rate: u64, progress: impl Fn(Progress)) -> Result<Scrubbed> {
        let started = Instant::now();
        let mut out = Scrubbed::default();
        for (d, _) in self.store.index.manifests_all()? {
            if let Some((_, bytes)) = self.store.index.manifest(&d)? {
                out.manifests += 1;
                if let Err(found) = d.verify(&bytes) {
                    out.corrupt.push(self.quarantine_manifest(&d, found, &bytes)?);
                }
            }
        }
        let sizes = self.store.index.blob_sizes()?;
        let total_bytes = sizes.iter().map(|(_, s)| s).sum();
        let mut pace = Pace {
            rate,
            started: Instant::now(),
            taken: 0,
        };
        let mut reported = Instant::now();
        let report = |out: &Scrubbed| Progress {
            blobs: out.blobs,
            total_blobs: sizes.len() as u64,
            bytes: out.bytes,
            total_bytes,
            elapsed: started.elapsed(),
        };
        for d in self.store.blobs.list()? {
            match self.store.blobs.check(&d, &mut |n| pace.take(n))? {
                Check::Gone => continue,
                Check::Intact(size) => {
                    out.blobs += 1;
                    out.bytes += size;
                }
                Check::Corrupt(found, size) => {
                    out.blobs += 1;
                    out.bytes += size;
                    out.corrupt.push(self.quarantine_blob(&d, found, size)?);
                }
            }
            if reported.elapsed() >= PROGRESS_EVERY {
                progress(report(&out));
                reported = Instant::now();
            }
        }
        out.elapsed = started.elapsed();
        progress(report(&out));
        Ok(out)
    }

    /// Takes a blob whose file no longer matches its digest out of serving.
    fn quarantine_blob(&self, d: &Digest, found: Digest, size: u64) -> Result<Corrupt> {
        let moved_to = self.store.blobs.quarantine(d)?;
        self.store.index.remove_blob(d)?;
        self.retention.take(size);
        Ok(self.found_corrupt(d, "blob", found, moved_to))
    }

    /// Takes a manifest whose stored bytes no longer match its digest out of serving.
    pub(super) fn quarantine_manifest(&self, d: &Digest, found: Digest, bytes: &[u8]) -> Result<Corrupt> {
        let moved_to = self.store.blobs.quarantine_bytes(d, ".manifest", bytes)?;
        self.store.index.remove_manifest(d)?;
        self.tags.hot.clear();
        Ok(self.found_corrupt(d, "manifest", found, moved_to))
    }

    fn found_corrupt(&self, d: &Digest, kind: &'static str, found: Digest, moved_to: String) -> Corrupt {
        self.metrics.store_corrupt.add(&[("kind", kind)], 1);
        tracing::error!(digest = %d, kind, hashes_to = %found, %moved_to, "stored content is corrupt; quarantined, will be fetched again");
        Corrupt {
            digest: d.clone(),
            kind,
            found,
            moved_to,
        }
    }
}
