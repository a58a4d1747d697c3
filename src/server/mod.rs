//! The listener: HTTP/1.1 and HTTP/2 on one port (h2c in the clear, ALPN under TLS), a
//! header-read timeout against slow clients, a cap on open connections, certificates
//! reloaded on SIGHUP, and a graceful shutdown that lets transfers finish for a while.

mod silent;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;

use crate::app::App;
use crate::http::admin;
use crate::http::sendfile::{Queue, SendfileStream};
use silent::{Silent, Waiting};

const ACCESS_FLUSH_EVERY: Duration = Duration::from_secs(10);

/// Serves until `shutdown` completes, then drains connections for up to `shutdown_grace`
/// and flushes the index.
/// `admin` is the operator socket (`bind_admin_socket`), bound before `listener` so that
/// whoever sees the listener up finds the socket too.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    admin: Option<UnixListener>,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(app.config.header_read_timeout)
        // Body frames are queued, never copied: `sendfile` bodies depend on it.
        .writev(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(app.config.max_connections));
    let background = [
        tokio::spawn(serve_admin(app.clone(), admin)),
        tokio::spawn(reconcile_store(app.clone())),
        tokio::spawn(flush_periodically(app.clone())),
        tokio::spawn(sweep_periodically(app.clone())),
        tokio::spawn(scrub_periodically(app.clone())),
        tokio::spawn(reload_on_sighup(app.clone())),
        tokio::spawn(serve_health(app.clone())),
    ];
    tokio::pin!(shutdown);
    let silent = Arc::new(Silent::default());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let deadline = Instant::now() + app.config.header_read_timeout;
        let permit = tokio::select! {
            p = make_room(&connections, &silent) => match p {
                Some(p) => p,
                None => break,
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let waiting = Arc::new(silent.enter());
        let (app, builder, watcher) = (app.clone(), builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            let _permit = permit;
            match app.tls.as_ref().map(|t| t.acceptor()) {
                None if app.config.sendfile => {
                    let stream = SendfileStream::new(stream);
                    let queue = stream.queue();
                    serve_connection(app, builder, watcher, peer, stream, Some(queue), waiting, deadline).await
                }
                None => serve_connection(app, builder, watcher, peer, stream, None, waiting, deadline).await,
                Some(acceptor) => {
                    let handshake = tokio::select! {
                        done = acceptor.accept(stream) => done,
                        () = waiting.silence(deadline) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    match handshake {
                        Ok(tls) => serve_connection(app, builder, watcher, peer, tls, None, waiting, deadline).await,
                        Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    }
                }
            }
        });
    }
    tracing::info!("shutting down: draining connections");
    drop(listener);
    let grace = app.config.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after {grace:?}; closing them");
    }
    for task in background {
        task.abort();
    }
    let _ = std::fs::remove_file(app.config.data_dir.join(admin::SOCKET));
    app.cache.flush().await;
}

/// Binds the operator socket, readable and writable by its owner only. It is bound under a
/// temporary name, restricted, then renamed into place: nobody else can connect in between.
/// A socket left by a killed server is replaced (the index lock rules out a live one).
pub fn bind_admin_socket(app: &App) -> Option<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = app.config.data_dir.join(admin::SOCKET);
    let temp = app
        .config
        .data_dir
        .join(format!("{}.{}", admin::SOCKET, std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let bound = UnixListener::bind(&temp).and_then(|l| {
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&temp, &path)?;
        Ok(l)
    });
    match bound {
        Ok(l) => Some(l),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            tracing::error!(path = %path.display(), error = %e, "cannot bind the operator socket; gc and cache stats cannot reach this server");
            None
        }
    }
}

