//! Start-up time over a store of N blobs (files plus index records), against a plain walk of
//! the same blob directory as the reference:
//! - `Store::open`: what `serve` waits for before it accepts (the index opened);
//! - `Store::reconcile`: files against records, which `serve` runs after it accepts;
//! - the release binary: from spawn to the first cached blob served over HTTP.
//!
//! ```sh
//! cargo bench --bench startup                                   # N = 100000
//! ENTREPOT_BENCH_BLOBS=1000000 cargo bench --bench startup
//! ENTREPOT_BENCH_DIR=/tmp/s1m ENTREPOT_BENCH_BLOBS=1000000 cargo bench --bench startup
//! ```
//! With `ENTREPOT_BENCH_DIR` the populated data directory is kept and reused by later runs
//! (populating a million blobs takes minutes).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use entrepot::oci::Digest;
use entrepot::store::index::BlobRecord;
use entrepot::store::Store;

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let n: usize = std::env::var("ENTREPOT_BENCH_BLOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("ENTREPOT_BENCH_DIR").map_or_else(|| temp.path().to_owned(), Into::into);
    populate(&dir, n);

    let walk = Instant::now();
    let files = walkdir_count(&dir.join("blobs"));
    let walk = walk.elapsed();
    assert_eq!(files, n);

    let open = Instant::now();
    let store = Store::open(&dir).unwrap();
    let open = open.elapsed();
    let reconcile = Instant::now();
    let report = store.reconcile().unwrap();
    let reconcile = reconcile.elapsed();
    assert_eq!(report.blobs, n);
    drop(store);

    let first_blob = first_served_blob(&dir, &blob_digest(n / 2), &(n / 2).to_le_bytes());

    println!("\n## start-up with {n} blobs\n");
    println!("| measure | time | ratio to the walk |\n|---|---|---|");
    let row = |what: &str, t: Duration| {
        println!(
            "| {what} | {:.3} s | {:.2}× |",
            t.as_secs_f64(),
            t.as_secs_f64() / walk.as_secs_f64()
        )
    };
    row("walk of blobs/ (reference)", walk);
    row("`Store::open` (serve accepts after this)", open);
    row("`Store::reconcile` (after accepting, in the background)", reconcile);
    row("`entrepot serve`: spawn to first cached blob served", first_blob);
}

fn blob_digest(i: usize) -> Digest {
    Digest::sha256_of(&i.to_le_bytes())
}

/// N blobs of 8 bytes with their records; skipped when `dir` already holds them.
fn populate(dir: &Path, n: usize) {
    let marker = dir.join(format!("populated-{n}"));
    if marker.exists() {
        return;
    }
    eprintln!("writing {n} blobs and records…");
    let store = Store::open(dir).unwrap();
    for i in 0..n {
        let d = blob_digest(i);
        // Written in place, as the layout in docs/storage.md says (ingesting a million
        // blobs would take longer than the start-up it measures).
        let path = dir.join(format!("blobs/{}/{}/{}", d.algorithm().name(), &d.hex()[..2], d.hex()));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, i.to_le_bytes()).unwrap();
        let rec = BlobRecord {
            size: 8,
            media_type: None,
            cached_at: 0,
            last_access: 0,
            hits: 0,
            upstream: "u".into(),
        };
        store.index.put_blob(&d, &rec).unwrap();
    }
    store.index.flush().unwrap();
    std::fs::write(marker, b"").unwrap();
}

/// Starts the release binary on `dir` and times it until a GET of a cached blob is answered
/// 200 with its bytes. Gives up after 60 s.
fn first_served_blob(dir: &Path, digest: &Digest, body: &[u8]) -> Duration {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = dir.join("bench.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"{addr}\"\ndata_dir = \"{}\"\nlog = \"warn\"\noffline = true\n[[upstream]]\nname = \"bench.local\"\nurl = \"http://127.0.0.1:9\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_entrepot"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let request =
        format!("GET /v2/bench.local/any/blobs/{digest} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let served = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "entrepot did not serve within 60 s"
        );
        let Ok(mut s) = std::net::TcpStream::connect(addr) else {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        s.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        assert!(
            answer.starts_with(b"HTTP/1.1 200") && answer.ends_with(body),
            "unexpected answer: {}",
            String::from_utf8_lossy(&answer)
        );
        break started.elapsed();
    };
    let _ = child.kill();
    let _ = child.wait();
    served
}

fn walkdir_count(p: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            n += walkdir_count(&e.path());
        } else {
            n += 1;
        }
    }
    n
}
