//! The upstream registries: the closed table of `[[upstream]]`s, and for each one a pooled
//! HTTP client that authenticates, follows redirects and applies timeouts.
//!
//! Nothing here caches content; only tokens are remembered.

pub mod auth;
mod calls;
mod target;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::cluster::{self, Cluster};
use crate::config::{Config, UpstreamConfig};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::store::shared::Shared;
use crate::sync::Locked;
use auth::{Challenge, TokenCache};
pub use calls::{BlobBody, ManifestBody, ManifestHead, Origin, TagPage};
pub use target::Target;

const USER_AGENT: &str = concat!("entrepot/", env!("CARGO_PKG_VERSION"));
const MAX_REDIRECTS: usize = 5;

/// The closed table of upstreams. A name not in it is never dialled.
pub struct Upstreams {
    all: Vec<Arc<Upstream>>,
    default: Option<Arc<Upstream>>,
    cluster: Option<Arc<Cluster>>,
    shared: Option<Arc<Shared>>,
}

impl Upstreams {
    pub fn build(config: &Config, metrics: Arc<Metrics>) -> Result<Upstreams> {
        let cluster = config.cluster.clone().map(|c| Arc::new(Cluster::new(c)));
        let shared = match &config.storage {
            Some(s) => Some(Arc::new(Shared::new(s).map_err(|e| Error::Internal(e.to_string()))?)),
            None => None,
        };
        let all: Vec<Arc<Upstream>> = config
            .upstreams
            .iter()
            .map(|u| {
                let mut up = Upstream::build(u.clone(), metrics.clone())?;
                if let Some(c) = &cluster {
                    up.owners = Some(Owners::build(u, c, &metrics)?);
                }
                up.shared = shared.clone();
                Ok(Arc::new(up))
            })
            .collect::<Result<_>>()?;
        let default = config
            .default_upstream
            .as_ref()
            .and_then(|n| all.iter().find(|u| &u.config.name == n).cloned());
        Ok(Upstreams {
            all,
            default,
            cluster,
            shared,
        })
    }

    /// The shared blob tier, with `[storage]`.
    pub fn shared(&self) -> Option<&Arc<Shared>> {
        self.shared.as_ref()
    }

    /// The cluster this node is part of, with `[cluster]`.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// The upstream known by this name or alias (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        let name = name.to_ascii_lowercase();
        self.all.iter().find(|u| u.config.names().any(|n| n == name))
    }

    pub fn default_upstream(&self) -> Option<&Arc<Upstream>> {
        self.default.as_ref()
    }

    /// Every upstream, in the config's order.
    pub fn all(&self) -> &[Arc<Upstream>] {
        &self.all
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

pub struct Upstream {
    pub config: UpstreamConfig,
    client: HttpClient,
    tokens: TokenCache,
    metrics: Arc<Metrics>,
    fetches: Arc<tokio::sync::Semaphore>,
    health: std::sync::Mutex<Health>,
    /// With `[cluster]`: this upstream reached through each other node, for what it owns.
    owners: Option<Owners>,
    /// Set when this is another node standing in for an upstream: how to authenticate.
    peer: Option<PeerAuth>,
    /// The shared blob tier (`[storage]`), read before the upstream and written after it.
    shared: Option<Arc<Shared>>,
}

/// An upstream through the other nodes of the cluster.
struct Owners {
    cluster: Arc<Cluster>,
    /// Per other node, keyed by its URL as `[cluster] peers` writes it.
    via: Vec<(String, Arc<Upstream>)>,
}

struct PeerAuth {
    authorization: String,
    fingerprint: HeaderValue,
}

impl Owners {
    fn build(base: &UpstreamConfig, cluster: &Arc<Cluster>, metrics: &Arc<Metrics>) -> Result<Owners> {
        let mut via = Vec::new();
        for peer in cluster.others() {
            let url: Uri = peer.parse().map_err(Error::internal)?;
            let mut config = base.clone();
            config.name = format!("{}@{}", base.name, url.authority().map_or(peer, |a| a.as_str()));
            config.url = url;
            config.aliases = Vec::new();
            config.credentials = None;
            config.ca_file = cluster.ca_file().map(Path::to_path_buf);
            // The other node knows this upstream by its name, as a path prefix.
            config.repository_prefix = Some(base.name.clone());
            config.library_prefix = false;
            // A node that is gone should cost little; one that is waiting on the upstream
            // itself is given the upstream's own time, and some.
            config.connect_timeout = config.connect_timeout.min(Duration::from_secs(2));
            config.response_timeout += Duration::from_secs(5);
            config.idle_timeout += Duration::from_secs(5);
            let mut up = Upstream::build(config, metrics.clone())?;
            up.peer = Some(PeerAuth {
                authorization: cluster.authorization(),
                fingerprint: HeaderValue::from_str(cluster.fingerprint()).map_err(Error::internal)?,
            });
            via.push((peer.to_owned(), Arc::new(up)));
        }
        Ok(Owners {
            cluster: cluster.clone(),
            via,
        })
    }
}

/// How an upstream has been answering, for the status page.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// When it last answered (any status but 429 and 5xx), in Unix milliseconds.
    pub last_answer_ms: Option<u64>,
    /// How long that answer took to its headers.
    pub last_latency: Option<Duration>,
    /// When a request last failed, and why.
    pub last_failure: Option<(u64, String)>,
}

