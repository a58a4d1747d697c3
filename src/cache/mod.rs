//! The cache: what is served locally, what is fetched, and how concurrent misses share one
//! upstream request. It speaks in digests, manifests and tag lists; HTTP is `http`'s job.
//!
//! - `fill`: blob downloads, verified while written, followed by every waiting client;
//! - `follow`: the bodies that stream a committed blob or a fill in progress;
//! - `flight`: single flight for the small things (manifests, tag lists, referrers);
//! - `manifests`: manifests by digest and by tag, tag revalidation, stale-if-error;
//! - `lists`: tag lists and referrers;
//! - `links`: which repositories hold a stored digest;
//! - `scrub`: committed content hashed again, corruption quarantined;
//! - `admission` and `signatures`: the filter policy on the serving path, and the signature
//!   evidence it may require;
//! - `tier`: the shared tier's access reports and eviction, with each sweep.

mod admission;
pub mod fill;
pub mod flight;
pub mod follow;
mod links;
mod lists;
mod manifests;
pub mod scrub;
mod signatures;
pub mod sweep;
pub mod tier;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use crate::config::{Config, PolicyConfig, RetentionConfig};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::oci::Digest;
use crate::store::blobs::{self, BlobReader};
use crate::store::Store;
use crate::sync::Locked;
use crate::upstream::Target;
use links::Content;

pub use lists::ListAnswer;
pub use manifests::{Manifest, ManifestAnswer};

