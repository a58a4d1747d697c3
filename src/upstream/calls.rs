//! The registry API calls the cache makes, typed: paths are built, statuses and headers
//! read here, and a "not found" comes back as the error that says what was not found.
//! The cache never sees a URL or a raw status.

use bytes::Bytes;
use http::{header, Method, Response, StatusCode};
use hyper::body::Incoming;

use super::{header_str, read_small, Upstream};
use crate::error::{Error, Result};
use crate::oci::digest::CONTENT_DIGEST;
use crate::oci::{media, Digest};

/// The largest tag-list page or referrers answer read.
const MAX_LIST_BODY: usize = 16 << 20;

/// What a registry says of a manifest in its headers.
#[derive(Debug, Clone, Default)]
pub struct ManifestHead {
    /// `Docker-Content-Digest`, when sent and well formed.
    pub digest: Option<Digest>,
    /// `Content-Type`, as sent.
    pub media_type: Option<String>,
}

/// A manifest's bytes, as the registry sent them, with what it said of them.
#[derive(Debug, Clone)]
pub struct ManifestBody {
    pub head: ManifestHead,
    pub bytes: Bytes,
    pub origin: Origin,
}

/// A blob download: its length when the registry gives one, the body to read, and where
/// it comes from.
pub struct BlobBody {
    pub total: Option<u64>,
    pub body: Incoming,
    pub origin: Origin,
}

/// Where a download's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The upstream registry itself (or its blob host).
    Upstream,
    /// The node of the cluster that owns the digest.
    Owner,
    /// The shared tier (`[storage]`).
    Shared,
}

/// One page of a tag list: its tags, and the path of the next page.
pub struct TagPage {
    pub tags: Vec<String>,
    pub next: Option<String>,
}

impl Upstream {
    /// `HEAD` of a manifest by tag or digest; 404 is `ManifestUnknown`.
    pub async fn head_manifest(&self, repo: &str, reference: &str, accept: &str) -> Result<ManifestHead> {
        let key = self.manifest_key(repo, reference);
        if let Some(answer) = self
            .ask_owner(&key, |o| o.head_manifest_here(repo, reference, accept))
            .await
        {
            return answer;
        }
        self.head_manifest_here(repo, reference, accept).await
    }

    async fn head_manifest_here(&self, repo: &str, reference: &str, accept: &str) -> Result<ManifestHead> {
        let resp = self.manifest(Method::HEAD, repo, reference, accept).await?;
        Ok(manifest_head(&resp, false).unwrap_or_default())
    }

    /// `GET` of a manifest by tag or digest, read whole up to `limit` bytes; 404 is
    /// `ManifestUnknown`. A malformed `Docker-Content-Digest` is the upstream's fault.
    pub async fn get_manifest(&self, repo: &str, reference: &str, accept: &str, limit: u64) -> Result<ManifestBody> {
        let key = self.manifest_key(repo, reference);
        if let Some(answer) = self
            .ask_owner(&key, |o| o.get_manifest_here(repo, reference, accept, limit))
            .await
        {
            return answer.map(|m| ManifestBody {
                origin: Origin::Owner,
                ..m
            });
        }
        if let Ok(d) = reference.parse::<Digest>() {
            if let Some(m) = self.read_shared_manifest(repo, &d).await {
                return Ok(m);
            }
        }
        self.get_manifest_here(repo, reference, accept, limit).await
    }

