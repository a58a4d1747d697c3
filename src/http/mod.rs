//! The distribution-spec pull API over HTTP: routing, headers, ranges, and the one place
//! where errors become responses and every request gets its access line (`logging`).
//!
//! A request reads top to bottom: `handle` → `dispatch` (method, route, upstream) → the
//! endpoint's handler (`blobs`, `manifests`, `lists`) → the cache.

pub mod admin;
mod blobs;
pub mod body;
pub mod frames;
pub mod headers;
pub mod health;
mod lists;
mod manifests;
pub mod range;
mod rescue;
pub mod route;
pub mod sendfile;
pub mod status;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use tracing::{field, Instrument};

use crate::access::Identity;
use crate::app::App;
use crate::cache::Outcome;
use crate::error::{Error, Result};
use crate::logging;
use body::Body;
use route::Endpoint;

/// The hyper service function. It never fails: errors are answered, not propagated.
pub async fn handle<B>(app: Arc<App>, peer: SocketAddr, req: Request<B>) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    // At DEBUG: the request's context for what happens inside it, when someone asks for
    // it. The access line is written apart, without a span's cost on every request.
    let span = tracing::debug_span!(
        "request",
        %peer,
        method = %req.method(),
        path = %req.uri().path(),
        route = field::Empty,
        upstream = field::Empty,
        repo = field::Empty,
        cache = field::Empty,
        policy = field::Empty,
    );
    let head = req.method() == Method::HEAD;
    // Parsed once: the route serves the dispatch and labels the metrics.
    let path = req.uri().path();
    let route = route::parse(path);
    let label = match &route {
        Ok(r) => r.label(),
        Err(_) if health::PATHS.contains(&path) || path == status::PATH => "ops",
        Err(_) => "other",
    };
    let mut resp = match dispatch(&app, &req, route).instrument(span.clone()).await {
        Ok(resp) => resp,
        Err(e) => {
            let _enter = span.enter();
            if e.status().is_server_error() {
                tracing::warn!(%peer, method = %req.method(), path, error = %e, "request failed");
            } else {
                tracing::debug!(error = %e, "request refused");
            }
            rescue::rescue(&e, head)
        }
    };
    resp.headers_mut().insert(
        headers::API_VERSION,
        HeaderValue::from_static(headers::API_VERSION_VALUE),
    );
    count(&app, label, req.method(), &resp);
    let header = |name| resp.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    logging::access(&logging::Access {
        peer,
        method: req.method().as_str(),
        path,
        query: req.uri().query(),
        route: label,
        status: resp.status().as_u16(),
        bytes: header(header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
        cache: header(headers::CACHE_STATUS),
        elapsed: started.elapsed(),
    });
    Ok(resp)
}

/// Counts the request, and how the cache served it, by route.
fn count(app: &App, route: &'static str, method: &Method, resp: &Response<Body>) {
    let method = match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        _ => "other",
    };
    let metrics = &app.cache.metrics;
    metrics.requests.add(
        &[("route", route), ("method", method), ("status", resp.status().as_str())],
        1,
    );
    if let Some(result) = resp.headers().get(headers::CACHE_STATUS).and_then(|v| v.to_str().ok()) {
        metrics.lookups.add(&[("kind", route), ("result", result)], 1);
    }
}

/// Whether another node of the cluster asks, with the cluster's token. A node whose peer
/// list differs is refused (421): two nodes that disagree on who owns what never pass a
/// request back and forth; the asking node fetches itself instead.
fn from_peer(app: &App, headers: &http::HeaderMap) -> Result<bool> {
    let Some(cluster) = app.upstreams.cluster() else {
        return Ok(false);
    };
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !authorization.is_some_and(|a| cluster.is_peer_token(a)) {
        return Ok(false);
    }
    match headers.get(crate::cluster::HEADER).and_then(|v| v.to_str().ok()) {
        Some(theirs) if theirs == cluster.fingerprint() => Ok(true),
        theirs => Err(Error::Misdirected(format!(
            "the asking node's [cluster] peers differ from this node's (fingerprint {theirs:?} there, {:?} here)",
            cluster.fingerprint()
        ))),
    }
}

