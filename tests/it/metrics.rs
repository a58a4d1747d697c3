//! `/metrics`, `/healthz`, `/readyz`: values checked after a known sequence of pulls.

use crate::support::*;

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

#[tokio::test]
async fn metrics_count_a_known_sequence_of_pulls() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let (_, manifest, _) = reg.put_image("team/app", "v1", &[30_000, 50_000], 1);
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "").await;
    pull(&proxy, "team/app", "v1").await;
    pull(&proxy, "team/app", "v1").await;
    let unknown = get(&proxy.url(&format!("/v2/team/app/blobs/sha256:{}", "0".repeat(64)))).await;
    assert_eq!(unknown.status, 404);

    let text = String::from_utf8(get(&proxy.url("/metrics")).await.bytes().to_vec()).unwrap();
    // Blobs: two layers and a config, once from the upstream, once from the cache, plus one 404.
    assert_eq!(
        value(
            &text,
            r#"entrepot_http_requests_total{route="blob",method="GET",status="200"}"#
        ),
        6.0
    );
    assert_eq!(
        value(
            &text,
            r#"entrepot_http_requests_total{route="blob",method="GET",status="404"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&text, r#"entrepot_cache_lookups_total{kind="blob",result="miss"}"#),
        3.0
    );
    assert_eq!(
        value(&text, r#"entrepot_cache_lookups_total{kind="blob",result="hit"}"#),
        3.0
    );
    assert_eq!(
        value(&text, r#"entrepot_cache_lookups_total{kind="manifest",result="miss"}"#),
        1.0
    );
    assert_eq!(
        value(&text, r#"entrepot_cache_lookups_total{kind="manifest",result="hit"}"#),
        1.0
    );
    let config_size = {
        let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        m["config"]["size"].as_u64().unwrap() as f64
    };
    let blob_bytes = 80_000.0 + config_size;
    assert_eq!(
        value(&text, r#"entrepot_served_bytes_total{source="fill"}"#),
        blob_bytes
    );
    assert_eq!(
        value(&text, r#"entrepot_served_bytes_total{source="cache"}"#),
        blob_bytes
    );
    assert_eq!(
        value(&text, r#"entrepot_upstream_bytes_total{upstream="reg.test"}"#),
        blob_bytes + manifest.len() as f64
    );
    assert!(
        value(
            &text,
            r#"entrepot_upstream_request_duration_seconds_count{upstream="reg.test"}"#
        ) >= 5.0
    );
    assert_eq!(
        value(
            &text,
            r#"entrepot_upstream_requests_total{upstream="reg.test",result="answered"}"#
        ),
        value(
            &text,
            r#"entrepot_upstream_request_duration_seconds_count{upstream="reg.test"}"#
        ),
        "every request sent is counted once, by result"
    );
    assert_eq!(value(&text, "entrepot_store_bytes"), blob_bytes);
    assert_eq!(value(&text, "entrepot_store_reconciled"), 1.0);
    assert_eq!(value(&text, "entrepot_transfers_in_flight"), 0.0);
    assert_eq!(value(&text, "entrepot_digest_mismatches_total"), 0.0);

    assert_eq!(get(&proxy.url("/healthz")).await.status, 200);
    assert_eq!(get(&proxy.url("/readyz")).await.status, 200);
}

#[tokio::test]
async fn metrics_listen_moves_the_operator_paths_off_the_main_listener() {
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
    assert_eq!(get(&proxy.url("/metrics")).await.status, 404);
    let mut text = None;
    for _ in 0..100 {
        if let Ok(resp) = client()
            .request(
                http::Request::get(format!("http://127.0.0.1:{port}/metrics"))
                    .body(http_body_util::Empty::new())
                    .unwrap(),
            )
            .await
        {
            use http_body_util::BodyExt;
            text = Some(String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(text.unwrap().contains("entrepot_store_bytes"));
}
