//! Load driver: pulls through entrepot against pulls straight from a real upstream
//! (Debian's `docker-registry`, CNCF distribution), in one run on loopback.
//!
//! ```sh
//! cargo bench --bench pull            # needs docker-registry on PATH (scripts/test installs it)
//! ```
//! Measures, each as a ratio against the direct pull of the same run:
//! - cold and warm pull of a ~100 MiB image (config + 5 × 20 MiB layers), once with a plain
//!   HTTP client (3 blobs at a time, bytes discarded) and once with skopeo (a real client,
//!   which verifies digests and writes to disk), when skopeo is installed;
//! - 16 concurrent cold GETs of one 512 MiB blob: upstream GETs, wall time, entrepot's peak RSS.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use sha2::Digest as _;

const MIB: usize = 1 << 20;
type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// Incompressible, reproducible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> (StatusCode, http::HeaderMap, u64) {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(body)).unwrap())
        .await
        .expect("request");
    let (parts, mut body) = resp.into_parts();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.expect("body").into_data() {
            n += d.len() as u64;
        }
    }
    (parts.status, parts.headers, n)
}

async fn push_blob(client: &HttpClient, base: &str, repo: &str, bytes: Vec<u8>) -> (String, usize) {
    let digest = sha256(&bytes);
    let len = bytes.len();
    let (status, headers, _) = send(
        client,
        Method::POST,
        &format!("{base}/v2/{repo}/blobs/uploads/"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let location = headers[header::LOCATION].to_str().unwrap().to_owned();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let (status, _, _) = send(
        client,
        Method::PUT,
        &format!("{location}{sep}digest={digest}"),
        &[("content-type", "application/octet-stream")],
        Bytes::from(bytes),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "blob upload");
    (digest, len)
}

async fn push_image(client: &HttpClient, base: &str, repo: &str, tag: &str, layers: &[usize]) {
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let (cd, cl) = push_blob(client, base, repo, config).await;
    let mut descs = Vec::new();
    for (i, size) in layers.iter().enumerate() {
        let (d, l) = push_blob(client, base, repo, noise(*size, i as u64 + 7)).await;
        descs.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":{l}}}"#
        ));
    }
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cl}}},"layers":[{}]}}"#,
        descs.join(",")
    );
    let (status, _, _) = send(
        client,
        Method::PUT,
        &format!("{base}/v2/{repo}/manifests/{tag}"),
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        Bytes::from(manifest),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "manifest push");
}

/// Pulls an image the way container runtimes do: manifest by tag, then the blobs three at
/// a time. Returns the bytes read and the time taken.
async fn pull(client: &HttpClient, base: &str, repo: &str, tag: &str) -> (u64, Duration) {
    let started = Instant::now();
    let accept = [("accept", "application/vnd.oci.image.manifest.v1+json")];
    let url = format!("{base}/v2/{repo}/manifests/{tag}");
    let req = Request::get(&url)
        .header(accept[0].0, accept[0].1)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{url}");
    let manifest = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let mut digests = vec![v["config"]["digest"].as_str().unwrap().to_owned()];
    digests.extend(
        v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned()),
    );
    let permits = Arc::new(tokio::sync::Semaphore::new(3));
    let mut tasks = Vec::new();
    for d in digests {
        let (client, permits, url) = (client.clone(), permits.clone(), format!("{base}/v2/{repo}/blobs/{d}"));
        tasks.push(tokio::spawn(async move {
            let _p = permits.acquire().await.unwrap();
            let (status, _, n) = send(&client, Method::GET, &url, &[], Bytes::new()).await;
            assert_eq!(status, StatusCode::OK, "{url}");
            n
        }));
    }
    let mut total = manifest.len() as u64;
    for t in tasks {
        total += t.await.unwrap();
    }
    (total, started.elapsed())
}

