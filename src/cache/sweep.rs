//! Carrying out retention: snapshot the index, plan (`policy::retention::plan`), evict.
//!
//! Eviction removes index records first, so that no new hit can start on what is going,
//! then the files. A blob a transfer is serving is skipped: it is planned around, and
//! checked again right before its file would be removed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::Cache;
use crate::error::{Error, Result};
use crate::oci::Digest;
use crate::policy::retention::{self, BlobItem, Kind, ManifestItem, Plan, Snapshot};
use crate::sync::Locked;

/// Blobs being read by a transfer, with how many transfers read each.
#[derive(Debug, Default)]
pub struct ServingSet(Mutex<HashMap<Digest, usize>>);

/// Marks a blob as being served until dropped, and counts the bytes sent.
pub struct Serving {
    set: Arc<ServingSet>,
    digest: Digest,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Serving {
    /// Counts bytes sent; `from_cache` when read from a committed file, else from a
    /// download in progress.
    pub fn sent(&self, n: usize, from_cache: bool) {
        let source = if from_cache { "cache" } else { "fill" };
        self.metrics.served_bytes.add(&[("source", source)], n as u64);
    }
}

impl ServingSet {
    pub fn enter(self: &Arc<Self>, digest: &Digest, metrics: &Arc<crate::metrics::Metrics>) -> Serving {
        *self.0.locked().entry(digest.clone()).or_insert(0) += 1;
        Serving {
            set: self.clone(),
            digest: digest.clone(),
            metrics: metrics.clone(),
        }
    }

    /// Transfers in progress (one blob may have several).
    pub fn transfers(&self) -> usize {
        self.0.locked().values().sum()
    }

    fn contains(&self, d: &Digest) -> bool {
        self.0.locked().contains_key(d)
    }

    fn all(&self) -> HashSet<Digest> {
        self.0.locked().keys().cloned().collect()
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let mut set = self.set.0.locked();
        if let Some(n) = set.get_mut(&self.digest) {
            *n -= 1;
            if *n == 0 {
                set.remove(&self.digest);
            }
        }
    }
}

/// Per class and per upstream: how much is cached and how much it is used.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Usage {
    pub count: u64,
    pub bytes: u64,
    pub hits: u64,
}

#[derive(Debug, Default)]
pub struct CacheStats {
    pub by_class: Vec<(String, Usage)>,
    pub by_upstream: Vec<(String, Usage)>,
    pub total: Usage,
}

impl Cache {
    /// Whether anything is configured for the sweeper to do.
    pub fn retention_configured(&self) -> bool {
        let r = &self.settings.retention;
        r.limits.max_cache_bytes.is_some()
            || self.tier_has_limits()
            || r.classes
                .iter()
                .any(|c| c.max_idle.is_some() || c.max_age.is_some() || c.max_bytes.is_some())
    }

