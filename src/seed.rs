//! `entrepot seed`: warms the cache with a list of references, through the normal upstream
//! path (auth, policies and all): every manifest, the children of an index (all platforms or
//! those named), their blobs, and optionally their referrers. References run in parallel,
//! up to a bound; what is cached already is not fetched again, so a seed can be re-run to
//! resume. With a server running, the server seeds itself (it holds the index), asked on
//! its operator socket (`http::admin`), and reports progress as it goes.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::app::App;
use crate::error::{Error, Result};
use crate::oci::manifest::{self, Descriptor};
use crate::oci::media::AcceptClass;
use crate::oci::Digest;
use crate::policy::filter::platform_string;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Options {
    /// `os/arch[/variant]` globs; empty means every platform of an index.
    pub platforms: Vec<String>,
    pub referrers: bool,
    pub parallel: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub manifests: usize,
    pub blobs: usize,
    pub bytes: u64,
}

/// What `entrepot seed` sends a running server on its operator socket.
#[derive(Debug, Serialize, Deserialize)]
pub struct SeedRequest {
    pub references: Vec<String>,
    pub options: Options,
}

/// What the server streams back: progress as references finish, then the result of each,
/// in the order given.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    Progress {
        done: usize,
        total: usize,
        reference: String,
        ok: bool,
        /// Bytes that reference brought into the cache.
        #[serde(default)]
        bytes: u64,
    },
    Result {
        reference: String,
        counts: Option<Counts>,
        error: Option<String>,
    },
}

impl Report {
    pub fn result(reference: String, result: &Result<Counts>) -> Report {
        Report::Result {
            reference,
            counts: result.as_ref().ok().cloned(),
            error: result.as_ref().err().map(|e| e.to_string()),
        }
    }
}

/// Where content is pulled from: a cache, through its normal upstream path.
pub struct Puller(pub Arc<App>);

struct Pulled {
    digest: Digest,
    parsed: manifest::Parsed,
}

impl Puller {
    async fn manifest(&self, name: &str, reference: &str) -> Result<Pulled> {
        let app = &self.0;
        let t = app.upstreams.resolve(name, None)?;
        let answer = if reference.contains(':') {
            let d: Digest = reference.parse().map_err(|e| Error::DigestInvalid(format!("{e}")))?;
            app.cache.manifest_by_digest(&t, &d).await?
        } else {
            app.cache.manifest_by_tag(&t, reference, AcceptClass::ALL).await?
        };
        let m = answer.manifest;
        let parsed = manifest::parse(&m.bytes, Some(&m.media_type)).map_err(Error::internal)?;
        Ok(Pulled {
            digest: m.digest.clone(),
            parsed,
        })
    }

    async fn blob(&self, name: &str, d: &Digest) -> Result<u64> {
        let t = self.0.upstreams.resolve(name, None)?;
        self.0.cache.fetch_blob(&t, d).await
    }

    async fn referrers(&self, name: &str, d: &Digest) -> Result<Vec<Descriptor>> {
        let t = self.0.upstreams.resolve(name, None)?;
        Ok(self.0.cache.referrers(&t, d).await?.items)
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
