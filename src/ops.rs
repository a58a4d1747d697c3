//! Operator commands: `policy check`, `gc`, `cache stats`, `scrub`, `seed`, `export`,
//! `import`.
//!
//! A running entrepot holds the index, so it is asked through its operator socket
//! (`<data_dir>/admin.sock`, `http::admin`); when none answers, the data directory is
//! opened here.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{Method, Request};
use http_body_util::BodyExt;

use crate::app::App;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::http::admin;
use crate::http::body::Body as HttpBody;
use crate::http::frames::{self, Deframer, FrameWriter};
use crate::layout::{
    self,
    export::{Output, Selection},
    import::{Placement, Source},
};
use crate::progress::{Counted, Meter};
use crate::seed;

/// What `entrepot gc` prints: the sweep's plan, carried out unless `dry_run`.
pub async fn gc(config: Config, dry_run: bool) -> Result<String> {
    let method = if dry_run { Method::GET } else { Method::POST };
    if let Some(answer) = ask_admin(&config, method, "/gc").await {
        return answer;
    }
    let app = App::build(config)?;
    let plan = app.cache.sweep(dry_run).await?;
    app.cache.flush().await;
    Ok(crate::report::plan(&plan, dry_run))
}

/// What `entrepot scrub` prints, and whether it found corrupt content. Reads at most
/// `rate` bytes a second (the config's `scrub_rate` when `None`).
pub async fn scrub(config: Config, rate: Option<u64>) -> Result<(String, bool)> {
    let path = match rate {
        Some(r) => format!("/scrub?rate={r}"),
        None => "/scrub".to_owned(),
    };
    if let Some(resp) = admin_request(&config, Method::POST, &path, HttpBody::empty()).await {
        eprintln!("entrepot: scrubbing through the running server (progress in its log)");
        let resp = resp?;
        let corrupt = resp
            .headers()
            .get(admin::CORRUPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|n| n != "0");
        return Ok((text_of(resp).await?, corrupt));
    }
    let rate = rate.unwrap_or(config.scrub_rate);
    let app = App::build(config)?;
    let scrubbed = app
        .cache
        .scrub(rate, |p| eprintln!("{}", crate::report::scrub_progress(&p)))
        .await?;
    app.cache.flush().await;
    Ok((crate::report::scrub(&scrubbed), !scrubbed.corrupt.is_empty()))
}

/// What `entrepot cache stats` prints.
pub async fn stats(config: Config) -> Result<String> {
    if let Some(answer) = ask_admin(&config, Method::GET, "/stats").await {
        return answer;
    }
    let app = App::build(config)?;
    Ok(crate::report::usage(&app.cache.usage().await?, &[]))
}

/// What `entrepot policy check <reference>` prints. References are written as clients
/// write them: `docker.io/library/alpine:3.20`, `ghcr.io/org/app@sha256:…`, `alpine`.
pub async fn policy_check(mut config: Config, reference: &str) -> Result<String> {
    let (name, reference) = crate::oci::name::split_reference(reference);
    // With a server running, its index is locked: work in a scratch data directory.
    let scratch = match ask_admin(&config, Method::GET, "/stats").await {
        Some(_) => {
            let dir = std::env::temp_dir().join(format!("entrepot-policy-check-{}", std::process::id()));
            config.data_dir = dir.clone();
            Some(dir)
        }
        None => None,
    };
    let result = async {
        let app: Arc<App> = App::build(config)?;
        let t = app.upstreams.resolve(name, None)?;
        let out = app.cache.explain(&t, reference).await;
        app.cache.flush().await;
        out
    }
    .await;
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

/// Warms the cache; returns the per-reference summary and whether every reference made it.
/// An argument naming a file is read as a list of references (one a line, `#` comments).
pub async fn seed(config: Config, args: &[String], opts: seed::Options) -> Result<(String, bool)> {
    let mut references = Vec::new();
    for a in args {
        match std::fs::read_to_string(a) {
            Ok(text) => references.extend(
                text.lines()
                    .map(|l| l.split('#').next().unwrap_or_default().trim())
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned),
            ),
            Err(_) if !Path::new(a).exists() => references.push(a.clone()),
            Err(e) => return Err(Error::Internal(format!("{a}: {e}"))),
        }
    }
    if references.is_empty() {
        return Err(Error::Internal("no references to seed".into()));
    }
    let progress = Progress::new();
    let results = match seed_on_server(&config, &references, &opts, &progress).await {
        Some(results) => results?,
        None => {
            let app = App::build(config)?;
            let results = seed::seed(
                Arc::new(seed::Puller(app.clone())),
                references,
                opts,
                move |done, total, r, result| {
                    let bytes = result.as_ref().map_or(0, |c| c.bytes);
                    progress.show(done, total, r, result.is_ok(), bytes)
                },
            )
            .await;
            app.cache.flush().await;
            results
                .into_iter()
                .map(|(r, result)| (r, result.map_err(|e| e.to_string())))
                .collect()
        }
    };
    let mut out = String::new();
    let mut all_ok = true;
    for (r, result) in &results {
        match result {
            Ok(c) => out.push_str(&format!(
                "ok     {r}  manifests={} blobs={} bytes={}\n",
                c.manifests, c.blobs, c.bytes
            )),
            Err(e) => {
                all_ok = false;
                out.push_str(&format!("FAILED {r}  {e}\n"));
            }
        }
    }
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    out.push_str(&format!("{} reference(s), {failed} failed\n", results.len()));
    Ok((out, all_ok))
}

