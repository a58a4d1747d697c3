//! Talking to upstreams: bearer tokens and their cache, Basic, and upstream failures.

use crate::support::*;

#[tokio::test]
async fn bearer_tokens_are_fetched_with_credentials_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start_with(Options {
        bearer: Some(Some(("puller".into(), "s3cret".into()))),
        ..Default::default()
    })
    .await;
    let (d, _, layers) = reg.put_image("team/app", "v1", &[100, 200], 1);
    let ups = upstream("reg.test", &reg.url(), "username = \"puller\"\npassword = \"s3cret\"");
    let proxy = TestProxy::start(dir.path(), "", &ups).await;

    assert_eq!(get(&proxy.url("/v2/team/app/manifests/v1")).await.status, 200);
    for l in &layers {
        assert_eq!(get(&proxy.url(&format!("/v2/team/app/blobs/{l}"))).await.status, 200);
    }
    assert_eq!(
        get(&proxy.url(&format!("/v2/team/app/manifests/{d}"))).await.status,
        200
    );
    assert_eq!(reg.token_requests(), 1, "one token for the repository's pull scope");

    // A token that expired upstream is replaced, once.
    reg.expire_tokens();
    let (d2, _, _) = reg.put_image("team/app", "v2", &[10], 2);
    let got = get(&proxy.url(&format!("/v2/team/app/manifests/{d2}"))).await;
    assert_eq!(got.status, 200);
    assert_eq!(reg.token_requests(), 2);

    // Another repository is another scope: its token is fetched without a 401 first.
    reg.put_image("team/other", "v1", &[10], 3);
    let before_401 = reg.log().len();
    assert_eq!(get(&proxy.url("/v2/team/other/manifests/v1")).await.status, 200);
    assert_eq!(reg.log().len() - before_401, 2, "token request + manifest request");
}

#[tokio::test]
async fn wrong_credentials_answer_unauthorized() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start_with(Options {
        bearer: Some(Some(("puller".into(), "s3cret".into()))),
        ..Default::default()
    })
    .await;
    reg.put_image("team/app", "v1", &[10], 4);
    let ups = upstream("reg.test", &reg.url(), "username = \"puller\"\npassword = \"wrong\"");
    let proxy = TestProxy::start(dir.path(), "", &ups).await;
    let got = get(&proxy.url("/v2/team/app/manifests/v1")).await;
    assert_eq!(got.status, 401);
    assert_eq!(got.error_code(), "UNAUTHORIZED");
}

#[tokio::test]
async fn basic_auth_upstreams_get_basic_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start_with(Options {
        basic: Some(("u".into(), "p".into())),
        ..Default::default()
    })
    .await;
    reg.put_image("team/app", "v1", &[10], 5);
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "p\n").unwrap();
    let ups = upstream(
        "reg.test",
        &reg.url(),
        &format!("username = \"u\"\npassword_file = {:?}", pw.display().to_string()),
    );
    let proxy = TestProxy::start(&dir.path().join("data"), "", &ups).await;
    assert_eq!(get(&proxy.url("/v2/team/app/manifests/v1")).await.status, 200);
}

#[tokio::test]
async fn too_many_requests_passes_through_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    reg.put_image("team/app", "v1", &[10], 6);
    reg.fault("/manifests/", Fault::Status(429, Some("42")));
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "").await;
    let got = get(&proxy.url("/v2/team/app/manifests/v1")).await;
    assert_eq!(got.status, 429);
    assert_eq!(got.error_code(), "TOOMANYREQUESTS");
    assert_eq!(got.header("retry-after"), Some("42"));
    assert!(upstream_requests(&proxy, "throttled").await >= 1.0);
}

/// `entrepot_upstream_requests_total{upstream="reg.test",result=…}`, 0 when absent.
async fn upstream_requests(proxy: &TestProxy, result: &str) -> f64 {
    let page = String::from_utf8(get(&proxy.url("/metrics")).await.bytes().to_vec()).unwrap();
    let series = format!("entrepot_upstream_requests_total{{upstream=\"reg.test\",result=\"{result}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn upstream_failures_with_nothing_cached_are_json_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = TestRegistry::start().await;
    let (_, _, layers) = reg.put_image("team/app", "v1", &[10], 7);
    let ups = upstream("reg.test", &reg.url(), "").replace("response_timeout = \"5s\"", "response_timeout = \"300ms\"");
    let proxy = TestProxy::start(dir.path(), "", &ups).await;

    reg.fault("/manifests/v1", Fault::Status(500, None));
    let got = get(&proxy.url("/v2/team/app/manifests/v1")).await;
    assert_eq!(got.status, 502);
    assert_eq!(got.header("content-type"), Some("application/json"));

    reg.fault(&layers[0], Fault::Hang);
    let got = get(&proxy.url(&format!("/v2/team/app/blobs/{}", layers[0]))).await;
    assert_eq!(got.status, 504);
    assert_eq!(got.error_code(), "UNAVAILABLE");

    reg.stop();
    let got = get(&proxy.url("/v2/team/app/manifests/v2")).await;
    assert_eq!(got.status, 503);
    assert_eq!(got.error_code(), "UNAVAILABLE");

    // Each kind of failure is counted apart, for the "upstream down" alert.
    for result in ["error", "timeout", "unreachable"] {
        assert!(upstream_requests(&proxy, result).await >= 1.0, "{result}");
    }
}
