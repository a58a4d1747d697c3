//! The listener: HTTP/1.1 and h2c on one port, a header-read timeout against slow clients,
//! and a graceful shutdown that lets responses in flight finish for a while.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::app::App;

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
const ACCESS_FLUSH_EVERY: Duration = Duration::from_secs(10);

/// Serves until `shutdown` completes, then drains connections for up to 30 s and flushes
/// the index.
pub async fn serve(app: Arc<App>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let flusher = tokio::spawn(flush_periodically(app.clone()));
    let ops_listener = match app.config.metrics_listen {
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(l) => Some(tokio::spawn(serve_ops(app.clone(), l))),
            Err(e) => {
                tracing::error!(%addr, error = %e, "cannot listen for metrics");
                None
            }
        },
        None => None,
    };
    let sweeper = tokio::spawn(sweep_periodically(app.clone()));
    tokio::pin!(shutdown);
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
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |req| crate::http::handle(app.clone(), peer, req));
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    tracing::info!("shutting down: draining connections");
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
    }
    flusher.abort();
    if let Some(l) = ops_listener {
        l.abort();
    }
    sweeper.abort();
    app.cache.flush().await;
}

/// `/metrics`, `/healthz`, `/readyz` on their own listener.
async fn serve_ops(app: Arc<App>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| crate::http::ops::serve_only(app.clone(), req));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
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
            _ = cache.sweep_now.notified() => {}
        }
        if cache.settings.offline {
            continue;
        }
        if let Err(e) = cache.sweep(false).await {
            tracing::warn!(error = %e, "sweep failed");
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
