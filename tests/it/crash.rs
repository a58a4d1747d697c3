//! Crash safety: SIGKILL at arbitrary moments under concurrent cold pulls, again and
//! again. After each kill the store holds only verified blobs and keeps every blob it had
//! committed; after the last one it restarts clean and serves every byte right.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use sha2::Digest as _;

use crate::support::*;

/// Every file under `blobs/`, checked against the digest its name claims.
fn committed_blobs(data: &Path) -> HashSet<String> {
    let mut out = HashSet::new();
    let root = data.join("blobs/sha256");
    let Ok(prefixes) = std::fs::read_dir(&root) else {
        return out;
    };
    for prefix in prefixes {
        for file in std::fs::read_dir(prefix.unwrap().path()).unwrap() {
            let file = file.unwrap();
            let name = file.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(file.path()).unwrap();
            assert_eq!(
                hex::encode(sha2::Sha256::digest(&bytes)),
                name,
                "a committed blob does not match its digest"
            );
            out.insert(format!("sha256:{name}"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_cold_pulls_leaves_a_store_that_restarts_clean() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let blobs: Vec<(String, Vec<u8>)> = (0..8u8)
        .map(|i| {
            let bytes: Vec<u8> = (0..(1 << 20) + i as usize * 4099)
                .map(|j| (j as u8).wrapping_mul(13).wrapping_add(i))
                .collect();
            (reg.put_blob(bytes.clone()), bytes)
        })
        .collect();
    // Slow downloads, so that kills land in the middle of them.
    for (d, _) in &blobs {
        reg.fault(d, Fault::Slow(32 * 1024, Duration::from_millis(4)));
    }
    let port = free_port();
    let data = dir.path().join("data");
    let config = binary_config(dir.path(), port, &reg, "");

    let mut kept: HashSet<String> = HashSet::new();
    for round in 0..6u64 {
        let mut child = serve_binary(&config, port);
        for (i, (d, _)) in blobs.iter().enumerate() {
            for _ in 0..2 {
                let url = format!("http://127.0.0.1:{port}/v2/team/app/blobs/{d}");
                // Stagger the requests so that kills catch fills at every stage.
                let delay = Duration::from_millis((i as u64 * 7 + round * 13) % 50);
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = client()
                        .request(http::Request::get(url).body(http_body_util::Empty::new()).unwrap())
                        .await;
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(60 + round * 70)).await;
        // The last round kills only once something has committed, so that what follows
        // checks survivors even on a slow machine.
        if round == 5 {
            for _ in 0..500 {
                if !committed_blobs(&data).is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let now = committed_blobs(&data);
        assert!(kept.is_subset(&now), "round {round}: committed blobs went missing");
        kept = now;
    }
    assert!(!kept.is_empty(), "some fill should have committed across six rounds");

    reg.clear_faults();
    let mut child = serve_binary(&config, port);
    assert_eq!(
        std::fs::read_dir(data.join("tmp")).unwrap().count(),
        0,
        "leftover ingests were swept at start-up"
    );
    for (d, bytes) in &blobs {
        let got = get(&format!("http://127.0.0.1:{port}/v2/team/app/blobs/{d}")).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.bytes().as_ref(), bytes.as_slice(), "{d}");
        if kept.contains(d) {
            assert_eq!(
                got.cache(),
                "hit",
                "{d} was committed before a kill and must still be served from disk"
            );
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