impl Health {
    /// Answering, failing, or not asked yet: whichever happened last.
    pub fn reachable(&self) -> Option<bool> {
        match (self.last_answer_ms, &self.last_failure) {
            (None, None) => None,
            (Some(_), None) => Some(true),
            (None, Some(_)) => Some(false),
            (Some(ok), Some((failed, _))) => Some(ok > *failed),
        }
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

fn tls_config(config: &UpstreamConfig) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &config.ca_file {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| Error::Internal(format!("upstream {}: ca_file {}: {e}", config.name, path.display())))?;
        for cert in certs {
            let cert = cert.map_err(|e| Error::Internal(format!("upstream {}: ca_file: {e}", config.name)))?;
            roots
                .add(cert)
                .map_err(|e| Error::Internal(format!("upstream {}: ca_file: {e}", config.name)))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::internal)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Upstream {
    fn build(config: UpstreamConfig, metrics: Arc<Metrics>) -> Result<Upstream> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(&config)?)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Upstream {
            fetches: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_fetches)),
            config,
            client,
            tokens: TokenCache::default(),
            metrics,
            health: Default::default(),
            owners: None,
            peer: None,
            shared: None,
        })
    }

    /// The shared blob tier, with `[storage]`.
    pub fn shared(&self) -> Option<&Arc<Shared>> {
        self.shared.as_ref()
    }

    /// The other node that owns `key`, when another node does.
    fn owner_of(&self, key: &str) -> Option<&Arc<Upstream>> {
        let owners = self.owners.as_ref()?;
        let owner = owners.cluster.owner(key);
        owners.via.iter().find(|(p, _)| p == owner).map(|(_, up)| up)
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The repository name this upstream knows `repo` by: with `repository_prefix`, the
    /// prefix first (an upstream that is itself a cache of several registries).
    pub fn remote<'a>(&self, repo: &'a str) -> std::borrow::Cow<'a, str> {
        match &self.config.repository_prefix {
            Some(prefix) => format!("{prefix}/{repo}").into(),
            None => repo.into(),
        }
    }

    pub fn health(&self) -> Health {
        self.health.locked().clone()
    }

    /// A turn among the blob downloads this upstream allows at once.
    pub async fn fetch_permit(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.fetches
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Counts bytes received from this upstream (the egress the cache is there to save).
    pub fn count_bytes(&self, n: usize) {
        self.metrics.upstream_bytes.add(&[("upstream", self.name())], n as u64);
    }

    /// Sends `method` to `path` (`/v2/…`), authenticating for pull access to `repo` and
    /// following redirects. The answer's status is the caller's to judge.
    ///
    /// A token is only ever sent to the host that asked for it: the distribution-spec forbids
    /// forwarding `Authorization` across hosts, and a blob host a registry redirects to may
    /// challenge on its own (registry.k8s.io's backends do). The configured credentials go
    /// only to the realm named by the upstream's own challenge.
    async fn send(&self, method: Method, path: &str, accept: Option<&str>, repo: &str) -> Result<Response<Incoming>> {
        self.send_range(method, path, accept, repo, None).await
    }

    /// `send`, asking for the bytes from `from` on when given (resuming a download).
    /// Requests are idempotent (GET, HEAD): a 502, 503 or 504 is tried again twice, after
    /// 100 ms and 300 ms. A refused connection is not: the upstream is down, and cached
    /// content should answer without delay.
    async fn send_range(
        &self,
        method: Method,
        path: &str,
        accept: Option<&str>,
        repo: &str,
        from: Option<u64>,
    ) -> Result<Response<Incoming>> {
        let mut delay = Duration::from_millis(100);
        for attempt in 0.. {
            let resp = self.send_authenticated(&method, path, accept, repo, from).await?;
            let transient = matches!(
                resp.status(),
                StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
            );
            if !transient || attempt == 2 {
                return Ok(resp);
            }
            tracing::debug!(upstream = %self.name(), path, status = %resp.status(), "retrying");
            tokio::time::sleep(delay).await;
            delay *= 3;
        }
        unreachable!("the loop returns on its last attempt")
    }

    async fn send_authenticated(
        &self,
        method: &Method,
        path: &str,
        accept: Option<&str>,
        repo: &str,
        from: Option<u64>,
    ) -> Result<Response<Incoming>> {
        let method = method.clone();
        if let Some(peer) = &self.peer {
            let uri = self.uri(path)?;
            return self
                .send_once(&method, &uri, accept, Some(&peer.authorization), from)
                .await;
        }
        let scope = format!("repository:{repo}:pull");
        let mut uri = self.uri(path)?;
        let home = origin(&uri);
        let (mut hops, mut challenges) = (0, 0);
        loop {
            let authorization = self.authorization_for(&uri, &home, &scope).await?;
            let resp = self
                .send_once(&method, &uri, accept, authorization.as_deref(), from)
                .await?;
            if is_redirect(&resp) {
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(self.bad(format!("more than {MAX_REDIRECTS} redirects")));
                }
                uri = self.next_hop(&uri, &resp)?;
                continue;
            }
            if resp.status() != StatusCode::UNAUTHORIZED || challenges == 2 {
                return Ok(resp);
            }
            challenges += 1;
            let at_home = origin(&uri) == home;
            let key = token_key(&uri, &scope);
            self.tokens.forget(&key);
            let challenge = auth::parse_challenge(
                resp.headers()
                    .get_all(header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            );
            match challenge {
                Some(c @ Challenge::Bearer { .. }) => {
                    if at_home {
                        self.tokens.set_challenge(c.clone());
                    }
                    self.fetch_token(&c, &scope, &key, at_home).await?;
                }
                Some(Challenge::Basic) if at_home && authorization.is_none() && self.config.credentials.is_some() => {
                    self.tokens.set_challenge(Challenge::Basic);
                }
                _ => return Ok(resp),
            }
        }
    }

    /// What to send to `uri`: a cached token for its host, or for the upstream's own host a
    /// token fetched ahead (the upstream challenged before) or Basic credentials.
    async fn authorization_for(&self, uri: &Uri, home: &str, scope: &str) -> Result<Option<String>> {
        let key = token_key(uri, scope);
        if let Some(t) = self.tokens.get(&key) {
            return Ok(Some(format!("Bearer {t}")));
        }
        if origin(uri) != home {
            return Ok(None);
        }
        match self.tokens.last_challenge() {
            Some(c @ Challenge::Bearer { .. }) => self.fetch_token(&c, scope, &key, true).await.map(Some),
            Some(Challenge::Basic) => Ok(self.config.credentials.as_ref().map(auth::basic_header)),
            None => Ok(None),
        }
    }

    /// Gets a token from a bearer challenge's realm and caches it under `key`.
    async fn fetch_token(
        &self,
        challenge: &Challenge,
        scope: &str,
        key: &str,
        with_credentials: bool,
    ) -> Result<String> {
        let Challenge::Bearer { realm, service, .. } = challenge else {
            return Err(Error::internal("not a bearer challenge"));
        };
        let mut query = vec![format!("scope={}", encode_query(scope))];
        if let Some(s) = service {
            query.insert(0, format!("service={}", encode_query(s)));
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let mut uri: Uri = format!("{realm}{sep}{}", query.join("&"))
            .parse()
            .map_err(|e| self.bad(format!("token realm {realm:?}: {e}")))?;
        if !matches!(uri.scheme_str(), Some("https") | Some("http")) {
            return Err(self.bad(format!("token realm {realm:?} is not an http(s) URL")));
        }
        let realm_origin = origin(&uri);
        let basic = self
            .config
            .credentials
            .as_ref()
            .filter(|_| with_credentials)
            .map(auth::basic_header);
        let mut hops = 0;
        let resp = loop {
            let auth = basic.as_deref().filter(|_| origin(&uri) == realm_origin);
            let resp = self
                .send_once(&Method::GET, &uri, Some("application/json"), auth, None)
                .await?;
            if !is_redirect(&resp) || hops == MAX_REDIRECTS {
                break resp;
            }
            hops += 1;
            uri = self.next_hop(&uri, &resp)?;
        };
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED => {
                return Err(Error::Unauthorized(format!(
                    "upstream {} refused the credentials",
                    self.name()
                )))
            }
            StatusCode::FORBIDDEN => {
                return Err(Error::Denied(format!(
                    "upstream {} token service denied {scope}",
                    self.name()
                )))
            }
            _ => return Err(self.status_error(&resp, Error::Unauthorized("token service: not found".into()))),
        }
        let body = read_small(resp.into_body(), 64 * 1024, self.config.idle_timeout)
            .await
            .map_err(|e| self.bad(format!("token response: {e}")))?;
        let (token, life) = serde_json::from_slice::<auth::TokenResponse>(&body)
            .ok()
            .and_then(auth::TokenResponse::into_token)
            .ok_or_else(|| self.bad("token response has no token".into()))?;
        self.tokens.put(key, token.clone(), life);
        Ok(format!("Bearer {token}"))
    }

    /// One request, bounded by the response timeout.
    async fn send_once(
        &self,
        method: &Method,
        uri: &Uri,
        accept: Option<&str>,
        authorization: Option<&str>,
        from: Option<u64>,
    ) -> Result<Response<Incoming>> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri.clone())
            .header(header::USER_AGENT, USER_AGENT);
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        if let Some(from) = from {
            req = req.header(header::RANGE, format!("bytes={from}-"));
        }
        if let Some(peer) = &self.peer {
            req = req.header(cluster::HEADER, peer.fingerprint.clone());
        }
        let req = req.body(Empty::new()).map_err(|e| self.bad(e.to_string()))?;
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(self.config.response_timeout, self.client.request(req)).await;
        self.metrics
            .upstream_latency
            .observe(&[("upstream", self.name())], started.elapsed());
        let took = started.elapsed();
        let (result, failure) = match &answer {
            Err(_) => (
                "timeout",
                Some(format!("no response within {:?}", self.config.response_timeout)),
            ),
            Ok(Err(e)) => ("unreachable", Some(format!("cannot connect: {}", error_chain(e)))),
            Ok(Ok(r)) if r.status() == StatusCode::TOO_MANY_REQUESTS => {
                ("throttled", Some("429 Too Many Requests".into()))
            }
            Ok(Ok(r)) if r.status().is_server_error() => ("error", Some(r.status().to_string())),
            Ok(Ok(_)) => ("answered", None),
        };
        self.metrics
            .upstream_requests
            .add(&[("upstream", self.name()), ("result", result)], 1);
        let mut health = self.health.locked();
        match failure {
            None => {
                health.last_answer_ms = Some(crate::clock::now_ms());
                health.last_latency = Some(took);
            }
            Some(why) => health.last_failure = Some((crate::clock::now_ms(), why)),
        }
        drop(health);
        match answer {
            Err(_) => Err(self.timeout(format!("no response within {:?}", self.config.response_timeout))),
            Ok(Err(e)) => Err(self.unavailable(&e)),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// Where a redirect points; an https upstream is never downgraded to http.
    fn next_hop<B>(&self, from: &Uri, resp: &Response<B>) -> Result<Uri> {
        let location = header_str(resp.headers(), header::LOCATION)
            .ok_or_else(|| self.bad(format!("{} without Location", resp.status())))?;
        let next = resolve(from, location).ok_or_else(|| self.bad(format!("bad redirect Location {location:?}")))?;
        if from.scheme_str() == Some("https") && next.scheme_str() != Some("https") {
            return Err(self.bad(format!("refusing redirect from https to {next}")));
        }
        tracing::debug!(upstream = %self.name(), from = %from.path(), to_host = ?next.host(), "following redirect");
        Ok(next)
    }

    fn uri(&self, path: &str) -> Result<Uri> {
        let base = &self.config.url;
        let scheme = base.scheme_str().unwrap_or("https");
        let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
        format!("{scheme}://{authority}{path}")
            .parse()
            .map_err(|e| Error::internal(format!("bad upstream path {path:?}: {e}")))
    }

    /// Maps a non-success upstream answer to our error; `not_found` is what a 404 means here.
    fn status_error<B>(&self, resp: &Response<B>, not_found: Error) -> Error {
        let status = resp.status();
        match status {
            StatusCode::NOT_FOUND => not_found,
            StatusCode::UNAUTHORIZED => {
                Error::Unauthorized(format!("upstream {} requires authentication", self.name()))
            }
            StatusCode::FORBIDDEN => Error::Denied(format!("upstream {} denied access", self.name())),
            StatusCode::TOO_MANY_REQUESTS => Error::TooManyRequests {
                upstream: self.name().to_owned(),
                retry_after: header_str(resp.headers(), header::RETRY_AFTER).map(str::to_owned),
            },
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
                Error::UpstreamUnavailable {
                    upstream: self.name().to_owned(),
                    detail: format!("status {status}"),
                }
            }
            _ => self.bad(format!("unexpected status {status}")),
        }
    }

    pub fn bad(&self, detail: String) -> Error {
        Error::UpstreamBad {
            upstream: self.name().to_owned(),
            detail,
        }
    }

    pub fn timeout(&self, detail: String) -> Error {
        Error::UpstreamTimeout {
            upstream: self.name().to_owned(),
            detail,
        }
    }

    fn unavailable(&self, e: &hyper_util::client::legacy::Error) -> Error {
        Error::UpstreamUnavailable {
            upstream: self.name().to_owned(),
            detail: error_chain(e),
        }
    }
}

