//! Operator endpoints, on a Unix socket in the data directory (`<data_dir>/admin.sock`,
//! mode 0600), not on the listener: whoever may read the data directory may sweep and read
//! statistics, whatever the listener's address, TLS or client auth, and nobody else.
//!
//! - `GET /gc`: what a sweep would evict now, and why (a dry run);
//! - `POST /gc`: sweep now;
//! - `GET /stats`: count, bytes and hits per retention class and per upstream, and policy
//!   decisions by rule;
//! - `POST /seed`: seeds the references of a JSON `seed::SeedRequest`, streaming
//!   `seed::Report` lines (progress, then results). The seed goes on if the caller leaves.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;

use super::body::Body;
use crate::app::App;
use crate::error::{Error, Result};
use crate::seed::{self, Puller, Report, SeedRequest};

/// The socket's file name in the data directory.
pub const SOCKET: &str = "admin.sock";

/// The hyper service of the socket. Errors are answered as the distribution-spec JSON.
pub async fn serve<B>(app: Arc<App>, req: Request<B>) -> std::result::Result<Response<Body>, Infallible>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let head = req.method() == Method::HEAD;
    if req.uri().path() == "/seed" && req.method() == Method::POST {
        return Ok(seed(app, req.into_body())
            .await
            .unwrap_or_else(|e| e.to_response(false)));
    }
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

async fn seed<B>(app: Arc<App>, body: B) -> Result<Response<Body>>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = http_body_util::Limited::new(body, 1 << 20)
        .collect()
        .await
        .map_err(|e| Error::Unsupported(format!("seed request: {e}")))?
        .to_bytes();
    let asked: SeedRequest =
        serde_json::from_slice(&bytes).map_err(|e| Error::Unsupported(format!("seed request: {e}")))?;
    let (tx, body) = Body::channel(16, None);
    // Progress comes from a synchronous callback: lines go through an unbounded channel (one
    // line per reference, twice) to the response.
    let (lines, mut pending) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(line) = pending.recv().await {
            if tx.send(Ok(Bytes::from(line))).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let progress = lines.clone();
        let results = seed::seed(
            Arc::new(Puller(app.clone())),
            asked.references,
            asked.options,
            move |done, total, reference, result| {
                let report = Report::Progress {
                    done,
                    total,
                    reference: reference.to_owned(),
                    ok: result.is_ok(),
                };
                let _ = progress.send(report.line());
            },
        )
        .await;
        for (reference, result) in results {
            let _ = lines.send(Report::result(reference, &result).line());
        }
        app.cache.flush().await;
    });
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(resp)
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