    /// A manifest by digest from the shared tier, when some node recorded that this
    /// repository holds it (the upstream told that node so). Anything else, and the
    /// upstream is asked.
    async fn read_shared_manifest(&self, repo: &str, d: &Digest) -> Option<ManifestBody> {
        let shared = self.shared.as_ref()?;
        let found = async {
            if !shared.has_link(self.name(), repo, d).await? {
                return Ok(None);
            }
            shared.get_manifest(d).await
        };
        match found.await {
            Ok(Some((media_type, bytes))) => {
                self.metrics
                    .shared_tier
                    .add(&[("op", "read_manifest"), ("result", "hit")], 1);
                Some(ManifestBody {
                    head: ManifestHead {
                        digest: Some(d.clone()),
                        media_type: Some(media_type).filter(|m| !m.is_empty()),
                    },
                    bytes,
                    origin: Origin::Shared,
                })
            }
            Ok(None) => None,
            Err(e) => {
                self.metrics
                    .shared_tier
                    .add(&[("op", "read_manifest"), ("result", "error")], 1);
                tracing::warn!(upstream = %self.name(), digest = %d, error = %e, "shared storage unreadable; asking the upstream");
                None
            }
        }
    }

    /// What owns a manifest in a cluster: its digest, or the tag in its repository.
    fn manifest_key(&self, repo: &str, reference: &str) -> String {
        if reference.contains(':') {
            reference.to_owned()
        } else {
            format!("{}/{repo}:{reference}", self.name())
        }
    }

    /// With `[cluster]`, the answer of the node that owns `key`, when another node does and
    /// it answers; `None` when this node is to ask the upstream itself. "Not found" is an
    /// answer; a node that is unreachable, refuses or fails is not (its metrics and this
    /// warning tell), and costs a fetch of this node's own.
    async fn ask_owner<'a, T, F>(&'a self, key: &str, ask: impl FnOnce(&'a Upstream) -> F) -> Option<Result<T>>
    where
        F: std::future::Future<Output = Result<T>> + 'a,
    {
        let owner = self.owner_of(key)?;
        match ask(owner).await {
            Err(e)
                if !matches!(
                    e,
                    Error::ManifestUnknown(_) | Error::BlobUnknown | Error::NameUnknown(_)
                ) =>
            {
                tracing::warn!(upstream = %self.name(), owner = %owner.name(), key, error = %e, "owner did not answer; fetching here");
                None
            }
            answer => Some(answer),
        }
    }

    async fn get_manifest_here(&self, repo: &str, reference: &str, accept: &str, limit: u64) -> Result<ManifestBody> {
        let resp = self.manifest(Method::GET, repo, reference, accept).await?;
        let length = header_str(resp.headers(), header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        if let Some(l) = length.filter(|l| *l > limit) {
            return Err(self.bad(format!("manifest of {l} bytes exceeds max_manifest_size ({limit})")));
        }
        let head = manifest_head(&resp, true).map_err(|v| self.bad(format!("bad Docker-Content-Digest {v:?}")))?;
        let bytes = read_small(resp.into_body(), limit as usize, self.config.idle_timeout)
            .await
            .map_err(|e| self.bad(format!("manifest body: {e}")))?;
        self.count_bytes(bytes.len());
        Ok(ManifestBody {
            head,
            bytes,
            origin: Origin::Upstream,
        })
    }

    async fn manifest(&self, method: Method, repo: &str, reference: &str, accept: &str) -> Result<Response<Incoming>> {
        let remote = self.remote(repo);
        let resp = self
            .send(
                method,
                &format!("/v2/{remote}/manifests/{reference}"),
                Some(accept),
                &remote,
            )
            .await?;
        if resp.status() != StatusCode::OK {
            return Err(self.status_error(&resp, Error::ManifestUnknown(format!("{repo}:{reference}"))));
        }
        Ok(resp)
    }

    /// `HEAD` of a blob: its length, when given; 404 is `BlobUnknown`.
    pub async fn head_blob(&self, repo: &str, d: &Digest) -> Result<Option<u64>> {
        if let Some(answer) = self.ask_owner(&d.to_string(), |o| o.head_blob_here(repo, d)).await {
            return answer;
        }
        self.head_blob_here(repo, d).await
    }

    async fn head_blob_here(&self, repo: &str, d: &Digest) -> Result<Option<u64>> {
        let remote = self.remote(repo);
        let resp = self
            .send(Method::HEAD, &format!("/v2/{remote}/blobs/{d}"), None, &remote)
            .await?;
        if resp.status() != StatusCode::OK {
            return Err(self.status_error(&resp, Error::BlobUnknown));
        }
        Ok(header_str(resp.headers(), header::CONTENT_LENGTH).and_then(|v| v.parse().ok()))
    }

    /// `GET` of a blob, whole, or from byte `from` on (resuming a download: anything but
    /// those very bytes is refused); 404 is `BlobUnknown`.
    ///
    /// In a cluster, the owner of the digest is asked first; then, with `[storage]`, the
    /// shared tier; then the upstream.
    pub async fn get_blob(&self, repo: &str, d: &Digest, from: Option<u64>) -> Result<BlobBody> {
        if let Some(answer) = self.ask_owner(&d.to_string(), |o| o.get_blob_here(repo, d, from)).await {
            return answer.map(|b| BlobBody {
                origin: Origin::Owner,
                ..b
            });
        }
        if let Some(body) = self.read_shared(repo, d, from).await? {
            return Ok(body);
        }
        self.get_blob_here(repo, d, from).await
    }

    /// The blob from the shared tier, when the tier holds it and this repository is known to
    /// have it: a blob in the tier came from some repository, and a private one's must not
    /// reach a client of another. Known by a link some node recorded from the upstream's
    /// word, else by asking the upstream (HEAD), which records the link. Unconfirmed (no
    /// link, the upstream unreachable), the tier is not read. An unreadable tier is
    /// skipped, with a warning.
    async fn read_shared(&self, repo: &str, d: &Digest, from: Option<u64>) -> Result<Option<BlobBody>> {
        let Some(shared) = &self.shared else {
            return Ok(None);
        };
        let count = |result: &str| self.metrics.shared_tier.add(&[("op", "read"), ("result", result)], 1);
        let found = match shared.get(d, from).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                count("miss");
                return Ok(None);
            }
            Err(e) => {
                count("error");
                tracing::warn!(upstream = %self.name(), digest = %d, error = %e, "shared storage unreadable; fetching from the upstream");
                return Ok(None);
            }
        };
        let linked = shared.has_link(self.name(), repo, d).await.unwrap_or(false);
        let confirmed = if linked {
            Ok(None)
        } else {
            self.head_blob_here(repo, d).await
        };
        match confirmed {
            Ok(_) => {
                if !linked {
                    if let Err(e) = shared.put_link(self.name(), repo, d).await {
                        tracing::warn!(digest = %d, error = %e, "repository link not recorded in the shared tier");
                    }
                }
                count("hit");
                Ok(Some(BlobBody {
                    total: found.total,
                    body: found.body,
                    origin: Origin::Shared,
                }))
            }
            Err(Error::BlobUnknown) => Err(Error::BlobUnknown),
            Err(e) => {
                count("unconfirmed");
                tracing::warn!(upstream = %self.name(), digest = %d, error = %e, "the upstream cannot confirm the repository holds the blob; not reading the shared tier");
                Ok(None)
            }
        }
    }

