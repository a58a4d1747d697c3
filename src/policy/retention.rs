//! Retention: how long each kind of content stays, and what goes when the disk fills.
//!
//! `plan` is a pure function from a snapshot of the index to the list of what to evict and
//! why; `cache::sweep` takes the snapshot and carries the plan out. The rules:
//! - a manifest belongs to the first `[[retention]]` class its media type, artifact type,
//!   upstream and repository match, else to the default class (no limits of its own);
//! - `pin = true` content never goes; `max_idle` and `max_age` expire content;
//! - referrers (signatures, SBOMs) follow their subject unless their own class pins them;
//!   manifests listed in an index stay while the index stays;
//! - a blob stays while any manifest that stays references it (so a shared blob is kept as
//!   long as the most generous of them); a blob no cached manifest references is judged by
//!   the class its own media type falls in;
//! - `max_bytes` caps a class, and `max_cache_bytes` the whole cache: least recently used
//!   content goes first, down to the low watermark once the high one is crossed;
//! - a blob a transfer is serving is never evicted.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::glob::Globs;
use crate::oci::Digest;

pub const DEFAULT_CLASS: &str = "default";

#[derive(Debug, Clone, Default)]
pub struct Class {
    pub name: String,
    pub media_type: Option<Globs>,
    pub artifact_type: Option<Globs>,
    pub upstream: Option<Globs>,
    pub repository: Option<Globs>,
    pub max_idle: Option<Duration>,
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
    pub pin: bool,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_cache_bytes: Option<u64>,
    /// Percent of `max_cache_bytes` that starts an eviction…
    pub high_watermark: u8,
    /// …and the percent it evicts down to.
    pub low_watermark: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_cache_bytes: None,
            high_watermark: 90,
            low_watermark: 80,
        }
    }
}

impl Limits {
    pub fn high_bytes(&self) -> Option<u64> {
        self.max_cache_bytes.map(|m| m / 100 * self.high_watermark as u64)
    }

    fn low_bytes(&self) -> Option<u64> {
        self.max_cache_bytes.map(|m| m / 100 * self.low_watermark as u64)
    }
}

#[derive(Debug, Clone)]
pub struct ManifestItem {
    pub digest: Digest,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub upstream: String,
    pub repository: String,
    pub size: u64,
    pub references: Vec<Digest>,
    pub subject: Option<Digest>,
    pub cached_at: u64,
    pub last_access: u64,
    pub hits: u64,
}

#[derive(Debug, Clone)]
pub struct BlobItem {
    pub digest: Digest,
    pub media_type: Option<String>,
    pub upstream: String,
    pub size: u64,
    pub cached_at: u64,
    pub last_access: u64,
    pub hits: u64,
}

#[derive(Debug, Default)]
pub struct Snapshot {
    /// Milliseconds since the epoch.
    pub now: u64,
    pub manifests: Vec<ManifestItem>,
    pub blobs: Vec<BlobItem>,
    /// Blobs a transfer is reading right now.
    pub serving: HashSet<Digest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Manifest,
    Blob,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub digest: Digest,
    pub kind: Kind,
    pub class: String,
    pub reason: String,
    pub idle_ms: u64,
    pub size: u64,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub evictions: Vec<Eviction>,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl Class {
    fn matches_manifest(&self, m: &ManifestItem) -> bool {
        let f = |g: &Option<Globs>, v: Option<&str>| g.as_ref().is_none_or(|g| v.is_some_and(|v| g.matches(v)));
        f(&self.media_type, Some(&m.media_type))
            && f(&self.artifact_type, m.artifact_type.as_deref())
            && f(&self.upstream, Some(&m.upstream))
            && f(&self.repository, Some(&m.repository))
    }

    /// A blob record knows its media type and upstream only.
    fn matches_blob(&self, b: &BlobItem) -> bool {
        let f = |g: &Option<Globs>, v: Option<&str>| g.as_ref().is_none_or(|g| v.is_some_and(|v| g.matches(v)));
        self.artifact_type.is_none()
            && self.repository.is_none()
            && f(&self.media_type, b.media_type.as_deref())
            && f(&self.upstream, Some(&b.upstream))
    }

    /// Why content of this class with these times has expired, if it has.
    fn expired(&self, now: u64, cached_at: u64, last_access: u64) -> Option<String> {
        let idle = now.saturating_sub(last_access);
        let age = now.saturating_sub(cached_at);
        if let Some(max) = self.max_idle.filter(|m| idle > m.as_millis() as u64) {
            return Some(format!("max_idle {} exceeded", humantime::format_duration(max)));
        }
        if let Some(max) = self.max_age.filter(|m| age > m.as_millis() as u64) {
            return Some(format!("max_age {} exceeded", humantime::format_duration(max)));
        }
        None
    }
}

pub fn class_of_manifest<'a>(classes: &'a [Class], m: &ManifestItem) -> Option<&'a Class> {
    classes.iter().find(|c| c.matches_manifest(m))
}