fn peak_rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn wait_up(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{addr} did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(dir: &Path) -> (Proc, String, PathBuf, Proc, String, u32) {
    let reg_addr = format!("127.0.0.1:{}", free_port());
    let cfg = dir.join("registry.yml");
    std::fs::write(
        &cfg,
        format!("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {reg_addr}\n", dir.join("reg").display()),
    )
    .unwrap();
    let reg_log = dir.join("registry.log");
    let out = std::fs::File::create(&reg_log).unwrap();
    let reg = Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("docker-registry on PATH (scripts/test installs it)");
    wait_up(&reg_addr);
    let ent_addr = format!("127.0.0.1:{}", free_port());
    let ecfg = dir.join("entrepot.toml");
    std::fs::write(
        &ecfg,
        format!("listen = \"{ent_addr}\"\ndata_dir = \"{}\"\nlog = \"warn\"\n[[upstream]]\nname = \"bench.local\"\nurl = \"http://{reg_addr}\"\n", dir.join("ent").display()),
    )
    .unwrap();
    let ent = Command::new(env!("CARGO_BIN_EXE_entrepot"))
        .args(["serve", "--config"])
        .arg(&ecfg)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = ent.id();
    wait_up(&ent_addr);
    (
        Proc(reg),
        format!("http://{reg_addr}"),
        reg_log,
        Proc(ent),
        format!("http://{ent_addr}"),
        pid,
    )
}

/// `skopeo copy` of an image into a fresh `dir:`; the time it took.
fn skopeo_pull(base: &str, image: &str, out: &Path) -> Option<Duration> {
    let _ = std::fs::remove_dir_all(out);
    let started = Instant::now();
    let src = format!("docker://{}/{image}", base.trim_start_matches("http://"));
    let status = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false", &src])
        .arg(format!("dir:{}", out.display()))
        .status()
        .ok()?;
    status.success().then(|| started.elapsed())
}

fn count_gets(log: &Path, part: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"GET ") && l.contains(part))
        .count()
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes; this driver only runs under `cargo bench`.
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (_reg, reg, reg_log, _ent, ent, pid) = start(dir.path());
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        eprintln!("seeding: a 100 MiB image and a 512 MiB blob…");
        push_image(&client, &reg, "bench/app", "v1", &[20 * MIB; 5]).await;
        let (big, _) = push_blob(&client, &reg, "bench/big", noise(512 * MIB, 99)).await;

        let (bytes, direct1) = pull(&client, &reg, "bench/app", "v1").await;
        let (_, cold) = pull(&client, &ent, "bench/app", "v1").await;
        let (_, warm1) = pull(&client, &ent, "bench/app", "v1").await;
        let (_, direct2) = pull(&client, &reg, "bench/app", "v1").await;
        let (_, warm2) = pull(&client, &ent, "bench/app", "v1").await;
        let direct = direct1.min(direct2);
        let warm = warm1.min(warm2);
        let image_gets = count_gets(&reg_log, "/v2/bench/app/blobs/");

        // The same with a real client, on a second image so that the cold pull is cold.
        push_image(&client, &reg, "bench/app2", "v1", &[20 * MIB; 5]).await;
        let out = dir.path().join("skopeo-out");
        let skopeo = (|| {
            let d1 = skopeo_pull(&reg, "bench/app2:v1", &out)?;
            let cold = skopeo_pull(&ent, "bench/app2:v1", &out)?;
            let w1 = skopeo_pull(&ent, "bench/app2:v1", &out)?;
            let d2 = skopeo_pull(&reg, "bench/app2:v1", &out)?;
            let w2 = skopeo_pull(&ent, "bench/app2:v1", &out)?;
            Some((d1.min(d2), cold, w1.min(w2)))
        })();
        let (rss_before, _) = peak_rss_kib(pid);

        let started = Instant::now();
        let url = format!("{ent}/v2/bench/big/blobs/{big}");
        let clients: Vec<_> = (0..16)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move { send(&client, Method::GET, &url, &[], Bytes::new()).await.2 })
            })
            .collect();
        for c in clients {
            assert_eq!(c.await.unwrap(), 512 * MIB as u64);
        }
        let herd = started.elapsed();
        let (_, peak) = peak_rss_kib(pid);
        let big_gets = count_gets(&reg_log, &format!("/v2/bench/big/blobs/{big}"));

        let mb = bytes as f64 / MIB as f64;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "\n## entrepot vs direct (docker-registry 2.8 upstream, loopback, {mb:.0} MiB image)\n");
        let _ = writeln!(out, "| measure | direct | entrepot | ratio |\n|---|---|---|---|");
        let _ = writeln!(out, "| cold pull | {:.3} s | {:.3} s | {:.2}× |", direct.as_secs_f64(), cold.as_secs_f64(), cold.as_secs_f64() / direct.as_secs_f64());
        let _ = writeln!(out, "| warm pull | {:.3} s | {:.3} s | {:.2}× |", direct.as_secs_f64(), warm.as_secs_f64(), warm.as_secs_f64() / direct.as_secs_f64());
        if let Some((d, c, w)) = skopeo {
            let _ = writeln!(out, "| cold pull, skopeo | {:.3} s | {:.3} s | {:.2}× |", d.as_secs_f64(), c.as_secs_f64(), c.as_secs_f64() / d.as_secs_f64());
            let _ = writeln!(out, "| warm pull, skopeo | {:.3} s | {:.3} s | {:.2}× |", d.as_secs_f64(), w.as_secs_f64(), w.as_secs_f64() / d.as_secs_f64());
        }
        let _ = writeln!(out, "| upstream blob GETs for 2 direct + 3 proxied pulls (6 blobs) | | {image_gets} | expected 18 = 2×6 direct + 6 cold |");
        let _ = writeln!(out, "\n16 concurrent cold GETs of one 512 MiB blob: {:.2} s wall, upstream GETs: {big_gets}, entrepot RSS before {} MiB, peak {} MiB",
            herd.as_secs_f64(), rss_before / 1024, peak / 1024);
    });
}