/// A seed's progress on standard error: on a terminal a bar over the references with the
/// bytes brought in and their rate; otherwise a line per reference with the same.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    bytes: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
}

impl Progress {
    fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
            let style = indicatif::ProgressStyle::with_template("seed [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar
        });
        Progress {
            bar,
            bytes: Default::default(),
            started: std::time::Instant::now(),
        }
    }

    fn show(&self, done: usize, total: usize, reference: &str, ok: bool, bytes: u64) {
        use indicatif::HumanBytes;
        let all = self.bytes.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed) + bytes;
        let rate = all as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        let state = if ok { "done" } else { "FAILED" };
        let moved = format!("{} at {}/s", HumanBytes(all), HumanBytes(rate as u64));
        match &self.bar {
            Some(bar) => {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                bar.set_message(format!("{moved}, last {state}: {reference}"));
                if done == total {
                    bar.finish_and_clear();
                    eprintln!("seed: {total} reference(s), {moved}");
                }
            }
            None => eprintln!("[{done}/{total}] {state}: {reference} ({}; {moved})", HumanBytes(bytes)),
        }
    }
}

type SeedResults = Vec<(String, std::result::Result<seed::Counts, String>)>;

/// Asks a running server to seed itself, on its operator socket, showing its progress as
/// it streams; `None` when no server runs.
async fn seed_on_server(
    config: &Config,
    references: &[String],
    opts: &seed::Options,
    progress: &Progress,
) -> Option<Result<SeedResults>> {
    let asked = seed::SeedRequest {
        references: references.to_vec(),
        options: opts.clone(),
    };
    let body = serde_json::to_vec(&asked).ok()?;
    let resp = match admin_request(config, Method::POST, "/seed", HttpBody::full(body)).await? {
        Ok(resp) => resp,
        Err(e) => return Some(Err(e)),
    };
    if !resp.status().is_success() {
        // `text_of` turns a refusal into its error.
        return Some(text_of(resp).await.and_then(|text| Err(Error::Internal(text))));
    }
    let mut body = resp.into_body();
    let mut frames = Deframer::default();
    let mut results = Vec::new();
    while let Some(piece) = body.frame().await {
        let piece = match piece {
            Ok(p) => p.into_data().unwrap_or_default(),
            Err(e) => return Some(Err(Error::Internal(format!("the server stopped answering: {e}")))),
        };
        frames.push(&piece);
        loop {
            let report = match frames.next_frame() {
                Ok(Some((_, json))) => serde_json::from_slice::<seed::Report>(&json),
                Ok(None) => break,
                Err(e) => return Some(Err(e.into())),
            };
            match report {
                Ok(seed::Report::Progress {
                    done,
                    total,
                    reference,
                    ok,
                    bytes,
                }) => progress.show(done, total, &reference, ok, bytes),
                Ok(seed::Report::Result {
                    reference,
                    counts,
                    error,
                }) => results.push((reference, counts.ok_or_else(|| error.unwrap_or_default()))),
                Err(e) => return Some(Err(Error::Internal(format!("unexpected seed report: {e}")))),
            }
        }
    }
    if results.len() != references.len() {
        return Some(Err(Error::Internal(
            "the server stopped before the seed was done".into(),
        )));
    }
    Some(Ok(results))
}

