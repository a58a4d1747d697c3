//! `/-/status`: what the page says after a known sequence of pulls, and who may see it.

use http::Method;

use crate::html::text_of;
use crate::support::*;

fn page_text(got: &Got) -> String {
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(got.header("content-type"), Some("text/html; charset=utf-8"));
    String::from_utf8(got.bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn the_page_shows_hit_ratio_egress_upstreams_and_repositories() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = TestRegistry::start().await;
    reg.put_image("team/app", "v1", &[30_000, 50_000], 1);
    reg.put_image("team/tool", "v1", &[1_000], 2);
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "").await;
    let before = page_text(&get(&proxy.url("/-/status")).await);
    assert!(text_of(&before, "hit-ratio").contains("—"), "no requests yet: no ratio");
    assert!(text_of(&before, "upstreams").contains("not asked yet"));
    assert!(text_of(&before, "repositories").contains("nothing pulled yet"));

    pull(&proxy, "team/app", "v1").await;
    pull(&proxy, "team/app", "v1").await;
    pull(&proxy, "team/tool", "v1").await;
    let html = page_text(&get(&proxy.url("/-/status")).await);
    // team/app: a manifest and 3 blobs missed, then hit; team/tool: a manifest and 2 blobs
    // missed. 4 of 11 requests answered without a download.
    let hits = text_of(&html, "hit-ratio");
    assert!(hits.contains("36.4%") && hits.contains("4 of 11 requests"), "{hits}");
    let egress = text_of(&html, "egress");
    assert!(egress.contains("KiB sent from the cache"), "{egress}");
    let upstreams = text_of(&html, "upstreams");
    assert!(
        upstreams.contains("reg.test") && upstreams.contains("answering"),
        "{upstreams}"
    );
    assert!(upstreams.contains("answered "), "requests by result: {upstreams}");
    let repos = text_of(&html, "repositories");
    assert!(
        repos.contains("reg.test/team/app 2 reg.test/team/tool 1"),
        "most pulled first: {repos}"
    );
    assert!(text_of(&html, "downloads").contains("none"));
    assert!(
        text_of(&html, "lookups").contains("blob 8 3 37.5%"),
        "{}",
        text_of(&html, "lookups")
    );

    // An upstream that stops answering shows as failing, with why.
    reg.stop();
    assert_eq!(get(&proxy.url("/v2/team/other/manifests/v1")).await.status, 503);
    let upstreams = text_of(&page_text(&get(&proxy.url("/-/status")).await), "upstreams");
    assert!(
        upstreams.contains("failing") && upstreams.contains("cannot connect"),
        "{upstreams}"
    );
}

#[tokio::test]
async fn the_page_is_behind_auth_and_shows_only_what_the_viewer_may_pull() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    reg.put_image("team/app", "v1", &[100], 1);
    reg.put_image("secret/app", "v1", &[100], 2);
    let htpasswd = dir.path().join("htpasswd");
    write_htpasswd(&htpasswd, &[("ci", "ci-pw"), ("ops", "ops-pw")]);
    let auth = format!(
        "[auth]\nanonymous = false\nhtpasswd = {:?}\n[[auth.grant]]\nusers = [\"ci\"]\nrepositories = [\"reg.test/team/*\"]\n\
         [[auth.grant]]\nusers = [\"ops\"]\nrepositories = \"*\"\n",
        htpasswd.display().to_string()
    );
    let ups = format!("{}{auth}", upstream("reg.test", &reg.url(), ""));
    let proxy = TestProxy::start(&dir.path().join("data"), "", &ups).await;
    let as_user = |path: &str, auth: String| {
        let url = proxy.url(path);
        async move { request(Method::GET, &url, &[("authorization", &auth)]).await }
    };
    for repo in ["team/app", "secret/app"] {
        let got = as_user(&format!("/v2/{repo}/manifests/v1"), basic("ops", "ops-pw")).await;
        assert_eq!(got.status, 200);
    }
    let anon = get(&proxy.url("/-/status")).await;
    assert_eq!(anon.status, 401);
    assert_eq!(anon.header("www-authenticate"), Some("Basic realm=\"entrepot\""));
    let ci = page_text(&as_user("/-/status", basic("ci", "ci-pw")).await);
    let repos = text_of(&ci, "repositories");
    assert!(
        repos.contains("reg.test/team/app") && !repos.contains("secret"),
        "{repos}"
    );
    let ops = page_text(&as_user("/-/status", basic("ops", "ops-pw")).await);
    assert!(text_of(&ops, "repositories").contains("reg.test/secret/app"));
}

#[tokio::test]
async fn with_metrics_listen_the_page_moves_there() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let port = free_port();
    let proxy = TestProxy::in_front_of(
        dir.path(),
        &reg,
        "reg.test",
        &format!("metrics_listen = \"127.0.0.1:{port}\""),
    )
    .await;
    assert_eq!(get(&proxy.url("/-/status")).await.status, 404);
    wait_for_port(port);
    let html = page_text(&get(&format!("http://127.0.0.1:{port}/-/status")).await);
    assert!(html.contains("id=\"hit-ratio\""));
}