/// The operator endpoints (`http::admin`) on their socket.
async fn serve_admin(app: Arc<App>, listener: Option<UnixListener>) {
    let Some(listener) = listener else { return };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| admin::serve(app.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Each connection holds a socket and, while it is sent a blob, a file: a soft limit on
/// open files of 1,024 (systemd's default) refuses connections long before
/// `max_connections`. The soft limit is raised to the hard one at start, as Go's runtime
/// and nginx's `worker_rlimit_nofile` do; a hard limit still too low is said once.
pub fn raise_open_files_limit(max_connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    let open_files = match setrlimit(Resource::Nofile, raised) {
        Ok(()) => limit.maximum,
        Err(_) => limit.current,
    };
    let needed = max_connections as u64 + 1024;
    if let Some(n) = open_files.filter(|n| *n < needed) {
        tracing::warn!(
            open_files = n,
            max_connections,
            "the open files limit is below max_connections + 1024 (sockets, blob files, the index): accepts can fail under load; raise LimitNOFILE or lower max_connections"
        );
    }
}

/// A place under the connection cap for a connection just accepted. At the cap, the
/// connection silent for longest is closed to make room; when every connection is busy,
/// this waits for one to close (the kernel's backlog holds the others). `None` once the
/// server stops.
async fn make_room(connections: &Arc<Semaphore>, silent: &Silent) -> Option<OwnedSemaphorePermit> {
    match connections.clone().try_acquire_owned() {
        Ok(p) => return Some(p),
        Err(TryAcquireError::Closed) => return None,
        Err(TryAcquireError::NoPermits) => {}
    }
    if silent.evict_oldest() {
        tracing::debug!("at the connection cap: closing the connection silent for longest");
    }
    connections.clone().acquire_owned().await.ok()
}

/// Serves one connection; closes it if no request head arrives by `deadline` (or it is
/// evicted for silence first).
#[allow(clippy::too_many_arguments)]
async fn serve_connection<IO>(
    app: Arc<App>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
    peer: SocketAddr,
    io: IO,
    zero_copy: Option<Queue>,
    waiting: Arc<Waiting>,
    deadline: Instant,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let heard = waiting.clone();
    let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        heard.heard();
        // HTTP/2 bodies are framed by hyper: only HTTP/1 responses can carry a file.
        if let Some(queue) = zero_copy.as_ref().filter(|_| req.version() <= hyper::Version::HTTP_11) {
            req.extensions_mut().insert(queue.clone());
        }
        crate::http::handle(app.clone(), peer, req)
    });
    let conn = watcher.watch(
        builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned(),
    );
    let ended = tokio::select! {
        ended = conn => ended,
        () = waiting.silence(deadline) => {
            tracing::debug!(%peer, "closed: no request head within header_read_timeout");
            return;
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// SIGHUP reads the TLS certificate, key and client CA again.
async fn reload_on_sighup(app: Arc<App>) {
    #[cfg(unix)]
    {
        let Some(tls) = app.tls.as_ref() else { return };
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificates reloaded"),
                Err(e) => tracing::error!(error = %e, "TLS reload failed; keeping the previous certificates"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = app;
}

/// `/metrics`, `/healthz`, `/readyz` on their own listener, when `metrics_listen` is set.
async fn serve_health(app: Arc<App>) {
    let Some(addr) = app.config.metrics_listen else { return };
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot listen for metrics");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| crate::http::health::serve_only(app.clone(), req));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Files against records, after the listener is up: serving needs only the files, and a
/// million records take seconds to read. Retention waits for it.
async fn reconcile_store(app: Arc<App>) {
    let cache = app.cache.clone();
    match tokio::task::spawn_blocking(move || cache.reconcile()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "store reconciliation failed; retention is paused until a restart"),
        Err(e) => tracing::error!(error = %e, "store reconciliation panicked; retention is paused until a restart"),
    }
}

/// Retention runs every `sweep_interval`, and sooner when a fill is about to cross the high
/// watermark. Offline, nothing is evicted unless an operator asks (`entrepot gc`).
async fn sweep_periodically(app: Arc<App>) {
    let cache = &app.cache;
    if !cache.retention_configured() {
        return;
    }
    let every = cache.settings.retention.sweep_interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = cache.sweep_requested() => {}
        }
        if cache.settings.offline {
            continue;
        }
        if let Err(e) = cache.sweep(false).await {
            tracing::warn!(error = %e, "sweep failed");
        }
    }
}

/// The store scrubbed every `scrub_interval`, when one is set.
async fn scrub_periodically(app: Arc<App>) {
    let Some(every) = app.config.scrub_interval else { return };
    loop {
        tokio::time::sleep(every).await;
        let scrubbed = app
            .cache
            .scrub(app.config.scrub_rate, |p| {
                tracing::debug!("{}", crate::report::scrub_progress(&p))
            })
            .await;
        match scrubbed {
            Ok(s) => tracing::info!("{}", crate::report::scrub(&s).trim_end()),
            Err(e) => tracing::warn!(error = %e, "scrub failed"),
        }
    }
}

async fn flush_periodically(app: Arc<App>) {
    let mut tick = tokio::time::interval(ACCESS_FLUSH_EVERY);
    loop {
        tick.tick().await;
        app.cache.flush().await;
    }
}
