//! Tag lists (sorted, paginated) and referrers (API and tag-schema fallback).

use crate::support::registry::{sha256, OCI_INDEX, OCI_MANIFEST};
use crate::support::*;

async fn setup(opts: Options) -> (tempfile::TempDir, TestRegistry, TestProxy) {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start_with(opts).await;
    let proxy = TestProxy::in_front_of(dir.path(), &reg, "reg.test", "").await;
    (dir, reg, proxy)
}

fn tags(got: &Got) -> Vec<String> {
    got.json()["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn tag_lists_are_sorted_and_paginated_even_when_upstream_is_not() {
    let (_dir, reg, proxy) = setup(Options {
        tag_page: Some(2),
        ..Default::default()
    })
    .await;
    for (i, t) in ["b", "d", "a", "e", "c"].iter().enumerate() {
        reg.put_image("team/app", t, &[1], i as u8);
    }
    let all = get(&proxy.url("/v2/team/app/tags/list")).await;
    assert_eq!(all.status, 200);
    assert_eq!(all.json()["name"], "team/app");
    assert_eq!(tags(&all), ["a", "b", "c", "d", "e"]);
    assert!(reg.count("GET", "/tags/list") >= 3, "upstream pages were followed");

    let page = get(&proxy.url("/v2/team/app/tags/list?n=2")).await;
    assert_eq!(tags(&page), ["a", "b"]);
    assert_eq!(
        page.header("link"),
        Some("</v2/team/app/tags/list?n=2&last=b>; rel=\"next\"")
    );
    let next = get(&proxy.url("/v2/team/app/tags/list?n=2&last=b")).await;
    assert_eq!(tags(&next), ["c", "d"]);
    let last = get(&proxy.url("/v2/team/app/tags/list?n=2&last=d")).await;
    assert_eq!(tags(&last), ["e"]);
    assert_eq!(last.header("link"), None);

    let unknown = get(&proxy.url("/v2/team/none/tags/list")).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error_code(), "NAME_UNKNOWN");
}

fn signature(subject: &str, subject_size: usize, artifact_type: &str) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{artifact_type}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}},"layers":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":{subject_size}}}}}"#,
        sha256(b"{}")
    )
}

#[tokio::test]
async fn referrers_come_from_the_api_with_the_artifact_type_filter() {
    let (_dir, reg, proxy) = setup(Options {
        referrers_api: true,
        ..Default::default()
    })
    .await;
    let (subject, bytes, _) = reg.put_image("team/app", "v1", &[1], 1);
    let sig = reg.put_manifest(
        "team/app",
        None,
        OCI_MANIFEST,
        signature(&subject, bytes.len(), "application/vnd.dev.cosign.artifact.sig.v1+json"),
    );
    let sbom = reg.put_manifest(
        "team/app",
        None,
        OCI_MANIFEST,
        signature(&subject, bytes.len(), "application/spdx+json"),
    );

    let all = get(&proxy.url(&format!("/v2/team/app/referrers/{subject}"))).await;
    assert_eq!(all.status, 200);
    assert_eq!(all.header("content-type"), Some(OCI_INDEX));
    let digests: Vec<_> = all.json()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect();
    assert!(digests.contains(&sig) && digests.contains(&sbom), "{digests:?}");
    assert_eq!(all.header("oci-filters-applied"), None);

    let filtered = get(&proxy.url(&format!(
        "/v2/team/app/referrers/{subject}?artifactType=application%2Fspdx%2Bjson"
    )))
    .await;
    assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"));
    let list = filtered.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], sbom.as_str());
}

#[tokio::test]
async fn referrers_fall_back_to_the_tag_schema() {
    let (_dir, reg, proxy) = setup(Options::default()).await;
    let (subject, bytes, _) = reg.put_image("team/app", "v1", &[1], 2);
    let sig = reg.put_manifest(
        "team/app",
        None,
        OCI_MANIFEST,
        signature(&subject, bytes.len(), "application/example.sig"),
    );
    let fallback_tag = subject.replace(':', "-");
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{sig}","size":10,"artifactType":"application/example.sig"}}]}}"#
    );
    reg.put_manifest("team/app", Some(&fallback_tag), OCI_INDEX, index);
    let got = get(&proxy.url(&format!("/v2/team/app/referrers/{subject}"))).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["manifests"][0]["digest"], sig.as_str());
    assert!(reg.count("GET", &format!("/manifests/{fallback_tag}")) == 1);

    // No referrers at all: an empty index, not a 404.
    let (other, _, _) = reg.put_image("team/app", "v2", &[1], 3);
    let none = get(&proxy.url(&format!("/v2/team/app/referrers/{other}"))).await;
    assert_eq!(none.status, 200);
    assert_eq!(none.json()["manifests"].as_array().unwrap().len(), 0);
}

/// The catalog lists what is cached, paginated; it is computed again only when a tag or
/// manifest record appears or goes, not per request (tag revalidation changes nothing).
#[tokio::test]
async fn the_catalog_follows_the_cache_and_is_computed_once_per_change() {
    let (_dir, reg, proxy) = setup(Options::default()).await;
    reg.put_image("team/b", "v1", &[10], 1);
    reg.put_image("team/a", "v1", &[10], 2);
    pull(&proxy, "team/b", "v1").await;
    let first = proxy.app.cache.catalog().await.unwrap();
    assert_eq!(*first, vec!["reg.test/team/b".to_owned()]);
    assert!(std::sync::Arc::ptr_eq(
        &first,
        &proxy.app.cache.catalog().await.unwrap()
    ));

    pull(&proxy, "team/a", "v1").await;
    let second = get(&proxy.url("/v2/_catalog?n=1")).await;
    assert_eq!(second.json()["repositories"], serde_json::json!(["reg.test/team/a"]));
    assert_eq!(
        second.header("link"),
        Some("</v2/_catalog?n=1&last=reg.test/team/a>; rel=\"next\"")
    );
    let now = proxy.app.cache.catalog().await.unwrap();
    assert_eq!(*now, vec!["reg.test/team/a".to_owned(), "reg.test/team/b".to_owned()]);

    // The same tag resolved again (an expired TTL, a revalidation) is no new name.
    let generation = proxy.app.cache.store.index.names_generation();
    let t = proxy.app.cache.store.index.tags_all().unwrap().remove(0);
    proxy
        .app
        .cache
        .store
        .index
        .put_tag(&t.upstream, &t.repo, &t.tag, &t.class, &t.record)
        .unwrap();
    assert_eq!(proxy.app.cache.store.index.names_generation(), generation);
    assert!(std::sync::Arc::ptr_eq(&now, &proxy.app.cache.catalog().await.unwrap()));
}
