//! Operator commands: `policy check`, `gc`, `cache stats`.
//!
//! A running entrepot holds the index, so it is asked through its loopback operator
//! endpoints (`/_entrepot/…`); when none answers, the data directory is opened here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::app::App;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::http::target;

/// What `entrepot gc` prints: the sweep's plan, carried out unless `dry_run`.
pub async fn gc(config: Config, dry_run: bool) -> Result<String> {
    let method = if dry_run { Method::GET } else { Method::POST };
    if let Some(answer) = ask_server(config.listen, method, "/_entrepot/gc").await {
        return answer;
    }
    let app = App::build(config)?;
    let plan = app.cache.sweep(dry_run).await?;
    app.cache.flush().await;
    Ok(crate::report::plan(&plan, dry_run))
}

/// What `entrepot cache stats` prints.
pub async fn stats(config: Config) -> Result<String> {
    if let Some(answer) = ask_server(config.listen, Method::GET, "/_entrepot/stats").await {
        return answer;
    }
    let app = App::build(config)?;
    Ok(crate::report::usage(&app.cache.usage().await?, &[]))
}

/// What `entrepot policy check <reference>` prints. References are written as clients
/// write them: `docker.io/library/alpine:3.20`, `ghcr.io/org/app@sha256:…`, `alpine`.
pub async fn policy_check(mut config: Config, reference: &str) -> Result<String> {
    let (name, reference) = split_reference(reference);
    // With a server running, its index is locked: work in a scratch data directory.
    let scratch = match ask_server(config.listen, Method::GET, "/_entrepot/stats").await {
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

/// `name[:tag|@digest]`, the tag defaulting to `latest` as clients do.
fn split_reference(r: &str) -> (&str, &str) {
    if let Some((name, digest)) = r.split_once('@') {
        return (name, digest);
    }
    let last_slash = r.rfind('/').map_or(0, |i| i + 1);
    match r[last_slash..].rfind(':') {
        Some(i) => (&r[..last_slash + i], &r[last_slash + i + 1..]),
        None => (r, "latest"),
    }
}

/// The running server's answer, or `None` when nothing answers at `listen`.
async fn ask_server(listen: SocketAddr, method: Method, path: &str) -> Option<Result<String>> {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let addr = SocketAddr::new(ip, listen.port());
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(Empty::new())
        .ok()?;
    let resp = match tokio::time::timeout(Duration::from_secs(2), client.request(req)).await {
        Ok(Ok(r)) => r,
        _ => return None,
    };
    let status = resp.status();
    let body = match resp.into_body().collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(e) => return Some(Err(Error::internal(e))),
    };
    Some(if status.is_success() {
        Ok(body)
    } else {
        Err(Error::Internal(format!("entrepot at {addr} answered {status}: {body}")))
    })
}

#[cfg(test)]
mod tests {
    use super::split_reference;

    #[test]
    fn references_split_like_clients_write_them() {
        assert_eq!(
            split_reference("docker.io/library/alpine:3.20"),
            ("docker.io/library/alpine", "3.20")
        );
        assert_eq!(split_reference("localhost:5000/a/b"), ("localhost:5000/a/b", "latest"));
        assert_eq!(split_reference("localhost:5000/a/b:v1"), ("localhost:5000/a/b", "v1"));
        assert_eq!(split_reference("ghcr.io/o/a@sha256:abc"), ("ghcr.io/o/a", "sha256:abc"));
        assert_eq!(split_reference("alpine"), ("alpine", "latest"));
    }
}
