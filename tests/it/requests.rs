//! Requests a client gets wrong, and the endpoints a read-only cache refuses: every one is
//! answered with a distribution-spec JSON error, and nothing reaches the upstream.

use http::Method;

use crate::support::*;

#[tokio::test]
async fn base_endpoint_says_registry_v2() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "").await;
    let got = get(&proxy.url("/v2/")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("docker-distribution-api-version"), Some("registry/2.0"));
}

#[tokio::test]
async fn push_and_delete_are_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "").await;
    let digest = format!("sha256:{}", "a".repeat(64));
    for (method, path) in [
        (Method::POST, "/v2/team/app/blobs/uploads/".to_owned()),
        (Method::PUT, "/v2/team/app/manifests/v1".to_owned()),
        (Method::PATCH, "/v2/team/app/blobs/uploads/x".to_owned()),
        (Method::DELETE, format!("/v2/team/app/manifests/{digest}")),
        (Method::DELETE, format!("/v2/team/app/blobs/{digest}")),
        (Method::GET, "/v2/team/app/blobs/uploads/x".to_owned()),
    ] {
        let got = request(method.clone(), &proxy.url(&path), &[]).await;
        assert_eq!(got.status, 405, "{method} {path}");
        assert_eq!(got.error_code(), "UNSUPPORTED", "{method} {path}");
    }
    assert_eq!(reg.total_requests(), 0);
}

#[tokio::test]
async fn malformed_requests_get_4xx_json_and_never_reach_upstream_or_disk() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "").await;
    let long = "a".repeat(300);
    let cases: Vec<(String, u16, &str)> = vec![
        (
            "/v2/team/app/blobs/sha256:..%2F..%2F..%2Fetc%2Fpasswd".into(),
            400,
            "DIGEST_INVALID",
        ),
        (
            "/v2/team/app/blobs/sha256:../../../../etc/passwd".into(),
            404,
            "NAME_UNKNOWN",
        ),
        (
            "/v2/team/app/blobs/md5:d41d8cd98f00b204e9800998ecf8427e".into(),
            400,
            "DIGEST_INVALID",
        ),
        ("/v2/team/app/blobs/sha256:ABCDEF".into(), 400, "DIGEST_INVALID"),
        ("/v2/team/app/manifests/sha256:zz".into(), 400, "DIGEST_INVALID"),
        ("/v2/team/app/referrers/notadigest".into(), 400, "DIGEST_INVALID"),
        ("/v2/../etc/manifests/latest".into(), 400, "NAME_INVALID"),
        ("/v2/%2e%2e/app/manifests/latest".into(), 400, "NAME_INVALID"),
        ("/v2/Team/App/manifests/latest".into(), 400, "NAME_INVALID"),
        ("/v2/team//app/manifests/latest".into(), 400, "NAME_INVALID"),
        (format!("/v2/{long}/manifests/latest"), 400, "NAME_INVALID"),
        ("/v2/team/app/manifests/.hidden".into(), 404, "MANIFEST_UNKNOWN"),
        (
            format!("/v2/team/app/manifests/{}", "t".repeat(200)),
            404,
            "MANIFEST_UNKNOWN",
        ),
        ("/v2/team/app".into(), 404, "NAME_UNKNOWN"),
        ("/etc/passwd".into(), 404, "NAME_UNKNOWN"),
        ("/v2/team/app/tags/list?ns=%zz".into(), 200, ""),
    ];
    for (path, status, code) in &cases {
        let got = get(&proxy.url(path)).await;
        if *status == 200 {
            // An undecodable ns is no ns: the default upstream answers (here: unknown name).
            assert!(got.status.is_client_error(), "{path}: {}", got.status);
            continue;
        }
        assert_eq!(got.status.as_u16(), *status, "{path}");
        assert_eq!(got.header("content-type"), Some("application/json"), "{path}");
        assert_eq!(got.error_code(), *code, "{path}");
    }
    assert!(
        reg.log().iter().all(|l| l.path.starts_with("/v2/team/app/tags/list")),
        "{:?}",
        reg.log()
    );
}

#[tokio::test]
async fn a_huge_header_is_refused_without_harm() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "").await;
    let huge = "x".repeat(512 * 1024);
    let resp = client()
        .request(
            http::Request::get(proxy.url("/v2/"))
                .header("x-big", huge)
                .body(http_body_util::Empty::new())
                .unwrap(),
        )
        .await;
    if let Ok(r) = resp {
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    assert_eq!(get(&proxy.url("/v2/")).await.status, 200, "still serving");
}

/// Writes `request` on a fresh connection and reads until the server closes it (10 s at
/// most): the whole answer, and whether the server closed the connection.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

#[tokio::test]
async fn requests_a_strict_server_refuses_get_400_and_a_closed_connection() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "").await;
    let cases: [&[u8]; 6] = [
        b"GET /v2/ HTTP/1.1\r\n\r\n",
        b"GET /v2/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /v2/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /v2/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;\x01ext\r\nx\r\n0\r\n\r\n",
        b"GET /v2/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        b"HEAD /v2/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for request in cases {
        let shown = String::from_utf8_lossy(request).into_owned();
        let (answer, closed) = raw(proxy.addr, request).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{shown:?} -> {answer}");
        assert!(closed, "{shown:?}: the connection is closed after the 400");
    }
    // HTTP/1.0 has no Host requirement; a request without a body is fine either way.
    let (answer, _) = raw(proxy.addr, b"GET /v2/ HTTP/1.0\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    let (answer, _) = raw(
        proxy.addr,
        b"GET /v2/ HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn the_operational_endpoints_are_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "").await;
    for (method, path) in [
        (Method::POST, "/metrics"),
        (Method::DELETE, "/readyz"),
        (Method::PUT, "/healthz"),
    ] {
        let got = request(method.clone(), &proxy.url(path), &[]).await;
        assert_eq!(
            (got.status.as_u16(), got.error_code().as_str()),
            (405, "UNSUPPORTED"),
            "{method} {path}"
        );
    }
    assert_eq!(get(&proxy.url("/healthz")).await.status, 200);
}

#[tokio::test]
async fn clients_that_send_nothing_cannot_fill_the_connection_cap() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let extra = "max_connections = 4\nheader_read_timeout = \"2s\"";
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", extra).await;
    let mut silent = Vec::new();
    for _ in 0..12 {
        silent.push(tokio::net::TcpStream::connect(proxy.addr).await.unwrap());
    }
    // Room is made at once: the longest-silent connection gives way. The bound below is a
    // liveness limit (header_read_timeout plus a second), not a measure of speed.
    let served = tokio::time::timeout(std::time::Duration::from_secs(3), get(&proxy.url("/v2/"))).await;
    assert_eq!(served.expect("a normal client is served").status, 200);
    // And a connection that never sends a byte is closed after header_read_timeout.
    let mut last = silent.pop().unwrap();
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut last, &mut buf),
    )
    .await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a silent connection stays open: {closed:?}"
    );
}
