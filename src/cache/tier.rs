//! The shared tier beside the blobs: what a node with an empty disk needs to serve them
//! when neither the owners nor the upstream answer (manifests, the repositories that hold
//! each digest, tags as last resolved), and the tier's upkeep.
//!
//! - A manifest this node fetched from the upstream goes up with a link recording that its
//!   repository holds it, and, fetched by tag, the tag's record; a blob's link goes with
//!   the blob (`share_manifest`, the fill's `share`).
//! - A tag the upstream cannot resolve, with no record here, is served stale from the
//!   tier's record (`shared_tag`), within `max_staleness` of its validation.
//! - With each sweep every node reports which blobs it served and when
//!   (`access/<node>.json`); the one node that owns the tier's sweep (in a cluster, the
//!   owner of a well-known key; alone, this node) merges the reports, lists the bucket and
//!   deletes what `[storage] max_idle` and `max_bytes` say must go (`policy::tier`).
//!   Nodes' local tiers evict on their own.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::{Cache, ManifestAnswer, Target};
use crate::error::{Error, Result};
use crate::oci::media::AcceptClass;
use crate::oci::Digest;
use crate::policy::tier::{self, Item, TierLimits};
use crate::store::index::TagRecord;
use crate::store::shared::Shared;

/// A tag as some node last resolved it from the upstream, in the tier.
#[derive(serde::Serialize, serde::Deserialize)]
struct SharedTag {
    digest: Digest,
    media_type: String,
    validated_at: u64,
}

/// The key whose owner sweeps the tier.
pub const SWEEP_KEY: &str = "entrepot/shared-tier-retention";

/// What this node does for the tier.
pub struct Tier {
    pub shared: Arc<Shared>,
    /// This node's name in the bucket's access reports.
    pub node: String,
    /// Whether this node sweeps.
    pub sweeper: bool,
    pub limits: TierLimits,
}

/// What a sweep of the tier did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TierSwept {
    pub objects: usize,
    pub bytes: u64,
    pub evicted: usize,
    pub freed: u64,
}