    async fn get_blob_here(&self, repo: &str, d: &Digest, from: Option<u64>) -> Result<BlobBody> {
        let remote = self.remote(repo);
        let resp = self
            .send_range(Method::GET, &format!("/v2/{remote}/blobs/{d}"), None, &remote, from)
            .await?;
        let Some(from) = from else {
            if resp.status() != StatusCode::OK {
                return Err(self.status_error(&resp, Error::BlobUnknown));
            }
            let total = header_str(resp.headers(), header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
            return Ok(BlobBody {
                total,
                body: resp.into_body(),
                origin: Origin::Upstream,
            });
        };
        let starts_at = header_str(resp.headers(), header::CONTENT_RANGE)
            .and_then(|r| r.strip_prefix("bytes "))
            .and_then(|r| r.split('-').next())
            .and_then(|s| s.parse::<u64>().ok());
        if resp.status() != StatusCode::PARTIAL_CONTENT || starts_at != Some(from) {
            return Err(self.bad(format!("could not resume at byte {from} (answered {})", resp.status())));
        }
        Ok(BlobBody {
            total: None,
            body: resp.into_body(),
            origin: Origin::Upstream,
        })
    }

    /// A page of a repository's tag list: the first when `next` is `None`; 404 is
    /// `NameUnknown`.
    pub async fn get_tag_page(&self, repo: &str, next: Option<&str>) -> Result<TagPage> {
        let remote = self.remote(repo);
        let path = next.map_or_else(|| format!("/v2/{remote}/tags/list"), str::to_owned);
        let resp = self.send(Method::GET, &path, Some("application/json"), &remote).await?;
        if resp.status() != StatusCode::OK {
            return Err(self.status_error(&resp, Error::NameUnknown(repo.to_owned())));
        }
        let next = header_str(resp.headers(), header::LINK).and_then(next_link);
        let body = read_small(resp.into_body(), MAX_LIST_BODY, self.config.idle_timeout)
            .await
            .map_err(|e| self.bad(format!("tag list: {e}")))?;
        #[derive(serde::Deserialize)]
        struct Page {
            tags: Option<Vec<String>>,
        }
        let page: Page = serde_json::from_slice(&body).map_err(|e| self.bad(format!("tag list: {e}")))?;
        Ok(TagPage {
            tags: page.tags.unwrap_or_default(),
            next,
        })
    }

    /// The referrers API's index for `subject`, or `None` when the registry has no such
    /// API (404, or another 4xx for a route it does not know).
    pub async fn get_referrers(&self, repo: &str, subject: &Digest) -> Result<Option<Bytes>> {
        let remote = self.remote(repo);
        let path = format!("/v2/{remote}/referrers/{subject}");
        let resp = self.send(Method::GET, &path, Some(media::OCI_INDEX), &remote).await?;
        match resp.status() {
            StatusCode::OK => read_small(resp.into_body(), MAX_LIST_BODY, self.config.idle_timeout)
                .await
                .map(Some)
                .map_err(|e| self.bad(format!("referrers: {e}"))),
            StatusCode::NOT_FOUND
            | StatusCode::BAD_REQUEST
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::NOT_IMPLEMENTED => Ok(None),
            _ => Err(self.status_error(&resp, Error::ManifestUnknown(subject.to_string()))),
        }
    }
}

/// The manifest headers of an answer; with `strict`, a malformed digest header is an
/// error carrying it.
fn manifest_head(resp: &Response<Incoming>, strict: bool) -> std::result::Result<ManifestHead, String> {
    let digest = match header_str(resp.headers(), CONTENT_DIGEST) {
        None => None,
        Some(v) => match v.parse() {
            Ok(d) => Some(d),
            Err(_) if strict => return Err(v.to_owned()),
            Err(_) => None,
        },
    };
    Ok(ManifestHead {
        digest,
        media_type: header_str(resp.headers(), header::CONTENT_TYPE).map(str::to_owned),
    })
}

/// The path of a `Link: <…>; rel="next"` header, when it stays on the registry's `/v2/` API.
fn next_link(link: &str) -> Option<String> {
    let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
    if !params.replace(' ', "").contains("rel=\"next\"") && !params.replace(' ', "").contains("rel=next") {
        return None;
    }
    let path = match target.parse::<http::Uri>() {
        Ok(u) if u.scheme().is_some() => u.path_and_query()?.as_str().to_owned(),
        _ => target.to_owned(),
    };
    path.starts_with("/v2/").then_some(path)
}

#[cfg(test)]
mod tests {
    use super::next_link;

    #[test]
    fn follows_next_links_on_the_api_only() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=b&n=2")
        );
        assert_eq!(
            next_link(r#"<https://r.example/v2/a/tags/list?last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=b")
        );
        assert_eq!(next_link(r#"</elsewhere>; rel="next""#), None);
        assert_eq!(next_link(r#"</v2/a/tags/list>; rel="prev""#), None);
    }
}
