//! Load driver: entrepot measured against references in the same run, on loopback. It
//! starts a real upstream (Debian's `docker-registry`, CNCF distribution), entrepot (the
//! release binary), nginx serving the same bytes from disk (sendfile on: the physical limit
//! here) and distribution's own proxy mode on the same content.
//!
//! ```sh
//! cargo bench --bench load            # needs docker-registry and nginx on PATH; skopeo and
//!                                     # rsvg-convert are used when present
//! ```
//! Prints a Markdown table and writes `target/load/chart.svg` (and `chart.png` with
//! rsvg-convert) of throughput and latency against the references.

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

/// How long each request-rate run lasts.
const RATE_RUN: Duration = Duration::from_secs(3);

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

/// A docker-registry on a free port; `extra` is appended to its YAML (a `proxy:` section).
fn start_registry(dir: &Path, name: &str, extra: &str) -> (Proc, String, PathBuf) {
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = dir.join(format!("{name}.yml"));
    let storage = dir.join(format!("{name}-data"));
    std::fs::write(&cfg, format!("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{extra}", storage.display())).unwrap();
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("docker-registry on PATH (scripts/test installs it)");
    wait_up(&addr);
    (Proc(child), format!("http://{addr}"), log)
}

/// The release entrepot in front of `upstream`; returns its base URL and pid.
fn start_entrepot(dir: &Path, name: &str, upstream: &str) -> (Proc, String, u32) {
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = dir.join(format!("{name}.toml"));
    let data = dir.join(format!("{name}-data"));
    let toml = format!("listen = \"{addr}\"\ndata_dir = \"{}\"\nlog = \"warn\"\n[[upstream]]\nname = \"bench.local\"\nurl = \"{upstream}\"\n", data.display());
    std::fs::write(&cfg, toml).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_entrepot"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_up(&addr);
    (Proc(child), format!("http://{addr}"), pid)
}

/// nginx serving `root` from disk with sendfile, two workers, keep-alive without limit.
fn start_nginx(dir: &Path, root: &Path) -> Option<(Proc, String)> {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let addr = format!("127.0.0.1:{}", free_port());
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    let conf = format!(
        "worker_processes 2;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log;\nevents {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n  client_body_temp_path {p}/tmp;\n  proxy_temp_path {p}/tmp;\n  fastcgi_temp_path {p}/tmp;\n  uwsgi_temp_path {p}/tmp;\n  scgi_temp_path {p}/tmp;\n  types {{ application/octet-stream bin; application/vnd.oci.image.manifest.v1+json json; }}\n  server {{ listen {addr}; root {root}; }}\n}}\n",
        p = prefix.display(),
        root = root.display()
    );
    std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
    let child = Command::new(nginx)
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .spawn()
        .ok()?;
    wait_up(&addr);
    Some((Proc(child), format!("http://{addr}")))
}

/// Requests per second and latency percentiles of `conns` keep-alive connections each
/// sending GETs back to back for `RATE_RUN` (bounded in time and, per connection, count).
async fn rate(url: &str, accept: Option<&str>, conns: usize) -> (f64, Duration, Duration) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (url, accept) = (url.to_owned(), accept.map(str::to_owned));
        tasks.push(tokio::spawn(async move {
            // One client per task: its own connection, as a separate node would have.
            let client: HttpClient = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1)
                .build_http();
            let mut latencies = Vec::new();
            while started.elapsed() < RATE_RUN && latencies.len() < 1_000_000 {
                let mut req = Request::get(&url);
                if let Some(a) = &accept {
                    req = req.header(header::ACCEPT, a.as_str());
                }
                let t = Instant::now();
                let resp = client
                    .request(req.body(Full::new(Bytes::new())).unwrap())
                    .await
                    .expect("request");
                assert_eq!(resp.status(), StatusCode::OK, "{url}");
                let _ = resp.into_body().collect().await;
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    (all.len() as f64 / elapsed, pct(0.50), pct(0.99))
}

/// MB/s of `clients` concurrent GETs of one blob, each on its own connection.
async fn throughput(url: &str, clients: usize) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
            send(&client, Method::GET, &url, &[], Bytes::new()).await.2
        }));
    }
    let mut bytes = 0;
    for t in tasks {
        bytes += t.await.unwrap();
    }
    bytes as f64 / MIB as f64 / started.elapsed().as_secs_f64()
}

