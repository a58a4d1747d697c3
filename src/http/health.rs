//! `/metrics` (Prometheus text), `/healthz` (the process answers) and `/readyz` (the index
//! answers): on the main listener, or on `metrics_listen` when the config names one.

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};

use super::body::Body;
use crate::app::App;
use crate::error::{Error, Result};

pub const PATHS: [&str; 3] = ["/metrics", "/healthz", "/readyz"];

pub async fn handle(app: &Arc<App>, path: &str) -> Result<Response<Body>> {
    let (status, content_type, text) = match path {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            exposition(&app.cache),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" => match app.cache.store.index.blob(&crate::oci::Digest::sha256_of(b"readyz")) {
            Ok(_) => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
            Err(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("index unavailable: {e}\n"),
            ),
        },
        _ => return Err(Error::NameUnknown(format!("no such endpoint: {path}"))),
    };
    let mut resp = Response::new(Body::full(text));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(resp)
}

/// The service on `metrics_listen`: these three paths and the status page (behind
/// `[auth]`), read-only, and nothing else.
pub async fn serve_only<B>(app: Arc<App>, req: Request<B>) -> std::result::Result<Response<Body>, Infallible> {
    if !matches!(*req.method(), http::Method::GET | http::Method::HEAD) {
        return Ok(super::rescue::rescue(
            &Error::Unsupported(format!("{} is not supported here", req.method())),
            false,
        ));
    }
    let head = req.method() == http::Method::HEAD;
    let answer = if req.uri().path() == super::status::PATH {
        let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        app.access
            .authenticate(authorization)
            .map(|who| super::status::page(&app, &who, head))
    } else {
        handle(&app, req.uri().path()).await
    };
    Ok(answer.unwrap_or_else(|e| super::rescue::rescue(&e, head)))
}

/// The Prometheus exposition: the counters, and the gauges read now.
fn exposition(cache: &crate::cache::Cache) -> String {
    use crate::metrics::gauge;
    let mut out = String::new();
    cache.metrics.render(&mut out);
    let g = cache.gauges();
    let one = |v: f64| vec![(Vec::new(), v)];
    gauge(
        &mut out,
        "entrepot_transfers_in_flight",
        "Blob transfers being sent to clients.",
        &one(g.transfers as f64),
    );
    gauge(
        &mut out,
        "entrepot_fills_in_flight",
        "Blob downloads from upstreams in progress.",
        &one(g.fills as f64),
    );
    gauge(
        &mut out,
        "entrepot_store_bytes",
        "Blob bytes on disk.",
        &one(g.stored_bytes as f64),
    );
    gauge(
        &mut out,
        "entrepot_store_reconciled",
        "1 once blob files and index records have been reconciled since start-up (retention waits for it).",
        &one(if g.reconciled { 1.0 } else { 0.0 }),
    );
    let by_class: Vec<_> = (g.class_bytes.into_iter())
        .map(|(c, b)| (vec![("class", c)], b as f64))
        .collect();
    gauge(
        &mut out,
        "entrepot_store_class_bytes",
        "Bytes held per retention class, as of the last sweep.",
        &by_class,
    );
    gauge(
        &mut out,
        "entrepot_store_max_bytes",
        "The cache's budget (max_cache_bytes); absent when unbounded.",
        &g.max_bytes.map(|m| one(m as f64)).unwrap_or_default(),
    );
    let class_budgets: Vec<_> = (g.class_max_bytes.into_iter())
        .map(|(c, b)| (vec![("class", c)], b as f64))
        .collect();
    gauge(
        &mut out,
        "entrepot_store_class_max_bytes",
        "Each retention class's budget (max_bytes), for classes that have one.",
        &class_budgets,
    );
    let dropped = crate::logging::dropped_lines();
    let _ = writeln!(
        out,
        "# HELP entrepot_log_lines_dropped_total Log lines dropped because the log sink fell behind.\n\
         # TYPE entrepot_log_lines_dropped_total counter\nentrepot_log_lines_dropped_total {dropped}"
    );
    out
}
