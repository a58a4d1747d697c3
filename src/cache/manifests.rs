//! Manifests by digest and by tag.
//!
//! By digest: served from the index when present and known to be held by the repository
//! asked for, else fetched once and verified.
//! By tag: a tag's digest is one fact, resolved with every modern type accepted. It is served
//! for `tag_ttl`, then revalidated with a `HEAD` upstream. When the upstream fails, the last
//! known digest is served for up to `max_staleness` with a `Warning`. An upstream "not found"
//! to that request is remembered for `negative_ttl`. A client with a narrower `Accept` gets
//! what the upstream would answer it (`negotiate`), and never changes what others get.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::HeaderValue;

use super::links::Content;
use super::{Cache, Outcome, Target};
use crate::clock::age;
use crate::error::{Error, Result};
use crate::oci::manifest;
use crate::oci::media::{self, AcceptClass};
use crate::oci::Digest;
use crate::store::index::{linked, ManifestRecord, TagRecord};
use crate::sync::Locked;
use crate::upstream::{ManifestBody, Origin};

/// A manifest as the cache holds it: shared (`Arc`) between the memory map of hot
/// manifests and every answer, never copied.
#[derive(Debug)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
    headers: OnceLock<ManifestHeaders>,
}

/// The response headers that name a manifest, rendered on its first answer and reused by
/// every later one: a hot manifest is served tens of thousands of times a second, each
/// time with the same values.
#[derive(Debug)]
pub struct ManifestHeaders {
    /// `None` when the media type cannot be a header value (the upstream's, kept as sent).
    pub content_type: Option<HeaderValue>,
    pub digest: HeaderValue,
    pub etag: HeaderValue,
}

impl Manifest {
    pub fn new(digest: Digest, media_type: String, bytes: Bytes) -> Manifest {
        Manifest {
            digest,
            media_type,
            bytes,
            headers: OnceLock::new(),
        }
    }

    pub fn headers(&self) -> &ManifestHeaders {
        self.headers.get_or_init(|| {
            let digest = self.digest.to_string();
            ManifestHeaders {
                content_type: HeaderValue::from_str(&self.media_type).ok(),
                etag: HeaderValue::try_from(format!("\"{digest}\"")).expect("a digest is ASCII"),
                digest: HeaderValue::try_from(digest).expect("a digest is ASCII"),
            }
        })
    }
}

#[derive(Debug, Clone)]
pub struct ManifestAnswer {
    pub manifest: Arc<Manifest>,
    pub outcome: Outcome,
    /// A `Warning` header value when a stale tag is served.
    pub warning: Option<String>,
}

impl ManifestAnswer {
    fn new(manifest: Arc<Manifest>, outcome: Outcome) -> ManifestAnswer {
        ManifestAnswer {
            manifest,
            outcome,
            warning: None,
        }
    }
}

impl Cache {
    /// A cached manifest: from memory when it was served lately, else from the index,
    /// checked against its digest (a manifest that no longer matches is quarantined and
    /// fetched again).
    fn cached_manifest(&self, d: &Digest) -> Result<Option<Arc<Manifest>>> {
        if let Some(m) = self.tags.hot.get(d) {
            return Ok(Some(m));
        }
        let Some((rec, bytes)) = self.store.index.manifest(d)? else {
            return Ok(None);
        };
        if let Err(found) = d.verify(&bytes) {
            self.quarantine_manifest(d, found, &bytes)?;
            return Ok(None);
        }
        let m = Arc::new(Manifest::new(d.clone(), rec.media_type, bytes));
        self.tags.hot.put(m.clone());
        Ok(Some(m))
    }

    pub async fn manifest_by_digest(self: &Arc<Self>, t: &Target, d: &Digest) -> Result<ManifestAnswer> {
        self.precheck(t, None, Some(d))?;
        let answer = self.lookup_or_fetch_by_digest(t, d).await?;
        self.admit_manifest(t, None, &answer.manifest).await?;
        Ok(answer)
    }

    pub async fn manifest_by_tag(
        self: &Arc<Self>,
        t: &Target,
        tag: &str,
        class: AcceptClass,
    ) -> Result<ManifestAnswer> {
        self.precheck(t, Some(tag), None)?;
        let answer = self.negotiate(t, tag, class.widened()).await?;
        self.admit_manifest(t, Some(tag), &answer.manifest).await?;
        Ok(answer)
    }

