//! Blob pulls: miss then hit, ranges, coalescing, streaming followers, verification.

use http::Method;
use http_body_util::BodyExt;
use tokio::sync::watch;

use crate::support::*;

const MIB: usize = 1 << 20;

async fn setup(opts: Options) -> (tempfile::TempDir, TestRegistry, TestProxy) {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start_with(opts).await;
    let proxy = proxy(dir.path(), "", &upstream("reg.test", &reg.url(), "")).await;
    (dir, reg, proxy)
}

/// This suite runs twice (`tests/it/main.rs`): with blobs in local files, and as
/// `blobs_in_memory` on the in-memory backend, which implements the blob-store seam alone.
async fn proxy(dir: &std::path::Path, extra: &str, upstreams: &str) -> TestProxy {
    if module_path!().ends_with("in_memory") {
        let blobs = std::sync::Arc::new(crate::support::memory::MemoryBlobs::default());
        TestProxy::start_on_blobs(dir, extra, upstreams, blobs).await
    } else {
        TestProxy::start(dir, extra, upstreams).await
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
}

#[tokio::test]
async fn blob_miss_streams_then_hits_from_disk() {
    let (_dir, reg, proxy) = setup(Options::default()).await;
    let bytes = pattern(3 * MIB + 17, 1);
    let d = reg.put_blob(bytes.clone());
    let url = proxy.url(&format!("/v2/team/app/blobs/{d}"));

    let first = get(&url).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.cache(), "miss");
    assert_eq!(first.bytes().as_ref(), bytes.as_slice());
    assert_eq!(first.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(first.header("content-length"), Some(bytes.len().to_string().as_str()));

    let second = get(&url).await;
    assert_eq!(second.cache(), "hit");
    assert_eq!(second.bytes().as_ref(), bytes.as_slice());
    assert_eq!(reg.count("GET", &d), 1, "the hit did not go upstream");

    let h = head(&url).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some(bytes.len().to_string().as_str()));
    assert_eq!(h.header("docker-content-digest"), Some(d.as_str()));
    assert!(h.bytes().is_empty());
}

/// Chained caches: the upstream answers HEAD 404 for a blob it would serve on GET (as
/// distribution's proxy mode and Harbor do before their first GET). The HEAD through
/// entrepot still finds it, and the GET that follows is served from that one fetch.
#[tokio::test]
async fn head_through_an_upstream_that_knows_blobs_only_after_a_get() {
    let (_dir, reg, proxy) = setup(Options::default()).await;
    let bytes = pattern(300_000, 8);
    let d = reg.put_blob(bytes.clone());
    reg.fault(&d, Fault::HeadStatus(404));
    let url = proxy.url(&format!("/v2/team/app/blobs/{d}"));
    let h = head(&url).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some("300000"));
    assert_eq!(get(&url).await.bytes().as_ref(), bytes.as_slice());
    assert_eq!(reg.count("GET", &d), 1, "one fetch for the HEAD and the GET");

    let missing = format!("sha256:{}", "1".repeat(64));
    reg.fault(&missing, Fault::HeadStatus(404));
    let h = head(&proxy.url(&format!("/v2/team/app/blobs/{missing}"))).await;
    assert_eq!(h.status, 404, "a blob the upstream does not have at all");
}

#[tokio::test]
async fn head_of_an_uncached_blob_asks_upstream_without_downloading() {
    let (_dir, reg, proxy) = setup(Options::default()).await;
    let d = reg.put_blob(pattern(1000, 2));
    let h = head(&proxy.url(&format!("/v2/team/app/blobs/{d}"))).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some("1000"));
    assert_eq!((reg.count("HEAD", &d), reg.count("GET", &d)), (1, 0));
    let missing = format!("sha256:{}", "0".repeat(64));
    let h = head(&proxy.url(&format!("/v2/team/app/blobs/{missing}"))).await;
    assert_eq!(h.status, 404);
}