/// Scrapes one value from entrepot's `/metrics`.
async fn metric(client: &HttpClient, base: &str, series: &str) -> f64 {
    let resp = client
        .request(
            Request::get(format!("{base}/metrics"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn count_gets(log: &Path, part: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"GET ") && l.contains(part))
        .count()
}

/// One row of the report: a measure, entrepot's value, the reference's, and which way is
/// better (for the ratio shown in the chart).
struct Row {
    measure: String,
    entrepot: f64,
    reference: f64,
    reference_name: &'static str,
    unit: &'static str,
    higher_is_better: bool,
}

impl Row {
    /// entrepot relative to the reference, >1 meaning entrepot does better.
    fn ratio(&self) -> f64 {
        if self.higher_is_better {
            self.entrepot / self.reference
        } else {
            self.reference / self.entrepot
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes; this driver only runs under `cargo bench`.
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_upstream, upstream, upstream_log) = start_registry(d, "upstream", "");
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    eprintln!("seeding the upstream: a 100 MiB image, 30 small images, a 512 MiB blob…");
    push_image(&client, &upstream, "bench/app", "v1", &[20 * MIB; 5]).await;
    for i in 0..30 {
        push_image(
            &client,
            &upstream,
            &format!("bench/small{i}"),
            "v1",
            &[100_000 + i * 1000, 200_000, 300_000 + i],
        )
        .await;
    }
    let (big, _) = push_blob(&client, &upstream, "bench/big", noise(512 * MIB, 99)).await;
    let (_entrepot, ent, pid) = start_entrepot(d, "entrepot", &upstream);
    let mut rows = Vec::new();

    // Cold and warm pulls of the 100 MiB image, the reference being the upstream itself.
    let (bytes, direct1) = pull(&client, &upstream, "bench/app", "v1").await;
    let (_, cold) = pull(&client, &ent, "bench/app", "v1").await;
    let (_, warm1) = pull(&client, &ent, "bench/app", "v1").await;
    let (_, direct2) = pull(&client, &upstream, "bench/app", "v1").await;
    let (_, warm2) = pull(&client, &ent, "bench/app", "v1").await;
    let (direct, warm) = (direct1.min(direct2), warm1.min(warm2));
    let mb = bytes as f64 / MIB as f64;
    rows.push(Row {
        measure: format!("cold pull {mb:.0} MiB image"),
        entrepot: cold.as_secs_f64(),
        reference: direct.as_secs_f64(),
        reference_name: "upstream",
        unit: "s",
        higher_is_better: false,
    });
    rows.push(Row {
        measure: format!("warm pull {mb:.0} MiB image"),
        entrepot: warm.as_secs_f64(),
        reference: direct.as_secs_f64(),
        reference_name: "upstream",
        unit: "s",
        higher_is_better: false,
    });

    // Thirty small images, cold, against the same pulls straight from the upstream.
    let started = Instant::now();
    for i in 0..30 {
        pull(&client, &upstream, &format!("bench/small{i}"), "v1").await;
    }
    let direct_small = started.elapsed();
    let started = Instant::now();
    let mut served = 0;
    for i in 0..30 {
        served += pull(&client, &ent, &format!("bench/small{i}"), "v1").await.0;
    }
    let cold_small = started.elapsed();
    rows.push(Row {
        measure: "cold pull of 30 small images".into(),
        entrepot: cold_small.as_secs_f64(),
        reference: direct_small.as_secs_f64(),
        reference_name: "upstream",
        unit: "s",
        higher_is_better: false,
    });
    let fetched = metric(
        &client,
        &ent,
        r#"entrepot_upstream_bytes_total{upstream="bench.local"}"#,
    )
    .await;
    let upstream_per_served = (fetched - bytes as f64) / served as f64;

    // Sixteen clients on one cold 512 MiB blob.
    let (rss_before, _) = peak_rss_kib(pid);
    let started = Instant::now();
    let url = format!("{ent}/v2/bench/big/blobs/{big}");
    let herd: Vec<_> = (0..16)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { send(&client, Method::GET, &url, &[], Bytes::new()).await.2 })
        })
        .collect();
    for h in herd {
        assert_eq!(h.await.unwrap(), 512 * MIB as u64);
    }
    let herd_time = started.elapsed();
    let (_, peak) = peak_rss_kib(pid);
    let big_gets = count_gets(&upstream_log, &format!("/v2/bench/big/blobs/{big}"));

    // The same bytes from disk through nginx: the blob and the manifest.
    let root = d.join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy(
        d.join(format!("entrepot-data/blobs/sha256/{}/{}", &big[7..9], &big[7..])),
        root.join("big.bin"),
    )
    .unwrap();
    let manifest = {
        let req = Request::get(format!("{ent}/v2/bench/app/manifests/v1"))
            .header(header::ACCEPT, "application/vnd.oci.image.manifest.v1+json");
        let resp = client
            .request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        resp.into_body().collect().await.unwrap().to_bytes()
    };
    std::fs::write(root.join("manifest.json"), &manifest).unwrap();
    let manifest_digest = sha256(&manifest);
    let accept = Some("application/vnd.oci.image.manifest.v1+json");
    if let Some((_nginx, nginx)) = start_nginx(d, &root) {
        for clients in [1, 8] {
            // Best of three, alternating: one transfer is a fraction of a second, and this
            // machine's neighbours move single samples by ±20%.
            let (mut reference, mut ours) = (0f64, 0f64);
            for _ in 0..3 {
                reference = reference.max(throughput(&format!("{nginx}/big.bin"), clients).await);
                ours = ours.max(throughput(&url, clients).await);
            }
            rows.push(Row {
                measure: format!("warm 512 MiB blob, {clients} client(s)"),
                entrepot: ours,
                reference,
                reference_name: "nginx",
                unit: "MiB/s",
                higher_is_better: true,
            });
        }
        let (ng_rps, ng_p50, ng_p99) = rate(&format!("{nginx}/manifest.json"), None, 32).await;
        for (what, path) in [("by tag", "v1".to_owned()), ("by digest", manifest_digest.clone())] {
            let (rps, p50, p99) = rate(&format!("{ent}/v2/bench/app/manifests/{path}"), accept, 32).await;
            rows.push(Row {
                measure: format!("warm manifest {what}, c=32 (req/s)"),
                entrepot: rps,
                reference: ng_rps,
                reference_name: "nginx",
                unit: "req/s",
                higher_is_better: true,
            });
            rows.push(Row {
                measure: format!("warm manifest {what}, c=32 p99"),
                entrepot: p99.as_secs_f64() * 1000.0,
                reference: ng_p99.as_secs_f64() * 1000.0,
                reference_name: "nginx",
                unit: "ms",
                higher_is_better: false,
            });
            eprintln!(
                "manifest {what}: entrepot p50 {:?} p99 {:?}; nginx p50 {ng_p50:?} p99 {ng_p99:?}",
                p50, p99
            );
        }
    } else {
        eprintln!("nginx is not installed: no nginx references");
    }

    // distribution's proxy mode on the same content.
    let (_proxy, proxy, _) = start_registry(d, "proxy", &format!("proxy:\n  remoteurl: {upstream}\n"));
    pull(&client, &proxy, "bench/app", "v1").await;
    for (what, path) in [("by tag", "v1".to_owned()), ("by digest", manifest_digest.clone())] {
        let (theirs, _, their_p99) = rate(&format!("{proxy}/v2/bench/app/manifests/{path}"), accept, 32).await;
        let (ours, _, our_p99) = rate(&format!("{ent}/v2/bench/app/manifests/{path}"), accept, 32).await;
        rows.push(Row {
            measure: format!("warm manifest {what}, c=32 (req/s)"),
            entrepot: ours,
            reference: theirs,
            reference_name: "distribution proxy",
            unit: "req/s",
            higher_is_better: true,
        });
        rows.push(Row {
            measure: format!("warm manifest {what}, c=32 p99"),
            entrepot: our_p99.as_secs_f64() * 1000.0,
            reference: their_p99.as_secs_f64() * 1000.0,
            reference_name: "distribution proxy",
            unit: "ms",
            higher_is_better: false,
        });
    }

    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\n## entrepot against references, same run (loopback, {} cores)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(
        out,
        "| measure | entrepot | reference | ratio (>1: entrepot better) |\n|---|---|---|---|"
    );
    for r in &rows {
        let _ = writeln!(
            out,
            "| {} | {:.3} {} | {:.3} {} ({}) | {:.2}× |",
            r.measure,
            r.entrepot,
            r.unit,
            r.reference,
            r.unit,
            r.reference_name,
            r.ratio()
        );
    }
    let _ = writeln!(
        out,
        "\nupstream bytes per byte served on the 30 cold small-image pulls: {upstream_per_served:.3}"
    );
    let _ = writeln!(
        out,
        "16 concurrent cold GETs of one 512 MiB blob: {} upstream GET(s), {:.2} s wall, entrepot RSS {} MiB before, {} MiB peak",
        big_gets,
        herd_time.as_secs_f64(),
        rss_before / 1024,
        peak / 1024
    );
    let chart = chart(&rows);
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/load");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("chart.svg"), chart).unwrap();
    let png = Command::new("rsvg-convert")
        .arg("-o")
        .arg(target.join("chart.png"))
        .arg(target.join("chart.svg"))
        .status();
    let _ = writeln!(
        out,
        "\nchart: {}{}",
        target.join("chart.svg").display(),
        if png.is_ok_and(|s| s.success()) {
            " (and chart.png)"
        } else {
            ""
        }
    );
}