    /// What a client with this `Accept` class gets for a tag: the tag's manifest when the
    /// class accepts its type; for an index the class does not accept, what the upstream
    /// picks for that class (a platform's manifest, as registries do for old clients),
    /// resolved apart; for a single manifest it does not accept, the registries' 404,
    /// without asking again.
    async fn negotiate(self: &Arc<Self>, t: &Target, tag: &str, class: AcceptClass) -> Result<ManifestAnswer> {
        let tag_answer = self.resolve_tag_for(t, tag, AcceptClass::ALL).await?;
        let media_type = &tag_answer.manifest.media_type;
        if class.accepts(media_type) {
            return Ok(tag_answer);
        }
        if media::is_index(media_type) {
            return self.resolve_tag_for(t, tag, class).await;
        }
        tracing::debug!(upstream = %t.upstream.name(), repo = %t.repo, tag, %media_type, accept = %class.header_value(), "manifest type not accepted by the client");
        Err(Error::NotAcceptable(format!(
            "{}:{tag} is a {media_type}, which the request's Accept header does not include",
            t.repo
        )))
    }

    /// A tag for one class: a fresh record is a hit (no flight, no task, two index reads);
    /// else one resolution shared by every concurrent request.
    pub(super) async fn resolve_tag_for(
        self: &Arc<Self>,
        t: &Target,
        tag: &str,
        class: AcceptClass,
    ) -> Result<ManifestAnswer> {
        match self.fresh_tag(t, tag, class)? {
            Some(m) => Ok(ManifestAnswer::new(m, Outcome::Hit)),
            // Boxed, as every miss below a hit: a hit's future stays small (hyper moves it
            // with each request) instead of carrying an upstream fetch's state inline.
            None => Box::pin(self.resolve_tag_once(t, tag, class)).await,
        }
    }

    pub(super) async fn lookup_or_fetch_by_digest(self: &Arc<Self>, t: &Target, d: &Digest) -> Result<ManifestAnswer> {
        if let Some(m) = self.cached_manifest(d)? {
            if !self.holds(t, d, Content::Manifest).await? {
                return Err(Error::ManifestUnknown(format!("{}@{d}", t.repo)));
            }
            self.store.index.touch(d);
            return Ok(ManifestAnswer::new(m, Outcome::Hit));
        }
        if self.settings.offline {
            return Err(Error::ManifestUnknown(d.to_string()));
        }
        let key = format!("m\0{}\0{}\0{d}", t.upstream.name(), t.repo);
        let (this, t2, d2) = (self.clone(), t.clone(), d.clone());
        let fetch = self.tags.manifests.run(key, async move {
            let m = this
                .fetch_manifest(&t2, &d2.to_string(), AcceptClass::ALL, Some(&d2))
                .await?;
            Ok(ManifestAnswer::new(m, Outcome::Miss))
        });
        let (result, joined) = Box::pin(fetch).await;
        result.map(|a| ManifestAnswer {
            outcome: a.outcome.joined(joined),
            ..a
        })
    }

    /// Resolves a tag, one flight per (upstream, repository, tag, Accept class).
    pub(super) async fn resolve_tag_once(
        self: &Arc<Self>,
        t: &Target,
        tag: &str,
        class: AcceptClass,
    ) -> Result<ManifestAnswer> {
        let key = format!("t\0{}\0{}\0{tag}\0{}", t.upstream.name(), t.repo, class.key());
        let (this, t2, tag2) = (self.clone(), t.clone(), tag.to_owned());
        let (result, joined) = self
            .tags
            .manifests
            .run(key, async move { this.resolve_tag(&t2, &tag2, class).await })
            .await;
        result.map(|a| ManifestAnswer {
            outcome: a.outcome.joined(joined),
            ..a
        })
    }