    /// What the index holds, for the planner. Blocking: it reads every record.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let index = &self.store.index;
        index.flush_access()?;
        let manifests = index
            .manifests_all()?
            .into_iter()
            .map(|(digest, r)| ManifestItem {
                digest,
                media_type: r.media_type,
                artifact_type: r.artifact_type,
                upstream: r.upstream,
                repository: r.repository,
                size: r.size,
                references: r.references,
                subject: r.subject,
                cached_at: r.cached_at,
                last_access: r.last_access,
                hits: r.hits,
            })
            .collect();
        let blobs = index
            .blobs_all()?
            .into_iter()
            .map(|(digest, r)| BlobItem {
                digest,
                media_type: r.media_type,
                upstream: r.upstream,
                size: r.size,
                cached_at: r.cached_at,
                last_access: r.last_access,
                hits: r.hits,
            })
            .collect();
        Ok(Snapshot {
            now: self.clock.now_ms(),
            manifests,
            blobs,
            serving: self.blobs.serving.all(),
        })
    }

    /// Plans a sweep and, unless `dry_run`, carries it out.
    pub async fn sweep(self: &Arc<Self>, dry_run: bool) -> Result<Plan> {
        self.wait_reconciled().await;
        let this = self.clone();
        let plan = tokio::task::spawn_blocking(move || -> Result<Plan> {
            let snap = this.snapshot()?;
            let r = &this.settings.retention;
            let plan = retention::plan(&r.classes, &r.limits, &snap);
            if !dry_run {
                this.evict(&plan)?;
                let snap = this.snapshot()?;
                // Recounted from the records: corrects what increments and decrements missed.
                this.retention.recount(snap.blobs.iter().map(|b| b.size).sum());
                let after = usage(&r.classes, &snap);
                this.set_class_bytes(after.by_class.into_iter().map(|(c, u)| (c, u.bytes)).collect());
            }
            Ok(plan)
        })
        .await
        .map_err(Error::internal)??;
        if !dry_run && !self.settings.offline {
            if let Err(e) = self.upkeep_tier().await {
                tracing::warn!(error = %e, "shared tier upkeep failed");
            }
        }
        Ok(plan)
    }

    fn evict(&self, plan: &Plan) -> Result<()> {
        let index = &self.store.index;
        let mut gone = HashSet::new();
        for e in plan.evictions.iter().filter(|e| e.kind == Kind::Manifest) {
            index.remove_manifest(&e.digest)?;
            gone.insert(e.digest.clone());
            self.metrics.evictions.add(&[("class", &e.class)], 1);
            self.metrics.evicted_bytes.add(&[("class", &e.class)], e.size);
            tracing::info!(digest = %e.digest, class = %e.class, reason = %e.reason, size = e.size, "evicted manifest");
        }
        let tags = if gone.is_empty() {
            0
        } else {
            index.remove_tags_resolving_to(&gone)?
        };
        if !gone.is_empty() {
            self.tags.hot.clear();
        }
        let mut freed = 0;
        for e in plan.evictions.iter().filter(|e| e.kind == Kind::Blob) {
            if self.blobs.serving.contains(&e.digest) {
                tracing::info!(digest = %e.digest, "not evicting a blob being served");
                continue;
            }
            index.remove_blob(&e.digest)?;
            self.store.blobs.remove(&e.digest)?;
            freed += e.size;
            self.metrics.evictions.add(&[("class", &e.class)], 1);
            self.metrics.evicted_bytes.add(&[("class", &e.class)], e.size);
            tracing::info!(digest = %e.digest, class = %e.class, reason = %e.reason, size = e.size, "evicted blob");
        }
        self.retention.take(freed);
        if !plan.evictions.is_empty() {
            tracing::info!(evicted = plan.evictions.len(), tags, freed_bytes = freed, "sweep done");
        }
        Ok(())
    }

    /// Count, bytes and hits per retention class and per upstream. A blob counts in the
    /// class of the first cached manifest that references it, else in its own.
    pub async fn usage(self: &Arc<Self>) -> Result<CacheStats> {
        self.wait_reconciled().await;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let stats = usage(&this.settings.retention.classes, &this.snapshot()?);
            this.set_class_bytes(stats.by_class.iter().map(|(c, u)| (c.clone(), u.bytes)).collect());
            Ok(stats)
        })
        .await
        .map_err(Error::internal)?
    }
}

fn usage(classes: &[retention::Class], snap: &Snapshot) -> CacheStats {
    let class_name = |c: Option<&retention::Class>| c.map_or(retention::DEFAULT_CLASS.to_owned(), |c| c.name.clone());
    let mut by_class: HashMap<String, Usage> = HashMap::new();
    let mut by_upstream: HashMap<String, Usage> = HashMap::new();
    let mut total = Usage::default();
    let mut blob_class: HashMap<&Digest, String> = HashMap::new();
    let mut add = |class: String, upstream: &str, size: u64, hits: u64| {
        for u in [
            by_class.entry(class).or_default(),
            by_upstream.entry(upstream.to_owned()).or_default(),
            &mut total,
        ] {
            u.count += 1;
            u.bytes += size;
            u.hits += hits;
        }
    };
    for m in &snap.manifests {
        let class = class_name(retention::class_of_manifest(classes, m));
        for r in &m.references {
            blob_class.entry(r).or_insert_with(|| class.clone());
        }
        add(class, &m.upstream, m.size, m.hits);
    }
    for b in &snap.blobs {
        let class = blob_class
            .get(&b.digest)
            .cloned()
            .unwrap_or_else(|| class_name(retention::class_of_blob(classes, b)));
        let upstream = if b.upstream.is_empty() {
            "(adopted)"
        } else {
            &b.upstream
        };
        add(class, upstream, b.size, b.hits);
    }
    let mut by_class: Vec<_> = by_class.into_iter().collect();
    by_class.sort_by(|a, b| a.0.cmp(&b.0));
    let mut by_upstream: Vec<_> = by_upstream.into_iter().collect();
    by_upstream.sort_by(|a, b| a.0.cmp(&b.0));
    CacheStats {
        by_class,
        by_upstream,
        total,
    }
}
