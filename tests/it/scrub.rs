//! Corruption at rest: what the scrub finds is quarantined and fetched again; manifests are
//! checked whenever they are read from the index; `entrepot scrub` exits non-zero when it
//! finds anything, with the server stopped or running.

use std::path::Path;
use std::process::Command;

use crate::support::*;

/// Flips one byte in the middle of a file.
fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

/// Where a committed blob lies on disk (docs/storage.md), for a test that damages it.
fn blob_file(data_dir: &Path, d: &entrepot::oci::Digest) -> std::path::PathBuf {
    data_dir.join(format!("blobs/sha256/{}/{}", &d.hex()[..2], d.hex()))
}

fn corrupt_count(metrics: &str, kind: &str) -> String {
    let series = format!("entrepot_store_corrupt_total{{kind=\"{kind}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
        .to_owned()
}

#[tokio::test]
async fn a_flipped_byte_is_quarantined_and_the_blob_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let (_, _, layers) = reg.put_image("team/app", "v1", &[300_000], 1);
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "").await;
    pull(&proxy, "team/app", "v1").await;
    let layer: entrepot::oci::Digest = layers[0].parse().unwrap();
    let cache = &proxy.app.cache;
    flip_a_byte(&blob_file(dir.path(), &layer));

    let clean = cache.scrub(0, |_| {}).await.unwrap();
    assert_eq!(clean.corrupt.len(), 1, "{clean:?}");
    let found = &clean.corrupt[0];
    assert_eq!((found.kind, &found.digest), ("blob", &layer));
    let moved_to = Path::new(&found.moved_to);
    assert!(moved_to.starts_with(dir.path().join("quarantine")), "{found:?}");
    assert!(moved_to.exists() && !cache.store.blobs.exists(&layer));
    assert!(cache.store.index.blob(&layer).unwrap().is_none());
    let metrics = String::from_utf8_lossy(get(&proxy.url("/metrics")).await.bytes()).into_owned();
    assert_eq!(corrupt_count(&metrics, "blob"), "1");

    let gets = reg.count("GET", &layers[0]);
    let again = get(&proxy.url(&format!("/v2/team/app/blobs/{layer}"))).await;
    assert_eq!(again.cache(), "miss", "fetched again from the upstream");
    assert_eq!(entrepot::oci::Digest::sha256_of(again.bytes()), layer);
    assert_eq!(reg.count("GET", &layers[0]), gets + 1);
    let second = cache.scrub(0, |_| {}).await.unwrap();
    assert!(second.corrupt.is_empty() && second.blobs >= 2, "{second:?}");
}

#[tokio::test]
async fn a_manifest_that_no_longer_matches_its_digest_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let (d, bytes, _) = reg.put_image("team/app", "v1", &[10], 2);
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "").await;
    assert_eq!(get(&proxy.url("/v2/team/app/manifests/v1")).await.bytes(), &bytes);
    let digest: entrepot::oci::Digest = d.parse().unwrap();
    let index = &proxy.app.cache.store.index;
    let (rec, _) = index.manifest(&digest).unwrap().unwrap();
    let mut damaged = bytes.to_vec();
    damaged[10] ^= 0x01;
    index.put_manifest(&digest, &rec, &damaged).unwrap();
    proxy.stop().await;

    // Restarted, so that nothing is served from memory: the read from the index is checked.
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "").await;
    let got = get(&proxy.url(&format!("/v2/team/app/manifests/{d}"))).await;
    assert_eq!(got.bytes(), &bytes, "the damaged copy is refetched, not served");
    assert_eq!(got.cache(), "miss");
    let metrics = String::from_utf8_lossy(get(&proxy.url("/metrics")).await.bytes()).into_owned();
    assert_eq!(corrupt_count(&metrics, "manifest"), "1");
    assert!(dir
        .path()
        .join(format!("quarantine/sha256-{}.manifest", digest.hex()))
        .exists());
}

#[test]
fn the_scrub_command_exits_non_zero_on_corruption_with_or_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let reg = rt.block_on(TestRegistry::start());
    let (_, _, layers) = reg.put_image("team/app", "v1", &[200_000, 100_000], 3);
    let port = free_port();
    let data = dir.path().join("data");
    let config = binary_config(dir.path(), port, &reg, "");
    let scrub = || {
        Command::new(env!("CARGO_BIN_EXE_entrepot"))
            .args(["scrub", "--rate", "1GiB", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let mut server = serve_binary(&config, port);
    let proxy_url = format!("http://127.0.0.1:{port}");
    for l in &layers {
        let got = rt.block_on(get(&format!("{proxy_url}/v2/team/app/blobs/{l}")));
        assert_eq!(got.status, 200);
    }
    let blob_path = |d: &str| blob_file(&data, &d.parse().unwrap());

    // Through the running server (its operator socket).
    let clean = scrub();
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stderr));
    assert!(String::from_utf8_lossy(&clean.stdout).contains("0 corrupt"));
    flip_a_byte(&blob_path(&layers[0]));
    let found = scrub();
    let report = String::from_utf8_lossy(&found.stdout).into_owned();
    assert_eq!(found.status.code(), Some(1), "{report}");
    assert!(
        report.contains(&format!("corrupt blob {}", layers[0])) && report.contains("1 corrupt"),
        "{report}"
    );
    let _ = server.kill();
    let _ = server.wait();

    // With the server stopped: the command opens the data directory itself.
    flip_a_byte(&blob_path(&layers[1]));
    let found = scrub();
    let report = String::from_utf8_lossy(&found.stdout).into_owned();
    assert_eq!(found.status.code(), Some(1), "{report}");
    assert!(report.contains(&format!("corrupt blob {}", layers[1])), "{report}");
    assert!(
        String::from_utf8_lossy(&found.stderr).contains("scrub: "),
        "progress lines on stderr"
    );
    assert!(scrub().status.success(), "nothing left to find");
    drop(reg);
}

#[tokio::test]
async fn a_server_scrubs_by_itself_when_scrub_interval_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let (_, _, layers) = reg.put_image("team/app", "v1", &[50_000], 4);
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "scrub_interval = \"100ms\"").await;
    pull(&proxy, "team/app", "v1").await;
    let layer: entrepot::oci::Digest = layers[0].parse().unwrap();
    let blobs = &proxy.app.cache.store.blobs;
    flip_a_byte(&blob_file(dir.path(), &layer));
    until("the background scrub quarantines the blob", || !blobs.exists(&layer)).await;
    assert_eq!(
        get(&proxy.url(&format!("/v2/team/app/blobs/{layer}"))).await.cache(),
        "miss"
    );
}