    async fn resolve_tag(self: &Arc<Self>, t: &Target, tag: &str, class: AcceptClass) -> Result<ManifestAnswer> {
        let up = t.upstream.name();
        let class_key = class.key();
        let cached = self.cached_tag(self.store.index.tag(up, &t.repo, tag, &class_key)?)?;
        if self.settings.offline {
            let found = match cached {
                Some(c) => Some(c),
                None => self.cached_tag_any_class(t, tag, class)?,
            };
            let (_, m) = found.ok_or_else(|| Error::ManifestUnknown(format!("{}:{tag}", t.repo)))?;
            self.store.index.touch(&m.digest);
            return Ok(ManifestAnswer::new(m, Outcome::Hit));
        }
        let now = self.clock.now_ms();
        let Some((record, cached)) = cached else {
            if self.is_absent(t, tag) {
                return Err(Error::ManifestUnknown(format!("{}:{tag}", t.repo)));
            }
            return match self.fetch_manifest(t, tag, class, None).await {
                Ok(m) => {
                    self.remember_tag(t, tag, &class_key, &m, now, now)?;
                    Ok(ManifestAnswer::new(m, Outcome::Miss))
                }
                Err(e) if e.is_upstream_failure() => match self.cached_tag_any_class(t, tag, class)? {
                    Some((record, m)) => self.serve_stale(t, tag, record, m, e),
                    None => self.shared_tag(t, tag, class, e).await,
                },
                Err(e) => Err(self.unless_gone(t, tag, class, e)?),
            };
        };
        if now.saturating_sub(record.validated_at) < self.settings.tag_ttl.as_millis() as u64 {
            self.store.index.touch(&cached.digest);
            return Ok(ManifestAnswer::new(cached, Outcome::Hit));
        }
        match self.head_manifest(t, tag, class).await {
            Ok(Some(d)) if d == record.digest => {
                self.remember_tag(t, tag, &class_key, &cached, record.fetched_at, now)?;
                self.store.index.touch(&cached.digest);
                Ok(ManifestAnswer::new(cached, Outcome::Revalidated))
            }
            Ok(Some(d)) => {
                let m = match self.cached_manifest(&d)? {
                    Some(m) => {
                        // Stored once, perhaps from another repository: this one holds it too.
                        self.link_manifest(t, &d)?;
                        m
                    }
                    None => self.fetch_manifest(t, &d.to_string(), class, Some(&d)).await?,
                };
                tracing::info!(upstream = up, repo = %t.repo, tag, from = %record.digest, to = %d, "tag moved");
                self.remember_tag(t, tag, &class_key, &m, now, now)?;
                Ok(ManifestAnswer::new(m, Outcome::Miss))
            }
            Ok(None) => match self.fetch_manifest(t, tag, class, None).await {
                Ok(m) => {
                    self.remember_tag(t, tag, &class_key, &m, now, now)?;
                    Ok(ManifestAnswer::new(m, Outcome::Miss))
                }
                Err(e) => Err(self.unless_gone(t, tag, class, e)?),
            },
            Err(e) if e.is_upstream_failure() => self.serve_stale(t, tag, record, cached, e),
            Err(e) => Err(self.unless_gone(t, tag, class, e)?),
        }
    }

    /// The manifest a tag resolves to, if resolved for this class within `tag_ttl` (or at
    /// all, offline) and cached.
    fn fresh_tag(&self, t: &Target, tag: &str, class: AcceptClass) -> Result<Option<Arc<Manifest>>> {
        let Some(record) = self.store.index.tag(t.upstream.name(), &t.repo, tag, &class.key())? else {
            return Ok(None);
        };
        let fresh = self.settings.offline
            || self.clock.now_ms().saturating_sub(record.validated_at) < self.settings.tag_ttl.as_millis() as u64;
        if !fresh {
            return Ok(None);
        }
        let m = self.cached_manifest(&record.digest)?;
        if let Some(m) = &m {
            self.store.index.touch(&m.digest);
        }
        Ok(m)
    }

    /// The record's manifest, if there is a record and its manifest is cached.
    fn cached_tag(&self, record: Option<TagRecord>) -> Result<Option<(TagRecord, Arc<Manifest>)>> {
        match record {
            Some(r) => Ok(self.cached_manifest(&r.digest)?.map(|m| (r, m))),
            None => Ok(None),
        }
    }