impl Cache {
    /// Shares, in the background, a manifest fetched from the upstream: its bytes, the link
    /// from its repository, and the tag it was fetched by.
    ///
    /// The repository's links go to what the manifest references too: the upstream serving
    /// a manifest in a repository vouches that the repository holds what it lists.
    pub(super) fn share_manifest(
        &self,
        t: &Target,
        tag: Option<&str>,
        d: &Digest,
        references: Vec<Digest>,
        media_type: &str,
        bytes: &Bytes,
    ) {
        let Some(shared) = t.upstream.shared().cloned() else {
            return;
        };
        let (up, repo, d, media_type, bytes) = (
            t.upstream.name().to_owned(),
            t.repo.clone(),
            d.clone(),
            media_type.to_owned(),
            bytes.clone(),
        );
        let tag = tag.map(|tag| {
            let record = SharedTag {
                digest: d.clone(),
                media_type: media_type.clone(),
                validated_at: self.clock.now_ms(),
            };
            (tag.to_owned(), serde_json::to_vec(&record).unwrap_or_default())
        });
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let shared_all = async {
                // References first, the manifest's own link last: whoever finds the link
                // finds what it vouches for.
                for r in &references {
                    shared.put_link(&up, &repo, r).await?;
                }
                shared.put_manifest(&d, &media_type, bytes).await?;
                shared.put_link(&up, &repo, &d).await?;
                if let Some((tag, record)) = tag {
                    shared.put_tag(&up, &repo, &tag, Bytes::from(record)).await?;
                }
                std::io::Result::Ok(())
            };
            let result = match shared_all.await {
                Ok(()) => "uploaded",
                Err(e) => {
                    tracing::warn!(digest = %d, error = %e, "manifest not shared");
                    "error"
                }
            };
            metrics
                .shared_tier
                .add(&[("op", "upload_manifest"), ("result", result)], 1);
        });
    }

    /// Shares, in the background, that the repository holds these digests (the upstream
    /// confirmed it).
    pub(super) fn share_links(&self, t: &Target, digests: Vec<Digest>) {
        let Some(shared) = t.upstream.shared().cloned() else {
            return;
        };
        let (up, repo) = (t.upstream.name().to_owned(), t.repo.clone());
        tokio::spawn(async move {
            for d in &digests {
                if let Err(e) = shared.put_link(&up, &repo, d).await {
                    tracing::warn!(digest = %d, error = %e, "repository link not shared");
                    return;
                }
            }
        });
    }

    /// With `[storage]`, the tag as some node last resolved it, served stale: for a node
    /// with no record of its own when the upstream cannot answer. `e` is the upstream's
    /// failure, returned when the tier cannot help.
    pub(super) async fn shared_tag(
        self: &Arc<Self>,
        t: &Target,
        tag: &str,
        class: AcceptClass,
        e: Error,
    ) -> Result<ManifestAnswer> {
        let Some(shared) = t.upstream.shared() else {
            return Err(e);
        };
        let record = match shared.get_tag(t.upstream.name(), &t.repo, tag).await {
            Ok(Some(bytes)) => serde_json::from_slice::<SharedTag>(&bytes).ok(),
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(upstream = %t.upstream.name(), repo = %t.repo, tag, error = %err, "shared storage unreadable");
                None
            }
        };
        let Some(record) = record.filter(|r| class.accepts(&r.media_type)) else {
            return Err(e);
        };
        let Ok(answer) = self.lookup_or_fetch_by_digest(t, &record.digest).await else {
            return Err(e);
        };
        let record = TagRecord {
            digest: record.digest,
            media_type: record.media_type,
            fetched_at: record.validated_at,
            validated_at: record.validated_at,
        };
        self.store
            .index
            .put_tag(t.upstream.name(), &t.repo, tag, &AcceptClass::ALL.key(), &record)?;
        self.serve_stale(t, tag, record, answer.manifest, e)
    }

    /// Hands the cache the shared tier (once, as the app is assembled).
    pub fn set_tier(&self, tier: Tier) {
        let _ = self.tier.set(tier);
    }

    /// Whether the shared tier is swept (`[storage] max_bytes` or `max_idle`).
    pub fn tier_has_limits(&self) -> bool {
        self.tier.get().is_some_and(|t| t.limits.any())
    }

    /// This node's access report, then, on the sweeping node, the tier's eviction.
    pub(super) async fn upkeep_tier(self: &Arc<Self>) -> Result<Option<TierSwept>> {
        // Without limits nobody sweeps, and nobody needs reports.
        let Some(t) = self.tier.get().filter(|t| t.limits.any()) else {
            return Ok(None);
        };
        self.report_access(t).await?;
        if !t.sweeper {
            return Ok(None);
        }
        self.sweep_tier(t).await.map(Some)
    }

    async fn report_access(self: &Arc<Self>, t: &Tier) -> Result<()> {
        let this = self.clone();
        let report = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
            this.store.index.flush_access()?;
            let last: HashMap<String, u64> = this
                .store
                .index
                .blobs_all()?
                .into_iter()
                .map(|(d, r)| (d.to_string(), r.last_access))
                .collect();
            serde_json::to_vec(&last).map_err(Error::internal)
        })
        .await
        .map_err(Error::internal)??;
        t.shared
            .put_small(&format!("access/{}.json", t.node), Bytes::from(report))
            .await?;
        Ok(())
    }

    async fn sweep_tier(&self, t: &Tier) -> Result<TierSwept> {
        let objects = t.shared.list("blobs/").await?;
        let mut reports = Vec::new();
        for r in t.shared.list("access/").await? {
            let report = match t.shared.get_small(&r.key).await {
                Ok(Some(bytes)) => serde_json::from_slice::<HashMap<String, u64>>(&bytes).map_err(|e| e.to_string()),
                Ok(None) => continue,
                Err(e) => Err(e.to_string()),
            };
            match report {
                Ok(report) => reports.push(report),
                // Its blobs age from their upload: the sweep goes on without it.
                Err(e) => tracing::warn!(key = %r.key, error = %e, "unreadable access report; ignored"),
            }
        }
        let used = tier::merge_reports(&reports);
        let items: Vec<Item> = objects
            .iter()
            .map(|o| {
                let digest = o.key.strip_prefix("blobs/").unwrap_or(&o.key).replacen('/', ":", 1);
                Item {
                    size: o.size,
                    last_used: used.get(&digest).copied().unwrap_or(0).max(o.written_ms),
                }
            })
            .collect();
        let mut swept = TierSwept {
            objects: objects.len(),
            bytes: items.iter().map(|i| i.size).sum(),
            ..Default::default()
        };
        for i in tier::evictions(&items, &t.limits, self.clock.now_ms()) {
            t.shared.delete(&objects[i].key).await?;
            swept.evicted += 1;
            swept.freed += objects[i].size;
            self.metrics
                .shared_tier
                .add(&[("op", "evict"), ("result", "deleted")], 1);
            tracing::info!(key = %objects[i].key, size = objects[i].size, "evicted from the shared tier");
        }
        tracing::info!(
            objects = swept.objects,
            bytes = swept.bytes,
            evicted = swept.evicted,
            freed = swept.freed,
            "shared tier swept"
        );
        Ok(swept)
    }
}
