//! `entrepot seed`: warms the cache with a list of references, through the normal upstream
//! path (auth, policies and all): every manifest, the children of an index (all platforms or
//! those named), their blobs, and optionally their referrers. References run in parallel,
//! up to a bound; what is cached already is not fetched again, so a seed can be re-run to
//! resume. With a server running, it pulls through that server (which holds the index).

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

use crate::app::App;
use crate::error::{Error, Result};
use crate::http::target;
use crate::oci::manifest::{self, Descriptor};
use crate::oci::media::{self, AcceptClass};
use crate::oci::Digest;
use crate::policy::filter::platform_string;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `os/arch[/variant]` globs; empty means every platform of an index.
    pub platforms: Vec<String>,
    pub referrers: bool,
    pub parallel: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub manifests: usize,
    pub blobs: usize,
    pub bytes: u64,
}

/// Where content is pulled from: this process's own cache, or a running server's.
pub enum Puller {
    Local(Arc<App>),
    Remote {
        base: String,
        client: Box<Client<HttpConnector, Empty<Bytes>>>,
    },
}

struct Pulled {
    digest: Digest,
    parsed: manifest::Parsed,
}

impl Puller {
    pub fn remote(base: String) -> Puller {
        Puller::Remote {
            base,
            client: Box::new(Client::builder(TokioExecutor::new()).build_http()),
        }
    }

    async fn manifest(&self, name: &str, reference: &str) -> Result<Pulled> {
        let (digest, media_type, bytes) = match self {
            Puller::Local(app) => {
                let t = target::resolve(&app.upstreams, name, None)?;
                let answer = if reference.contains(':') {
                    let d: Digest = reference.parse().map_err(|e| Error::DigestInvalid(format!("{e}")))?;
                    app.cache.manifest_by_digest(&t, &d).await?
                } else {
                    app.cache.manifest_by_tag(&t, reference, AcceptClass::ALL).await?
                };
                (
                    answer.manifest.digest,
                    answer.manifest.media_type,
                    answer.manifest.bytes,
                )
            }
            Puller::Remote { .. } => {
                let (headers, bytes) = self.get(&format!("/v2/{name}/manifests/{reference}"), true).await?;
                let digest = match headers.get("docker-content-digest").and_then(|v| v.to_str().ok()) {
                    Some(d) => d
                        .parse()
                        .map_err(|e| Error::Internal(format!("bad digest from the server: {e}")))?,
                    None => Digest::sha256_of(&bytes),
                };
                let media = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(media::OCI_MANIFEST)
                    .to_owned();
                (digest, media, bytes)
            }
        };
        let parsed = manifest::parse(&bytes, Some(&media_type)).map_err(Error::internal)?;
        Ok(Pulled { digest, parsed })
    }

    async fn blob(&self, name: &str, d: &Digest) -> Result<u64> {
        match self {
            Puller::Local(app) => {
                let t = target::resolve(&app.upstreams, name, None)?;
                app.cache.fetch_blob(&t, d).await
            }
            Puller::Remote { .. } => Ok(self.get(&format!("/v2/{name}/blobs/{d}"), false).await?.1.len() as u64),
        }
    }

    async fn referrers(&self, name: &str, d: &Digest) -> Result<Vec<Descriptor>> {
        match self {
            Puller::Local(app) => {
                let t = target::resolve(&app.upstreams, name, None)?;
                Ok(app.cache.referrers(&t, d).await?.items)
            }
            Puller::Remote { .. } => {
                let (_, bytes) = self.get(&format!("/v2/{name}/referrers/{d}"), false).await?;
                Ok(manifest::parse(&bytes, Some(media::OCI_INDEX))
                    .map_err(Error::internal)?
                    .manifests)
            }
        }
    }