    /// The tag as known under another Accept class (pulled by another client, or imported),
    /// when its media type is one `class` accepts: what to serve when the upstream cannot
    /// resolve the tag for this class.
    fn cached_tag_any_class(
        &self,
        t: &Target,
        tag: &str,
        class: AcceptClass,
    ) -> Result<Option<(TagRecord, Arc<Manifest>)>> {
        let best = (self
            .store
            .index
            .tag_classes(t.upstream.name(), &t.repo, tag)?
            .into_iter())
        .map(|(_, r)| r)
        .filter(|r| class.accepts(&r.media_type))
        .max_by_key(|r| r.validated_at);
        self.cached_tag(best)
    }

    /// Stale-if-error: the last known digest, while it was validated within `max_staleness`.
    pub(super) fn serve_stale(
        &self,
        t: &Target,
        tag: &str,
        record: TagRecord,
        cached: Arc<Manifest>,
        e: Error,
    ) -> Result<ManifestAnswer> {
        let stale_for = self.clock.now_ms().saturating_sub(record.validated_at);
        if stale_for > self.settings.max_staleness.as_millis() as u64 {
            return Err(e);
        }
        tracing::warn!(upstream = %t.upstream.name(), repo = %t.repo, tag, error = %e, validated_ago = %age(stale_for), "serving stale tag");
        self.store.index.touch(&cached.digest);
        let warning = format!(
            "299 entrepot \"upstream unavailable; tag last validated {} ago\"",
            age(stale_for)
        );
        Ok(ManifestAnswer {
            manifest: cached,
            outcome: Outcome::Stale,
            warning: Some(warning),
        })
    }

    /// Hands an upstream error back, after acting on a "not found": to a request that
    /// accepts every modern type it means the tag is gone (forgotten for every class, and
    /// remembered absent for `negative_ttl`); to a narrower request it only says what that
    /// class gets, so only that class's record goes.
    fn unless_gone(&self, t: &Target, tag: &str, class: AcceptClass, e: Error) -> Result<Error> {
        if let Error::ManifestUnknown(_) = e {
            if class == AcceptClass::ALL {
                self.forget_tag(t, tag)?;
            } else {
                (self.store.index).remove_tag_class(t.upstream.name(), &t.repo, tag, &class.key())?;
            }
        }
        Ok(e)
    }

    /// Records that the repository holds a manifest stored already, and what it references.
    pub(super) fn link_manifest(&self, t: &Target, d: &Digest) -> Result<()> {
        let references = match self.store.index.manifest(d)? {
            Some((rec, _)) => rec.references,
            None => Vec::new(),
        };
        (self.store.index).link(t.upstream.name(), &t.repo, &linked(d, &references))?;
        Ok(())
    }

    fn remember_tag(
        &self,
        t: &Target,
        tag: &str,
        class_key: &str,
        m: &Manifest,
        fetched_at: u64,
        validated_at: u64,
    ) -> Result<()> {
        let r = TagRecord {
            digest: m.digest.clone(),
            media_type: m.media_type.clone(),
            fetched_at,
            validated_at,
        };
        self.store
            .index
            .put_tag(t.upstream.name(), &t.repo, tag, class_key, &r)?;
        Ok(())
    }

    fn absent_key(t: &Target, tag: &str) -> String {
        format!("{}\0{}\0{tag}", t.upstream.name(), t.repo)
    }

    fn is_absent(&self, t: &Target, tag: &str) -> bool {
        let mut absent = self.tags.absent_tags.locked();
        let key = Cache::absent_key(t, tag);
        match absent.get(&key) {
            Some(until) if *until > self.clock.now_ms() => true,
            Some(_) => {
                absent.remove(&key);
                false
            }
            None => false,
        }
    }

    fn forget_tag(&self, t: &Target, tag: &str) -> Result<()> {
        self.store.index.remove_tag(t.upstream.name(), &t.repo, tag)?;
        let mut absent = self.tags.absent_tags.locked();
        let now = self.clock.now_ms();
        if absent.len() > 100_000 {
            absent.retain(|_, until| *until > now);
        }
        absent.insert(
            Cache::absent_key(t, tag),
            now + self.settings.negative_ttl.as_millis() as u64,
        );
        Ok(())
    }