/// Writes what is cached (or a selection) as an OCI image layout: a tar archive when `out`
/// ends in `.tar` (or is `-`, for standard output), a layout directory otherwise.
pub async fn export(config: Config, selection: Selection, out: &str) -> Result<String> {
    if let Some(sender) = admin_connect(&config).await {
        return export_on_server(sender?, selection, out).await;
    }
    let app = App::build(config)?;
    let out = out.to_owned();
    tokio::task::spawn_blocking(move || {
        let store = &app.cache.store;
        let meter = Meter::stderr("export");
        let summary = if out == "-" {
            layout::export::export(store, &selection, Output::Tar(Box::new(std::io::stdout())), &meter)?
        } else if out.ends_with(".tar") {
            // Written aside and renamed, so that a failed export leaves no archive behind.
            let partial = format!("{out}.partial");
            let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&partial)?);
            let written = layout::export::export(store, &selection, Output::Tar(Box::new(file)), &meter);
            layout::settle(Path::new(&partial), Path::new(&out), written)?
        } else {
            layout::export::export(store, &selection, Output::Dir(PathBuf::from(&out)), &meter)?
        };
        meter.finish();
        Ok(summary.text())
    })
    .await
    .map_err(Error::internal)?
}

/// Loads an OCI image layout (directory, tar file, or `-` for a tar on standard input).
pub async fn import(config: Config, path: &str, placement: Placement) -> Result<String> {
    if let Some(sender) = admin_connect(&config).await {
        return import_on_server(sender?, path, placement).await;
    }
    let app = App::build(config)?;
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let source = if path == "-" {
            Source::Tar(Box::new(std::io::stdin()))
        } else if Path::new(&path).is_dir() {
            Source::Dir(PathBuf::from(&path))
        } else {
            let f = std::fs::File::open(&path).map_err(|e| Error::Internal(format!("{path}: {e}")))?;
            Source::Tar(Box::new(std::io::BufReader::with_capacity(1 << 20, f)))
        };
        let meter = Meter::stderr("import");
        meter.set_total(layout_bytes(&path));
        let s = layout::import::import(&app.cache.store, &app.upstreams, source, &placement, &meter)?;
        meter.finish();
        Ok(s.text())
    })
    .await
    .map_err(Error::internal)?
}

/// What an import will read, as far as it can be told beforehand: a tar file's size, the
/// sizes of a layout directory's blobs; nothing for standard input.
fn layout_bytes(path: &str) -> Option<u64> {
    if path == "-" {
        return None;
    }
    let p = Path::new(path);
    if !p.is_dir() {
        return std::fs::metadata(p).ok().map(|m| m.len());
    }
    let mut total = 0;
    for alg in std::fs::read_dir(p.join("blobs")).ok()?.flatten() {
        for file in std::fs::read_dir(alg.path()).ok()?.flatten() {
            total += file.metadata().map_or(0, |m| m.len());
        }
    }
    Some(total)
}

/// Export by a running server: a directory it writes itself, or a tar archive it streams
/// here in frames, written to `out` (aside, then renamed) or to standard output.
async fn export_on_server(sender: AdminSender, selection: Selection, out: &str) -> Result<String> {
    use tokio::io::AsyncWriteExt;
    let to_dir = out != "-" && !out.ends_with(".tar");
    let dir = if to_dir { Some(std::path::absolute(out)?) } else { None };
    let asked = admin::ExportRequest { selection, dir };
    let body = HttpBody::full(serde_json::to_vec(&asked).map_err(Error::internal)?);
    if to_dir {
        eprintln!("entrepot: exporting through the running server (progress in its log)");
    }
    let resp = admin_send(sender, Method::POST, "/export", body).await?;
    if to_dir || !resp.status().is_success() {
        return text_of(resp).await;
    }
    // The archive's size is the server's to know: bytes and rate here.
    let meter = Meter::stderr("export");
    let partial = (out != "-").then(|| format!("{out}.partial"));
    let mut sink: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match &partial {
        Some(p) => Box::new(tokio::fs::File::create(p).await?),
        None => Box::new(tokio::io::stdout()),
    };
    let streamed = async {
        let mut body = resp.into_body();
        let mut frames = Deframer::default();
        while let Some(piece) = body.frame().await {
            frames.push(&piece.map_err(Error::internal)?.into_data().unwrap_or_default());
            while let Some((kind, bytes)) = frames.next_frame()? {
                match kind {
                    frames::DATA => {
                        sink.write_all(&bytes).await?;
                        meter.add(bytes.len() as u64);
                    }
                    frames::SUMMARY => return Ok(String::from_utf8_lossy(&bytes).into_owned()),
                    _ => return Err(Error::Internal(String::from_utf8_lossy(&bytes).into_owned())),
                }
            }
        }
        Err(Error::Internal("the server stopped before the export was done".into()))
    }
    .await;
    let finished = match streamed {
        Ok(summary) => sink.flush().await.map(|()| summary).map_err(Error::from),
        Err(e) => Err(e),
    };
    meter.finish();
    drop(sink);
    match partial {
        Some(p) => layout::settle(Path::new(&p), Path::new(out), finished),
        None => finished,
    }
}

