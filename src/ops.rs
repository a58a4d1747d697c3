//! Operator commands: `policy check`, `gc`, `cache stats`, `seed`, `export`, `import`.
//!
//! A running entrepot holds the index, so it is asked through its operator socket
//! (`<data_dir>/admin.sock`, `http::admin`); when none answers, the data directory is
//! opened here.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};

use crate::app::App;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::http::target;
use crate::layout::{
    self,
    export::{Output, Selection},
    import::{Placement, Source},
};
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
        let t = target::resolve(&app.upstreams, name, None)?;
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
                move |done, total, r, result| progress.show(done, total, r, result.is_ok()),
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

/// A seed's progress on standard error: one updating line on a terminal, a line per
/// reference otherwise.
#[derive(Clone, Copy)]
struct Progress {
    terminal: bool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, done: usize, total: usize, reference: &str, ok: bool) {
        let state = if ok { "done" } else { "FAILED" };
        if self.terminal {
            eprint!("\r\x1b[2K[{done}/{total}] {state}: {reference}");
            if done == total {
                eprintln!();
            }
        } else {
            eprintln!("[{done}/{total}] {state}: {reference}");
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
    let resp = match admin_request(config, Method::POST, "/seed", Bytes::from(body)).await? {
        Ok(resp) => resp,
        Err(e) => return Some(Err(e)),
    };
    let status = resp.status();
    let mut body = resp.into_body();
    let mut buffered = Vec::new();
    let mut results = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => return Some(Err(Error::Internal(format!("the server stopped answering: {e}")))),
        };
        let Ok(data) = frame.into_data() else { continue };
        buffered.extend_from_slice(&data);
        while let Some(end) = buffered.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffered.drain(..=end).collect();
            match serde_json::from_slice::<seed::Report>(&line) {
                Ok(seed::Report::Progress {
                    done,
                    total,
                    reference,
                    ok,
                }) => progress.show(done, total, &reference, ok),
                Ok(seed::Report::Result {
                    reference,
                    counts,
                    error,
                }) => results.push((reference, counts.ok_or_else(|| error.unwrap_or_default()))),
                Err(_) if !status.is_success() => {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    return Some(Err(Error::Internal(format!("entrepot answered {status}: {text}"))));
                }
                Err(e) => return Some(Err(Error::Internal(format!("unexpected seed report: {e}")))),
            }
        }
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&buffered).into_owned();
        return Some(Err(Error::Internal(format!("entrepot answered {status}: {text}"))));
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
    let app = App::build(config)?;
    let out = out.to_owned();
    tokio::task::spawn_blocking(move || {
        let store = &app.cache.store;
        let summary = if out == "-" {
            layout::export::export(store, &selection, Output::Tar(Box::new(std::io::stdout())))?
        } else if out.ends_with(".tar") {
            // Written aside and renamed, so that a failed export leaves no archive behind.
            let partial = format!("{out}.partial");
            let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&partial)?);
            match layout::export::export(store, &selection, Output::Tar(Box::new(file))) {
                Ok(s) => {
                    std::fs::rename(&partial, &out)?;
                    s
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&partial);
                    return Err(e);
                }
            }
        } else {
            layout::export::export(store, &selection, Output::Dir(PathBuf::from(&out)))?
        };
        let mut text = format!(
            "exported {} manifest(s) ({} tag(s)), {} blob(s), {} bytes\n",
            summary.manifests, summary.tags, summary.blobs, summary.bytes
        );
        if !summary.missing.is_empty() {
            text.push_str(&format!(
                "{} referenced blob(s) or manifest(s) are not cached here and were left out\n",
                summary.missing.len()
            ));
        }
        text.push_str(&format!(
            "export mark: {} (pass --since {} to export only what is newer)\n",
            summary.mark, summary.mark
        ));
        Ok(text)
    })
    .await
    .map_err(Error::internal)?
}

/// Loads an OCI image layout (directory, tar file, or `-` for a tar on standard input).
pub async fn import(config: Config, path: &str, placement: Placement) -> Result<String> {
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
        let s = layout::import::import(&app.cache.store, &app.upstreams, source, &placement)?;
        Ok(format!(
            "imported {} manifest(s), {} tag(s), {} new blob(s) ({} bytes), {} blob(s) already cached\n",
            s.manifests, s.tags, s.blobs_added, s.bytes_added, s.blobs_present
        ))
    })
    .await
    .map_err(Error::internal)?
}

/// A request on the running server's operator socket, or `None` when no server listens
/// there. A socket this user may not open is an error: a server runs, and opening its data
/// directory here would only fail on the index lock.
async fn admin_request(
    config: &Config,
    method: Method,
    path: &str,
    body: Bytes,
) -> Option<Result<http::Response<hyper::body::Incoming>>> {
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
    let ask = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "entrepot")
            .body(Full::new(body))
            .expect("a valid request");
        sender.send_request(req).await
    };
    Some(
        ask.await
            .map_err(|e| Error::Internal(format!("entrepot at {}: {e}", socket.display()))),
    )
}

/// The running server's answer on its operator socket, or `None` when no server runs.
async fn ask_admin(config: &Config, method: Method, path: &str) -> Option<Result<String>> {
    let resp = match admin_request(config, method, path, Bytes::new()).await? {
        Ok(r) => r,
        Err(e) => return Some(Err(e)),
    };
    let status = resp.status();
    let body = match resp.into_body().collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(e) => return Some(Err(Error::internal(e))),
    };
    Some(if status.is_success() {
        Ok(body)
    } else {
        Err(Error::Internal(format!("entrepot answered {status}: {body}")))
    })
}
