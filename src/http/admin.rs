//! `/_entrepot/…`: operator endpoints, answered to loopback clients that present the
//! operator token. `serve` writes a fresh token to `<data_dir>/admin.token` (mode 0600) at
//! start; the CLI reads it from there, so only whoever may read the data directory may
//! sweep or read statistics, not every local user.
//!
//! - `GET /_entrepot/gc`: what a sweep would evict now, and why (a dry run);
//! - `POST /_entrepot/gc`: sweep now;
//! - `GET /_entrepot/stats`: count, bytes and hits per retention class and per upstream,
//!   and policy decisions by rule.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use super::body::Body;
use crate::app::App;
use crate::error::{Error, Result};

pub const PREFIX: &str = "/_entrepot/";

/// Where the operator token lives in the data directory.
pub const TOKEN_FILE: &str = "admin.token";

/// Writes a new random operator token to `<data_dir>/admin.token`, readable by its owner
/// only, and returns it.
pub fn create_token(data_dir: &Path) -> std::io::Result<String> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    let token = hex::encode(random);
    let tmp = data_dir.join(format!("{TOKEN_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, data_dir.join(TOKEN_FILE))?;
    Ok(token)
}

/// The token a running server wrote, if this process may read it.
pub fn read_token(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(data_dir.join(TOKEN_FILE))
        .ok()
        .map(|t| t.trim().to_owned())
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn handle(
    app: &Arc<App>,
    method: &Method,
    path: &str,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<Response<Body>> {
    if !peer.ip().is_loopback() {
        return Err(Error::Denied("operator endpoints answer loopback clients only".into()));
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|t| same(t.as_bytes(), app.admin_token.as_bytes())) {
        return Err(Error::Denied(format!(
            "operator endpoints need the token in {}",
            app.config.data_dir.join(TOKEN_FILE).display()
        )));
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