/// How a request was served, for the response header and the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Miss,
    Coalesced,
    Revalidated,
    Stale,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Coalesced => "coalesced",
            Outcome::Revalidated => "revalidated",
            Outcome::Stale => "stale",
        }
    }

    fn joined(self, joined: bool) -> Outcome {
        if joined && self == Outcome::Miss {
            Outcome::Coalesced
        } else {
            self
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub offline: bool,
    pub tag_ttl: Duration,
    pub max_staleness: Duration,
    pub negative_ttl: Duration,
    pub max_manifest_size: u64,
    pub policy: PolicyConfig,
    pub retention: RetentionConfig,
}

impl Settings {
    pub fn from_config(c: &Config) -> Settings {
        Settings {
            offline: c.offline,
            tag_ttl: c.tag_ttl,
            max_staleness: c.max_staleness,
            negative_ttl: c.negative_ttl,
            max_manifest_size: c.max_manifest_size,
            policy: c.policy.clone(),
            retention: c.retention.clone(),
        }
    }
}

/// What the metrics read from the cache when scraped.
#[derive(Debug, Clone)]
pub struct Gauges {
    /// Blob transfers being sent to clients.
    pub transfers: usize,
    /// Blob downloads from upstreams in progress.
    pub fills: usize,
    /// Blob bytes on disk.
    pub stored_bytes: u64,
    /// Whether files and records have been reconciled since start-up.
    pub reconciled: bool,
    /// Bytes per retention class, as of the last sweep.
    pub class_bytes: Vec<(String, u64)>,
    /// The whole cache's budget (`max_cache_bytes`), when there is one.
    pub max_bytes: Option<u64>,
    /// The classes' budgets (`max_bytes`), for those that have one.
    pub class_max_bytes: Vec<(String, u64)>,
}

/// The cache: one face, in parts. Each part's state is reached by the files that own that
/// part (`fill`/`follow`/`links`: blobs; `manifests`/`lists`: tags; `sweep`/`scrub`:
/// retention), and by nothing outside the cache.
pub struct Cache {
    pub store: Store,
    /// Where TTLs, staleness, the negative cache and retention read the time.
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    blobs: BlobState,
    tags: TagState,
    retention: RetentionState,
    /// The shared tier's upkeep, with `[storage]`.
    tier: std::sync::OnceLock<tier::Tier>,
}

/// Blobs: downloads in progress, transfers being served, repository links being asked.
#[derive(Default)]
struct BlobState {
    fills: Mutex<HashMap<Digest, Arc<fill::Fill>>>,
    serving: Arc<sweep::ServingSet>,
    /// Upstream `HEAD`s asking whether a repository holds a stored digest.
    links: Arc<flight::Flights<bool>>,
    /// The buffers fills gather their batches in, shared by all fills.
    buffers: fill::Buffers,
}

/// Manifests, tags and lists: their single flights, what the upstream said is absent, the
/// manifests served lately, the catalog.
#[derive(Default)]
struct TagState {
    manifests: Arc<flight::Flights<ManifestAnswer>>,
    tag_lists: Arc<flight::Flights<ListAnswer<Vec<String>>>>,
    referrers: Arc<flight::Flights<ListAnswer<Vec<crate::oci::manifest::Descriptor>>>>,
    /// Tags the upstream said do not exist, until when to believe it (clock milliseconds).
    absent_tags: Mutex<HashMap<String, u64>>,
    /// Manifests served lately, so that a warm hit reads no index record.
    hot: HotManifests,
    /// The last catalog computed, and the index's names generation it was computed at.
    catalog: tokio::sync::Mutex<Option<(u64, Arc<Vec<String>>)>>,
    /// Manifests served per upstream and repository since start, for the status page
    /// (nested, so that counting a hit allocates nothing), and how many are counted.
    pulls: Mutex<(PullCounts, usize)>,
}

/// Manifests served, by upstream, then repository.
type PullCounts = HashMap<String, HashMap<String, u64>>;

/// Repositories whose pulls are counted at most: past it, new ones are not (a client
/// walking random names cannot grow the map without bound).
const PULL_COUNTS: usize = 10_000;

/// A blob download in progress, for the status page.
#[derive(Debug, Clone)]
pub struct FillProgress {
    pub digest: Digest,
    pub upstream: String,
    pub repo: String,
    pub written: u64,
    /// The upstream's `Content-Length`, when it sent one.
    pub total: Option<u64>,
}

/// Retention: what is stored, by class, whether the records can be trusted yet, and the
/// sweeper's early wake-up.
struct RetentionState {
    /// Bytes per retention class as of the last sweep, for the metrics.
    class_bytes: Mutex<Vec<(String, u64)>>,
    /// Blob bytes on disk, kept up to date by fills and sweeps.
    stored_bytes: AtomicU64,
    /// Wakes the sweeper before its interval: a fill is taking the cache past the high
    /// watermark.
    sweep_now: tokio::sync::Notify,
    /// Whether files and records have been reconciled since start-up. Until then the records
    /// may be incomplete, so nothing is evicted on their word.
    reconciled: tokio::sync::watch::Sender<bool>,
}

impl RetentionState {
    /// Blob bytes on disk, as counted.
    fn stored(&self) -> u64 {
        self.stored_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts bytes stored; returns the new total.
    fn add(&self, bytes: u64) -> u64 {
        self.stored_bytes.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed) + bytes
    }

    /// Takes bytes off the count (saturating: reconcile may not have counted them yet).
    fn take(&self, bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let _ = (self.stored_bytes).fetch_update(Relaxed, Relaxed, |b| Some(b.saturating_sub(bytes)));
    }

    /// Replaces the count with one taken from the records.
    fn recount(&self, bytes: u64) {
        self.stored_bytes.store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Wakes the sweeper before its interval when `bytes` would cross the high watermark.
    fn wake_if_over(&self, bytes: u64, high: Option<u64>) {
        if high.is_some_and(|high| bytes > high) {
            self.sweep_now.notify_one();
        }
    }
}

/// A blob ready to be streamed.
pub enum BlobSource {
    Committed(BlobReader),
    Filling { fill: Arc<fill::Fill>, total: Option<u64> },
}

impl BlobSource {
    /// Its length, when known (an upstream may send a blob without one).
    pub fn size(&self) -> Option<u64> {
        match self {
            BlobSource::Committed(blob) => Some(blob.size()),
            BlobSource::Filling { total, .. } => *total,
        }
    }
}

impl Cache {
    pub fn new(store: Store, settings: Settings, metrics: Arc<Metrics>, clock: Arc<dyn Clock>) -> Cache {
        Cache {
            store,
            clock,
            settings,
            metrics,
            blobs: BlobState::default(),
            tags: TagState::default(),
            retention: RetentionState {
                class_bytes: Mutex::default(),
                stored_bytes: AtomicU64::default(),
                sweep_now: tokio::sync::Notify::new(),
                reconciled: tokio::sync::watch::Sender::new(false),
            },
            tier: std::sync::OnceLock::new(),
        }
    }

    /// Reconciles the store's files and records (`Store::reconcile`), once. Blocking.
    pub fn reconcile(&self) -> Result<()> {
        if self.is_reconciled() {
            return Ok(());
        }
        let found = self.store.reconcile()?;
        // Fills that committed during the walk may be counted twice; the next sweep recounts.
        self.retention.add(found.bytes);
        self.retention.reconciled.send_replace(true);
        Ok(())
    }

    pub fn is_reconciled(&self) -> bool {
        *self.retention.reconciled.borrow()
    }

    pub async fn wait_reconciled(&self) {
        let _ = self.retention.reconciled.subscribe().wait_for(|done| *done).await;
    }

    async fn committed_blob(&self, d: &Digest) -> Result<Option<BlobSource>> {
        Ok(blobs::committed_async(&self.store.blobs, d)
            .await?
            .map(BlobSource::Committed))
    }

    /// A blob for a GET: committed, or a fill that has started streaming.
    /// The returned `Serving` marks the blob as being read until the transfer drops it, so
    /// that a sweep does not evict it meanwhile.
    pub async fn blob(self: &Arc<Self>, t: &Target, d: &Digest) -> Result<(BlobSource, Outcome, sweep::Serving)> {
        self.admit_blob(t, d)?;
        let serving = self.blobs.serving.enter(d, &self.metrics);
        let (source, outcome) = self.find_blob(t, d).await?;
        Ok((source, outcome, serving))
    }

    async fn find_blob(self: &Arc<Self>, t: &Target, d: &Digest) -> Result<(BlobSource, Outcome)> {
        if let Some(src) = self.committed_blob(d).await? {
            return self.held_hit(t, d, src).await;
        }
        if self.settings.offline {
            return Err(Error::BlobUnknown);
        }
        let mut retried = false;
        loop {
            let Some((fill, joined)) = self.join_or_start_fill(&t.upstream, &t.repo, d) else {
                match self.committed_blob(d).await? {
                    Some(src) => return self.held_hit(t, d, src).await,
                    None => {
                        // Indexed but the file is gone (removed by hand): forget it and fetch.
                        tracing::warn!(digest = %d, "indexed blob has no file; dropping the record");
                        self.store.index.remove_blob(d)?;
                        continue;
                    }
                }
            };
            // A fill for another repository proves nothing about this one.
            let other_origin = fill.upstream != t.upstream.name() || fill.repo != t.repo;
            if joined && other_origin && !self.holds(t, d, Content::Blob).await? {
                return Err(Error::BlobUnknown);
            }
            let outcome = Outcome::Miss.joined(joined);
            let state = fill.started().await;
            match state.phase {
                fill::Phase::Failed(e) => {
                    // Someone else's fill from another repository failing for lack of the blob
                    // there says nothing about ours: try once on our own.
                    if joined && other_origin && !retried && !e.is_upstream_failure() {
                        retried = true;
                        continue;
                    }
                    return Err(e);
                }
                fill::Phase::Committed => {
                    let src = self.committed_blob(d).await?.ok_or(Error::BlobUnknown)?;
                    return Ok((src, outcome));
                }
                // An empty body has no last byte to hold back until verification: the
                // answer waits for the fill instead.
                fill::Phase::Connecting | fill::Phase::Streaming if state.total == Some(0) => {
                    fill.finished().await?;
                    let src = self.committed_blob(d).await?.ok_or(Error::BlobUnknown)?;
                    return Ok((src, outcome));
                }
                fill::Phase::Connecting | fill::Phase::Streaming => {
                    return Ok((
                        BlobSource::Filling {
                            fill,
                            total: state.total,
                        },
                        outcome,
                    ));
                }
            }
        }
    }

    /// A stored blob, served if the repository holds it.
    async fn held_hit(self: &Arc<Self>, t: &Target, d: &Digest, src: BlobSource) -> Result<(BlobSource, Outcome)> {
        if !self.holds(t, d, Content::Blob).await? {
            return Err(Error::BlobUnknown);
        }
        self.store.index.touch(d);
        Ok((src, Outcome::Hit))
    }

    /// Makes sure a blob is cached (for `seed`): joins or starts its fill and waits for the
    /// commit, without streaming it anywhere. Returns its size.
    pub async fn fetch_blob(self: &Arc<Self>, t: &Target, d: &Digest) -> Result<u64> {
        let (source, _, _serving) = self.blob(t, d).await?;
        match source {
            BlobSource::Committed(blob) => Ok(blob.size()),
            BlobSource::Filling { fill, .. } => fill.finished().await,
        }
    }

    /// A blob's size for a HEAD, without downloading it when it is not cached.
    pub async fn blob_size(self: &Arc<Self>, t: &Target, d: &Digest) -> Result<(Option<u64>, Outcome)> {
        self.admit_blob(t, d)?;
        if let Some(size) = blobs::committed_async(&self.store.blobs, d).await?.map(|b| b.size()) {
            if !self.holds(t, d, Content::Blob).await? {
                return Err(Error::BlobUnknown);
            }
            return Ok((Some(size), Outcome::Hit));
        }
        if self.settings.offline {
            return Err(Error::BlobUnknown);
        }
        let in_flight = self.blobs.fills.locked().get(d).cloned();
        if let Some(fill) = in_flight {
            let other_origin = fill.upstream != t.upstream.name() || fill.repo != t.repo;
            if other_origin && !self.holds(t, d, Content::Blob).await? {
                return Err(Error::BlobUnknown);
            }
            let state = fill.started().await;
            if let fill::Phase::Failed(e) = state.phase {
                return Err(e);
            }
            return Ok((state.total, Outcome::Coalesced));
        }
        let up = &t.upstream;
        match up.head_blob(&t.repo, d).await {
            Ok(size) => {
                self.store.index.link(up.name(), &t.repo, &[d])?;
                Ok((size, Outcome::Miss))
            }
            // An upstream that is itself a cache (distribution's proxy mode, Harbor) may know
            // a blob only once it has been asked to GET it: its HEAD 404 is not its last
            // word. Start the fill the client's GET would start; its length answers the HEAD.
            Err(Error::BlobUnknown) => {
                let (src, outcome) = self.find_blob(t, d).await?;
                Ok((src.size(), outcome))
            }
            Err(e) => Err(e),
        }
    }

    /// What the metrics read now rather than count.
    pub fn gauges(&self) -> Gauges {
        Gauges {
            transfers: self.blobs.serving.transfers(),
            fills: self.blobs.fills.locked().len(),
            stored_bytes: self.retention.stored(),
            reconciled: self.is_reconciled(),
            class_bytes: self.retention.class_bytes.locked().clone(),
            max_bytes: self.settings.retention.limits.max_cache_bytes,
            class_max_bytes: (self.settings.retention.classes.iter())
                .filter_map(|c| c.max_bytes.map(|m| (c.name.clone(), m)))
                .collect(),
        }
    }

    /// Downloads in progress, by how far they are.
    pub fn fills_in_progress(&self) -> Vec<FillProgress> {
        let fills: Vec<_> = self.blobs.fills.locked().values().cloned().collect();
        let mut out: Vec<_> = (fills.iter())
            .map(|f| {
                let state = f.subscribe().borrow().clone();
                FillProgress {
                    digest: f.digest.clone(),
                    upstream: f.upstream.clone(),
                    repo: f.repo.clone(),
                    written: state.written,
                    total: state.total,
                }
            })
            .collect();
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        out
    }

    /// Counts a manifest served from `repo` of `upstream`.
    pub fn count_pull(&self, upstream: &str, repo: &str) {
        let mut guard = self.tags.pulls.locked();
        let (pulls, counted) = &mut *guard;
        if let Some(n) = pulls.get_mut(upstream).and_then(|r| r.get_mut(repo)) {
            *n += 1;
        } else if *counted < PULL_COUNTS {
            *counted += 1;
            pulls.entry(upstream.to_owned()).or_default().insert(repo.to_owned(), 1);
        }
    }

    /// The `n` repositories (`upstream/repository`) served most manifests since start,
    /// most first.
    pub fn most_pulled(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<_> = (self.tags.pulls.locked().0.iter())
            .flat_map(|(up, repos)| repos.iter().map(move |(r, n)| (format!("{up}/{r}"), *n)))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    /// Refreshes the per-class byte counts the metrics show.
    pub(crate) fn set_class_bytes(&self, by_class: Vec<(String, u64)>) {
        *self.retention.class_bytes.locked() = by_class;
    }

    /// Counts blobs stored by other means than a fill (an import into a running server).
    pub fn count_stored(&self, bytes: u64) {
        self.retention.add(bytes);
    }

    /// Policy decisions since start, by rule: (allowed, denied).
    pub fn decisions(&self) -> Vec<(String, (u64, u64))> {
        let mut by_rule: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (labels, n) in self.metrics.policy_decisions.series() {
            if let [rule, decision] = &labels[..] {
                let counts = by_rule.entry(rule.clone()).or_default();
                if decision == "allow" {
                    counts.0 += n;
                } else {
                    counts.1 += n;
                }
            }
        }
        by_rule.into_iter().collect()
    }

    /// Completes when a fill asks for a sweep before its interval (the store is crossing
    /// its high watermark).
    pub async fn sweep_requested(&self) {
        self.retention.sweep_now.notified().await;
    }

    /// Writes the hit counters gathered in memory to the index, and makes the index
    /// durable (on the blocking pool).
    pub async fn flush(&self) {
        let index = self.store.index.clone();
        match tokio::task::spawn_blocking(move || index.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "index flush failed"),
            Err(e) => tracing::warn!(error = %e, "index flush failed"),
        }
    }
}

/// Recently served manifests by digest, up to `HOT_BYTES` of them. Digests are immutable,
/// so an entry is never stale; eviction by retention clears the map.
#[derive(Default)]
struct HotManifests(Mutex<(HashMap<Digest, Arc<Manifest>>, usize)>);

const HOT_BYTES: usize = 32 << 20;

impl HotManifests {
    fn get(&self, d: &Digest) -> Option<Arc<Manifest>> {
        self.0.locked().0.get(d).cloned()
    }

    fn put(&self, m: Arc<Manifest>) {
        let mut guard = self.0.locked();
        let (map, bytes) = &mut *guard;
        if *bytes + m.bytes.len() > HOT_BYTES {
            map.clear();
            *bytes = 0;
        }
        *bytes += m.bytes.len();
        map.insert(m.digest.clone(), m);
    }

    fn clear(&self) {
        let mut guard = self.0.locked();
        guard.0.clear();
        guard.1 = 0;
    }
}