/// A horizontal bar per row: entrepot relative to its reference (1.0 = parity).
fn chart(rows: &[Row]) -> String {
    let (width, bar_h, left) = (980.0, 24.0, 420.0);
    let height = 60.0 + rows.len() as f64 * (bar_h + 8.0);
    let max = rows.iter().map(Row::ratio).fold(2.0f64, f64::max).min(8.0);
    let scale = (width - left - 90.0) / max;
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="13"><rect width="100%" height="100%" fill="white"/><text x="10" y="22" font-size="15" font-weight="bold">entrepot / reference (higher is better for entrepot; line = parity)</text>"##
    );
    for (i, r) in rows.iter().enumerate() {
        let y = 40.0 + i as f64 * (bar_h + 8.0);
        let w = (r.ratio().min(max) * scale).max(1.0);
        let color = if r.ratio() >= 1.0 { "#2a9d8f" } else { "#e76f51" };
        svg.push_str(&format!(
            r##"<text x="10" y="{ty}">{label} vs {reference}</text><rect x="{left}" y="{y}" width="{w}" height="{bar_h}" fill="{color}"/><text x="{tx}" y="{ty}">{ratio:.2}×</text>"##,
            ty = y + bar_h * 0.7,
            label = r.measure,
            reference = r.reference_name,
            tx = left + w + 6.0,
            ratio = r.ratio()
        ));
    }
    let x1 = left + scale;
    svg.push_str(&format!(
        r##"<line x1="{x1}" y1="32" x2="{x1}" y2="{}" stroke="black" stroke-dasharray="4"/></svg>"##,
        height - 10.0
    ));
    svg
}
