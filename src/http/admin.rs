//! Operator endpoints, on a Unix socket in the data directory (`<data_dir>/admin.sock`,
//! mode 0600), not on the listener: whoever may read the data directory may sweep and read
//! statistics, whatever the listener's address, TLS or client auth, and nobody else.
//!
//! - `GET /gc`: what a sweep would evict now, and why (a dry run);
//! - `POST /gc`: sweep now;
//! - `GET /stats`: count, bytes and hits per retention class and per upstream, and policy
//!   decisions by rule.

use std::convert::Infallible;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use super::body::Body;
use crate::app::App;
use crate::error::{Error, Result};

/// The socket's file name in the data directory.
pub const SOCKET: &str = "admin.sock";

/// The hyper service of the socket. Errors are answered as the distribution-spec JSON.
pub async fn serve<B>(app: Arc<App>, req: Request<B>) -> std::result::Result<Response<Body>, Infallible> {
    let head = req.method() == Method::HEAD;
    Ok(match answer(&app, req.method(), req.uri().path()).await {
        Ok(text) => {
            let mut resp = Response::new(Body::full(text));
            *resp.status_mut() = StatusCode::OK;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            resp
        }
        Err(e) => e.to_response(head),
    })
}

async fn answer(app: &Arc<App>, method: &Method, path: &str) -> Result<String> {
    Ok(match (method, path) {
        (&Method::GET, "/gc") => crate::report::plan(&app.cache.sweep(true).await?, true),
        (&Method::POST, "/gc") => crate::report::plan(&app.cache.sweep(false).await?, false),
        (&Method::GET, "/stats") => {
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
        (_, "/gc" | "/stats") => return Err(Error::Unsupported(format!("{method} {path}"))),
        _ => return Err(Error::NameUnknown(format!("no such endpoint: {path}"))),
    })
}
