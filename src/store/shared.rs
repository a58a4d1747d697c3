//! The shared blob tier: verified blobs on S3-compatible object storage (Garage, MinIO, AWS
//! S3), behind every node's local disk.
//!
//! An object appears under `blobs/<algorithm>/<hex>` only once its upload is complete: a
//! PUT is visible whole or not at all, and nothing is ever written under a digest key but a
//! blob this node has verified and committed. Nodes read the tier as they read an upstream:
//! the bytes go through a fill, hashed as they arrive, before they are served or kept.
//! Requests are signed by `rusty-s3` (presigned, SigV4) and sent through hyper.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use tokio::sync::mpsc;

use super::blobs::BlobReader;
use crate::config::StorageConfig;
use crate::oci::Digest;

/// How long a presigned request stays valid: it is sent at once.
const SIGNED_FOR: Duration = Duration::from_secs(300);
/// Blobs larger than this go up in parts: one PUT stops at 5 GiB on AWS S3, and an
/// upload cut short leaves parts, never an object.
const MULTIPART_FROM: u64 = 32 << 20;
/// A part's size, at least (S3 wants 5 MiB at least but for the last; 10,000 parts at most).
const PART_BYTES: u64 = 16 << 20;
const MAX_PARTS: u64 = 10_000;
const UPLOAD_CHUNK: usize = 1 << 20;
/// Time allowed for the store's response headers.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, UploadBody>;

pub struct Shared {
    bucket: Bucket,
    credentials: Credentials,
    client: HttpsClient,
    endpoint: String,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket.name())
            .finish_non_exhaustive()
    }
}

/// A blob read from the tier: its length, and the body to read.
pub struct SharedBody {
    pub total: Option<u64>,
    pub body: Incoming,
}

impl Shared {
    pub fn new(config: &StorageConfig) -> io::Result<Shared> {
        let endpoint = config
            .endpoint
            .parse()
            .map_err(|e| io::Error::other(format!("storage.endpoint: {e}")))?;
        let style = if config.virtual_host_style {
            UrlStyle::VirtualHost
        } else {
            UrlStyle::Path
        };
        let bucket = Bucket::new(endpoint, style, config.bucket.clone(), config.region.clone())
            .map_err(|e| io::Error::other(format!("storage: {e:?}")))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        http.set_nodelay(true);
        let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Shared {
            credentials: Credentials::new(config.access_key_id.clone(), config.secret_access_key.clone()),
            bucket,
            client,
            endpoint: config.endpoint.clone(),
        })
    }

    fn key(d: &Digest) -> String {
        format!("blobs/{}/{}", d.algorithm().name(), d.hex())
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        range_from: Option<u64>,
        body: UploadBody,
    ) -> io::Result<Response<Incoming>> {
        let mut req = Request::builder().method(method).uri(url);
        if let Some(from) = range_from {
            req = req.header(header::RANGE, format!("bytes={from}-"));
        }
        if let Some(len) = body.len {
            req = req.header(header::CONTENT_LENGTH, len);
        }
        if let Some(t) = &body.content_type {
            req = req.header(header::CONTENT_TYPE, t.as_str());
        }
        let req = req.body(body).map_err(io::Error::other)?;
        match tokio::time::timeout(RESPONSE_TIMEOUT, self.client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(io::Error::other(format!("shared storage {}: {e}", self.endpoint))),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "shared storage {}: no answer within {RESPONSE_TIMEOUT:?}",
                    self.endpoint
                ),
            )),
        }
    }

    /// The blob, from byte `from` on when given; `None` when the tier does not hold it.
    pub async fn get(&self, d: &Digest, from: Option<u64>) -> io::Result<Option<SharedBody>> {
        let key = Shared::key(d);
        let url = self.bucket.get_object(Some(&self.credentials), &key).sign(SIGNED_FOR);
        let resp = self.send(Method::GET, url.as_str(), from, UploadBody::empty()).await?;
        let expected = if from.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        match resp.status() {
            s if s == expected => {
                let total = if from.is_some() {
                    None
                } else {
                    resp.headers()
                        .get(header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok()?.parse().ok())
                };
                Ok(Some(SharedBody {
                    total,
                    body: resp.into_body(),
                }))
            }
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(io::Error::other(format!("shared storage: GET {key}: {s}"))),
        }
    }

    /// Whether the tier holds the blob.
    pub async fn contains(&self, d: &Digest) -> io::Result<bool> {
        self.exists(&Shared::key(d)).await
    }

    async fn exists(&self, key: &str) -> io::Result<bool> {
        let url = self.bucket.head_object(Some(&self.credentials), key).sign(SIGNED_FOR);
        let resp = self.send(Method::HEAD, url.as_str(), None, UploadBody::empty()).await?;
        match resp.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(io::Error::other(format!("shared storage: HEAD {key}: {s}"))),
        }
    }

    /// Uploads a committed (verified) blob under its digest, unless the tier has it.
    /// Returns whether it uploaded.
    pub async fn put(&self, d: &Digest, blob: BlobReader) -> io::Result<bool> {
        let size = blob.size();
        if self.contains(d).await? {
            return Ok(false);
        }
        let key = Shared::key(d);
        if size > MULTIPART_FROM {
            self.put_parts(&key, blob).await?;
            return Ok(true);
        }
        let url = self.bucket.put_object(Some(&self.credentials), &key).sign(SIGNED_FOR);
        let resp = self
            .send(Method::PUT, url.as_str(), None, UploadBody::from_blob(blob))
            .await?;
        if !resp.status().is_success() {
            return Err(io::Error::other(format!(
                "shared storage: PUT {key}: {}",
                resp.status()
            )));
        }
        Ok(true)
    }
}