#[tokio::test]
async fn ranges_on_cached_blobs() {
    let (_dir, reg, proxy) = setup(Options::default()).await;
    let bytes = pattern(10_000, 3);
    let d = reg.put_blob(bytes.clone());
    let url = proxy.url(&format!("/v2/team/app/blobs/{d}"));
    assert_eq!(get(&url).await.status, 200);

    let r = request(Method::GET, &url, &[("range", "bytes=100-199")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 100-199/10000"));
    assert_eq!(r.bytes().as_ref(), &bytes[100..200]);

    let r = request(Method::GET, &url, &[("range", "bytes=-10")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.bytes().as_ref(), &bytes[9990..]);

    let r = request(Method::GET, &url, &[("range", "bytes=10000-")]).await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */10000"));
}

/// Cached blobs go out three ways: sendfile on plain HTTP/1, read through user space on
/// HTTP/2, and read on HTTP/1 with `sendfile = false`. All three send the same bytes, whole
/// and in ranges longer than one sendfile frame (2 MiB) or one read (1 MiB).
#[tokio::test]
async fn cached_blobs_are_the_same_bytes_by_sendfile_http2_and_plain_reads() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start_with(Options::default()).await;
    let bytes = pattern(3 * MIB + 5, 9);
    let d = reg.put_blob(bytes.clone());
    let up = upstream("reg.test", &reg.url(), "");
    let zero_copy = proxy(&dir.path().join("a"), "", &up).await;
    let copying = proxy(&dir.path().join("b"), "sendfile = false\n", &up).await;
    let h2: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let empty = reg.put_blob(Vec::new());
    for proxy in [&zero_copy, &copying] {
        let url = proxy.url(&format!("/v2/team/app/blobs/{empty}"));
        assert_eq!(get(&url).await.bytes().len(), 0, "the miss of an empty blob");
        let r = get(&url).await;
        assert_eq!((r.status.as_u16(), r.cache(), r.bytes().len()), (200, "hit", 0));

        let url = proxy.url(&format!("/v2/team/app/blobs/{d}"));
        assert_eq!(get(&url).await.bytes().as_ref(), &bytes[..], "the miss");
        for (range, want) in [
            (None, &bytes[..]),
            (Some("bytes=5-3145700"), &bytes[5..=3_145_700]),
            (Some("bytes=1048570-2097160"), &bytes[1_048_570..=2_097_160]),
            (Some("bytes=-3"), &bytes[bytes.len() - 3..]),
        ] {
            let headers: Vec<_> = range.map(|r| ("range", r)).into_iter().collect();
            let r = request(Method::GET, &url, &headers).await;
            assert_eq!(r.cache(), "hit");
            assert!(
                r.bytes().as_ref() == want,
                "HTTP/1 {range:?}: {} bytes",
                r.bytes().len()
            );

            let mut req = http::Request::get(&url);
            if let Some(r) = range {
                req = req.header("range", r);
            }
            let resp = h2
                .request(req.body(http_body_util::Empty::new()).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.version(), http::Version::HTTP_2);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert!(body.as_ref() == want, "HTTP/2 {range:?}: {} bytes", body.len());
        }
    }
}

#[tokio::test]
async fn concurrent_cold_gets_make_one_upstream_request() {
    let (_dir, reg, proxy) = setup(Options::default()).await;
    let bytes = pattern(4 * MIB, 4);
    let d = reg.put_blob(bytes.clone());
    let (open, gate) = watch::channel(false);
    reg.fault(&d, Fault::Gate(gate));
    let url = proxy.url(&format!("/v2/team/app/blobs/{d}"));
    let clients: Vec<_> = (0..16).map(|_| tokio::spawn(get_owned(url.clone()))).collect();
    // Every client is waiting on the one upstream request the gate holds.
    while reg.count("GET", &d) == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    open.send(true).unwrap();
    let mut outcomes = Vec::new();
    for c in clients {
        let got = c.await.unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(got.bytes().as_ref(), bytes.as_slice());
        outcomes.push(got.cache().to_owned());
    }
    assert_eq!(reg.count("GET", &d), 1, "16 clients, one upstream GET");
    // One leader; the others followed its download or, arriving after the commit, hit.
    assert_eq!(outcomes.iter().filter(|o| *o == "miss").count(), 1, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|o| o == "miss" || o == "coalesced" || o == "hit"),
        "{outcomes:?}"
    );
}

async fn get_owned(url: String) -> Got {
    get(&url).await
}

/// Starts a GET and reads until at least `want` body bytes have arrived.
async fn read_at_least(
    url: &str,
    headers: &[(&str, &str)],
    want: usize,
) -> (hyper::body::Incoming, Vec<u8>, http::StatusCode) {
    let mut req = http::Request::builder().uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client()
        .request(req.body(http_body_util::Empty::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while got.len() < want {
        let frame = body.frame().await.expect("more frames").expect("frame ok");
        if let Ok(data) = frame.into_data() {
            got.extend_from_slice(&data);
        }
    }
    (body, got, status)
}

#[tokio::test]
async fn followers_get_bytes_before_the_download_ends() {
    let (_dir, reg, proxy) = setup(Options::default()).await;
    let bytes = pattern(2 * MIB, 5);
    let d = reg.put_blob(bytes.clone());
    let (open, gate) = watch::channel(false);
    reg.fault(&d, Fault::HoldAfter(MIB, gate));
    let url = proxy.url(&format!("/v2/team/app/blobs/{d}"));

    // The upstream has sent half and is holding the rest: both clients already get bytes.
    let (mut first, mut head1, _) = read_at_least(&url, &[], MIB / 2).await;
    let (_, ranged, status) = read_at_least(&url, &[("range", "bytes=1000-1999")], 1000).await;
    assert_eq!(status, 206);
    assert_eq!(&ranged[..], &bytes[1000..2000]);
    assert_eq!(reg.count("GET", &d), 1);

    open.send(true).unwrap();
    while let Some(frame) = first.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            head1.extend_from_slice(&data);
        }
    }
    assert_eq!(head1, bytes);
}

#[tokio::test]
async fn a_client_that_hangs_up_does_not_stop_the_fill() {
    let (_dir, reg, proxy) = setup(Options::default()).await;
    let bytes = pattern(2 * MIB, 6);
    let d = reg.put_blob(bytes.clone());
    let (open, gate) = watch::channel(false);
    reg.fault(&d, Fault::HoldAfter(MIB / 2, gate));
    let url = proxy.url(&format!("/v2/team/app/blobs/{d}"));
    let (body, _, _) = read_at_least(&url, &[], 1).await;
    drop(body);
    open.send(true).unwrap();
    let digest: entrepot::oci::Digest = d.parse().unwrap();
    while proxy.app.cache.store.index.blob(&digest).unwrap().is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let again = get(&url).await;
    assert_eq!(again.cache(), "hit");
    assert_eq!(again.bytes().as_ref(), bytes.as_slice());
    assert_eq!(reg.count("GET", &d), 1);
}

/// An empty body has no last byte to hold back: an upstream answering one for a digest
/// that is not the empty blob's gets a 502, never a clean empty 200.
#[tokio::test]
async fn an_empty_upstream_answer_for_a_nonempty_blob_is_never_a_clean_empty_200() {
    let (_dir, reg, proxy) = setup(Options::default()).await;
    let bytes = pattern(1000, 4);
    let d = reg.put_blob(bytes.clone());
    reg.fault(&d, Fault::Empty);
    let url = proxy.url(&format!("/v2/team/app/blobs/{d}"));
    let bad = get(&url).await;
    assert_eq!(bad.status, 502, "{:?}", bad.body);
    assert_eq!(proxy.app.cache.metrics.digest_mismatches.get(&[]), 1);

    reg.clear_faults();
    assert_eq!(get(&url).await.bytes().as_ref(), bytes.as_slice());
}

#[tokio::test]
async fn corrupt_upstream_bytes_abort_the_response_and_are_not_cached() {
    let (_dir, reg, proxy) = setup(Options::default()).await;
    let bytes = pattern(MIB + 5, 7);
    let d = reg.put_blob(bytes.clone());
    reg.fault(&d, Fault::Corrupt);
    let url = proxy.url(&format!("/v2/team/app/blobs/{d}"));

    let bad = get(&url).await;
    // Either the failure was known before the answer started (a 502), or the body is cut.
    assert!(
        bad.status == 502 || bad.body.is_err(),
        "a corrupt blob must not end cleanly"
    );
    assert_eq!(proxy.app.cache.metrics.digest_mismatches.get(&[]), 1);
    let digest: entrepot::oci::Digest = d.parse().unwrap();
    assert!(!proxy.app.cache.store.blobs.exists(&digest));

    reg.clear_faults();
    let good = get(&url).await;
    assert_eq!(good.cache(), "miss");
    assert_eq!(good.bytes().as_ref(), bytes.as_slice());
}

#[tokio::test]
async fn clients_streaming_a_blob_that_fails_verification_get_an_aborted_body() {
    let (_dir, reg, proxy) = setup(Options::default()).await;
    let bytes = pattern(MIB, 12);
    let d = reg.put_blob(bytes.clone());
    let (open, gate) = watch::channel(false);
    reg.fault(&d, Fault::CorruptAfter(MIB / 2, gate));
    let url = proxy.url(&format!("/v2/team/app/blobs/{d}"));
    let (mut a, _, status_a) = read_at_least(&url, &[], 1).await;
    let (mut b, _, status_b) = read_at_least(&url, &[], 1).await;
    assert_eq!((status_a.as_u16(), status_b.as_u16()), (200, 200));
    open.send(true).unwrap();
    for body in [&mut a, &mut b] {
        let mut ended = None;
        while let Some(frame) = body.frame().await {
            if let Err(e) = frame {
                ended = Some(e);
                break;
            }
        }
        assert!(ended.is_some(), "the body of a corrupt blob ended cleanly");
    }
    let digest: entrepot::oci::Digest = d.parse().unwrap();
    assert!(!proxy.app.cache.store.blobs.exists(&digest));
    assert_eq!(reg.count("GET", &d), 1);
}

#[tokio::test]
async fn a_download_that_keeps_dropping_fails_and_is_not_cached() {
    let (_dir, reg, proxy) = setup(Options::default()).await;
    let bytes = pattern(MIB, 8);
    let d = reg.put_blob(bytes.clone());
    // Every attempt drops after 100 kB: the resumptions run out before the end.
    reg.fault(&d, Fault::DropAfter(100_000));
    let url = proxy.url(&format!("/v2/team/app/blobs/{d}"));
    let cut = get(&url).await;
    assert!(
        cut.status == 502 || cut.body.is_err(),
        "a truncated blob must not end cleanly"
    );
    assert_eq!(reg.count("GET", &d), 4, "the first attempt and three resumptions");
    assert!(!proxy.app.cache.store.blobs.exists(&d.parse().unwrap()));
    reg.clear_faults();
    let good = get(&url).await;
    assert_eq!(good.cache(), "miss");
    assert_eq!(good.bytes().as_ref(), bytes.as_slice());
}

#[tokio::test]
async fn an_upstream_that_stalls_again_after_a_resume_ends_the_transfer_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let up = format!(
        "[[upstream]]\nname = \"reg.test\"\nurl = \"{}\"\nidle_timeout = \"1s\"\n",
        reg.url()
    );
    let proxy = proxy(dir.path(), "", &up).await;
    let bytes = pattern(MIB, 21);
    let d = reg.put_blob(bytes.clone());
    // The first answer stalls after 300 kB; every resumption answers, then sends nothing.
    let (_never, gate) = watch::channel(false);
    reg.fault(&d, Fault::Once(Box::new(Fault::HoldAfter(300_000, gate.clone()))));
    reg.fault(&d, Fault::HoldAfter(0, gate));
    let got = get(&proxy.url(&format!("/v2/team/app/blobs/{d}"))).await;
    assert!(got.body.is_err(), "a stalled blob never ends cleanly");
    assert_eq!(
        reg.count("GET", &d),
        2,
        "one resumption that brings no byte ends it: the client is not kept waiting"
    );
    assert!(!proxy.app.cache.store.blobs.exists(&d.parse().unwrap()));
}