/// Import by a running server: a directory it reads itself, or a tar archive (a file, or
/// standard input) streamed there in frames after the options.
async fn import_on_server(sender: AdminSender, path: &str, placement: Placement) -> Result<String> {
    let dir = if path != "-" && Path::new(path).is_dir() {
        Some(std::path::absolute(path)?)
    } else {
        None
    };
    let is_dir = dir.is_some();
    if is_dir {
        eprintln!("entrepot: importing through the running server (progress in its log)");
    }
    let asked = admin::ImportRequest { placement, dir };
    let meter = Arc::new(if is_dir { Meter::none() } else { Meter::stderr("import") });
    let first = frames::frame(frames::JSON, &serde_json::to_vec(&asked).map_err(Error::internal)?);
    let body = if is_dir {
        HttpBody::full(first)
    } else {
        let file: Box<dyn std::io::Read + Send> = if path == "-" {
            Box::new(std::io::stdin())
        } else {
            Box::new(std::fs::File::open(path).map_err(|e| Error::Internal(format!("{path}: {e}")))?)
        };
        meter.set_total(layout_bytes(path));
        let mut input = Counted {
            inner: file,
            meter: meter.clone(),
        };
        let (tx, body) = HttpBody::channel(4, None);
        tokio::task::spawn_blocking(move || {
            if tx.blocking_send(Ok(first)).is_err() {
                return;
            }
            let mut archive = FrameWriter::new(tx.clone());
            if let Err(e) = std::io::copy(&mut input, &mut archive).and_then(|_| archive.flush()) {
                // A read error aborts the request body; a send error means the server left.
                let _ = tx.blocking_send(Err(e));
            }
        });
        body
    };
    let summary = text_of(admin_send(sender, Method::POST, "/import", body).await?).await;
    meter.finish();
    summary
}

type AdminSender = hyper::client::conn::http1::SendRequest<HttpBody>;

/// A connection to the running server's operator socket, or `None` when no server listens
/// there. A socket this user may not open is an error: a server runs, and opening its data
/// directory here would only fail on the index lock.
async fn admin_connect(config: &Config) -> Option<Result<AdminSender>> {
    let socket = config.data_dir.join(crate::http::admin::SOCKET);
    let stream = match tokio::net::UnixStream::connect(&socket).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Some(Err(Error::Internal(format!(
                "cannot reach the running entrepot at {}: {e} (run as the user that runs it)",
                socket.display()
            ))))
        }
        Err(_) => return None,
    };
    let handshake = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await;
    Some(match handshake {
        Ok((sender, conn)) => {
            tokio::spawn(conn);
            Ok(sender)
        }
        Err(e) => Err(Error::Internal(format!("entrepot at {}: {e}", socket.display()))),
    })
}

async fn admin_send(
    mut sender: AdminSender,
    method: Method,
    path: &str,
    body: HttpBody,
) -> Result<http::Response<hyper::body::Incoming>> {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "entrepot")
        .body(body)
        .map_err(Error::internal)?;
    sender
        .send_request(req)
        .await
        .map_err(|e| Error::Internal(format!("the running entrepot: {e}")))
}

/// A request on the operator socket, or `None` when no server runs.
async fn admin_request(
    config: &Config,
    method: Method,
    path: &str,
    body: HttpBody,
) -> Option<Result<http::Response<hyper::body::Incoming>>> {
    Some(match admin_connect(config).await? {
        Ok(sender) => admin_send(sender, method, path, body).await,
        Err(e) => Err(e),
    })
}

/// A response's text, or an error carrying it when the status is not a success.
async fn text_of(resp: http::Response<hyper::body::Incoming>) -> Result<String> {
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(Error::internal)?.to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    if status.is_success() {
        Ok(text)
    } else {
        Err(Error::Internal(format!("entrepot answered {status}: {text}")))
    }
}

/// The running server's answer on its operator socket, or `None` when no server runs.
async fn ask_admin(config: &Config, method: Method, path: &str) -> Option<Result<String>> {
    Some(match admin_request(config, method, path, HttpBody::empty()).await? {
        Ok(resp) => text_of(resp).await,
        Err(e) => Err(e),
    })
}
