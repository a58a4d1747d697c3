//! Start-up time: `Store::open` (index open + reconciliation of files and records) over a
//! store of N blobs, against a plain walk of the same blob directory as the reference.
//!
//! ```sh
//! cargo bench --bench startup            # N = 100000
//! ENTREPOT_BENCH_BLOBS=1000000 cargo bench --bench startup
//! ```

use std::time::Instant;

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
    let dir = tempfile::tempdir().unwrap();
    eprintln!("writing {n} blobs and records…");
    {
        let (store, _) = Store::open(dir.path()).unwrap();
        for i in 0..n {
            let bytes = i.to_le_bytes();
            let d = Digest::sha256_of(&bytes);
            let path = store.blobs.path(&d);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
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
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(store.index.flush()).unwrap();
    }
    let walk = Instant::now();
    let files = walkdir_count(&dir.path().join("blobs"));
    let walk = walk.elapsed();
    let open = Instant::now();
    let (_store, report) = Store::open(dir.path()).unwrap();
    let open = open.elapsed();
    assert_eq!(report.blobs, n);
    assert_eq!(files, n);
    println!("\n## start-up with {n} blobs\n");
    println!("| measure | time | ratio |\n|---|---|---|");
    println!("| walk of blobs/ (reference) | {:.3} s | 1.00× |", walk.as_secs_f64());
    println!(
        "| Store::open (index open + reconcile) | {:.3} s | {:.2}× |",
        open.as_secs_f64(),
        open.as_secs_f64() / walk.as_secs_f64()
    );
}

fn walkdir_count(p: &std::path::Path) -> usize {
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