async fn dispatch<B>(app: &Arc<App>, req: &Request<B>, route: Result<route::Route>) -> Result<Response<Body>> {
    check_framing(req)?;
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Err(Error::Unsupported(format!(
            "{} is not supported: entrepot is a read-only cache",
            req.method()
        )));
    }
    let path = req.uri().path();
    if app.config.metrics_listen.is_none() && health::PATHS.contains(&path) {
        return Box::pin(health::handle(app, path)).await;
    }
    let who = || {
        app.access
            .authenticate(req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()))
    };
    if app.config.metrics_listen.is_none() && path == status::PATH {
        return Ok(status::page(app, &who()?, req.method() == Method::HEAD));
    }
    let route = route?;
    let who = if from_peer(app, req.headers())? {
        Identity::Peer
    } else {
        who()?
    };
    let span = tracing::Span::current();
    span.record("route", route.label());
    if route.endpoint == Endpoint::Upload {
        return Err(Error::Unsupported(
            "pushing is not supported: entrepot is a read-only cache".into(),
        ));
    }
    if route.endpoint == Endpoint::Base {
        return Ok(json_response(StatusCode::OK, "{}".into(), req.method() == Method::HEAD));
    }
    if route.endpoint == Endpoint::Catalog {
        return Box::pin(lists::catalog(
            app,
            &who,
            req.uri().query(),
            req.method() == Method::HEAD,
        ))
        .await;
    }
    let query = req.uri().query();
    let ns = query_param(query, "ns");
    let mut target = app.upstreams.resolve(&route.name, ns.as_deref())?;
    target.for_peer = who == Identity::Peer;
    if app.access.restricts_repositories() {
        app.access
            .authorize(&who, &format!("{}/{}", target.upstream.name(), target.repo))?;
    }
    span.record("upstream", target.upstream.name());
    span.record("repo", target.repo.as_str());
    let head = req.method() == Method::HEAD;
    // Futures that hold a miss's state (an upstream fetch, a fill) are boxed where the miss
    // begins: inline, they came to 17 KB, which hyper moved twice per request, hit or miss.
    // A manifest hit's own future is small; the others are boxed here.
    let resp = match &route.endpoint {
        Endpoint::Manifest(reference) => manifests::get(app, &target, reference, req.headers(), head).await,
        Endpoint::Blob(digest) => {
            let zero_copy = req.extensions().get::<sendfile::Queue>();
            Box::pin(blobs::get(app, &target, digest, req.headers(), head, zero_copy)).await
        }
        Endpoint::Tags => Box::pin(lists::tags(app, &target, &route.name, query, head)).await,
        Endpoint::Referrers(digest) => Box::pin(lists::referrers(app, &target, digest, query, head)).await,
        Endpoint::Base | Endpoint::Upload | Endpoint::Catalog => unreachable!("handled above"),
    }?;
    if let Some(c) = resp.headers().get(headers::CACHE_STATUS).and_then(|v| v.to_str().ok()) {
        span.record("cache", c);
    }
    Ok(resp)
}

/// What a strict HTTP server refuses (RFC 9112): an HTTP/1.1 request without exactly one
/// `Host` (§3.2), two `Host`s in any version, and a body on a request that has none here.
/// entrepot never reads a request body, so any body framing (`Transfer-Encoding`, a
/// non-zero `Content-Length`) is a client error or a smuggling attempt: 400, and the
/// connection is closed.
fn check_framing<B>(req: &Request<B>) -> Result<()> {
    let hosts = req.headers().get_all(header::HOST).iter().count();
    if hosts > 1 || (hosts == 0 && req.version() == http::Version::HTTP_11) {
        return Err(Error::BadRequest(format!(
            "an HTTP/1.1 request needs exactly one Host header, not {hosts}"
        )));
    }
    if req.headers().contains_key(header::TRANSFER_ENCODING) {
        return Err(Error::BadRequest(
            "a request body (Transfer-Encoding) is not accepted".into(),
        ));
    }
    let lengths = req.headers().get_all(header::CONTENT_LENGTH);
    if lengths.iter().any(|v| v.as_bytes() != b"0") {
        return Err(Error::BadRequest(
            "a request body (Content-Length) is not accepted".into(),
        ));
    }
    Ok(())
}

fn json_response(status: StatusCode, body: String, head: bool) -> Response<Body> {
    let len = body.len();
    let body = if head { Body::empty() } else { Body::full(body) };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

fn set_outcome(resp: &mut Response<Body>, outcome: Outcome) {
    resp.headers_mut()
        .insert(headers::CACHE_STATUS, HeaderValue::from_static(outcome.as_str()));
}

/// The first value of a query parameter, percent-decoded.
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k)? == key).then(|| percent_decode(v)).flatten()
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        let q = Some("ns=docker.io&artifactType=application%2Fvnd.example%2Bjson&n=2&bad=%zz");
        assert_eq!(query_param(q, "ns").as_deref(), Some("docker.io"));
        assert_eq!(
            query_param(q, "artifactType").as_deref(),
            Some("application/vnd.example+json")
        );
        assert_eq!(query_param(q, "n").as_deref(), Some("2"));
        assert_eq!(query_param(q, "bad"), None);
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param(None, "ns"), None);
    }
}
