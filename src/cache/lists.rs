//! Tag lists and referrers: fetched whole from the upstream, kept in the index, served
//! sorted and filtered by the HTTP layer, and served from the index when the upstream fails.

use std::sync::Arc;

use super::{Cache, Outcome, Target};
use crate::clock::age;
use crate::error::{Error, Result};
use crate::oci::manifest::{self, Descriptor};
use crate::oci::media::{self, AcceptClass};
use crate::oci::Digest;
use crate::store::index::{ReferrerList, TagList};

/// The most pages of a paginated tag list followed upstream.
const MAX_TAG_PAGES: usize = 1000;

#[derive(Debug, Clone)]
pub struct ListAnswer<T> {
    pub items: T,
    pub outcome: Outcome,
    pub warning: Option<String>,
}

impl<T> ListAnswer<T> {
    fn new(items: T, outcome: Outcome) -> Self {
        ListAnswer {
            items,
            outcome,
            warning: None,
        }
    }

    fn stale(items: T, fetched_ago: Option<u64>, error: &Error) -> Self {
        let when = fetched_ago.map_or("never fetched".to_owned(), |ago| format!("fetched {} ago", age(ago)));
        tracing::warn!(%error, %when, "upstream failed; serving the cached list");
        ListAnswer {
            items,
            outcome: Outcome::Stale,
            warning: Some(format!("299 entrepot \"upstream unavailable; list {when}\"")),
        }
    }
}

impl Cache {
    fn is_fresh(&self, fetched_at: u64) -> bool {
        self.clock.now_ms().saturating_sub(fetched_at) < self.settings.tag_ttl.as_millis() as u64
    }

    fn within_staleness(&self, fetched_at: u64) -> bool {
        self.clock.now_ms().saturating_sub(fetched_at) <= self.settings.max_staleness.as_millis() as u64
    }

    /// Every tag of a repository, sorted.
    pub async fn tags(self: &Arc<Self>, t: &Target) -> Result<ListAnswer<Vec<String>>> {
        self.admit_repository(t)?;
        let up = t.upstream.name();
        let cached = self.store.index.tag_list(up, &t.repo)?;
        let local = || -> Result<Vec<String>> {
            let mut tags = self.store.index.known_tags(up, &t.repo)?;
            if let Some(c) = &cached {
                tags.extend(c.tags.iter().cloned());
            }
            tags.sort();
            tags.dedup();
            Ok(tags)
        };
        if self.settings.offline {
            let tags = local()?;
            if tags.is_empty() && cached.is_none() {
                return Err(Error::NameUnknown(t.repo.clone()));
            }
            return Ok(ListAnswer::new(tags, Outcome::Hit));
        }
        if let Some(c) = cached.as_ref().filter(|c| self.is_fresh(c.fetched_at)) {
            return Ok(ListAnswer::new(c.tags.clone(), Outcome::Hit));
        }
        let key = format!("{up}\0{}", t.repo);
        let (this, t2) = (self.clone(), t.clone());
        let (result, joined) = self
            .tags
            .tag_lists
            .run(key, async move { this.fetch_tags(&t2).await })
            .await;
        match result {
            Ok(a) => Ok(ListAnswer {
                outcome: a.outcome.joined(joined),
                ..a
            }),
            Err(e)
                if e.is_upstream_failure() && cached.as_ref().is_none_or(|c| self.within_staleness(c.fetched_at)) =>
            {
                let tags = local()?;
                if tags.is_empty() {
                    return Err(e);
                }
                let ago = cached.map(|c| self.clock.now_ms().saturating_sub(c.fetched_at));
                Ok(ListAnswer::stale(tags, ago, &e))
            }
            Err(e) => Err(e),
        }
    }

    async fn fetch_tags(&self, t: &Target) -> Result<ListAnswer<Vec<String>>> {
        let up = &t.upstream;
        let mut tags = Vec::new();
        let mut next = None;
        for _ in 0..MAX_TAG_PAGES {
            let page = up.get_tag_page(&t.repo, next.as_deref()).await?;
            tags.extend(page.tags.into_iter().filter(|t| crate::oci::name::is_valid_tag(t)));
            match page.next {
                Some(n) => next = Some(n),
                None => break,
            }
        }
        tags.sort();
        tags.dedup();
        self.store.index.put_tag_list(
            up.name(),
            &t.repo,
            &TagList {
                fetched_at: self.clock.now_ms(),
                tags: tags.clone(),
            },
        )?;
        Ok(ListAnswer::new(tags, Outcome::Miss))
    }