pub fn class_of_blob<'a>(classes: &'a [Class], b: &BlobItem) -> Option<&'a Class> {
    classes.iter().find(|c| c.matches_blob(b))
}

/// Works out the plan; see the module documentation for the rules.
pub fn plan(classes: &[Class], limits: &Limits, snap: &Snapshot) -> Plan {
    let mut p = Planner::new(classes, snap);
    p.expire();
    p.enforce_class_quotas();
    p.enforce_cache_limit(limits);
    let bytes_before = p.total_bytes(true);
    let bytes_after = p.total_bytes(false);
    Plan {
        evictions: p.evictions,
        bytes_before,
        bytes_after,
    }
}

struct Planner<'a> {
    classes: &'a [Class],
    snap: &'a Snapshot,
    m_class: Vec<Option<usize>>,
    b_class: Vec<Option<usize>>,
    m_kept: Vec<bool>,
    b_kept: Vec<bool>,
    /// Per manifest: the blobs it references.
    m_blobs: Vec<Vec<usize>>,
    /// Per manifest: the manifests that follow it (its index children, its referrers).
    followers: Vec<Vec<usize>>,
    /// Per manifest: whether it is a referrer of a cached subject.
    is_referrer: Vec<bool>,
    /// Per manifest: the manifests it follows (the indexes listing it, its subject).
    leaders: Vec<Vec<usize>>,
    /// Per blob: how many kept manifests reference it, and whether any manifest does.
    b_refs: Vec<usize>,
    b_referenced: Vec<bool>,
    /// Kept manifests of a class referencing a blob: the blob counts in that class.
    class_refs: HashMap<(usize, usize), usize>,
    /// Bytes each class holds, and all kept bytes, kept up to date as content is evicted.
    usage: Vec<u64>,
    total: u64,
    evictions: Vec<Eviction>,
}