/// An error and its sources, as one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut detail = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        detail = format!("{detail}: {s}");
        source = s.source();
    }
    detail
}

fn header_str(headers: &HeaderMap<HeaderValue>, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_redirect<B>(resp: &Response<B>) -> bool {
    resp.status().is_redirection() && resp.status() != StatusCode::NOT_MODIFIED
}

/// `scheme://authority`: the unit a credential belongs to.
fn origin(uri: &Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or(""),
        uri.authority().map(|a| a.as_str()).unwrap_or("")
    )
}

/// Tokens are cached per host and scope.
fn token_key(uri: &Uri, scope: &str) -> String {
    format!("{} {scope}", origin(uri))
}

/// Resolves a `Location` value against the URL that answered with it.
fn resolve(base: &Uri, location: &str) -> Option<Uri> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.parse().ok();
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}").parse().ok();
    }
    let path = if location.starts_with('/') {
        location.to_owned()
    } else {
        let dir = base.path().rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        format!("{dir}/{location}")
    };
    format!("{scheme}://{authority}{path}").parse().ok()
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads a small body whole, refusing more than `limit` bytes and idle gaps over `idle`.
async fn read_small(mut body: Incoming, limit: usize, idle: Duration) -> std::result::Result<Bytes, String> {
    use http_body_util::BodyExt;
    let mut buf = bytes::BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(format!("body stalled for {idle:?}")),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(format!("body larger than {limit} bytes"));
            }
            buf.extend_from_slice(&data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_locations() {
        let base: Uri = "https://r.example/v2/a/blobs/sha256:x".parse().unwrap();
        assert_eq!(
            resolve(&base, "https://cdn.example/b?sig=1").unwrap().to_string(),
            "https://cdn.example/b?sig=1"
        );
        assert_eq!(resolve(&base, "/other").unwrap().to_string(), "https://r.example/other");
        assert_eq!(
            resolve(&base, "//cdn.example/x").unwrap().to_string(),
            "https://cdn.example/x"
        );
        assert_eq!(
            resolve(&base, "y").unwrap().to_string(),
            "https://r.example/v2/a/blobs/y"
        );
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(
            encode_query("repository:library/alpine:pull"),
            "repository%3Alibrary%2Falpine%3Apull"
        );
    }
}
