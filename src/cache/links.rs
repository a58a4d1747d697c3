//! Repository links: content is stored once per digest, but served under a repository's
//! name only once that repository is known to hold it.
//!
//! The distribution-spec scopes blobs and manifests to repositories, and registries enforce
//! it: a digest learnt from a public manifest must not open a private repository's content
//! through the cache. Links are written where the upstream vouches for them (manifests
//! fetched in the repository and what they reference, fills, `HEAD`s, imports); a stored
//! digest with no link costs one upstream `HEAD` in that repository, shared by concurrent
//! askers. Offline, only known links are served. With `[storage]`, links the upstream
//! vouched for are shared with the other nodes through the tier.

use std::sync::Arc;

use super::{Cache, Target};
use crate::error::{Error, Result};
use crate::oci::media::AcceptClass;
use crate::oci::Digest;

/// What kind of content a digest names, for the upstream path to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Content {
    Blob,
    Manifest,
}

impl Cache {
    /// Whether the repository holds `d`: from a link, or (online) from the upstream's answer
    /// to a `HEAD`, which is then remembered.
    pub(super) async fn holds(self: &Arc<Self>, t: &Target, d: &Digest, what: Content) -> Result<bool> {
        if self.store.index.is_linked(t.upstream.name(), &t.repo, d)? {
            return Ok(true);
        }
        if self.settings.offline {
            return Ok(false);
        }
        // Boxed: the hit above is every cached pull's path; its future stays small.
        Box::pin(self.ask_elsewhere(t, d, what)).await
    }

    /// The shared tier's links, then the upstream, one question per repository and digest.
    async fn ask_elsewhere(self: &Arc<Self>, t: &Target, d: &Digest, what: Content) -> Result<bool> {
        if self.shared_link(t, d, what).await? {
            return Ok(true);
        }
        let key = format!("{what:?}\0{}\0{}\0{d}", t.upstream.name(), t.repo);
        let (this, t2, d2) = (self.clone(), t.clone(), d.clone());
        let (held, _) = self
            .blobs
            .links
            .run(key, async move { this.ask_upstream(&t2, &d2, what).await })
            .await;
        held
    }

    /// With `[storage]`: whether another node recorded the link (the upstream vouched for
    /// it there), which this node then keeps. Asked before the upstream: it answers when
    /// the upstream cannot.
    async fn shared_link(&self, t: &Target, d: &Digest, what: Content) -> Result<bool> {
        let Some(shared) = t.upstream.shared() else {
            return Ok(false);
        };
        if !shared.has_link(t.upstream.name(), &t.repo, d).await.unwrap_or(false) {
            return Ok(false);
        }
        match what {
            Content::Blob => self.store.index.link(t.upstream.name(), &t.repo, &[d])?,
            Content::Manifest => self.link_manifest(t, d)?,
        }
        Ok(true)
    }

    async fn ask_upstream(&self, t: &Target, d: &Digest, what: Content) -> Result<bool> {
        let up = &t.upstream;
        let answer = match what {
            Content::Blob => up.head_blob(&t.repo, d).await.map(|_| ()),
            Content::Manifest => (up
                .head_manifest(&t.repo, &d.to_string(), &AcceptClass::ALL.header_value())
                .await)
                .map(|_| ()),
        };
        match answer {
            Ok(()) => {
                tracing::debug!(upstream = %up.name(), repo = %t.repo, digest = %d, "upstream confirms the repository holds a stored digest");
                let shared = match what {
                    Content::Blob => {
                        self.store.index.link(up.name(), &t.repo, &[d])?;
                        vec![d.clone()]
                    }
                    Content::Manifest => {
                        self.link_manifest(t, d)?;
                        let references = self.store.index.manifest(d)?.map(|(r, _)| r.references);
                        std::iter::once(d.clone())
                            .chain(references.unwrap_or_default())
                            .collect()
                    }
                };
                self.share_links(t, shared);
                Ok(true)
            }
            Err(Error::BlobUnknown | Error::ManifestUnknown(_)) => {
                tracing::info!(upstream = %up.name(), repo = %t.repo, digest = %d, "stored digest not held by this repository upstream; refused");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}