impl<'a> Planner<'a> {
    fn new(classes: &'a [Class], snap: &'a Snapshot) -> Planner<'a> {
        let mi: HashMap<&Digest, usize> = snap.manifests.iter().enumerate().map(|(i, m)| (&m.digest, i)).collect();
        let bi: HashMap<&Digest, usize> = snap.blobs.iter().enumerate().map(|(i, b)| (&b.digest, i)).collect();
        let (nm, nb) = (snap.manifests.len(), snap.blobs.len());
        let mut p = Planner {
            classes,
            snap,
            m_class: snap
                .manifests
                .iter()
                .map(|m| classes.iter().position(|c| c.matches_manifest(m)))
                .collect(),
            b_class: snap
                .blobs
                .iter()
                .map(|b| classes.iter().position(|c| c.matches_blob(b)))
                .collect(),
            m_kept: vec![true; nm],
            b_kept: vec![true; nb],
            m_blobs: vec![Vec::new(); nm],
            followers: vec![Vec::new(); nm],
            is_referrer: vec![false; nm],
            leaders: vec![Vec::new(); nm],
            b_refs: vec![0; nb],
            b_referenced: vec![false; nb],
            class_refs: HashMap::new(),
            usage: vec![0; classes.len()],
            total: 0,
            evictions: Vec::new(),
        };
        for (i, m) in snap.manifests.iter().enumerate() {
            for r in &m.references {
                if let Some(&c) = mi.get(r) {
                    if c != i {
                        p.followers[i].push(c);
                        p.leaders[c].push(i);
                    }
                } else if let Some(&b) = bi.get(r) {
                    p.m_blobs[i].push(b);
                    p.b_refs[b] += 1;
                    p.b_referenced[b] = true;
                    if let Some(c) = p.m_class[i] {
                        *p.class_refs.entry((c, b)).or_insert(0) += 1;
                    }
                }
            }
            if let Some(&s) = m.subject.as_ref().and_then(|s| mi.get(s)) {
                if s != i {
                    p.followers[s].push(i);
                    p.leaders[i].push(s);
                    p.is_referrer[i] = true;
                }
            }
        }
        p.total = snap.manifests.iter().map(|m| m.size).sum::<u64>() + snap.blobs.iter().map(|b| b.size).sum::<u64>();
        for (i, m) in snap.manifests.iter().enumerate() {
            if let Some(c) = p.m_class[i] {
                p.usage[c] += m.size;
            }
        }
        for &(c, b) in p.class_refs.keys() {
            p.usage[c] += snap.blobs[b].size;
        }
        for (b, blob) in snap.blobs.iter().enumerate() {
            if let (false, Some(c)) = (p.b_referenced[b], p.b_class[b]) {
                p.usage[c] += blob.size;
            }
        }
        p
    }

    fn m_class(&self, i: usize) -> Option<&'a Class> {
        self.m_class[i].map(|c| &self.classes[c])
    }

    fn b_class(&self, b: usize) -> Option<&'a Class> {
        self.b_class[b].map(|c| &self.classes[c])
    }

    fn m_pinned(&self, i: usize) -> bool {
        self.m_class(i).is_some_and(|c| c.pin)
    }

    fn b_protected(&self, b: usize) -> bool {
        self.b_class(b).is_some_and(|c| c.pin) || self.snap.serving.contains(&self.snap.blobs[b].digest)
    }

    fn class_name(c: Option<&Class>) -> String {
        c.map_or(DEFAULT_CLASS.to_owned(), |c| c.name.clone())
    }

    /// Expiry by `max_idle` / `max_age`: manifests that lead nothing are judged by their own
    /// class; followers stay with their leaders (index children also on their own account).
    fn expire(&mut self) {
        let now = self.snap.now;
        let mut order: Vec<usize> = (0..self.snap.manifests.len()).collect();
        // Leaders before followers: a follower's fate depends on its leaders'.
        order.sort_by_key(|&i| self.depth(i, 0));
        for i in order {
            if !self.m_kept[i] || self.m_pinned(i) {
                continue;
            }
            let m = &self.snap.manifests[i];
            let own = self.m_class(i).and_then(|c| c.expired(now, m.cached_at, m.last_access));
            let leaders_kept = self.leaders[i].iter().any(|&l| self.m_kept[l]);
            let reason = if self.leaders[i].is_empty() {
                own
            } else if self.is_referrer[i] {
                (!leaders_kept).then(|| "its subject was evicted".to_owned())
            } else if leaders_kept {
                None
            } else {
                own.map(|r| format!("{r}, and no index listing it stays"))
            };
            if let Some(reason) = reason {
                self.evict_manifest(i, reason);
            }
        }
        for b in 0..self.snap.blobs.len() {
            if self.b_kept[b] && !self.b_referenced[b] && !self.b_protected(b) {
                let blob = &self.snap.blobs[b];
                if let Some(reason) = self
                    .b_class(b)
                    .and_then(|c| c.expired(now, blob.cached_at, blob.last_access))
                {
                    self.evict_blob(b, reason);
                }
            }
        }
    }

    fn depth(&self, i: usize, guard: usize) -> usize {
        if guard > 16 {
            return guard;
        }
        self.leaders[i]
            .iter()
            .map(|&l| 1 + self.depth(l, guard + 1))
            .max()
            .unwrap_or(0)
    }

    /// Evicts a manifest, what follows it and is not pinned, and the blobs nothing kept
    /// references any more.
    fn evict_manifest(&mut self, i: usize, reason: String) {
        if !self.m_kept[i] || self.m_pinned(i) {
            return;
        }
        self.m_kept[i] = false;
        let m = &self.snap.manifests[i];
        self.total -= m.size;
        if let Some(c) = self.m_class[i] {
            self.usage[c] -= m.size;
        }
        self.evictions.push(Eviction {
            digest: m.digest.clone(),
            kind: Kind::Manifest,
            class: Self::class_name(self.m_class(i)),
            reason: reason.clone(),
            idle_ms: self.snap.now.saturating_sub(m.last_access),
            size: m.size,
        });
        for b in self.m_blobs[i].clone() {
            if let Some(c) = self.m_class[i] {
                let refs = self.class_refs.get_mut(&(c, b)).expect("counted when built");
                *refs -= 1;
                if *refs == 0 && self.b_kept[b] {
                    self.usage[c] -= self.snap.blobs[b].size;
                }
            }
            self.b_refs[b] -= 1;
            if self.b_refs[b] == 0 && self.b_kept[b] && !self.b_protected(b) {
                self.evict_blob(b, format!("no longer referenced ({} evicted)", m.digest));
            }
        }
        for f in self.followers[i].clone() {
            let other_leader = self.leaders[f].iter().any(|&l| self.m_kept[l]);
            if self.is_referrer[f] || !other_leader {
                let why = if self.is_referrer[f] {
                    "its subject was evicted"
                } else {
                    "the index listing it was evicted"
                };
                self.evict_manifest(f, why.to_owned());
            }
        }
    }

    fn evict_blob(&mut self, b: usize, reason: String) {
        self.b_kept[b] = false;
        let blob = &self.snap.blobs[b];
        self.total -= blob.size;
        if let (false, Some(c)) = (self.b_referenced[b], self.b_class[b]) {
            self.usage[c] -= blob.size;
        }
        self.evictions.push(Eviction {
            digest: blob.digest.clone(),
            kind: Kind::Blob,
            class: Self::class_name(self.b_class(b)),
            reason,
            idle_ms: self.snap.now.saturating_sub(blob.last_access),
            size: blob.size,
        });
    }

    /// Bytes held by one class, or by the whole cache when `None`.
    fn bytes(&self, class: Option<usize>) -> u64 {
        class.map_or(self.total, |c| self.usage[c])
    }

    fn total_bytes(&self, before: bool) -> u64 {
        if before {
            self.snap.manifests.iter().map(|m| m.size).sum::<u64>()
                + self.snap.blobs.iter().map(|b| b.size).sum::<u64>()
        } else {
            self.total
        }
    }

    /// Least recently used first: kept, unpinned manifests and unreferenced blobs of `class`
    /// (any class when `None`).
    fn candidates(&self, class: Option<usize>) -> Vec<(u64, Kind, usize)> {
        let in_class = |c: Option<usize>| class.is_none() || c == class;
        let mut c: Vec<(u64, Kind, usize)> = Vec::new();
        for (i, m) in self.snap.manifests.iter().enumerate() {
            if self.m_kept[i] && !self.m_pinned(i) && in_class(self.m_class[i]) {
                c.push((m.last_access, Kind::Manifest, i));
            }
        }
        for (b, blob) in self.snap.blobs.iter().enumerate() {
            if self.b_kept[b] && !self.b_referenced[b] && !self.b_protected(b) && in_class(self.b_class[b]) {
                c.push((blob.last_access, Kind::Blob, b));
            }
        }
        c.sort_by_key(|(t, kind, i)| (*t, *kind == Kind::Blob, *i));
        c
    }

    fn evict_lru(&mut self, class: Option<usize>, target: u64, why: &str) {
        for (_, kind, i) in self.candidates(class) {
            if self.bytes(class) <= target {
                return;
            }
            match kind {
                Kind::Manifest => self.evict_manifest(i, why.to_owned()),
                Kind::Blob if self.b_kept[i] => self.evict_blob(i, why.to_owned()),
                Kind::Blob => {}
            }
        }
    }

    fn enforce_class_quotas(&mut self) {
        for (ci, class) in self.classes.iter().enumerate() {
            if let Some(max) = class.max_bytes {
                if self.bytes(Some(ci)) > max {
                    let why = format!("class {} over max_bytes ({max} bytes), least recently used", class.name);
                    self.evict_lru(Some(ci), max, &why);
                }
            }
        }
    }

    fn enforce_cache_limit(&mut self, limits: &Limits) {
        let (Some(high), Some(low)) = (limits.high_bytes(), limits.low_bytes()) else {
            return;
        };
        if self.bytes(None) > high {
            let why = format!(
                "cache over {}% of max_cache_bytes, least recently used",
                limits.high_watermark
            );
            self.evict_lru(None, low, &why);
        }
    }
}

#[cfg(test)]
mod tests;