    /// A GET to the running server, its body read whole (blobs are counted, not kept: the
    /// point is that the server caches them).
    async fn get(&self, path: &str, manifest: bool) -> Result<(http::HeaderMap, Bytes)> {
        let Puller::Remote { base, client } = self else {
            return Err(Error::internal("not remote"));
        };
        let mut req = Request::get(format!("{base}{path}"));
        if manifest {
            req = req.header(header::ACCEPT, AcceptClass::ALL.header_value());
        }
        let resp = client
            .request(req.body(Empty::new()).map_err(Error::internal)?)
            .await
            .map_err(Error::internal)?;
        let (parts, mut body) = resp.into_parts();
        let mut kept = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(Error::internal)?.into_data() {
                if manifest || parts.status != StatusCode::OK || kept.len() < 1 << 20 {
                    kept.extend_from_slice(&data);
                }
            }
        }
        if parts.status != StatusCode::OK {
            return Err(Error::Internal(format!(
                "{path}: {} {}",
                parts.status,
                String::from_utf8_lossy(&kept)
            )));
        }
        Ok((parts.headers, kept.freeze()))
    }
}

/// Seeds every reference; the result of each, in the order given. `progress` is called
/// after each reference with (done, total, reference, result).
pub async fn seed(
    puller: Arc<Puller>,
    references: Vec<String>,
    opts: Options,
    progress: impl Fn(usize, usize, &str, &Result<Counts>) + Send + Sync + 'static,
) -> Vec<(String, Result<Counts>)> {
    let permits = Arc::new(Semaphore::new(opts.parallel.max(1)));
    let progress = Arc::new(progress);
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let total = references.len();
    let opts = Arc::new(opts);
    let mut tasks = Vec::new();
    for r in references {
        let (puller, permits, opts, progress, done) = (
            puller.clone(),
            permits.clone(),
            opts.clone(),
            progress.clone(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire().await;
            let result = seed_one(&puller, &r, &opts).await;
            let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            progress(n, total, &r, &result);
            (r, result)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        match t.await {
            Ok(r) => out.push(r),
            Err(e) => out.push(("?".into(), Err(Error::internal(e)))),
        }
    }
    out
}

async fn seed_one(puller: &Puller, reference: &str, opts: &Options) -> Result<Counts> {
    let (name, r) = crate::oci::name::split_reference(reference);
    let mut counts = Counts::default();
    let top = puller.manifest(name, r).await?;
    let mut seen = HashSet::from([top.digest.clone()]);
    let mut queue = Vec::new();
    if top.parsed.manifests.is_empty() {
        queue.push(top);
    } else {
        counts.manifests += 1;
        for child in top.parsed.manifests.iter().filter(|c| wanted(c, &opts.platforms)) {
            seen.insert(child.digest.clone());
            queue.push(puller.manifest(name, &child.digest.to_string()).await?);
        }
        if opts.referrers {
            queue.extend(referrers_of(puller, name, &top.digest, &mut seen).await?);
        }
    }
    // Each image's blobs, then (when asked) its referrers, which are images in turn.
    while let Some(m) = queue.pop() {
        counts.manifests += 1;
        for blob in m.parsed.config.iter().chain(&m.parsed.layers) {
            counts.bytes += puller.blob(name, &blob.digest).await?;
            counts.blobs += 1;
        }
        if opts.referrers {
            queue.extend(referrers_of(puller, name, &m.digest, &mut seen).await?);
        }
    }
    Ok(counts)
}

/// Whether an index's child is of a platform asked for (any, when none is named).
fn wanted(child: &Descriptor, platforms: &[String]) -> bool {
    if platforms.is_empty() {
        return true;
    }
    let Some(p) = child.platform.as_ref().and_then(platform_string) else {
        return false;
    };
    let short = p.splitn(3, '/').take(2).collect::<Vec<_>>().join("/");
    platforms
        .iter()
        .any(|g| crate::policy::glob::matches(g, &p) || crate::policy::glob::matches(g, &short))
}

async fn referrers_of(
    puller: &Puller,
    name: &str,
    subject: &Digest,
    seen: &mut HashSet<Digest>,
) -> Result<Vec<Pulled>> {
    let mut out = Vec::new();
    for r in puller.referrers(name, subject).await? {
        if seen.insert(r.digest.clone()) {
            out.push(puller.manifest(name, &r.digest.to_string()).await?);
        }
    }
    Ok(out)
}