/// An object of the tier, as a listing gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub size: u64,
    /// When it was written, in Unix milliseconds.
    pub written_ms: u64,
}

/// The largest access report read back.
const MAX_REPORT: usize = 64 << 20;

impl Shared {
    /// Every object under `prefix`, page by page.
    pub async fn list(&self, prefix: &str) -> io::Result<Vec<Object>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
            // Keys as they are (ours are plain ASCII), not URL-encoded.
            action.query_mut().remove("encoding-type");
            action.with_prefix(prefix);
            if let Some(t) = &token {
                action.with_continuation_token(t.clone());
            }
            let url = action.sign(SIGNED_FOR);
            let body = self.read_whole(Method::GET, url.as_str(), MAX_REPORT).await?;
            let Some(body) = body else {
                return Err(io::Error::other(format!(
                    "shared storage: no bucket {}",
                    self.bucket.name()
                )));
            };
            let page = rusty_s3::actions::ListObjectsV2::parse_response(&body).map_err(io::Error::other)?;
            for o in page.contents {
                let written_ms = humantime::parse_rfc3339_weak(&o.last_modified)
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as u64);
                out.push(Object {
                    key: o.key,
                    size: o.size,
                    written_ms,
                });
            }
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// A multipart upload: the object appears only when the upload completes; an upload
    /// that fails is aborted (one cut short by a crash leaves parts the store's lifecycle
    /// rule for incomplete uploads removes).
    async fn put_parts(&self, key: &str, blob: BlobReader) -> io::Result<()> {
        let url = self
            .bucket
            .create_multipart_upload(Some(&self.credentials), key)
            .sign(SIGNED_FOR);
        let created = self
            .read_whole(Method::POST, url.as_str(), 1 << 20)
            .await?
            .ok_or_else(|| io::Error::other(format!("shared storage: no bucket {}", self.bucket.name())))?;
        let upload = rusty_s3::actions::CreateMultipartUpload::parse_response(&created).map_err(io::Error::other)?;
        let id = upload.upload_id().to_owned();
        let result = self.send_parts(key, &id, blob).await;
        if result.is_err() {
            let url = self
                .bucket
                .abort_multipart_upload(Some(&self.credentials), key, &id)
                .sign(SIGNED_FOR);
            let _ = self.send(Method::DELETE, url.as_str(), None, UploadBody::empty()).await;
        }
        result
    }

    async fn send_parts(&self, key: &str, id: &str, blob: BlobReader) -> io::Result<()> {
        let size = blob.size();
        let part = PART_BYTES.max(size.div_ceil(MAX_PARTS));
        let mut etags = Vec::new();
        let mut at = 0;
        while at < size {
            let number = u16::try_from(etags.len() + 1).map_err(io::Error::other)?;
            let len = part.min(size - at);
            let url = self
                .bucket
                .upload_part(Some(&self.credentials), key, number, id)
                .sign(SIGNED_FOR);
            let body = UploadBody::from_range(blob.clone(), at, len);
            let resp = self.send(Method::PUT, url.as_str(), None, body).await?;
            let etag = resp.headers().get(header::ETAG).and_then(|v| v.to_str().ok());
            match (resp.status().is_success(), etag) {
                (true, Some(etag)) => etags.push(etag.to_owned()),
                _ => {
                    return Err(io::Error::other(format!(
                        "shared storage: part {number} of {key}: {}",
                        resp.status()
                    )))
                }
            }
            at += len;
        }
        let complete =
            self.bucket
                .complete_multipart_upload(Some(&self.credentials), key, id, etags.iter().map(String::as_str));
        let url = complete.sign(SIGNED_FOR);
        let body = Bytes::from(complete.body());
        use http_body_util::BodyExt;
        let resp = self
            .send(Method::POST, url.as_str(), None, UploadBody::bytes(body))
            .await?;
        let status = resp.status();
        // S3 may answer 200 and report a failed completion in the body.
        let answer = http_body_util::Limited::new(resp.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| io::Error::other(format!("shared storage: {e}")))?
            .to_bytes();
        if !status.is_success() || answer.windows(7).any(|w| w == b"<Error>") {
            return Err(io::Error::other(format!("shared storage: completing {key}: {status}")));
        }
        Ok(())
    }

    /// A small object's bytes; `None` when absent.
    pub async fn get_small(&self, key: &str) -> io::Result<Option<Bytes>> {
        let url = self.bucket.get_object(Some(&self.credentials), key).sign(SIGNED_FOR);
        self.read_whole(Method::GET, url.as_str(), MAX_REPORT).await
    }

    /// Writes a small object whole.
    pub async fn put_small(&self, key: &str, bytes: Bytes) -> io::Result<()> {
        self.put_typed(key, bytes, None).await
    }

    /// Writes a small object whole, with its `Content-Type` (not signed: a presigned URL
    /// signs the host only, and S3 keeps the header).
    async fn put_typed(&self, key: &str, bytes: Bytes, content_type: Option<&str>) -> io::Result<()> {
        let url = self.bucket.put_object(Some(&self.credentials), key).sign(SIGNED_FOR);
        let mut body = UploadBody::bytes(bytes);
        body.content_type = content_type.map(str::to_owned);
        let resp = self.send(Method::PUT, url.as_str(), None, body).await?;
        if !resp.status().is_success() {
            return Err(io::Error::other(format!(
                "shared storage: PUT {key}: {}",
                resp.status()
            )));
        }
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> io::Result<()> {
        let url = self.bucket.delete_object(Some(&self.credentials), key).sign(SIGNED_FOR);
        let resp = self
            .send(Method::DELETE, url.as_str(), None, UploadBody::empty())
            .await?;
        if !resp.status().is_success() && resp.status() != StatusCode::NOT_FOUND {
            return Err(io::Error::other(format!(
                "shared storage: DELETE {key}: {}",
                resp.status()
            )));
        }
        Ok(())
    }

    /// A whole answer of at most `limit` bytes; `None` for a 404.
    async fn read_whole(&self, method: Method, url: &str, limit: usize) -> io::Result<Option<Bytes>> {
        use http_body_util::BodyExt;
        let resp = self.send(method, url, None, UploadBody::empty()).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(io::Error::other(format!("shared storage: {}", resp.status())));
        }
        let body = http_body_util::Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .map_err(|e| io::Error::other(format!("shared storage: {e}")))?;
        Ok(Some(body.to_bytes()))
    }

    /// A manifest's bytes under its digest, with its media type.
    pub async fn put_manifest(&self, d: &Digest, media_type: &str, bytes: Bytes) -> io::Result<()> {
        self.put_typed(&manifest_key(d), bytes, Some(media_type)).await
    }

    /// A manifest's media type and bytes; `None` when the tier does not hold it.
    pub async fn get_manifest(&self, d: &Digest) -> io::Result<Option<(String, Bytes)>> {
        use http_body_util::BodyExt;
        let key = manifest_key(d);
        let url = self.bucket.get_object(Some(&self.credentials), &key).sign(SIGNED_FOR);
        let resp = self.send(Method::GET, url.as_str(), None, UploadBody::empty()).await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            s => return Err(io::Error::other(format!("shared storage: GET {key}: {s}"))),
        }
        let media_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = http_body_util::Limited::new(resp.into_body(), MAX_MANIFEST)
            .collect()
            .await
            .map_err(|e| io::Error::other(format!("shared storage: {e}")))?
            .to_bytes();
        Ok(Some((media_type, bytes)))
    }

    /// Records that an upstream's repository holds a digest (the upstream said so).
    pub async fn put_link(&self, upstream: &str, repo: &str, d: &Digest) -> io::Result<()> {
        self.put_small(&link_key(upstream, repo, d), Bytes::new()).await
    }

    /// Whether some node recorded that the repository holds the digest.
    pub async fn has_link(&self, upstream: &str, repo: &str, d: &Digest) -> io::Result<bool> {
        self.exists(&link_key(upstream, repo, d)).await
    }

    /// A tag's last resolution from the upstream by some node, as JSON.
    pub async fn put_tag(&self, upstream: &str, repo: &str, tag: &str, record: Bytes) -> io::Result<()> {
        self.put_small(&format!("tags/{upstream}/{repo}/{tag}"), record).await
    }

    pub async fn get_tag(&self, upstream: &str, repo: &str, tag: &str) -> io::Result<Option<Bytes>> {
        self.get_small(&format!("tags/{upstream}/{repo}/{tag}")).await
    }
}

