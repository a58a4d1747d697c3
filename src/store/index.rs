//! The metadata index, in sled. Small records only; blob bytes live in files.
//!
//! ```text
//! blobs           <digest>                                  -> BlobRecord (json)
//! manifests       <digest>                                  -> ManifestRecord (json)
//! manifest_bytes  <digest>                                  -> the upstream's exact bytes
//! tags            <upstream>\0<repo>\0<tag>\0<accept class> -> TagRecord (json)
//! tag_lists       <upstream>\0<repo>                        -> TagList (json)
//! referrers       <upstream>\0<repo>\0<digest>              -> ReferrerList (json)
//! subjects        <subject digest>\0<referrer digest>       -> ()
//! media_types     <digest>                                  -> media type named by a descriptor
//! contexts        <upstream>\0<repo>\0<digest>              -> Context (json): tag, platform
//! allowed_blobs   <upstream>\0<repo>\0<digest>              -> (): referenced by an allowed manifest
//! links           <upstream>\0<repo>\0<digest>              -> (): the repository holds this content
//! ```
//! A link is what lets content stored once be served under a repository's name: the
//! distribution-spec scopes blobs and manifests to repositories, and the upstream may hold
//! a digest in one repository and refuse it in another (a private one). Links come from the
//! upstream's word: a manifest fetched in the repository (it and what it references), a
//! `GET` or `HEAD` the upstream answered there, an imported bundle's placement.
//!
//! [`MetaStore`] is the interface the cache, layout and the operator commands use; `Index`
//! is its sled implementation.
//!
//! Every key component is validated before it gets here (names, tags, digests and upstream
//! names cannot contain NUL). Access times and hit counts are gathered in memory and written
//! in batches, so a cache hit costs no index write.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::clock::now_ms;
use crate::oci::manifest::Descriptor;
use crate::oci::Digest;
use crate::sync::Locked;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlobRecord {
    pub size: u64,
    pub media_type: Option<String>,
    pub cached_at: u64,
    pub last_access: u64,
    pub hits: u64,
    pub upstream: String,
}

