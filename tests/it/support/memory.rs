//! A second blob backend, in memory, written against the seam alone (`entrepot::store::blobs`):
//! the cache's blob tests run on it beside the local files, so nothing in the cache leans
//! on files, paths or renames.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use entrepot::oci::Digest;
use entrepot::store::blobs::{BlobReader, BlobStore, Ingest, IngestTarget, ReadAt, StagedTarget};

type Committed = Arc<Mutex<BTreeMap<Digest, Bytes>>>;

#[derive(Default)]
pub struct MemoryBlobs {
    committed: Committed,
    quarantined: Mutex<Vec<(Digest, Bytes)>>,
}

impl MemoryBlobs {
    fn get(&self, d: &Digest) -> Option<Bytes> {
        self.committed.lock().unwrap().get(d).cloned()
    }
}

impl BlobStore for MemoryBlobs {
    fn committed(&self, d: &Digest) -> io::Result<Option<BlobReader>> {
        Ok(self.get(d).map(|b| {
            let size = b.len() as u64;
            BlobReader::new(Arc::new(Fixed(b)), size)
        }))
    }

    fn size(&self, d: &Digest) -> io::Result<Option<u64>> {
        Ok(self.get(d).map(|b| b.len() as u64))
    }

    fn exists(&self, d: &Digest) -> bool {
        self.get(d).is_some()
    }

    fn ingest(&self, expected: &Digest) -> io::Result<Ingest> {
        Ok(Ingest::new(Box::new(Growing {
            bytes: Arc::default(),
            digest: expected.clone(),
            committed: self.committed.clone(),
        })))
    }

    fn remove(&self, d: &Digest) -> io::Result<()> {
        self.committed.lock().unwrap().remove(d);
        Ok(())
    }

    fn list(&self) -> io::Result<Vec<Digest>> {
        Ok(self.committed.lock().unwrap().keys().cloned().collect())
    }

    fn clear_tmp(&self) -> io::Result<usize> {
        Ok(0)
    }

    fn quarantine(&self, d: &Digest) -> io::Result<String> {
        let bytes = self.committed.lock().unwrap().remove(d).unwrap_or_default();
        self.quarantined.lock().unwrap().push((d.clone(), bytes));
        Ok(format!("memory quarantine: {d}"))
    }

    fn quarantine_bytes(&self, d: &Digest, what: &str, bytes: &[u8]) -> io::Result<String> {
        self.quarantined
            .lock()
            .unwrap()
            .push((d.clone(), Bytes::copy_from_slice(bytes)));
        Ok(format!("memory quarantine: {d}{what}"))
    }
}

/// Committed bytes.
struct Fixed(Bytes);

impl ReadAt for Fixed {
    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<usize> {
        read_from(&self.0, buf, at)
    }
}

/// An ingest's bytes, growing as they are written; readers see what is there.
struct Shared(Arc<RwLock<Vec<u8>>>);

impl ReadAt for Shared {
    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<usize> {
        read_from(&self.0.read().unwrap(), buf, at)
    }
}

fn read_from(bytes: &[u8], buf: &mut [u8], at: u64) -> io::Result<usize> {
    let at = usize::try_from(at).unwrap_or(usize::MAX).min(bytes.len());
    let n = buf.len().min(bytes.len() - at);
    buf[..n].copy_from_slice(&bytes[at..at + n]);
    Ok(n)
}

struct Growing {
    bytes: Arc<RwLock<Vec<u8>>>,
    digest: Digest,
    committed: Committed,
}

impl IngestTarget for Growing {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.bytes.write().unwrap().extend_from_slice(bytes);
        Ok(())
    }

    fn reader(&self) -> BlobReader {
        BlobReader::new(Arc::new(Shared(self.bytes.clone())), 0)
    }

    fn stage(self: Box<Self>) -> io::Result<Box<dyn StagedTarget>> {
        Ok(self)
    }

    fn abort(self: Box<Self>) {}
}

impl std::fmt::Debug for Growing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "staged {}", self.digest)
    }
}

impl StagedTarget for Growing {
    fn read_all(&self) -> io::Result<Vec<u8>> {
        Ok(self.bytes.read().unwrap().clone())
    }

    fn publish(self: Box<Self>) -> io::Result<()> {
        let bytes = Bytes::from(self.bytes.read().unwrap().clone());
        self.committed.lock().unwrap().insert(self.digest, bytes);
        Ok(())
    }

    fn discard(self: Box<Self>) {}
}