#[tokio::test]
async fn a_dropped_download_resumes_with_a_range_request() {
    let (_dir, reg, proxy) = setup(Options::default()).await;
    let bytes = pattern(MIB, 13);
    let d = reg.put_blob(bytes.clone());
    reg.fault(&d, Fault::Once(Box::new(Fault::DropAfter(300_000))));
    let got = get(&proxy.url(&format!("/v2/team/app/blobs/{d}"))).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.bytes().as_ref(),
        bytes.as_slice(),
        "the client sees one clean, complete body"
    );
    let asked: Vec<_> = reg
        .log()
        .into_iter()
        .filter(|l| l.path.contains(&d))
        .map(|l| l.range)
        .collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    let resumed_at: u64 = asked[1]
        .as_deref()
        .unwrap()
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(resumed_at > 0 && resumed_at <= 300_000, "resumed at {resumed_at}");
    assert!(proxy.app.cache.store.blobs.exists(&d.parse().unwrap()));
}

#[tokio::test]
async fn a_transient_503_is_tried_again() {
    let (_dir, reg, proxy) = setup(Options::default()).await;
    let d = reg.put_blob(pattern(1000, 14));
    reg.fault(&d, Fault::Once(Box::new(Fault::Status(503, None))));
    assert_eq!(get(&proxy.url(&format!("/v2/team/app/blobs/{d}"))).await.status, 200);
    assert_eq!(reg.count("GET", &d), 2);
}

