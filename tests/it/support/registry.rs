//! An in-process registry that speaks the push and pull API, for what a real upstream cannot
//! do on demand: bearer tokens, redirects to a blob host, and faults (dropped connections,
//! corrupt bytes, statuses, slowness, responses held until the test releases them).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::Digest as _;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// What goes wrong with matching requests.
#[derive(Clone)]
pub enum Fault {
    /// Answer with this status (and `Retry-After` when given).
    Status(u16, Option<&'static str>),
    /// Send the headers and this many body bytes, then drop the connection.
    DropAfter(usize),
    /// Flip one byte in the middle of the body.
    Corrupt,
    /// Answer HEAD requests with this status, other methods as usual: a cache that knows a
    /// blob only once it has been asked to GET it.
    HeadStatus(u16),
    /// Answer 200 with an empty body (`Content-Length: 0`) whatever the content.
    Empty,
    /// Send the body in chunks of this size with this pause between them.
    Slow(usize, Duration),
    /// Send the first `n` body bytes, then wait until the gate opens.
    HoldAfter(usize, watch::Receiver<bool>),
    /// Send the first `n` bytes, wait for the gate, then the rest with one byte flipped.
    CorruptAfter(usize, watch::Receiver<bool>),
    /// Wait until the gate opens before answering at all.
    Gate(watch::Receiver<bool>),
    /// Never answer.
    Hang,
    /// The inner fault, for the first matching request only.
    Once(Box<Fault>),
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub range: Option<String>,
}

#[derive(Default)]
struct State {
    blobs: HashMap<String, Bytes>,
    /// (repo, reference) -> (media type, bytes); a tag and the digest both point here.
    manifests: HashMap<(String, String), (String, Bytes)>,
    tags: HashMap<String, Vec<String>>,
    faults: Vec<(String, Fault)>,
    log: Vec<Logged>,
    blob_host_log: Vec<Logged>,
    uploads: HashMap<String, Vec<u8>>,
    tokens: Vec<String>,
    token_requests: usize,
}

#[derive(Clone, Default)]
pub struct Options {
    /// Require bearer tokens; the token service wants these Basic credentials if set.
    pub bearer: Option<Option<(String, String)>>,
    /// Require Basic credentials on every request.
    pub basic: Option<(String, String)>,
    /// Redirect blob GETs to a second host.
    pub redirect_blobs: bool,
    /// The blob host wants a bearer token of its own, from its own realm.
    pub blob_host_bearer: bool,
    /// Serve the referrers API (otherwise 404, as distribution 2.x does).
    pub referrers_api: bool,
    /// Paginate tag lists with this page size and a `Link` header.
    pub tag_page: Option<usize>,
    /// A wrong `Docker-Content-Digest` on manifests.
    pub lie_about_manifest_digest: bool,
}

pub struct TestRegistry {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TestRegistry {
    pub async fn start() -> TestRegistry {
        TestRegistry::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> TestRegistry {
        let state = Arc::new(Mutex::new(State::default()));
        let blob_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let blob_host = blob_listener.local_addr().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ctx = Arc::new(Ctx {
            state: state.clone(),
            opts,
            addr,
            blob_host,
        });
        let registry_task = serve(listener, ctx.clone(), |ctx, req| Box::pin(registry(ctx, req)));
        let blob_task = serve(blob_listener, ctx, |ctx, req| Box::pin(blob_host_handler(ctx, req)));
        TestRegistry {
            addr,
            state,
            tasks: vec![registry_task, blob_task],
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening and drops every connection: the upstream is gone.
    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }

    pub fn put_blob(&self, bytes: impl Into<Bytes>) -> String {
        let bytes = bytes.into();
        let d = sha256(&bytes);
        self.state.lock().unwrap().blobs.insert(d.clone(), bytes);
        d
    }

    /// Stores a manifest under its digest and, if given, a tag. Returns its digest.
    pub fn put_manifest(&self, repo: &str, tag: Option<&str>, media_type: &str, bytes: impl Into<Bytes>) -> String {
        let bytes = bytes.into();
        let d = sha256(&bytes);
        let mut s = self.state.lock().unwrap();
        s.manifests
            .insert((repo.into(), d.clone()), (media_type.into(), bytes.clone()));
        if let Some(tag) = tag {
            s.manifests
                .insert((repo.into(), tag.into()), (media_type.into(), bytes));
            let tags = s.tags.entry(repo.into()).or_default();
            if !tags.iter().any(|t| t == tag) {
                tags.push(tag.into());
            }
        }
        d
    }

    /// Stores bytes under any reference, as a broken registry might.
    pub fn put_at(&self, repo: &str, reference: &str, media_type: &str, bytes: impl Into<Bytes>) {
        self.state
            .lock()
            .unwrap()
            .manifests
            .insert((repo.into(), reference.into()), (media_type.into(), bytes.into()));
    }

    pub fn delete_tag(&self, repo: &str, tag: &str) {
        let mut s = self.state.lock().unwrap();
        s.manifests.remove(&(repo.to_owned(), tag.to_owned()));
        s.tags.entry(repo.into()).or_default().retain(|t| t != tag);
    }

    /// An image: config + layers of the given sizes, with a manifest tagged `tag`.
    /// Returns (manifest digest, manifest bytes, layer digests).
    pub fn put_image(&self, repo: &str, tag: &str, layer_sizes: &[usize], seed: u8) -> (String, Bytes, Vec<String>) {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#);
        let config_digest = self.put_blob(config.clone());
        let mut layers = Vec::new();
        for (i, size) in layer_sizes.iter().enumerate() {
            let bytes: Vec<u8> = (0..*size)
                .map(|j| (j as u8).wrapping_mul(31).wrapping_add(seed).wrapping_add(i as u8))
                .collect();
            let len = bytes.len();
            layers.push((self.put_blob(bytes), len));
        }
        let layer_json: Vec<String> = layers
            .iter()
            .map(|(d, len)| {
                format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{len}}}"#)
            })
            .collect();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{}]}}"#,
            config.len(),
            layer_json.join(",")
        );
        let bytes = Bytes::from(manifest);
        let d = self.put_manifest(repo, Some(tag), OCI_MANIFEST, bytes.clone());
        (d, bytes, layers.into_iter().map(|(d, _)| d).collect())
    }

    /// A manifest whose config has `config_media_type` and whose layers have the given media
    /// types (small distinct contents). Returns (digest, bytes, blob digests).
    pub fn put_artifact(
        &self,
        repo: &str,
        tag: Option<&str>,
        config_media_type: &str,
        layer_media_types: &[&str],
    ) -> (String, Bytes, Vec<String>) {
        let config = format!(r#"{{"kind":"{config_media_type}","repo":"{repo}","tag":"{tag:?}"}}"#);
        let config_digest = self.put_blob(config.clone());
        let mut blobs = vec![config_digest.clone()];
        let mut layers = Vec::new();
        for (i, media) in layer_media_types.iter().enumerate() {
            let content = format!("layer {i} of {repo} {tag:?} {media}");
            let d = self.put_blob(content.clone());
            blobs.push(d.clone());
            layers.push(format!(
                r#"{{"mediaType":"{media}","digest":"{d}","size":{}}}"#,
                content.len()
            ));
        }
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{config_media_type}","digest":"{config_digest}","size":{}}},"layers":[{}]}}"#,
            config.len(),
            layers.join(",")
        );
        let bytes = Bytes::from(manifest);
        (self.put_manifest(repo, tag, OCI_MANIFEST, bytes.clone()), bytes, blobs)
    }

    /// An index over `(digest, size, "os/arch")` children.
    pub fn put_index(&self, repo: &str, tag: &str, children: &[(&str, usize, &str)]) -> (String, Bytes) {
        let entries: Vec<String> = children
            .iter()
            .map(|(d, size, platform)| {
                let (os, arch) = platform.split_once('/').unwrap();
                format!(r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":{size},"platform":{{"os":"{os}","architecture":"{arch}"}}}}"#)
            })
            .collect();
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
            entries.join(",")
        );
        let bytes = Bytes::from(index);
        (self.put_manifest(repo, Some(tag), OCI_INDEX, bytes.clone()), bytes)
    }

    /// A referrer of `subject` with this artifact type. Returns its digest.
    pub fn put_referrer(&self, repo: &str, subject: &str, subject_size: usize, artifact_type: &str) -> String {
        let empty = self.put_blob("{}");
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{artifact_type}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":{subject_size}}}}}"#
        );
        self.put_manifest(repo, None, OCI_MANIFEST, m)
    }

    /// Faults apply to requests whose path contains `path_part`, first added first.
    pub fn fault(&self, path_part: &str, fault: Fault) {
        self.state.lock().unwrap().faults.push((path_part.into(), fault));
    }

    pub fn clear_faults(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    /// Invalidates every token issued so far, as an expiry would.
    pub fn expire_tokens(&self) {
        self.state.lock().unwrap().tokens.clear();
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn blob_host_log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().blob_host_log.clone()
    }

    /// Requests with this method whose path contains `part`.
    pub fn count(&self, method: &str, part: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|l| l.method == method && l.path.contains(part))
            .count()
    }

    pub fn total_requests(&self) -> usize {
        self.state.lock().unwrap().log.len()
    }

    pub fn token_requests(&self) -> usize {
        self.state.lock().unwrap().token_requests
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Ctx {
    state: Arc<Mutex<State>>,
    opts: Options,
    addr: SocketAddr,
    blob_host: SocketAddr,
}

type Handler =
    fn(Arc<Ctx>, Request<Incoming>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>>;

fn serve(listener: TcpListener, ctx: Arc<Ctx>, handler: Handler) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let ctx = ctx.clone();
            conns.spawn(async move {
                let svc = service_fn(move |req| {
                    let ctx = ctx.clone();
                    async move { Ok::<_, Infallible>(handler(ctx, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn error(status: StatusCode, code: &str) -> Response<Body> {
    let body = format!(r#"{{"errors":[{{"code":"{code}","message":"test registry"}}]}}"#);
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .unwrap()
}

fn fault_for(ctx: &Ctx, path: &str) -> Option<Fault> {
    let mut s = ctx.state.lock().unwrap();
    let i = s.faults.iter().position(|(p, _)| path.contains(p.as_str()))?;
    match s.faults[i].1.clone() {
        Fault::Once(inner) => {
            s.faults.remove(i);
            Some(*inner)
        }
        f => Some(f),
    }
}

fn log(ctx: &Ctx, req: &Request<Incoming>, blob_host: bool) {
    let entry = Logged {
        method: req.method().to_string(),
        path: req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        authorization: req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        range: req
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let mut s = ctx.state.lock().unwrap();
    if blob_host {
        s.blob_host_log.push(entry);
    } else {
        s.log.push(entry);
    }
}

/// Checks the request's credentials; `Some(response)` refuses it.
fn authenticate(ctx: &Ctx, req: &Request<Incoming>, repo: &str) -> Option<Response<Body>> {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some((u, p)) = &ctx.opts.basic {
        if auth != super::basic(u, p) {
            let mut r = error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Basic realm=\"test\"".parse().unwrap());
            return Some(r);
        }
    }
    if ctx.opts.bearer.is_some() {
        let ok = auth
            .strip_prefix("Bearer ")
            .is_some_and(|t| ctx.state.lock().unwrap().tokens.iter().any(|x| x == t));
        if !ok {
            let mut r = error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
            let challenge = format!(
                r#"Bearer realm="http://{}/token",service="test-registry",scope="repository:{repo}:pull""#,
                ctx.addr
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge.parse().unwrap());
            return Some(r);
        }
    }
    None
}

fn token(ctx: &Ctx, req: &Request<Incoming>) -> Response<Body> {
    let mut s = ctx.state.lock().unwrap();
    s.token_requests += 1;
    if let Some(Some((u, p))) = &ctx.opts.bearer {
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth != super::basic(u, p) {
            return error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        }
    }
    let t = format!("token-{}", s.token_requests);
    s.tokens.push(t.clone());
    let body = format!(r#"{{"token":"{t}","expires_in":300}}"#);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .unwrap()
}

async fn registry(ctx: Arc<Ctx>, req: Request<Incoming>) -> Response<Body> {
    log(&ctx, &req, false);
    let path = req.uri().path().to_owned();
    if path == "/token" {
        return token(&ctx, &req);
    }
    if path == "/v2/" {
        return authenticate(&ctx, &req, "").unwrap_or_else(|| Response::new(full("{}")));
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND");
    };
    let (repo, kind, reference) = split(rest);
    if let Some(refused) = authenticate(&ctx, &req, &repo) {
        return refused;
    }
    match (req.method().clone(), kind) {
        (Method::POST, "uploads") => {
            let id = format!("u{}", ctx.state.lock().unwrap().uploads.len());
            ctx.state.lock().unwrap().uploads.insert(id.clone(), Vec::new());
            return Response::builder()
                .status(StatusCode::ACCEPTED)
                .header(header::LOCATION, format!("/v2/{repo}/blobs/uploads/{id}"))
                .body(full(""))
                .unwrap();
        }
        (Method::PUT, "uploads") => {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let d = sha256(&body);
            ctx.state.lock().unwrap().blobs.insert(d.clone(), body);
            return Response::builder()
                .status(StatusCode::CREATED)
                .header("docker-content-digest", d)
                .body(full(""))
                .unwrap();
        }
        (Method::PUT, "manifests") => {
            let media = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(OCI_MANIFEST)
                .to_owned();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let tag = (!reference.contains(':')).then_some(reference.as_str());
            let d = TestRegistry::put_manifest_into(&ctx.state, &repo, tag, &media, body);
            return Response::builder()
                .status(StatusCode::CREATED)
                .header("docker-content-digest", d)
                .body(full(""))
                .unwrap();
        }
        _ => {}
    }
    let fault = fault_for(&ctx, &path);
    if let Some(f) = &fault {
        match f {
            Fault::Status(code, retry) => {
                let mut r = error(StatusCode::from_u16(*code).unwrap(), "TEST_FAULT");
                if let Some(after) = retry {
                    r.headers_mut().insert(header::RETRY_AFTER, after.parse().unwrap());
                }
                return r;
            }
            Fault::Gate(gate) => {
                let _ = gate.clone().wait_for(|open| *open).await;
            }
            Fault::Hang => std::future::pending::<()>().await,
            Fault::HeadStatus(code) if req.method() == Method::HEAD => {
                return error(StatusCode::from_u16(*code).unwrap(), "BLOB_UNKNOWN");
            }
            _ => {}
        }
    }
    let head = req.method() == Method::HEAD;
    match kind {
        "manifests" => {
            let found = ctx
                .state
                .lock()
                .unwrap()
                .manifests
                .get(&(repo.clone(), reference.clone()))
                .cloned();
            let Some((media, bytes)) = found else {
                return error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
            };
            let digest = if ctx.opts.lie_about_manifest_digest {
                sha256(b"a lie")
            } else {
                sha256(&bytes)
            };
            let resp = Response::builder()
                .header(header::CONTENT_TYPE, media)
                .header("docker-content-digest", digest);
            send(resp, bytes, head, fault)
        }
        "blobs" => {
            let found = ctx.state.lock().unwrap().blobs.get(&reference).cloned();
            let Some(bytes) = found else {
                return error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
            };
            if ctx.opts.redirect_blobs && !head {
                let location = format!("http://{}/blob/{reference}?signature=x", ctx.blob_host);
                return Response::builder()
                    .status(StatusCode::TEMPORARY_REDIRECT)
                    .header(header::LOCATION, location)
                    .body(full(""))
                    .unwrap();
            }
            let mut resp = Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header("docker-content-digest", &reference);
            // Open-ended ranges (`bytes=N-`), as a resuming client asks.
            let from = req
                .headers()
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<usize>().ok());
            let bytes = match from {
                Some(n) if n < bytes.len() => {
                    let range = format!("bytes {n}-{}/{}", bytes.len() - 1, bytes.len());
                    resp = resp
                        .status(StatusCode::PARTIAL_CONTENT)
                        .header(header::CONTENT_RANGE, range);
                    bytes.slice(n..)
                }
                _ => bytes,
            };
            send(resp, bytes, head, fault)
        }
        "tags" => {
            let mut tags = ctx.state.lock().unwrap().tags.get(&repo).cloned().unwrap_or_default();
            if tags.is_empty() {
                return error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
            }
            // Unsorted on purpose: entrepot must sort.
            tags.reverse();
            let query = req.uri().query().unwrap_or("");
            let start: usize = query
                .split('&')
                .find_map(|p| p.strip_prefix("page="))
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            let mut resp = Response::builder().header(header::CONTENT_TYPE, "application/json");
            let page: Vec<String> = match ctx.opts.tag_page {
                Some(size) => {
                    if start + size < tags.len() {
                        resp = resp.header(
                            header::LINK,
                            format!("</v2/{repo}/tags/list?page={}>; rel=\"next\"", start + size),
                        );
                    }
                    tags.into_iter().skip(start).take(size).collect()
                }
                None => tags,
            };
            resp.body(full(serde_json::json!({ "name": repo, "tags": page }).to_string()))
                .unwrap()
        }
        "referrers" if ctx.opts.referrers_api => {
            let s = ctx.state.lock().unwrap();
            let mut list = Vec::new();
            for ((r, reference), (media, bytes)) in &s.manifests {
                if r != &repo || !reference.starts_with("sha256:") {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
                if v["subject"]["digest"].as_str() == Some(reference_of(&path)) {
                    let artifact = v["artifactType"]
                        .as_str()
                        .or(v["config"]["mediaType"].as_str())
                        .unwrap_or_default();
                    list.push(serde_json::json!({"mediaType": media, "digest": reference, "size": bytes.len(), "artifactType": artifact}));
                }
            }
            let body = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list}).to_string();
            Response::builder()
                .header(header::CONTENT_TYPE, OCI_INDEX)
                .body(full(body))
                .unwrap()
        }
        _ => error(StatusCode::NOT_FOUND, "NOT_FOUND"),
    }
}

impl TestRegistry {
    fn put_manifest_into(state: &Mutex<State>, repo: &str, tag: Option<&str>, media: &str, bytes: Bytes) -> String {
        let d = sha256(&bytes);
        let mut s = state.lock().unwrap();
        s.manifests
            .insert((repo.into(), d.clone()), (media.into(), bytes.clone()));
        if let Some(tag) = tag {
            s.manifests.insert((repo.into(), tag.into()), (media.into(), bytes));
            s.tags.entry(repo.into()).or_default().push(tag.into());
        }
        d
    }
}

fn reference_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("")
}

/// `<repo>/<kind>/<reference>` with `kind` one of manifests, blobs, uploads, tags, referrers.
fn split(rest: &str) -> (String, &'static str, String) {
    if let Some(repo) = rest.strip_suffix("/tags/list") {
        return (repo.into(), "tags", String::new());
    }
    for (marker, kind) in [
        ("/blobs/uploads", "uploads"),
        ("/manifests/", "manifests"),
        ("/blobs/", "blobs"),
        ("/referrers/", "referrers"),
    ] {
        if let Some(i) = rest.rfind(marker) {
            return (
                rest[..i].into(),
                kind,
                rest[i + marker.len()..].trim_start_matches('/').into(),
            );
        }
    }
    (rest.into(), "unknown", String::new())
}

async fn blob_host_handler(ctx: Arc<Ctx>, req: Request<Incoming>) -> Response<Body> {
    log(&ctx, &req, true);
    if ctx.opts.blob_host_bearer {
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if req.uri().path() == "/token" {
            return Response::new(full(r#"{"token":"blob-token"}"#));
        }
        if auth != "Bearer blob-token" {
            let mut r = error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
            let challenge = format!(r#"Bearer realm="http://{}/token",service="blob-host""#, ctx.blob_host);
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge.parse().unwrap());
            return r;
        }
    }
    let digest = req.uri().path().trim_start_matches("/blob/").to_owned();
    let found = ctx.state.lock().unwrap().blobs.get(&digest).cloned();
    let fault = fault_for(&ctx, req.uri().path());
    match found {
        Some(bytes) => send(
            Response::builder().header(header::CONTENT_TYPE, "application/octet-stream"),
            bytes,
            false,
            fault,
        ),
        None => error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
    }
}

/// Sends `bytes` with `Content-Length`, shaped by a body fault.
fn send(resp: http::response::Builder, bytes: Bytes, head: bool, fault: Option<Fault>) -> Response<Body> {
    let bytes = if matches!(fault, Some(Fault::Empty)) {
        Bytes::new()
    } else {
        bytes
    };
    let resp = resp.header(header::CONTENT_LENGTH, bytes.len());
    if head {
        return resp.body(full("")).unwrap();
    }
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    tokio::spawn(async move {
        let chunk = 64 * 1024;
        match fault {
            Some(Fault::DropAfter(n)) => {
                let _ = tx.send(Ok(Frame::data(bytes.slice(..n.min(bytes.len()))))).await;
                // Let the bytes reach the client before the connection drops.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                let _ = tx.send(Err(std::io::Error::other("dropped"))).await;
            }
            Some(Fault::Corrupt) => {
                let mut v = bytes.to_vec();
                let mid = v.len() / 2;
                v[mid] ^= 0xff;
                for c in v.chunks(chunk) {
                    let _ = tx.send(Ok(Frame::data(Bytes::copy_from_slice(c)))).await;
                }
            }
            Some(Fault::Slow(size, pause)) => {
                for c in bytes.chunks(size.max(1)) {
                    if tx.send(Ok(Frame::data(Bytes::copy_from_slice(c)))).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(pause).await;
                }
            }
            Some(Fault::CorruptAfter(n, mut gate)) => {
                let n = n.min(bytes.len() - 1);
                let _ = tx.send(Ok(Frame::data(bytes.slice(..n)))).await;
                let _ = gate.wait_for(|open| *open).await;
                let mut rest = bytes.slice(n..).to_vec();
                let last = rest.len() - 1;
                rest[last] ^= 0xff;
                let _ = tx.send(Ok(Frame::data(Bytes::from(rest)))).await;
            }
            Some(Fault::HoldAfter(n, mut gate)) => {
                let n = n.min(bytes.len());
                let _ = tx.send(Ok(Frame::data(bytes.slice(..n)))).await;
                let _ = gate.wait_for(|open| *open).await;
                for c in bytes.slice(n..).chunks(chunk) {
                    let _ = tx.send(Ok(Frame::data(Bytes::copy_from_slice(c)))).await;
                }
            }
            _ => {
                for c in bytes.chunks(chunk) {
                    if tx.send(Ok(Frame::data(Bytes::copy_from_slice(c)))).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    resp.body(ChannelBody { rx }.boxed()).unwrap()
}

struct ChannelBody {
    rx: mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx)
    }
}