impl BlobRecord {
    /// The record of a blob stored just now.
    pub fn fresh(size: u64, media_type: Option<String>, upstream: String) -> BlobRecord {
        let now = now_ms();
        BlobRecord {
            size,
            media_type,
            cached_at: now,
            last_access: now,
            hits: 0,
            upstream,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestRecord {
    pub media_type: String,
    pub size: u64,
    pub references: Vec<Digest>,
    pub subject: Option<Digest>,
    pub artifact_type: Option<String>,
    pub upstream: String,
    pub repository: String,
    pub cached_at: u64,
    pub last_access: u64,
    pub hits: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TagRecord {
    pub digest: Digest,
    pub media_type: String,
    pub fetched_at: u64,
    pub validated_at: u64,
}

/// A tag record with its key.
#[derive(Debug, Clone)]
pub struct TagEntry {
    pub upstream: String,
    pub repo: String,
    pub tag: String,
    /// The Accept class it was resolved for.
    pub class: String,
    pub record: TagRecord,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TagList {
    pub fetched_at: u64,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReferrerList {
    pub fetched_at: u64,
    pub descriptors: Vec<Descriptor>,
}

/// A signature verdict on a manifest, for one rule's keys in one repository.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignatureVerdict {
    pub decided_at: u64,
    pub judgement: crate::policy::cosign::Judgement,
}

/// How a manifest was reached: the tag it was resolved from, the platform the index that
/// lists it gives it. Policy decisions use both.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Context {
    pub tag: Option<String>,
    pub platform: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index {0} is in use by another entrepot process (stop it, or use another data_dir)")]
    Locked(String),
    #[error("index: {0}")]
    Sled(#[from] sled::Error),
    #[error("index record: {0}")]
    Decode(#[from] serde_json::Error),
}

impl From<IndexError> for crate::error::Error {
    fn from(e: IndexError) -> Self {
        crate::error::Error::Index(std::sync::Arc::new(e))
    }
}

type Result<T> = std::result::Result<T, IndexError>;

pub struct Index {
    db: sled::Db,
    blobs: sled::Tree,
    manifests: sled::Tree,
    manifest_bytes: sled::Tree,
    tags: sled::Tree,
    tag_lists: sled::Tree,
    referrers: sled::Tree,
    subjects: sled::Tree,
    media_types: sled::Tree,
    contexts: sled::Tree,
    allowed_blobs: sled::Tree,
    links: sled::Tree,
    signatures: sled::Tree,
    access: Mutex<HashMap<Digest, (u64, u64)>>,
    /// Tag records as stored, by key: a by-tag hit reads no tree and parses no JSON. Every
    /// read and write of a tag goes through this lock (a miss reads the tree under it), so
    /// the copy is never older than the tree.
    tag_cache: Mutex<HashMap<Vec<u8>, TagRecord>>,
    /// Links read from the tree, by key: every cached pull by digest checks one. A link is
    /// never removed, so the copy cannot say yes where the tree says no.
    link_cache: Mutex<HashSet<Vec<u8>>>,
    /// Bumped when a tag or manifest record appears or goes: the repositories the index
    /// holds may have changed. Lets the catalog be recomputed only then.
    names_changed: std::sync::atomic::AtomicU64,
}

/// Tag records kept in memory at most (~200 bytes each); past it the copy starts over.
const TAG_CACHE_ENTRIES: usize = 100_000;
/// Links kept in memory at most (~150 bytes each); past it the copy starts over.
const LINK_CACHE_ENTRIES: usize = 100_000;

fn key(parts: &[&str]) -> Vec<u8> {
    parts.join("\0").into_bytes()
}

/// `key(&[upstream, repo, &d.to_string()])`, without the digest's own string.
fn link_key(upstream: &str, repo: &str, d: &Digest) -> Vec<u8> {
    let (alg, hex) = (d.algorithm().name(), d.hex());
    let mut k = Vec::with_capacity(upstream.len() + repo.len() + alg.len() + hex.len() + 3);
    for part in [upstream, "\0", repo, "\0", alg, ":", hex] {
        k.extend_from_slice(part.as_bytes());
    }
    k
}

/// A manifest and what it references, to link together.
pub fn linked<'a>(manifest: &'a Digest, references: &'a [Digest]) -> Vec<&'a Digest> {
    std::iter::once(manifest).chain(references).collect()
}

fn get<T: DeserializeOwned>(tree: &sled::Tree, k: impl AsRef<[u8]>) -> Result<Option<T>> {
    match tree.get(k)? {
        Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
        None => Ok(None),
    }
}

/// Opens the database, waiting up to five seconds for its lock: sled's background flusher
/// of a database just closed in this process (a restart, a test) can hold it a moment
/// longer. Past that, another process has the data directory.
fn open_db(dir: &Path) -> Result<sled::Db> {
    open_db_within(dir, std::time::Duration::from_secs(5))
}

fn open_db_within(dir: &Path, patience: std::time::Duration) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        // A bounded page cache: the index holds small records and must not grow the RSS.
        match sled::Config::new().path(dir).cache_capacity(64 << 20).open() {
            Err(sled::Error::Io(e)) if is_locked(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(sled::Error::Io(e)) if is_locked(&e) => {
                return Err(IndexError::Locked(dir.display().to_string()));
            }
            other => return Ok(other?),
        }
    }
}

/// sled reports a held lock as an `Other` error whose message carries the `WouldBlock`.
fn is_locked(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
}

fn scan<T: DeserializeOwned>(tree: &sled::Tree) -> Result<Vec<(Digest, T)>> {
    let mut out = Vec::new();
    for kv in tree.iter() {
        let (k, v) = kv?;
        if let Some(d) = std::str::from_utf8(&k).ok().and_then(|s| s.parse().ok()) {
            out.push((d, serde_json::from_slice(&v)?));
        }
    }
    Ok(out)
}

/// Writes a record; returns whether its key is new.
fn put<T: Serialize>(tree: &sled::Tree, k: impl AsRef<[u8]>, v: &T) -> Result<bool> {
    Ok(tree.insert(k.as_ref(), serde_json::to_vec(v)?)?.is_none())
}

impl Index {
    pub fn open(dir: &Path) -> Result<Index> {
        let db = open_db(dir)?;
        let index = Index {
            blobs: db.open_tree("blobs")?,
            manifests: db.open_tree("manifests")?,
            manifest_bytes: db.open_tree("manifest_bytes")?,
            tags: db.open_tree("tags")?,
            tag_lists: db.open_tree("tag_lists")?,
            referrers: db.open_tree("referrers")?,
            subjects: db.open_tree("subjects")?,
            media_types: db.open_tree("media_types")?,
            contexts: db.open_tree("contexts")?,
            allowed_blobs: db.open_tree("allowed_blobs")?,
            links: db.open_tree("links")?,
            signatures: db.open_tree("signatures")?,
            access: Mutex::new(HashMap::new()),
            tag_cache: Mutex::new(HashMap::new()),
            link_cache: Mutex::new(HashSet::new()),
            names_changed: std::sync::atomic::AtomicU64::new(0),
            db,
        };
        index.derive_links()?;
        Ok(index)
    }

    /// A store written before links existed has manifests and no links: each manifest's
    /// record names the repository it was fetched from, which holds it and what it
    /// references. Runs once; afterwards every manifest written links itself.
    fn derive_links(&self) -> Result<()> {
        if !self.links.is_empty() || self.manifests.is_empty() {
            return Ok(());
        }
        for (d, rec) in scan::<ManifestRecord>(&self.manifests)? {
            if !rec.upstream.is_empty() {
                self.link(&rec.upstream, &rec.repository, &linked(&d, &rec.references))?;
            }
        }
        Ok(())
    }

    fn names_changed(&self) {
        self.names_changed.fetch_add(1, std::sync::atomic::Ordering::Release);
    }
}

/// The records the cache keeps about content, behind one interface: blobs, manifests and
/// their bytes, tags per Accept class, tag lists, referrers, policy contexts, repository
/// links and access times. [`Index`] (sled) is today's implementation; a shared one (for
/// several nodes) implements this.
pub trait MetaStore: Send + Sync {
    // === blobs ===
    fn blob(&self, d: &Digest) -> Result<Option<BlobRecord>>;

    fn put_blob(&self, d: &Digest, r: &BlobRecord) -> Result<()>;

    /// Writes `r` unless the blob has a record already. Returns whether it wrote.
    fn adopt_blob(&self, d: &Digest, r: &BlobRecord) -> Result<bool>;

    fn remove_blob(&self, d: &Digest) -> Result<()>;

    /// Every blob's recorded size, in digest order, in one scan, for reconciliation with
    /// the files.
    fn blob_sizes(&self) -> Result<Vec<(Digest, u64)>>;

    /// Remembers the media types a manifest gives its descriptors, and sets them on blobs
    /// already cached; `media_type` reads them back for blobs cached later.
    fn learn_media_types(&self, descriptors: &[Descriptor]) -> Result<()>;

    /// The media type a manifest gave this digest, if any manifest seen did.
    fn media_type(&self, d: &Digest) -> Result<Option<String>>;

    // === manifests ===
    fn manifest(&self, d: &Digest) -> Result<Option<(ManifestRecord, bytes::Bytes)>>;

    fn has_manifest(&self, d: &Digest) -> Result<bool>;

    /// Bytes first, then the record: a record is never visible without its bytes. The
    /// record's repository holds the manifest and what it references: both are linked.
    fn put_manifest(&self, d: &Digest, r: &ManifestRecord, bytes: &[u8]) -> Result<()>;

    /// Referrers of `subject` that are cached locally.
    fn local_referrers(&self, subject: &Digest) -> Result<Vec<Digest>>;

    /// Every manifest record, for the sweeper.
    fn manifests_all(&self) -> Result<Vec<(Digest, ManifestRecord)>>;

    /// Every blob record, for the sweeper.
    fn blobs_all(&self) -> Result<Vec<(Digest, BlobRecord)>>;

    /// Forgets a manifest: record first (no new hit can start), then its bytes and its
    /// subject link. Tags that resolved to it go with `remove_tags_resolving_to`.
    fn remove_manifest(&self, d: &Digest) -> Result<()>;

    /// Removes every tag record that resolved to one of `gone`, in one pass. Returns how many.
    fn remove_tags_resolving_to(&self, gone: &HashSet<Digest>) -> Result<usize>;

    // === policy facts ===
    fn context(&self, upstream: &str, repo: &str, d: &Digest) -> Result<Option<Context>>;

    /// Records a context, unless the same one is there already (this runs on every serve).
    fn put_context(&self, upstream: &str, repo: &str, d: &Digest, c: &Context) -> Result<()>;

    fn is_blob_allowed(&self, upstream: &str, repo: &str, d: &Digest) -> Result<bool>;

    fn allow_blob(&self, upstream: &str, repo: &str, d: &Digest) -> Result<()>;

    /// The signature verdict on `d` for the keys of fingerprint `keys`, in a repository.
    fn signature_verdict(&self, keys: &str, upstream: &str, repo: &str, d: &Digest)
        -> Result<Option<SignatureVerdict>>;

    fn put_signature_verdict(
        &self,
        keys: &str,
        upstream: &str,
        repo: &str,
        d: &Digest,
        v: &SignatureVerdict,
    ) -> Result<()>;

    // === links ===
    /// Whether the repository is known to hold this digest (blob or manifest).
    fn is_linked(&self, upstream: &str, repo: &str, d: &Digest) -> Result<bool>;

    /// Records that the repository holds these digests.
    fn link(&self, upstream: &str, repo: &str, digests: &[&Digest]) -> Result<()>;

    // === tags ===
    fn tag(&self, upstream: &str, repo: &str, tag: &str, class: &str) -> Result<Option<TagRecord>>;

    fn put_tag(&self, upstream: &str, repo: &str, tag: &str, class: &str, r: &TagRecord) -> Result<()>;

    /// Forgets what a tag resolved to for one Accept class only.
    fn remove_tag_class(&self, upstream: &str, repo: &str, tag: &str, class: &str) -> Result<()>;

    fn remove_tag(&self, upstream: &str, repo: &str, tag: &str) -> Result<()>;

    /// Changes with every tag or manifest record that appears or goes.
    fn names_generation(&self) -> u64;

    /// Every tag record.
    fn tags_all(&self) -> Result<Vec<TagEntry>>;

    /// The records of one tag under every Accept class.
    fn tag_classes(&self, upstream: &str, repo: &str, tag: &str) -> Result<Vec<(String, TagRecord)>>;

    /// Tags of a repository that have been resolved through this cache.
    fn known_tags(&self, upstream: &str, repo: &str) -> Result<Vec<String>>;

    fn tag_list(&self, upstream: &str, repo: &str) -> Result<Option<TagList>>;

    fn put_tag_list(&self, upstream: &str, repo: &str, list: &TagList) -> Result<()>;

    // === referrers ===
    fn referrers(&self, upstream: &str, repo: &str, subject: &Digest) -> Result<Option<ReferrerList>>;

    fn put_referrers(&self, upstream: &str, repo: &str, subject: &Digest, list: &ReferrerList) -> Result<()>;

    // === access tracking ===
    /// Notes a hit in memory; `flush_access` writes the totals.
    fn touch(&self, d: &Digest);

    fn flush_access(&self) -> Result<()>;

    /// `flush_access`, then everything written made durable. Blocking.
    fn flush(&self) -> Result<()>;
}

impl MetaStore for Index {
    // === blobs ===

    fn blob(&self, d: &Digest) -> Result<Option<BlobRecord>> {
        get(&self.blobs, d.to_string())
    }

    fn put_blob(&self, d: &Digest, r: &BlobRecord) -> Result<()> {
        put(&self.blobs, d.to_string(), r)?;
        Ok(())
    }

    fn adopt_blob(&self, d: &Digest, r: &BlobRecord) -> Result<bool> {
        let new = serde_json::to_vec(r)?;
        Ok(self
            .blobs
            .compare_and_swap(d.to_string(), None::<&[u8]>, Some(new))?
            .is_ok())
    }

    fn remove_blob(&self, d: &Digest) -> Result<()> {
        self.blobs.remove(d.to_string())?;
        Ok(())
    }

    fn blob_sizes(&self) -> Result<Vec<(Digest, u64)>> {
        /// Only the size is read: the rest of the record need not be decoded.
        #[derive(Deserialize)]
        struct Size {
            size: u64,
        }
        let mut out: Vec<(Digest, u64)> = Vec::new();
        for kv in self.blobs.iter() {
            let (k, v) = kv?;
            if let Some(d) = std::str::from_utf8(&k).ok().and_then(|s| s.parse().ok()) {
                out.push((d, serde_json::from_slice::<Size>(&v)?.size));
            }
        }
        // Key order is digest order already; sorting a sorted run costs one pass.
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn learn_media_types(&self, descriptors: &[Descriptor]) -> Result<()> {
        for desc in descriptors {
            self.media_types
                .insert(desc.digest.to_string(), desc.media_type.as_bytes())?;
            if let Some(mut rec) = self.blob(&desc.digest)? {
                if rec.media_type.is_none() {
                    rec.media_type = Some(desc.media_type.clone());
                    self.put_blob(&desc.digest, &rec)?;
                }
            }
        }
        Ok(())
    }

    fn media_type(&self, d: &Digest) -> Result<Option<String>> {
        Ok(self
            .media_types
            .get(d.to_string())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    // === manifests ===

    fn manifest(&self, d: &Digest) -> Result<Option<(ManifestRecord, bytes::Bytes)>> {
        let Some(rec) = get::<ManifestRecord>(&self.manifests, d.to_string())? else {
            return Ok(None);
        };
        match self.manifest_bytes.get(d.to_string())? {
            Some(b) => Ok(Some((rec, bytes::Bytes::copy_from_slice(&b)))),
            None => Ok(None),
        }
    }

    fn has_manifest(&self, d: &Digest) -> Result<bool> {
        Ok(self.manifests.contains_key(d.to_string())?)
    }

    fn put_manifest(&self, d: &Digest, r: &ManifestRecord, bytes: &[u8]) -> Result<()> {
        self.manifest_bytes.insert(d.to_string(), bytes)?;
        if !r.upstream.is_empty() {
            self.link(&r.upstream, &r.repository, &linked(d, &r.references))?;
        }
        if put(&self.manifests, d.to_string(), r)? {
            self.names_changed();
        }
        if let Some(subject) = &r.subject {
            self.subjects
                .insert(key(&[&subject.to_string(), &d.to_string()]), &[])?;
        }
        Ok(())
    }

    fn local_referrers(&self, subject: &Digest) -> Result<Vec<Digest>> {
        let prefix = key(&[&subject.to_string(), ""]);
        let mut out = Vec::new();
        for k in self.subjects.scan_prefix(&prefix).keys() {
            let k = k?;
            if let Some(d) = std::str::from_utf8(&k[prefix.len()..])
                .ok()
                .and_then(|s| s.parse().ok())
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    fn manifests_all(&self) -> Result<Vec<(Digest, ManifestRecord)>> {
        scan(&self.manifests)
    }

    fn blobs_all(&self) -> Result<Vec<(Digest, BlobRecord)>> {
        scan(&self.blobs)
    }

    fn remove_manifest(&self, d: &Digest) -> Result<()> {
        let Some(rec) = get::<ManifestRecord>(&self.manifests, d.to_string())? else {
            return Ok(());
        };
        self.manifests.remove(d.to_string())?;
        self.names_changed();
        self.manifest_bytes.remove(d.to_string())?;
        if let Some(subject) = &rec.subject {
            self.subjects.remove(key(&[&subject.to_string(), &d.to_string()]))?;
        }
        for kv in self.signatures.scan_prefix(key(&[&d.to_string(), ""])) {
            self.signatures.remove(kv?.0)?;
        }
        Ok(())
    }

    fn remove_tags_resolving_to(&self, gone: &HashSet<Digest>) -> Result<usize> {
        let mut n = 0;
        let mut cache = self.tag_cache.locked();
        for kv in self.tags.iter() {
            let (k, v) = kv?;
            if serde_json::from_slice::<TagRecord>(&v).is_ok_and(|t| gone.contains(&t.digest)) {
                cache.remove(k.as_ref());
                self.tags.remove(k)?;
                n += 1;
            }
        }
        if n > 0 {
            self.names_changed();
        }
        Ok(n)
    }

    // === policy facts ===

    fn context(&self, upstream: &str, repo: &str, d: &Digest) -> Result<Option<Context>> {
        get(&self.contexts, key(&[upstream, repo, &d.to_string()]))
    }

    fn put_context(&self, upstream: &str, repo: &str, d: &Digest, c: &Context) -> Result<()> {
        let k = key(&[upstream, repo, &d.to_string()]);
        if get::<Context>(&self.contexts, &k)?.as_ref() != Some(c) {
            put(&self.contexts, k, c)?;
        }
        Ok(())
    }

    fn is_blob_allowed(&self, upstream: &str, repo: &str, d: &Digest) -> Result<bool> {
        Ok(self
            .allowed_blobs
            .contains_key(key(&[upstream, repo, &d.to_string()]))?)
    }

    fn allow_blob(&self, upstream: &str, repo: &str, d: &Digest) -> Result<()> {
        let k = key(&[upstream, repo, &d.to_string()]);
        if !self.allowed_blobs.contains_key(&k)? {
            self.allowed_blobs.insert(k, &[])?;
        }
        Ok(())
    }

    fn signature_verdict(
        &self,
        keys: &str,
        upstream: &str,
        repo: &str,
        d: &Digest,
    ) -> Result<Option<SignatureVerdict>> {
        get(&self.signatures, key(&[&d.to_string(), keys, upstream, repo]))
    }

    fn put_signature_verdict(
        &self,
        keys: &str,
        upstream: &str,
        repo: &str,
        d: &Digest,
        v: &SignatureVerdict,
    ) -> Result<()> {
        put(&self.signatures, key(&[&d.to_string(), keys, upstream, repo]), v)?;
        Ok(())
    }

    // === links ===

    fn is_linked(&self, upstream: &str, repo: &str, d: &Digest) -> Result<bool> {
        let k = link_key(upstream, repo, d);
        if self.link_cache.locked().contains(&k) {
            return Ok(true);
        }
        let linked = self.links.contains_key(&k)?;
        if linked {
            let mut cache = self.link_cache.locked();
            if cache.len() >= LINK_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(k);
        }
        Ok(linked)
    }

    fn link(&self, upstream: &str, repo: &str, digests: &[&Digest]) -> Result<()> {
        for d in digests {
            let k = link_key(upstream, repo, d);
            if !self.links.contains_key(&k)? {
                self.links.insert(k, &[])?;
            }
        }
        Ok(())
    }

    // === tags ===

    fn tag(&self, upstream: &str, repo: &str, tag: &str, class: &str) -> Result<Option<TagRecord>> {
        let k = key(&[upstream, repo, tag, class]);
        let mut cache = self.tag_cache.locked();
        if let Some(r) = cache.get(&k) {
            return Ok(Some(r.clone()));
        }
        let found: Option<TagRecord> = get(&self.tags, &k)?;
        if let Some(r) = &found {
            if cache.len() >= TAG_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(k, r.clone());
        }
        Ok(found)
    }

    fn put_tag(&self, upstream: &str, repo: &str, tag: &str, class: &str, r: &TagRecord) -> Result<()> {
        let k = key(&[upstream, repo, tag, class]);
        let mut cache = self.tag_cache.locked();
        cache.remove(&k);
        if put(&self.tags, k.clone(), r)? {
            self.names_changed();
        }
        cache.insert(k, r.clone());
        Ok(())
    }

    fn remove_tag_class(&self, upstream: &str, repo: &str, tag: &str, class: &str) -> Result<()> {
        let k = key(&[upstream, repo, tag, class]);
        let mut cache = self.tag_cache.locked();
        cache.remove(&k);
        if self.tags.remove(k)?.is_some() {
            self.names_changed();
        }
        Ok(())
    }

    fn remove_tag(&self, upstream: &str, repo: &str, tag: &str) -> Result<()> {
        let prefix = key(&[upstream, repo, tag, ""]);
        let mut cache = self.tag_cache.locked();
        for k in self.tags.scan_prefix(prefix).keys() {
            let k = k?;
            cache.remove(k.as_ref());
            self.tags.remove(k)?;
            self.names_changed();
        }
        Ok(())
    }

    fn names_generation(&self) -> u64 {
        self.names_changed.load(std::sync::atomic::Ordering::Acquire)
    }

    fn tags_all(&self) -> Result<Vec<TagEntry>> {
        let mut out = Vec::new();
        for kv in self.tags.iter() {
            let (k, v) = kv?;
            let parts: Vec<String> = k
                .split(|b| *b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            if let [upstream, repo, tag, class] = &parts[..] {
                out.push(TagEntry {
                    upstream: upstream.clone(),
                    repo: repo.clone(),
                    tag: tag.clone(),
                    class: class.clone(),
                    record: serde_json::from_slice(&v)?,
                });
            }
        }
        Ok(out)
    }

    fn tag_classes(&self, upstream: &str, repo: &str, tag: &str) -> Result<Vec<(String, TagRecord)>> {
        let prefix = key(&[upstream, repo, tag, ""]);
        let mut out = Vec::new();
        for kv in self.tags.scan_prefix(&prefix) {
            let (k, v) = kv?;
            out.push((
                String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                serde_json::from_slice(&v)?,
            ));
        }
        Ok(out)
    }

    fn known_tags(&self, upstream: &str, repo: &str) -> Result<Vec<String>> {
        let prefix = key(&[upstream, repo, ""]);
        let mut out = Vec::new();
        for k in self.tags.scan_prefix(&prefix).keys() {
            let k = k?;
            let rest = &k[prefix.len()..];
            if let Some(tag) = rest.split(|b| *b == 0).next().and_then(|t| std::str::from_utf8(t).ok()) {
                out.push(tag.to_owned());
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn tag_list(&self, upstream: &str, repo: &str) -> Result<Option<TagList>> {
        get(&self.tag_lists, key(&[upstream, repo]))
    }

    fn put_tag_list(&self, upstream: &str, repo: &str, list: &TagList) -> Result<()> {
        put(&self.tag_lists, key(&[upstream, repo]), list)?;
        Ok(())
    }

    // === referrers ===

    fn referrers(&self, upstream: &str, repo: &str, subject: &Digest) -> Result<Option<ReferrerList>> {
        get(&self.referrers, key(&[upstream, repo, &subject.to_string()]))
    }

    fn put_referrers(&self, upstream: &str, repo: &str, subject: &Digest, list: &ReferrerList) -> Result<()> {
        put(&self.referrers, key(&[upstream, repo, &subject.to_string()]), list)?;
        Ok(())
    }

    // === access tracking ===

    fn touch(&self, d: &Digest) {
        let mut map = self.access.locked();
        // Looked up before inserting: a hot digest is touched on every request, and the
        // entry API would copy the digest each time.
        let now = now_ms();
        match map.get_mut(d) {
            Some(e) => *e = (e.0 + 1, now),
            None => {
                map.insert(d.clone(), (1, now));
            }
        }
    }

    fn flush_access(&self) -> Result<()> {
        let pending = std::mem::take(&mut *self.access.locked());
        for (d, (hits, last)) in pending {
            if let Some(mut r) = self.blob(&d)? {
                r.hits += hits;
                r.last_access = r.last_access.max(last);
                self.put_blob(&d, &r)?;
            } else if let Some(mut r) = get::<ManifestRecord>(&self.manifests, d.to_string())? {
                r.hits += hits;
                r.last_access = r.last_access.max(last);
                put(&self.manifests, d.to_string(), &r)?;
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.flush_access()?;
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_waited_for_then_reported() {
        let dir = tempfile::tempdir().unwrap();
        let held = open_db(dir.path()).unwrap();
        let err = open_db_within(dir.path(), std::time::Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, IndexError::Locked(_)), "{err}");
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(held);
        });
        open_db(dir.path()).expect("the lock, once released");
        release.join().unwrap();
    }

    fn rec(size: u64) -> BlobRecord {
        BlobRecord {
            size,
            media_type: None,
            cached_at: 1,
            last_access: 1,
            hits: 0,
            upstream: "u".into(),
        }
    }

    #[test]
    fn the_tag_copy_in_memory_follows_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(&dir.path().join("index")).unwrap();
        let tag = |d: &Digest| TagRecord {
            digest: d.clone(),
            media_type: "m".into(),
            fetched_at: 1,
            validated_at: 2,
        };
        let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        assert_eq!(idx.tag("u", "r", "t", "all").unwrap(), None);
        idx.put_tag("u", "r", "t", "all", &tag(&a)).unwrap();
        assert_eq!(idx.tag("u", "r", "t", "all").unwrap().unwrap().digest, a);
        idx.put_tag("u", "r", "t", "all", &tag(&b)).unwrap();
        assert_eq!(idx.tag("u", "r", "t", "all").unwrap().unwrap().digest, b, "a moved tag");
        idx.remove_tag_class("u", "r", "t", "all").unwrap();
        assert_eq!(idx.tag("u", "r", "t", "all").unwrap(), None);
        idx.put_tag("u", "r", "t", "all", &tag(&a)).unwrap();
        idx.put_tag("u", "r", "t", "oci", &tag(&a)).unwrap();
        idx.remove_tags_resolving_to(&[a.clone()].into()).unwrap();
        assert_eq!(
            idx.tag("u", "r", "t", "oci").unwrap(),
            None,
            "evicted with its manifest"
        );
        idx.put_tag("u", "r", "t", "all", &tag(&b)).unwrap();
        assert!(idx.tag("u", "r", "t", "all").unwrap().is_some());
        idx.remove_tag("u", "r", "t").unwrap();
        assert_eq!(idx.tag("u", "r", "t", "all").unwrap(), None);
        // What another process wrote is read from the tree once it is not in memory.
        drop(idx);
        let idx = Index::open(&dir.path().join("index")).unwrap();
        assert_eq!(idx.tag("u", "r", "t", "all").unwrap(), None);
    }

    #[test]
    fn blobs_tags_and_access() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(&dir.path().join("index")).unwrap();
        let d = Digest::sha256_of(b"x");
        idx.put_blob(&d, &rec(1)).unwrap();
        idx.touch(&d);
        idx.touch(&d);
        idx.flush_access().unwrap();
        assert_eq!(idx.blob(&d).unwrap().unwrap().hits, 2);
        assert_eq!(idx.blob_sizes().unwrap(), vec![(d.clone(), 1)]);

        let t = TagRecord {
            digest: d.clone(),
            media_type: "m".into(),
            fetched_at: 1,
            validated_at: 2,
        };
        idx.put_tag("u", "lib/a", "v1", "0f", &t).unwrap();
        idx.put_tag("u", "lib/a", "v1", "01", &t).unwrap();
        idx.put_tag("u", "lib/a", "v2", "0f", &t).unwrap();
        idx.put_tag("u", "lib/ab", "zz", "0f", &t).unwrap();
        assert_eq!(idx.known_tags("u", "lib/a").unwrap(), ["v1", "v2"]);
        idx.remove_tag("u", "lib/a", "v1").unwrap();
        assert_eq!(idx.known_tags("u", "lib/a").unwrap(), ["v2"]);
        assert_eq!(idx.tag("u", "lib/a", "v2", "0f").unwrap(), Some(t));
    }

    #[test]
    fn manifests_and_subjects() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(&dir.path().join("index")).unwrap();
        let subject = Digest::sha256_of(b"s");
        let d = Digest::sha256_of(b"m");
        let r = ManifestRecord {
            media_type: "m".into(),
            size: 1,
            references: vec![],
            subject: Some(subject.clone()),
            artifact_type: None,
            upstream: "u".into(),
            repository: "r".into(),
            cached_at: 0,
            last_access: 0,
            hits: 0,
        };
        idx.put_manifest(&d, &r, b"m").unwrap();
        assert_eq!(idx.manifest(&d).unwrap().unwrap().1.as_ref(), b"m");
        assert_eq!(idx.local_referrers(&subject).unwrap(), vec![d]);
    }

    #[test]
    fn a_manifest_links_itself_and_its_references_into_its_repository_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let (d, layer) = (Digest::sha256_of(b"m"), Digest::sha256_of(b"layer"));
        let r = ManifestRecord {
            media_type: "m".into(),
            size: 1,
            references: vec![layer.clone()],
            subject: None,
            artifact_type: None,
            upstream: "u".into(),
            repository: "team/a".into(),
            cached_at: 0,
            last_access: 0,
            hits: 0,
        };
        {
            let idx = Index::open(&path).unwrap();
            idx.put_manifest(&d, &r, b"m").unwrap();
            assert!(idx.is_linked("u", "team/a", &d).unwrap());
            assert!(idx.is_linked("u", "team/a", &layer).unwrap());
            assert!(!idx.is_linked("u", "team/b", &layer).unwrap());
            assert!(!idx.is_linked("v", "team/a", &layer).unwrap());
            // As a store from before links existed.
            idx.links.clear().unwrap();
        }
        let idx = Index::open(&path).unwrap();
        assert!(idx.is_linked("u", "team/a", &layer).unwrap(), "derived at open");
        assert!(!idx.is_linked("u", "team/b", &layer).unwrap());
    }

    #[test]
    fn links_written_by_earlier_versions_are_found_and_then_answered_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(&dir.path().join("index")).unwrap();
        let d = Digest::sha256_of(b"m");
        idx.links.insert(key(&["u", "team/a", &d.to_string()]), &[]).unwrap();
        assert!(!idx.is_linked("u", "team/b", &d).unwrap());
        assert!(idx.link_cache.locked().is_empty(), "a missing link is not remembered");
        assert!(idx.is_linked("u", "team/a", &d).unwrap());
        assert_eq!(idx.link_cache.locked().len(), 1);
        assert!(idx.is_linked("u", "team/a", &d).unwrap());
    }
}