fn manifest_key(d: &Digest) -> String {
    format!("manifests/{}/{}", d.algorithm().name(), d.hex())
}

fn link_key(upstream: &str, repo: &str, d: &Digest) -> String {
    format!("links/{upstream}/{repo}/{}/{}", d.algorithm().name(), d.hex())
}

/// The largest manifest read back (the distribution-spec's floor for registries is 4 MiB).
const MAX_MANIFEST: usize = 16 << 20;

/// A request body: nothing, or a committed blob read on the blocking pool, a chunk at a time.
pub struct UploadBody {
    rx: Option<mpsc::Receiver<io::Result<Bytes>>>,
    len: Option<u64>,
    content_type: Option<String>,
}

impl UploadBody {
    fn empty() -> UploadBody {
        UploadBody {
            rx: None,
            len: None,
            content_type: None,
        }
    }

    fn bytes(bytes: Bytes) -> UploadBody {
        let (tx, rx) = mpsc::channel(1);
        let len = bytes.len() as u64;
        let _ = tx.try_send(Ok(bytes));
        UploadBody {
            rx: Some(rx),
            len: Some(len),
            content_type: None,
        }
    }

    fn from_blob(blob: BlobReader) -> UploadBody {
        let size = blob.size();
        UploadBody::from_range(blob, 0, size)
    }

    /// `len` bytes of a blob from `start`.
    fn from_range(blob: BlobReader, start: u64, len: u64) -> UploadBody {
        let (tx, rx) = mpsc::channel(4);
        let end = start + len;
        tokio::task::spawn_blocking(move || {
            let mut at = start;
            while at < end {
                let chunk = blob.read_at(at, UPLOAD_CHUNK.min((end - at) as usize));
                let n = chunk.as_ref().map_or(0, |c| c.len() as u64);
                let failed = chunk.is_err() || n == 0;
                let chunk = if n == 0 && chunk.is_ok() {
                    Err(super::blobs::truncated())
                } else {
                    chunk
                };
                if tx.blocking_send(chunk).is_err() || failed {
                    return;
                }
                at += n;
            }
        });
        UploadBody {
            rx: Some(rx),
            len: Some(len),
            content_type: None,
        }
    }
}

impl http_body::Body for UploadBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let Some(rx) = self.rx.as_mut() else {
            return Poll::Ready(None);
        };
        rx.poll_recv(cx).map(|c| c.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len.unwrap_or(0))
    }
}
