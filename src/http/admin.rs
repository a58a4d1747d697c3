//! Operator endpoints, on a Unix socket in the data directory (`<data_dir>/admin.sock`,
//! mode 0600), not on the listener: whoever may read the data directory may sweep and read
//! statistics, whatever the listener's address, TLS or client auth, and nobody else.
//!
//! - `GET /gc`: what a sweep would evict now, and why (a dry run);
//! - `POST /gc`: sweep now;
//! - `GET /stats`: count, bytes and hits per retention class and per upstream, and policy
//!   decisions by rule;
//! - `POST /seed`: seeds the references of a JSON `seed::SeedRequest`, streaming
//!   `seed::Report`s as JSON frames (`http::frames`: progress, then results). The seed goes
//!   on if the caller leaves;
//! - `POST /export`: an `ExportRequest`; into a directory the server writes, or as a tar
//!   archive streamed back in frames (`http::frames`), then its summary;
//! - `POST /import`: frames: an `ImportRequest`, then the tar archive (unless it names a
//!   directory the server reads); answers the summary once the bundle is verified and in.
//!
//! So export and import no longer need the server stopped.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::body::Body;
use super::frames::{self, Deframer, FrameReader, FrameWriter};
use crate::app::App;
use crate::error::{Error, Result};
use crate::layout::{
    self,
    export::{Output, Selection},
    import::{Placement, Source},
};
use crate::progress::Meter;
use crate::seed::{self, Puller, Report, SeedRequest};

/// The socket's file name in the data directory.
pub const SOCKET: &str = "admin.sock";

/// What `entrepot export` asks a running server.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportRequest {
    pub selection: Selection,
    /// Write an image layout directory here (an absolute path) rather than stream a tar.
    pub dir: Option<PathBuf>,
}

/// What `entrepot import` asks a running server, in its first frame.
#[derive(Debug, Serialize, Deserialize)]
pub struct ImportRequest {
    pub placement: Placement,
    /// Read an image layout directory here (an absolute path) rather than the tar frames.
    pub dir: Option<PathBuf>,
}

/// The hyper service of the socket. Errors are answered as the distribution-spec JSON.
pub async fn serve(app: Arc<App>, req: Request<Incoming>) -> std::result::Result<Response<Body>, Infallible> {
    let head = req.method() == Method::HEAD;
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let answered = match (&method, path.as_str()) {
        (&Method::POST, "/seed") => seed(app, req.into_body()).await,
        (&Method::POST, "/export") => export(app, req.into_body()).await,
        (&Method::POST, "/import") => import(app, req.into_body()).await,
        (&Method::POST, "/scrub") => scrub(app, req.uri().query()).await,
        _ => answer(&app, &method, &path).await.map(text),
    };
    Ok(answered.unwrap_or_else(|e| super::rescue::rescue(&e, head)))
}

fn text(text: String) -> Response<Body> {
    let mut resp = Response::new(Body::full(text));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn bad_request(what: &str, e: impl std::fmt::Display) -> Error {
    Error::BadRequest(format!("{what}: {e}"))
}

async fn export(app: Arc<App>, body: Incoming) -> Result<Response<Body>> {
    let asked: ExportRequest = json_request(body, "export request").await?;
    if let Some(dir) = asked.dir {
        let summary = tokio::task::spawn_blocking(move || {
            let meter = Meter::log("export");
            let summary = layout::export::export(&app.cache.store, &asked.selection, Output::Dir(dir), &meter);
            meter.finish();
            summary
        })
        .await
        .map_err(Error::internal)??;
        return Ok(text(summary.text()));
    }
    let (tx, body) = Body::channel(4, None);
    tokio::task::spawn_blocking(move || {
        let archive = Box::new(FrameWriter::new(tx.clone()));
        let meter = Meter::log("export");
        let result = layout::export::export(&app.cache.store, &asked.selection, Output::Tar(archive), &meter);
        meter.finish();
        let last = FrameWriter::new(tx);
        let _ = match result {
            Ok(summary) => last.finish(frames::SUMMARY, &summary.text()),
            Err(e) => last.finish(frames::ERROR, &e.to_string()),
        };
    });
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

async fn import(app: Arc<App>, mut body: Incoming) -> Result<Response<Body>> {
    let mut frames = Deframer::default();
    let asked: ImportRequest = loop {
        if let Some((kind, bytes)) = frames.next_frame()? {
            if kind != frames::JSON {
                return Err(bad_request("import request", "the options come first"));
            }
            break serde_json::from_slice(&bytes).map_err(|e| bad_request("import request", e))?;
        }
        match body.frame().await {
            Some(Ok(f)) => frames.push(&f.into_data().unwrap_or_default()),
            Some(Err(e)) => return Err(bad_request("import request", e)),
            None => return Err(bad_request("import request", "no options")),
        }
    };
    let (fwd, data) = tokio::sync::mpsc::channel(4);
    let source = match asked.dir {
        Some(dir) => Source::Dir(dir),
        None => Source::Tar(Box::new(FrameReader::new(data))),
    };
    let this = app.clone();
    let importing = tokio::task::spawn_blocking(move || {
        let meter = Meter::log("import");
        let result = layout::import::import(&this.cache.store, &this.upstreams, source, &asked.placement, &meter);
        meter.finish();
        result
    });
    // The tar's frames go to the import as they come; it stops taking them on an error.
    'body: loop {
        while let Some((kind, bytes)) = frames.next_frame()? {
            if kind == frames::DATA && fwd.send(Ok(bytes)).await.is_err() {
                break 'body;
            }
        }
        match body.frame().await {
            Some(Ok(f)) => frames.push(&f.into_data().unwrap_or_default()),
            Some(Err(e)) => {
                let _ = fwd.send(Err(std::io::Error::other(e))).await;
                break;
            }
            None if !frames.is_empty() => {
                let cut = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the archive was cut short");
                let _ = fwd.send(Err(cut)).await;
                break;
            }
            None => break,
        }
    }
    drop(fwd);
    let summary = importing.await.map_err(Error::internal)??;
    app.cache.count_stored(summary.bytes_added);
    app.cache.flush().await;
    Ok(text(summary.text()))
}

/// A request's JSON body, up to 1 MiB.
async fn json_request<T: serde::de::DeserializeOwned>(body: Incoming, what: &str) -> Result<T> {
    let bytes = http_body_util::Limited::new(body, 1 << 20)
        .collect()
        .await
        .map_err(|e| bad_request(what, e))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| bad_request(what, e))
}

