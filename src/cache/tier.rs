//! The shared tier's upkeep, with each sweep: every node reports which blobs it served and
//! when (`access/<node>.json` in the bucket); the one node that owns the tier's sweep (in a
//! cluster, the owner of a well-known key; alone, this node) merges the reports, lists the
//! bucket and deletes what `[storage] max_idle` and `max_bytes` say must go
//! (`policy::tier`). Nodes' local tiers evict on their own.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::Cache;
use crate::error::{Error, Result};
use crate::policy::tier::{self, Item, TierLimits};
use crate::store::shared::Shared;

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
    /// Hands the cache the shared tier (once, as the app is assembled).
    pub fn set_tier(&self, tier: Tier) {
        let _ = self.tier.set(tier);
    }

    pub fn has_tier(&self) -> bool {
        self.tier.get().is_some()
    }

    /// This node's access report, then, on the sweeping node, the tier's eviction.
    pub(super) async fn upkeep_tier(self: &Arc<Self>) -> Result<Option<TierSwept>> {
        let Some(t) = self.tier.get() else {
            return Ok(None);
        };
        self.report_access(t).await?;
        if !t.sweeper || !t.limits.any() {
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
