//! Builders for the scenarios: a test registry, an entrepot in front of it, and a client.

pub mod memory;
pub mod registry;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;

pub use registry::{Fault, Options, TestRegistry};

/// A running entrepot on 127.0.0.1 over a data directory that survives restarts.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub app: Arc<entrepot::App>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestProxy {
    /// `upstreams` are TOML `[[upstream]]` tables; `extra` goes at the top of the file.
    pub async fn start(data_dir: &Path, extra: &str, upstreams: &str) -> TestProxy {
        TestProxy::start_clocked(data_dir, extra, upstreams, Arc::new(entrepot::clock::SystemClock)).await
    }

    /// `start`, with the cache reading the time from `clock`: a test moves a `ManualClock`
    /// past a TTL instead of sleeping.
    pub async fn start_clocked(
        data_dir: &Path,
        extra: &str,
        upstreams: &str,
        clock: Arc<dyn entrepot::clock::Clock>,
    ) -> TestProxy {
        let config = test_config(data_dir, extra, upstreams);
        TestProxy::launch(entrepot::App::open_with_clock(config, clock).expect("app builds")).await
    }

    /// `start`, with blob bytes kept by `blobs` rather than in files under `data_dir`.
    pub async fn start_on_blobs(
        data_dir: &Path,
        extra: &str,
        upstreams: &str,
        blobs: Arc<dyn entrepot::store::BlobStore>,
    ) -> TestProxy {
        let config = test_config(data_dir, extra, upstreams);
        let clock = Arc::new(entrepot::clock::SystemClock);
        TestProxy::launch(entrepot::App::open_with_blobs(config, clock, blobs).expect("app builds")).await
    }

    async fn launch(app: Arc<entrepot::App>) -> TestProxy {
        app.cache.reconcile().expect("store reconciles");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let admin = entrepot::server::bind_admin_socket(&app);
        let task = tokio::spawn(entrepot::server::serve(app.clone(), listener, admin, async {
            let _ = stopped.await;
        }));
        TestProxy {
            addr,
            app,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// One upstream named `name` at the registry's URL, plus `extra` top-level keys.
    pub async fn in_front_of(data_dir: &Path, registry: &TestRegistry, name: &str, extra: &str) -> TestProxy {
        TestProxy::start(data_dir, extra, &upstream(name, &registry.url(), "")).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops serving and waits until the store is closed, so it can be reopened.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let app = self.app.clone();
        drop(self);
        // sled releases its lock when the last handle goes.
        while Arc::strong_count(&app) > 1 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn test_config(data_dir: &Path, extra: &str, upstreams: &str) -> entrepot::Config {
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n{extra}\n{upstreams}",
        data_dir.display().to_string()
    );
    entrepot::Config::parse(&text).unwrap_or_else(|e| panic!("test config: {e}\n{text}"))
}

/// The shipped `config.toml`'s commented `[[policy]]` examples, uncommented: the tests hold
/// them to working as written.
/// The `[[policy]]` examples of the shipped config.toml, uncommented, with `cosign_key` as
/// the key the signing example names.
pub fn shipped_policy_examples(cosign_key: &std::path::Path) -> String {
    let shipped = include_str!("../../../config.toml");
    let from = shipped.find("# --- [[policy]]").expect("policy notes");
    let to = shipped.find("# --- [[retention]]").expect("retention notes");
    shipped[from..to]
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            l.starts_with("[[")
                || l.split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        })
        .collect::<Vec<_>>()
        .join("\n")
        .replace("/etc/entrepot/cosign.pub", cosign_key.to_str().unwrap())
}

/// Makes the manifests of repositories matching `repo` (and the blobs they reference) look
/// cached and last pulled `days` earlier, so that retention can be tested without waiting.
pub fn age(app: &entrepot::App, repo: &str, days: u64) {
    let index = &app.cache.store.index;
    index.flush_access().unwrap();
    let shift = days * 86_400_000;
    for (d, mut rec) in index.manifests_all().unwrap() {
        if rec.repository != repo {
            continue;
        }
        let (_, bytes) = index.manifest(&d).unwrap().unwrap();
        rec.cached_at -= shift;
        rec.last_access -= shift;
        for r in &rec.references {
            if let Some(mut b) = index.blob(r).unwrap() {
                b.cached_at = b.cached_at.min(rec.cached_at);
                b.last_access = b.last_access.min(rec.last_access);
                index.put_blob(r, &b).unwrap();
            }
        }
        index.put_manifest(&d, &rec, &bytes).unwrap();
    }
}

/// Pulls an image through the proxy the way a client does: manifest by tag, then blobs.
pub async fn pull(proxy: &TestProxy, repo: &str, tag: &str) -> serde_json::Value {
    let m = get(&proxy.url(&format!("/v2/{repo}/manifests/{tag}"))).await;
    assert_eq!(m.status, 200, "{repo}:{tag}");
    let v = m.json();
    let mut digests: Vec<String> = v["layers"]
        .as_array()
        .map(|l| l.iter().map(|x| x["digest"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    if let Some(c) = v["config"]["digest"].as_str() {
        digests.push(c.to_owned());
    }
    for d in digests {
        assert_eq!(get(&proxy.url(&format!("/v2/{repo}/blobs/{d}"))).await.status, 200);
    }
    v
}

/// An `Authorization` value for Basic credentials.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

pub use crate::htpasswd::write_htpasswd;

/// A loopback port free right now (for a process the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (30 s at most) until something listens on the loopback port.
pub fn wait_for_port(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A config file for the entrepot binary in `dir`: `listen` on `port`, `data_dir` at
/// `dir/data`, one upstream `reg.test` at the registry, then `extra`. Returns its path.
pub fn binary_config(dir: &Path, port: u16, registry: &TestRegistry, extra: &str) -> std::path::PathBuf {
    let config = dir.join("entrepot.toml");
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\ndata_dir = {:?}\n{}{extra}",
        dir.join("data").display().to_string(),
        upstream("reg.test", &registry.url(), "")
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// `entrepot serve` on that config, once it listens on `port`; its output discarded.
pub fn serve_binary(config: &Path, port: u16) -> std::process::Child {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_entrepot"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port);
    child
}

/// Waits (10 s at most) until `cond` holds; `what` names it when it never does.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

pub fn upstream(name: &str, url: &str, extra: &str) -> String {
    format!("[[upstream]]\nname = {name:?}\nurl = {url:?}\nresponse_timeout = \"5s\"\nidle_timeout = \"5s\"\n{extra}\n")
}

/// A response read whole, or the error its body ended with.
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Result<Bytes, String>,
}

impl Got {
    pub fn bytes(&self) -> &Bytes {
        self.body.as_ref().unwrap_or_else(|e| panic!("body failed: {e}"))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn cache(&self) -> &str {
        self.header("x-entrepot-cache").unwrap_or("-")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.bytes()).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The distribution-spec error code of an error response.
    pub fn error_code(&self) -> String {
        self.json()["errors"][0]["code"].as_str().unwrap_or_default().to_owned()
    }
}

pub fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn request(method: Method, url: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client()
        .request(req.body(Empty::new()).unwrap())
        .await
        .expect("request sent");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).map_err(|e| format!("{e:?}"));
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A request on a server's operator socket (`<data_dir>/admin.sock`): status and text.
pub async fn admin(socket: &Path, method: Method, path: &str) -> (StatusCode, String) {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("the operator socket");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "entrepot")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub async fn get(url: &str) -> Got {
    request(Method::GET, url, &[]).await
}

pub async fn head(url: &str) -> Got {
    request(Method::HEAD, url, &[]).await
}