    /// The digest a tag has upstream now, from a `HEAD` (which registries do not rate-limit
    /// as they do `GET`s). `None` when the upstream does not say.
    async fn head_manifest(&self, t: &Target, tag: &str, class: AcceptClass) -> Result<Option<Digest>> {
        let head = t.upstream.head_manifest(&t.repo, tag, &class.header_value()).await?;
        refuse_schema1(t, tag, head.media_type.as_deref())?;
        Ok(head.digest)
    }

    /// GETs a manifest, checks it against the digest asked for and the one the upstream
    /// claims, and stores its exact bytes.
    pub(super) async fn fetch_manifest(
        &self,
        t: &Target,
        reference: &str,
        class: AcceptClass,
        expected: Option<&Digest>,
    ) -> Result<Arc<Manifest>> {
        let up = &t.upstream;
        let limit = self.settings.max_manifest_size;
        let ManifestBody { head, bytes, origin } = up
            .get_manifest(&t.repo, reference, &class.header_value(), limit)
            .await?;
        let (claimed, content_type) = (head.digest, head.media_type);
        refuse_schema1(t, reference, content_type.as_deref())?;
        for want in expected.iter().copied().chain(claimed.as_ref()) {
            if let Err(got) = want.verify(&bytes) {
                self.metrics.digest_mismatches.add(&[], 1);
                tracing::error!(upstream = %up.name(), repo = %t.repo, reference, expected = %want, got = %got, "upstream manifest failed verification; not cached");
                return Err(Error::DigestMismatch {
                    upstream: up.name().to_owned(),
                    expected: want.to_string(),
                    detail: format!("got {got}"),
                });
            }
        }
        let digest = match (expected, claimed) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) => d,
            (None, None) => Digest::sha256_of(&bytes),
        };
        let parsed = manifest::parse(&bytes, content_type.as_deref()).map_err(|e| up.bad(e.to_string()))?;
        refuse_schema1(t, reference, Some(&parsed.media_type))?;
        let now = self.clock.now_ms();
        let record = ManifestRecord {
            media_type: parsed.media_type.clone(),
            size: bytes.len() as u64,
            references: parsed.references().map(|d| d.digest.clone()).collect(),
            subject: parsed.subject.as_ref().map(|s| s.digest.clone()),
            artifact_type: parsed.artifact_type.clone(),
            upstream: up.name().to_owned(),
            repository: t.repo.clone(),
            cached_at: now,
            last_access: now,
            hits: 0,
        };
        self.store.index.put_manifest(&digest, &record, &bytes)?;
        let descriptors: Vec<_> = parsed.references().cloned().collect();
        self.store.index.learn_media_types(&descriptors)?;
        tracing::info!(upstream = %up.name(), repo = %t.repo, reference, %digest, media_type = %parsed.media_type, "manifest cached");
        if origin == Origin::Upstream {
            // A tag is shared as the widest class resolved it; other classes' answers are
            // the upstream's content negotiation, not the tag.
            let tag = (!reference.contains(':') && class == AcceptClass::ALL).then_some(reference);
            let references = parsed.references().map(|r| r.digest.clone()).collect();
            self.share_manifest(t, tag, &digest, references, &parsed.media_type, &bytes);
        }
        Ok(Arc::new(Manifest::new(digest, parsed.media_type, bytes)))
    }
}

/// Docker schema 1 is what distribution converts to for a client that accepts no modern
/// type, signed anew on every request (a new digest each time): not content to cache, and
/// no integrity failure either. The client is told plainly.
fn refuse_schema1(t: &Target, reference: &str, media_type: Option<&str>) -> Result<()> {
    let Some(media_type) = media_type.filter(|m| media::is_schema1(m)) else {
        return Ok(());
    };
    tracing::debug!(upstream = %t.upstream.name(), repo = %t.repo, reference, %media_type, "upstream offers Docker schema 1 only; refused");
    Err(Error::NotAcceptable(format!(
        "{}:{reference} is available upstream only as Docker schema 1 for this Accept header; entrepot does not serve schema 1 (accept {} or an OCI type)",
        t.repo,
        media::DOCKER_MANIFEST
    )))
}