    /// Every repository with a tag or a manifest cached, as `<upstream>/<repository>`, sorted.
    pub async fn catalog(self: &Arc<Self>) -> Result<Arc<Vec<String>>> {
        // One computation at a time, reused until a tag or manifest record appears or goes:
        // a client asking for the catalog in a loop costs one scan, not one per request.
        let mut cached = self.tags.catalog.lock().await;
        let generation = self.store.index.names_generation();
        if let Some((_, names)) = cached.as_ref().filter(|(at, _)| *at == generation) {
            return Ok(names.clone());
        }
        let this = self.clone();
        let names = tokio::task::spawn_blocking(move || -> Result<Vec<String>> {
            let index = &this.store.index;
            let mut names: Vec<String> = index
                .tags_all()?
                .into_iter()
                .map(|t| format!("{}/{}", t.upstream, t.repo))
                .collect();
            names.extend(
                index
                    .manifests_all()?
                    .into_iter()
                    .filter(|(_, m)| !m.upstream.is_empty())
                    .map(|(_, m)| format!("{}/{}", m.upstream, m.repository)),
            );
            names.sort();
            names.dedup();
            Ok(names)
        })
        .await
        .map_err(Error::internal)??;
        let names = Arc::new(names);
        *cached = Some((generation, names.clone()));
        Ok(names)
    }

    /// The manifests that name `subject` as their subject, unfiltered.
    pub async fn referrers(self: &Arc<Self>, t: &Target, subject: &Digest) -> Result<ListAnswer<Vec<Descriptor>>> {
        self.admit_repository(t)?;
        let up = t.upstream.name();
        let cached = self.store.index.referrers(up, &t.repo, subject)?;
        let with_local = |mut list: Vec<Descriptor>| -> Result<Vec<Descriptor>> {
            for d in self.local_referrers(t, subject)? {
                if !list.iter().any(|x| x.digest == d.digest) {
                    list.push(d);
                }
            }
            Ok(list)
        };
        if self.settings.offline {
            return Ok(ListAnswer::new(
                with_local(cached.map(|c| c.descriptors).unwrap_or_default())?,
                Outcome::Hit,
            ));
        }
        if let Some(c) = cached.as_ref().filter(|c| self.is_fresh(c.fetched_at)) {
            return Ok(ListAnswer::new(with_local(c.descriptors.clone())?, Outcome::Hit));
        }
        let key = format!("{up}\0{}\0{subject}", t.repo);
        let (this, t2, s2) = (self.clone(), t.clone(), subject.clone());
        let (result, joined) = self
            .tags
            .referrers
            .run(key, async move { this.fetch_referrers(&t2, &s2).await })
            .await;
        match result {
            Ok(a) => Ok(ListAnswer {
                items: with_local(a.items)?,
                outcome: a.outcome.joined(joined),
                warning: None,
            }),
            Err(e) if e.is_upstream_failure() => {
                let ago = cached
                    .as_ref()
                    .map(|c| self.clock.now_ms().saturating_sub(c.fetched_at));
                Ok(ListAnswer::stale(
                    with_local(cached.map(|c| c.descriptors).unwrap_or_default())?,
                    ago,
                    &e,
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// Asks the referrers API; a registry without one (404, or another 4xx for an unknown
    /// route) is asked for the referrers tag schema (`<alg>-<hex>`) instead.
    async fn fetch_referrers(&self, t: &Target, subject: &Digest) -> Result<ListAnswer<Vec<Descriptor>>> {
        let up = &t.upstream;
        let list = match up.get_referrers(&t.repo, subject).await? {
            Some(body) => {
                manifest::parse(&body, Some(media::OCI_INDEX))
                    .map_err(|e| up.bad(format!("referrers: {e}")))?
                    .manifests
            }
            None => {
                let tag = format!("{}-{}", subject.algorithm().name(), subject.hex());
                match self
                    .fetch_manifest(t, &tag, AcceptClass::from_accept([media::OCI_INDEX]), None)
                    .await
                {
                    Ok(m) => {
                        manifest::parse(&m.bytes, Some(&m.media_type))
                            .map_err(|e| up.bad(e.to_string()))?
                            .manifests
                    }
                    Err(Error::ManifestUnknown(_) | Error::NotAcceptable(_)) => Vec::new(),
                    Err(e) => return Err(e),
                }
            }
        };
        self.store.index.put_referrers(
            up.name(),
            &t.repo,
            subject,
            &ReferrerList {
                fetched_at: self.clock.now_ms(),
                descriptors: list.clone(),
            },
        )?;
        Ok(ListAnswer::new(list, Outcome::Miss))
    }

    /// Referrers of `subject` in this repository that are cached here, as descriptors.
    fn local_referrers(&self, t: &Target, subject: &Digest) -> Result<Vec<Descriptor>> {
        let mut out = Vec::new();
        for d in self.store.index.local_referrers(subject)? {
            let Some((rec, bytes)) = self.store.index.manifest(&d)? else {
                continue;
            };
            if rec.upstream != t.upstream.name() || rec.repository != t.repo {
                continue;
            }
            let annotations = manifest::parse(&bytes, Some(&rec.media_type))
                .ok()
                .and_then(|p| p.annotations);
            out.push(Descriptor {
                media_type: rec.media_type,
                digest: d,
                size: rec.size,
                artifact_type: rec.artifact_type,
                annotations,
                platform: None,
            });
        }
        Ok(out)
    }
}
