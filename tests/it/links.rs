//! Repository scoping: a digest stored once is served under a repository's name only once
//! that repository is known to hold it. (The real registry's own scoping is checked in the
//! interop suite; here, a fault on a repository's paths stands for "not held there".)

use tokio::sync::watch;

use crate::support::*;

async fn setup(extra: &str) -> (tempfile::TempDir, TestRegistry, TestProxy) {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", extra).await;
    (dir, reg, proxy)
}

#[tokio::test]
async fn a_blob_is_not_served_through_a_repository_that_does_not_hold_it() {
    let (_dir, reg, proxy) = setup("").await;
    let (_, _, layers) = reg.put_image("public/app", "v1", &[5000], 1);
    let layer = &layers[0];
    pull(&proxy, "public/app", "v1").await;
    assert_eq!(
        reg.count("HEAD", "/blobs/"),
        0,
        "a pull, manifest first, asks nothing more"
    );

    reg.fault("/v2/private/app/", Fault::Status(404, None));
    let elsewhere = get(&proxy.url(&format!("/v2/private/app/blobs/{layer}"))).await;
    assert_eq!(
        (elsewhere.status.as_u16(), elsewhere.error_code().as_str()),
        (404, "BLOB_UNKNOWN")
    );
    let head = crate::support::head(&proxy.url(&format!("/v2/private/app/blobs/{layer}"))).await;
    assert_eq!(head.status, 404);
    let manifest = get(&proxy.url("/v2/private/app/manifests/v1")).await;
    assert_eq!(manifest.status, 404);

    // A repository that holds it costs one HEAD, once; the bytes are not fetched again.
    let gets_before = reg.count("GET", layer);
    for _ in 0..3 {
        let got = get(&proxy.url(&format!("/v2/mirror/app/blobs/{layer}"))).await;
        assert_eq!((got.status.as_u16(), got.cache()), (200, "hit"));
    }
    assert_eq!(reg.count("HEAD", &format!("/v2/mirror/app/blobs/{layer}")), 1);
    assert_eq!(reg.count("GET", layer), gets_before);
}

#[tokio::test]
async fn a_manifest_by_digest_is_scoped_like_a_blob() {
    let (_dir, reg, proxy) = setup("").await;
    let (d, bytes, _) = reg.put_image("public/app", "v1", &[10], 2);
    assert_eq!(get(&proxy.url("/v2/public/app/manifests/v1")).await.status, 200);
    reg.fault("/v2/private/app/", Fault::Status(404, None));
    let refused = get(&proxy.url(&format!("/v2/private/app/manifests/{d}"))).await;
    assert_eq!(
        (refused.status.as_u16(), refused.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    let held = get(&proxy.url(&format!("/v2/public/app/manifests/{d}"))).await;
    assert_eq!(held.bytes(), &bytes);
}

#[tokio::test]
async fn concurrent_requests_for_a_new_link_share_one_head() {
    let (_dir, reg, proxy) = setup("").await;
    let (_, _, layers) = reg.put_image("public/app", "v1", &[5000], 3);
    pull(&proxy, "public/app", "v1").await;
    let (open, gate) = watch::channel(false);
    reg.fault("/v2/other/app/blobs/", Fault::Gate(gate));
    let url = proxy.url(&format!("/v2/other/app/blobs/{}", layers[0]));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    until("the upstream is asked whether the repository holds the blob", || {
        reg.count("HEAD", "/v2/other/app/blobs/") > 0
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    open.send(true).unwrap();
    for c in clients {
        assert_eq!(c.await.unwrap().status, 200);
    }
    assert_eq!(reg.count("HEAD", "/v2/other/app/blobs/"), 1);
}

#[tokio::test]
async fn offline_only_known_links_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let (_, _, layers) = reg.put_image("public/app", "v1", &[5000], 4);
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "").await;
    pull(&proxy, "public/app", "v1").await;
    proxy.stop().await;

    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "offline = true").await;
    let known = get(&proxy.url(&format!("/v2/public/app/blobs/{}", layers[0]))).await;
    assert_eq!(known.status, 200);
    let unknown = get(&proxy.url(&format!("/v2/other/app/blobs/{}", layers[0]))).await;
    assert_eq!(
        (unknown.status.as_u16(), unknown.error_code().as_str()),
        (404, "BLOB_UNKNOWN")
    );
}
