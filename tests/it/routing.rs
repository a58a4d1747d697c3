//! Which upstream serves a request: `?ns=`, path prefix, default; Docker Hub's `library/`.

use crate::support::*;

#[tokio::test]
async fn ns_prefix_and_default_routes_reach_the_right_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestRegistry::start().await;
    let b = TestRegistry::start().await;
    let (da, _, _) = a.put_image("team/app", "v1", &[1], 1);
    let (db, _, _) = b.put_image("team/app", "v1", &[1], 2);
    let upstreams = format!(
        "{}{}",
        upstream("a.test", &a.url(), ""),
        upstream("b.test:5000", &b.url(), "")
    );
    let proxy = TestProxy::start(dir.path(), "default_upstream = \"a.test\"", &upstreams).await;

    let digest = |g: &Got| g.header("docker-content-digest").unwrap_or_default().to_owned();
    assert_eq!(digest(&get(&proxy.url("/v2/team/app/manifests/v1")).await), da);
    assert_eq!(
        digest(&get(&proxy.url("/v2/team/app/manifests/v1?ns=b.test:5000")).await),
        db
    );
    assert_eq!(
        digest(&get(&proxy.url("/v2/b.test:5000/team/app/manifests/v1")).await),
        db
    );
    assert_eq!(digest(&get(&proxy.url("/v2/a.test/team/app/manifests/v1")).await), da);
    // An upstream also answers to its url's host: containerd sends that as `?ns=` when
    // the image is named by the registry's own address.
    let b_host = b.addr.to_string();
    assert_eq!(
        digest(&get(&proxy.url(&format!("/v2/team/app/manifests/v1?ns={b_host}"))).await),
        db
    );
    assert_eq!(
        digest(&get(&proxy.url(&format!("/v2/{b_host}/team/app/manifests/v1"))).await),
        db
    );

    let before = (a.total_requests(), b.total_requests());
    for url in [
        "/v2/team/app/manifests/v1?ns=evil.example",
        "/v2/evil.example/team/app/manifests/v1",
    ] {
        let refused = get(&proxy.url(url)).await;
        assert_eq!(refused.status, 404, "{url}");
        assert_eq!(refused.error_code(), "NAME_UNKNOWN");
    }
    assert_eq!(
        (a.total_requests(), b.total_requests()),
        before,
        "an undeclared upstream is never dialled"
    );
}

#[tokio::test]
async fn docker_hub_names_get_the_library_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let hub = TestRegistry::start().await;
    let (d, _, _) = hub.put_image("library/alpine", "3", &[1], 3);
    let proxy = TestProxy::in_front_of(dir.path(), &hub, "docker.io", "").await;
    for url in [
        "/v2/alpine/manifests/3",
        "/v2/library/alpine/manifests/3",
        "/v2/alpine/manifests/3?ns=docker.io",
        "/v2/docker.io/alpine/manifests/3",
        "/v2/index.docker.io/library/alpine/manifests/3",
        "/v2/library/alpine/manifests/3?ns=registry-1.docker.io",
    ] {
        let got = get(&proxy.url(url)).await;
        assert_eq!(got.status, 200, "{url}");
        assert_eq!(got.header("docker-content-digest"), Some(d.as_str()), "{url}");
    }
    assert!(hub.log().iter().all(|l| !l.path.starts_with("/v2/alpine")));
}
