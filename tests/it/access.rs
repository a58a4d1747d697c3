//! Client access control: htpasswd (bcrypt) over Basic, static bearer tokens, grants on
//! repository globs, and the 401 challenge clients understand.

use http::Method;

use crate::support::*;

#[tokio::test]
async fn users_tokens_and_grants() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start_with(Options {
        basic: Some(("puller".into(), "upstream-s3cret".into())),
        ..Default::default()
    })
    .await;
    reg.put_image("library/alpine", "3", &[100], 1);
    reg.put_image("team/app", "v1", &[100], 2);
    let htpasswd = dir.path().join("htpasswd");
    write_htpasswd(&htpasswd, &[("ci", "ci-pw"), ("ops", "ops-pw")]);
    let auth = format!(
        r#"
[auth]
anonymous = false
htpasswd = {:?}
[[auth.token]]
user = "robot"
token = "robot-token-0123456789"
[auth.groups]
admins = ["ops", "robot"]
[[auth.grant]]
users = ["ci"]
repositories = ["reg.test/library/*"]
[[auth.grant]]
groups = ["admins"]
repositories = "*"
"#,
        htpasswd.display().to_string()
    );
    let ups = format!(
        "{}{auth}",
        upstream(
            "reg.test",
            &reg.url(),
            "username = \"puller\"\npassword = \"upstream-s3cret\""
        )
    );
    let proxy = TestProxy::start(&dir.path().join("data"), "", &ups).await;

    let anon = get(&proxy.url("/v2/")).await;
    assert_eq!(anon.status, 401);
    assert_eq!(anon.error_code(), "UNAUTHORIZED");
    assert_eq!(anon.header("www-authenticate"), Some("Basic realm=\"entrepot\""));
    let get_as = |path: &str, auth: String| {
        let url = proxy.url(path);
        async move { request(Method::GET, &url, &[("authorization", &auth)]).await }
    };
    assert_eq!(get_as("/v2/", basic("ci", "ci-pw")).await.status, 200);
    assert_eq!(get_as("/v2/", basic("ci", "wrong")).await.status, 401);
    assert_eq!(get_as("/v2/", "Bearer not-the-token-at-all".into()).await.status, 401);

    let allowed = get_as("/v2/library/alpine/manifests/3", basic("ci", "ci-pw")).await;
    assert_eq!(allowed.status, 200);
    let denied = get_as("/v2/team/app/manifests/v1", basic("ci", "ci-pw")).await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.error_code(), "DENIED");
    assert_eq!(
        get_as("/v2/team/app/manifests/v1", "Bearer robot-token-0123456789".into())
            .await
            .status,
        200
    );
    assert_eq!(
        get_as("/v2/team/app/manifests/v1", basic("ops", "ops-pw")).await.status,
        200
    );

    let catalog = get_as("/v2/_catalog", basic("ci", "ci-pw")).await.json();
    assert_eq!(catalog["repositories"], serde_json::json!(["reg.test/library/alpine"]));

    // The upstream's credentials reach no client answer and no metric.
    for got in [&allowed, &denied, &get(&proxy.url("/metrics")).await] {
        let text = format!("{:?}{:?}", got.headers, got.body);
        assert!(
            !text.contains("upstream-s3cret") && !text.contains(&basic("puller", "upstream-s3cret")[6..]),
            "{text}"
        );
    }
}

#[tokio::test]
async fn anonymous_access_can_be_granted_a_subtree() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    reg.put_image("public/app", "v1", &[100], 3);
    reg.put_image("team/app", "v1", &[100], 4);
    let auth =
        "[auth]\nanonymous = true\n[[auth.grant]]\nusers = [\"anonymous\"]\nrepositories = \"reg.test/public/*\"\n";
    let proxy = TestProxy::start(
        dir.path(),
        "",
        &format!("{}{auth}", upstream("reg.test", &reg.url(), "")),
    )
    .await;
    assert_eq!(get(&proxy.url("/v2/")).await.status, 200);
    assert_eq!(get(&proxy.url("/v2/public/app/manifests/v1")).await.status, 200);
    assert_eq!(get(&proxy.url("/v2/team/app/manifests/v1")).await.status, 403);
    assert_eq!(
        reg.count("GET", "/v2/team/app/"),
        0,
        "a denied client never causes an upstream fetch"
    );
}
