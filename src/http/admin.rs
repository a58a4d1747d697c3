//! `/_entrepot/…`: operator endpoints, answered to loopback clients only.
//!
//! - `GET /_entrepot/gc`: what a sweep would evict now, and why (a dry run);
//! - `POST /_entrepot/gc`: sweep now;
//! - `GET /_entrepot/stats`: count, bytes and hits per retention class and per upstream,
//!   and policy decisions by rule.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Response, StatusCode};

use super::body::Body;
use crate::app::App;
use crate::error::{Error, Result};

pub const PREFIX: &str = "/_entrepot/";

pub async fn handle(app: &Arc<App>, method: &Method, path: &str, peer: SocketAddr) -> Result<Response<Body>> {
    if !peer.ip().is_loopback() {
        return Err(Error::Denied("operator endpoints answer loopback clients only".into()));
    }
    let text = match (method, path.strip_prefix(PREFIX).unwrap_or_default()) {
        (&Method::GET, "gc") => crate::report::plan(&app.cache.sweep(true).await?, true),
        (&Method::POST, "gc") => crate::report::plan(&app.cache.sweep(false).await?, false),
        (&Method::GET, "stats") => {
            let decisions: Vec<_> = app
                .cache
                .stats
                .decisions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            crate::report::usage(&app.cache.usage().await?, &decisions)
        }
        (_, "gc" | "stats") => return Err(Error::Unsupported(format!("{method} {path}"))),
        _ => return Err(Error::NameUnknown(format!("no such endpoint: {path}"))),
    };
    let mut resp = Response::new(Body::full(text));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(resp)
}
