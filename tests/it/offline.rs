//! When the upstream is gone: stale-if-error, its limit, `offline = true`, restarts.

use crate::support::*;

#[tokio::test]
async fn cached_content_is_served_when_the_upstream_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = TestRegistry::start().await;
    let (d, bytes, layers) = reg.put_image("team/app", "v1", &[5000], 1);
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "tag_ttl = \"0s\"").await;
    let tag_url = proxy.url("/v2/team/app/manifests/v1");
    assert_eq!(get(&tag_url).await.status, 200);
    assert_eq!(
        get(&proxy.url(&format!("/v2/team/app/blobs/{}", layers[0])))
            .await
            .status,
        200
    );
    assert_eq!(get(&proxy.url("/v2/team/app/tags/list")).await.status, 200);
    let sig = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/example.sig","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}},"layers":[],"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":{}}}}}"#,
        crate::support::registry::sha256(b"{}"),
        bytes.len()
    );
    let sig_digest = reg.put_manifest("team/app", None, "application/vnd.oci.image.manifest.v1+json", sig);
    assert_eq!(
        get(&proxy.url(&format!("/v2/team/app/manifests/{sig_digest}")))
            .await
            .status,
        200
    );
    reg.stop();

    let stale = get(&tag_url).await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.cache(), "stale");
    assert_eq!(stale.bytes(), &bytes);
    assert!(
        stale.header("warning").is_some_and(|w| w.starts_with("299 ")),
        "{:?}",
        stale.header("warning")
    );
    let by_digest = get(&proxy.url(&format!("/v2/team/app/manifests/{d}"))).await;
    assert_eq!((by_digest.status.as_u16(), by_digest.cache()), (200, "hit"));
    let blob = get(&proxy.url(&format!("/v2/team/app/blobs/{}", layers[0]))).await;
    assert_eq!((blob.status.as_u16(), blob.cache()), (200, "hit"));
    let list = get(&proxy.url("/v2/team/app/tags/list")).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["tags"][0], "v1");

    // Referrers the upstream can no longer list come from what is cached here.
    let referrers = get(&proxy.url(&format!("/v2/team/app/referrers/{d}"))).await;
    assert_eq!(referrers.status, 200);
    assert_eq!(referrers.json()["manifests"][0]["digest"], sig_digest.as_str());
    assert_eq!(
        referrers.json()["manifests"][0]["artifactType"],
        "application/example.sig"
    );

    let uncached = get(&proxy.url("/v2/team/app/manifests/v9")).await;
    assert_eq!(uncached.status, 503);
}

#[tokio::test]
async fn stale_tags_are_not_served_past_max_staleness() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = TestRegistry::start().await;
    reg.put_image("team/app", "v1", &[10], 2);
    let clock = std::sync::Arc::new(entrepot::clock::ManualClock::default());
    let extra = "tag_ttl = \"1m\"\nmax_staleness = \"1h\"";
    let proxy = TestProxy::start_clocked(dir.path(), extra, &upstream("reg.test", &reg.url(), ""), clock.clone()).await;
    let url = proxy.url("/v2/team/app/manifests/v1");
    assert_eq!(get(&url).await.status, 200);
    reg.stop();
    clock.advance(std::time::Duration::from_secs(30 * 60));
    let stale = get(&url).await;
    assert_eq!(
        (stale.status.as_u16(), stale.cache()),
        (200, "stale"),
        "within max_staleness"
    );
    clock.advance(std::time::Duration::from_secs(31 * 60));
    assert_eq!(get(&url).await.status, 503, "past max_staleness");
}

#[tokio::test]
async fn upstream_5xx_and_429_also_fall_back_to_the_cached_tag() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let (d, _, _) = reg.put_image("team/app", "v1", &[10], 3);
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "tag_ttl = \"0s\"").await;
    let url = proxy.url("/v2/team/app/manifests/v1");
    assert_eq!(get(&url).await.status, 200);
    for (status, retry) in [(503, None), (429, Some("5"))] {
        reg.clear_faults();
        reg.fault("/manifests/v1", Fault::Status(status, retry));
        let got = get(&url).await;
        assert_eq!((got.status.as_u16(), got.cache()), (200, "stale"), "upstream {status}");
        assert_eq!(got.header("docker-content-digest"), Some(d.as_str()));
    }
}

#[tokio::test]
async fn offline_mode_serves_the_cache_after_a_restart_and_never_dials() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let (d, bytes, layers) = reg.put_image("team/app", "v1", &[3000], 4);
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "").await;
    assert_eq!(get(&proxy.url("/v2/team/app/manifests/v1")).await.status, 200);
    assert_eq!(
        get(&proxy.url(&format!("/v2/team/app/blobs/{}", layers[0])))
            .await
            .status,
        200
    );
    proxy.stop().await;

    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "offline = true\ntag_ttl = \"0s\"").await;
    let before = reg.total_requests();
    let tag = get(&proxy.url("/v2/team/app/manifests/v1")).await;
    assert_eq!(tag.bytes(), &bytes);
    assert_eq!(tag.header("docker-content-digest"), Some(d.as_str()));
    let blob = get(&proxy.url(&format!("/v2/team/app/blobs/{}", layers[0]))).await;
    assert_eq!(blob.cache(), "hit");
    let list = get(&proxy.url("/v2/team/app/tags/list")).await;
    assert_eq!(list.json()["tags"][0], "v1");
    let missing = get(&proxy.url("/v2/team/app/manifests/v2")).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_code(), "MANIFEST_UNKNOWN");
    let missing_blob = get(&proxy.url(&format!("/v2/team/app/blobs/sha256:{}", "1".repeat(64)))).await;
    assert_eq!(missing_blob.error_code(), "BLOB_UNKNOWN");
    assert_eq!(reg.total_requests(), before, "offline never contacts the upstream");
}

#[tokio::test]
async fn a_tag_pulled_with_one_accept_is_served_to_another_when_the_upstream_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = TestRegistry::start().await;
    let (d, _, _) = reg.put_image("team/app", "v1", &[10], 5);
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "tag_ttl = \"0s\"").await;
    let url = proxy.url("/v2/team/app/manifests/v1");
    let oci_only = [("accept", "application/vnd.oci.image.manifest.v1+json")];
    assert_eq!(request(http::Method::GET, &url, &oci_only).await.status, 200);
    reg.stop();
    // Another client, another Accept: the upstream cannot answer, the known tag can.
    let other = get(&url).await;
    assert_eq!((other.status.as_u16(), other.cache()), (200, "stale"));
    assert_eq!(other.header("docker-content-digest"), Some(d.as_str()));
    // A class that does not accept the type gets the registries' 404, never the wrong type.
    let docker_only = [("accept", "application/vnd.docker.distribution.manifest.v2+json")];
    let refused = request(http::Method::GET, &url, &docker_only).await;
    assert_eq!(
        (refused.status.as_u16(), refused.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
}