#[tokio::test]
async fn a_slow_upstream_still_streams_through() {
    let (_dir, reg, proxy) = setup(Options::default()).await;
    let bytes = pattern(64 * 1024, 9);
    let d = reg.put_blob(bytes.clone());
    reg.fault(&d, Fault::Slow(4096, std::time::Duration::from_millis(2)));
    let got = get(&proxy.url(&format!("/v2/team/app/blobs/{d}"))).await;
    assert_eq!(got.bytes().as_ref(), bytes.as_slice());
}

#[tokio::test]
async fn redirected_blobs_never_carry_the_upstream_token_to_the_other_host() {
    let opts = Options {
        bearer: Some(None),
        redirect_blobs: true,
        ..Default::default()
    };
    let (_dir, reg, proxy) = setup(opts).await;
    let bytes = pattern(100_000, 10);
    let d = reg.put_blob(bytes.clone());
    let got = get(&proxy.url(&format!("/v2/team/app/blobs/{d}"))).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.bytes().as_ref(), bytes.as_slice());
    let blob_host = reg.blob_host_log();
    assert_eq!(blob_host.len(), 1);
    assert_eq!(
        blob_host[0].authorization, None,
        "Authorization crossed a host boundary"
    );
    assert!(reg
        .log()
        .iter()
        .any(|l| l.path.contains(&d) && l.authorization.as_deref().is_some_and(|a| a.starts_with("Bearer "))));
}

#[tokio::test]
async fn a_blob_host_that_challenges_gets_its_own_token_and_never_the_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        bearer: Some(Some(("puller".into(), "s3cret".into()))),
        redirect_blobs: true,
        blob_host_bearer: true,
        ..Default::default()
    };
    let reg = TestRegistry::start_with(opts).await;
    let ups = upstream("reg.test", &reg.url(), "username = \"puller\"\npassword = \"s3cret\"");
    let proxy = proxy(dir.path(), "", &ups).await;
    let bytes = pattern(50_000, 11);
    let d = reg.put_blob(bytes.clone());
    let got = get(&proxy.url(&format!("/v2/team/app/blobs/{d}"))).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.bytes().as_ref(), bytes.as_slice());
    let seen: Vec<_> = reg
        .blob_host_log()
        .into_iter()
        .map(|l| (l.path, l.authorization))
        .collect();
    assert!(
        seen.iter()
            .any(|(p, a)| p.starts_with("/blob/") && a.as_deref() == Some("Bearer blob-token")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .all(|(_, a)| a.as_deref().is_none_or(|a| a == "Bearer blob-token")),
        "the upstream's token or credentials reached the blob host: {seen:?}"
    );
}
