//! Manifests: exact bytes and headers, Accept, tags revalidated after their TTL, negative
//! caching, verification against the upstream's digest, coalescing.

use http::Method;
use tokio::sync::watch;

use crate::support::registry::{sha256, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::support::*;

async fn setup(opts: Options, extra: &str) -> (tempfile::TempDir, TestRegistry, TestProxy) {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start_with(opts).await;
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", extra).await;
    (dir, reg, proxy)
}

#[tokio::test]
async fn manifests_are_served_byte_for_byte_with_their_headers() {
    let (_dir, reg, proxy) = setup(Options::default(), "").await;
    let (digest, bytes, layers) = reg.put_image("team/app", "v1", &[1000], 1);

    let by_tag = get(&proxy.url("/v2/team/app/manifests/v1")).await;
    assert_eq!(by_tag.status, 200);
    assert_eq!(by_tag.bytes(), &bytes);
    assert_eq!(by_tag.header("content-type"), Some(OCI_MANIFEST));
    assert_eq!(by_tag.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(by_tag.header("content-length"), Some(bytes.len().to_string().as_str()));
    assert_eq!(by_tag.cache(), "miss");

    let by_digest = get(&proxy.url(&format!("/v2/team/app/manifests/{digest}"))).await;
    assert_eq!(by_digest.bytes(), &bytes);
    assert_eq!(by_digest.cache(), "hit");

    let h = head(&proxy.url("/v2/team/app/manifests/v1")).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(h.header("content-length"), Some(bytes.len().to_string().as_str()));
    assert!(h.bytes().is_empty());
    assert_eq!(
        reg.count("GET", "/manifests/"),
        1,
        "one upstream GET for tag, digest and HEAD"
    );

    // The blob learnt its media type from the manifest.
    let layer = get(&proxy.url(&format!("/v2/team/app/blobs/{}", layers[0]))).await;
    assert_eq!(layer.status, 200);
    let rec = proxy
        .app
        .cache
        .store
        .index
        .blob(&layers[0].parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        rec.media_type.as_deref(),
        Some("application/vnd.oci.image.layer.v1.tar")
    );
}

#[tokio::test]
async fn a_tag_is_one_fact_whatever_the_accept_and_docker_types_pass_unchanged() {
    let (_dir, reg, proxy) = setup(Options::default(), "tag_ttl = \"1h\"").await;
    let docker = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{}","size":2}},"layers":[]}}"#,
        sha256(b"{}")
    );
    let d = reg.put_manifest("team/old", Some("v1"), DOCKER_MANIFEST, docker.clone());
    let url = proxy.url("/v2/team/old/manifests/v1");
    let a = request(Method::GET, &url, &[("accept", DOCKER_MANIFEST)]).await;
    assert_eq!(a.header("content-type"), Some(DOCKER_MANIFEST));
    assert_eq!(a.bytes().as_ref(), docker.as_bytes());
    assert_eq!(a.header("docker-content-digest"), Some(d.as_str()));
    let b = request(
        Method::GET,
        &url,
        &[("accept", &format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}"))],
    )
    .await;
    assert_eq!(b.bytes().as_ref(), docker.as_bytes());
    assert_eq!(b.cache(), "hit", "another Accept that takes the type gets the same tag");
    // A client that takes no Docker type gets the registries' 404, about it alone.
    let oci_only = request(Method::GET, &url, &[("accept", OCI_MANIFEST)]).await;
    assert_eq!(
        (oci_only.status.as_u16(), oci_only.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    assert_eq!(get(&url).await.status, 200, "the tag is still there for everybody else");
    assert_eq!(
        reg.count("GET", "/manifests/v1") + reg.count("HEAD", "/manifests/v1"),
        1,
        "one upstream request for every Accept"
    );
}

#[tokio::test]
async fn docker_schema1_is_refused_plainly_not_as_corruption() {
    // Signed schema 1 never matches the digest the registry names (it signs anew each time).
    let opts = Options {
        lie_about_manifest_digest: true,
        ..Default::default()
    };
    let (_dir, reg, proxy) = setup(opts, "").await;
    let schema1 = r#"{"schemaVersion":1,"name":"team/old","tag":"v1","fsLayers":[],"history":[],"signatures":[]}"#;
    reg.put_manifest(
        "team/old",
        Some("v1"),
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        schema1,
    );
    let url = proxy.url("/v2/team/old/manifests/v1");
    for _ in 0..2 {
        let got = request(
            Method::GET,
            &url,
            &[("accept", "application/vnd.docker.distribution.manifest.v1+prettyjws")],
        )
        .await;
        assert_eq!(
            (got.status.as_u16(), got.error_code().as_str()),
            (404, "MANIFEST_UNKNOWN")
        );
        assert!(got.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("schema 1"));
    }
    let metrics = get(&proxy.url("/metrics")).await;
    let text = String::from_utf8_lossy(metrics.bytes()).into_owned();
    assert!(
        text.contains("entrepot_digest_mismatches_total 0"),
        "no integrity alarm:\n{text}"
    );
}

#[tokio::test]
async fn concurrent_revalidations_of_a_tag_share_one_head() {
    let (_dir, reg, proxy) = setup(Options::default(), "tag_ttl = \"0s\"").await;
    let (d, _, _) = reg.put_image("team/app", "latest", &[10], 13);
    let url = proxy.url("/v2/team/app/manifests/latest");
    assert_eq!(get(&url).await.status, 200);
    let (open, gate) = watch::channel(false);
    reg.fault("/manifests/latest", Fault::Gate(gate));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    until("the tag is revalidated", || reg.count("HEAD", "/manifests/latest") > 0).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    open.send(true).unwrap();
    for c in clients {
        let got = c.await.unwrap();
        assert_eq!(got.header("docker-content-digest"), Some(d.as_str()));
    }
    assert_eq!(reg.count("HEAD", "/manifests/latest"), 1, "one HEAD for sixteen pulls");
}

#[tokio::test]
async fn an_index_is_served_as_an_index() {
    let (_dir, reg, proxy) = setup(Options::default(), "").await;
    let (child, child_bytes, _) = reg.put_image("team/multi", "amd64", &[10], 2);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{child}","size":{},"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
        child_bytes.len()
    );
    let d = reg.put_manifest("team/multi", Some("latest"), OCI_INDEX, index.clone());
    let got = request(
        Method::GET,
        &proxy.url("/v2/team/multi/manifests/latest"),
        &[("accept", OCI_INDEX)],
    )
    .await;
    assert_eq!(got.header("content-type"), Some(OCI_INDEX));
    assert_eq!(got.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(got.bytes().as_ref(), index.as_bytes());
    let child_got = get(&proxy.url(&format!("/v2/team/multi/manifests/{child}"))).await;
    assert_eq!(child_got.bytes(), &child_bytes);
}

#[tokio::test]
async fn tags_are_revalidated_with_head_after_their_ttl() {
    let (_dir, reg, proxy) = setup(Options::default(), "tag_ttl = \"0s\"").await;
    let (d1, _, _) = reg.put_image("team/app", "latest", &[10], 3);
    let url = proxy.url("/v2/team/app/manifests/latest");
    assert_eq!(get(&url).await.header("docker-content-digest"), Some(d1.as_str()));
    let same = get(&url).await;
    assert_eq!(same.cache(), "revalidated");
    assert_eq!(reg.count("HEAD", "/manifests/latest"), 1);
    assert_eq!(
        reg.count("GET", "/manifests/latest"),
        1,
        "revalidation is a HEAD, not a GET"
    );

    let (d2, bytes2, _) = reg.put_image("team/app", "latest", &[20], 4);
    let moved = get(&url).await;
    assert_eq!(moved.header("docker-content-digest"), Some(d2.as_str()));
    assert_eq!(moved.bytes(), &bytes2);
    assert_eq!(moved.cache(), "miss");
}

#[tokio::test]
async fn fresh_tags_are_served_without_asking_upstream() {
    let (_dir, reg, proxy) = setup(Options::default(), "tag_ttl = \"1h\"").await;
    let (d1, _, _) = reg.put_image("team/app", "latest", &[10], 5);
    let url = proxy.url("/v2/team/app/manifests/latest");
    get(&url).await;
    reg.put_image("team/app", "latest", &[20], 6);
    let before = reg.total_requests();
    let got = get(&url).await;
    assert_eq!(got.cache(), "hit");
    assert_eq!(got.header("docker-content-digest"), Some(d1.as_str()));
    assert_eq!(reg.total_requests(), before);
}

#[tokio::test]
async fn unknown_tags_are_remembered_for_the_negative_ttl() {
    let (_dir, reg, proxy) = setup(Options::default(), "negative_ttl = \"1h\"").await;
    reg.put_image("team/app", "v1", &[10], 7);
    let url = proxy.url("/v2/team/app/manifests/nope");
    let a = get(&url).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error_code(), "MANIFEST_UNKNOWN");
    let b = get(&url).await;
    assert_eq!(b.status, 404);
    assert_eq!(reg.count("GET", "/manifests/nope"), 1);
}

#[tokio::test]
async fn a_tag_deleted_upstream_is_forgotten_on_revalidation() {
    let (_dir, reg, proxy) = setup(Options::default(), "tag_ttl = \"0s\"").await;
    reg.put_image("team/app", "gone", &[10], 8);
    let url = proxy.url("/v2/team/app/manifests/gone");
    assert_eq!(get(&url).await.status, 200);
    reg.delete_tag("team/app", "gone");
    let got = get(&url).await;
    assert_eq!(got.status, 404);
    assert_eq!(got.error_code(), "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn a_manifest_that_does_not_match_its_digest_is_refused() {
    let opts = Options {
        lie_about_manifest_digest: true,
        ..Default::default()
    };
    let (_dir, reg, proxy) = setup(opts, "").await;
    let (d, _, _) = reg.put_image("team/app", "v1", &[10], 9);
    let by_tag = get(&proxy.url("/v2/team/app/manifests/v1")).await;
    assert_eq!(by_tag.status, 502);
    assert_eq!(by_tag.error_code(), "UNKNOWN");
    let digest: entrepot::oci::Digest = d.parse().unwrap();
    assert!(!proxy.app.cache.store.index.has_manifest(&digest).unwrap());
}

#[tokio::test]
async fn a_manifest_fetched_by_digest_is_checked_against_that_digest() {
    let (_dir, reg, proxy) = setup(Options::default(), "").await;
    // The registry answers this digest with other bytes (and their true digest).
    let wanted = sha256(b"what the client asked for");
    reg.put_at("team/app", &wanted, OCI_MANIFEST, r#"{"schemaVersion":2,"layers":[]}"#);
    let got = get(&proxy.url(&format!("/v2/team/app/manifests/{wanted}"))).await;
    assert_eq!(got.status, 502);
    let digest: entrepot::oci::Digest = wanted.parse().unwrap();
    assert!(!proxy.app.cache.store.index.has_manifest(&digest).unwrap());
}

#[tokio::test]
async fn concurrent_tag_misses_make_one_upstream_request() {
    let (_dir, reg, proxy) = setup(Options::default(), "").await;
    reg.put_image("team/app", "v1", &[10], 12);
    let (open, gate) = watch::channel(false);
    reg.fault("/manifests/v1", Fault::Gate(gate));
    let url = proxy.url("/v2/team/app/manifests/v1");
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    while reg.count("GET", "/manifests/v1") == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    open.send(true).unwrap();
    for c in clients {
        assert_eq!(c.await.unwrap().status, 200);
    }
    assert_eq!(reg.count("GET", "/manifests/v1"), 1);
}

#[tokio::test]
async fn ttls_follow_the_cache_clock_not_the_wall() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let clock = std::sync::Arc::new(entrepot::clock::ManualClock::default());
    let extra = "tag_ttl = \"1h\"\nnegative_ttl = \"10m\"";
    let proxy = TestProxy::start_clocked(dir.path(), extra, &upstream("reg.test", &reg.url(), ""), clock.clone()).await;
    reg.put_image("team/app", "v1", &[10], 14);
    let url = proxy.url("/v2/team/app/manifests/v1");
    assert_eq!(get(&url).await.cache(), "miss");
    assert_eq!(get(&url).await.cache(), "hit");
    clock.advance(std::time::Duration::from_secs(2 * 3600));
    assert_eq!(get(&url).await.cache(), "revalidated", "an hour-long TTL passed");

    let missing = proxy.url("/v2/team/app/manifests/v2");
    assert_eq!(get(&missing).await.status, 404);
    reg.put_image("team/app", "v2", &[10], 15);
    assert_eq!(get(&missing).await.status, 404, "still believed absent");
    clock.advance(std::time::Duration::from_secs(11 * 60));
    assert_eq!(get(&missing).await.status, 200, "the negative TTL passed");
}