/// A seed report as a JSON frame.
fn report(r: &Report) -> Bytes {
    frames::frame(frames::JSON, &serde_json::to_vec(r).unwrap_or_default())
}

async fn seed(app: Arc<App>, body: Incoming) -> Result<Response<Body>> {
    let asked: SeedRequest = json_request(body, "seed request").await?;
    let (tx, body) = Body::channel(16, None);
    // Progress comes from a synchronous callback: reports go through an unbounded channel
    // (two per reference) to the response.
    let (reports, mut pending) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    tokio::spawn(async move {
        while let Some(r) = pending.recv().await {
            if tx.send(Ok(r)).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let progress = reports.clone();
        let results = seed::seed(
            Arc::new(Puller(app.clone())),
            asked.references,
            asked.options,
            move |done, total, reference, result| {
                let progress_report = Report::Progress {
                    done,
                    total,
                    reference: reference.to_owned(),
                    ok: result.is_ok(),
                    bytes: result.as_ref().map_or(0, |c| c.bytes),
                };
                let _ = progress.send(report(&progress_report));
            },
        )
        .await;
        for (reference, result) in results {
            let _ = reports.send(report(&Report::result(reference, &result)));
        }
        app.cache.flush().await;
    });
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

/// The header that carries how many corrupt objects a scrub found.
pub const CORRUPT: &str = "x-entrepot-corrupt";

/// `POST /scrub?rate=<bytes a second>`: the report, with the corrupt count in a header.
/// Progress goes to the server's log.
async fn scrub(app: Arc<App>, query: Option<&str>) -> Result<Response<Body>> {
    let rate = match crate::http::query_param(query, "rate") {
        Some(r) => r.parse().map_err(|e| bad_request("rate", e))?,
        None => app.config.scrub_rate,
    };
    let scrubbed = (app.cache)
        .scrub(rate, |p| tracing::info!("{}", crate::report::scrub_progress(&p)))
        .await?;
    let mut resp = text(crate::report::scrub(&scrubbed));
    resp.headers_mut()
        .insert(CORRUPT, HeaderValue::from(scrubbed.corrupt.len()));
    Ok(resp)
}

async fn answer(app: &Arc<App>, method: &Method, path: &str) -> Result<String> {
    Ok(match (method, path) {
        (&Method::GET, "/gc") => crate::report::plan(&app.cache.sweep(true).await?, true),
        (&Method::POST, "/gc") => crate::report::plan(&app.cache.sweep(false).await?, false),
        (&Method::GET, "/stats") => {
            let decisions = app.cache.decisions();
            crate::report::usage(&app.cache.usage().await?, &decisions)
        }
        (_, "/gc" | "/stats") => return Err(Error::Unsupported(format!("{method} {path}"))),
        _ => return Err(Error::NameUnknown(format!("no such endpoint: {path}"))),
    })
}
