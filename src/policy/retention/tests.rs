use super::*;

const DAY: u64 = 86_400_000;
const NOW: u64 = 1000 * DAY;
const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const COSIGN: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn d(name: &str) -> Digest {
    Digest::sha256_of(name.as_bytes())
}

fn manifest(name: &str, refs: &[&str], idle_days: u64) -> ManifestItem {
    ManifestItem {
        digest: d(name),
        media_type: IMAGE.into(),
        artifact_type: Some("application/vnd.oci.image.config.v1+json".into()),
        upstream: "docker.io".into(),
        repository: "library/app".into(),
        size: 1,
        references: refs.iter().map(|r| d(r)).collect(),
        subject: None,
        cached_at: NOW - idle_days * DAY,
        last_access: NOW - idle_days * DAY,
        hits: 0,
    }
}

fn blob(name: &str, size: u64, idle_days: u64) -> BlobItem {
    BlobItem {
        digest: d(name),
        media_type: Some(LAYER.into()),
        upstream: "docker.io".into(),
        size,
        cached_at: NOW - idle_days * DAY,
        last_access: NOW - idle_days * DAY,
        hits: 0,
    }
}

fn class(name: &str) -> Class {
    Class {
        name: name.into(),
        ..Default::default()
    }
}

fn days(n: u64) -> Option<Duration> {
    Some(Duration::from_millis(n * DAY))
}

fn evicted(p: &Plan) -> Vec<String> {
    let names = [
        "m1", "m2", "m3", "idx", "sig", "sbom", "b1", "b2", "b3", "shared", "loose", "child",
    ];
    let mut out: Vec<String> = p
        .evictions
        .iter()
        .map(|e| {
            names
                .iter()
                .find(|n| d(n) == e.digest)
                .map_or("?".into(), |n| n.to_string())
        })
        .collect();
    out.sort();
    out
}

fn snap(manifests: Vec<ManifestItem>, blobs: Vec<BlobItem>) -> Snapshot {
    Snapshot {
        now: NOW,
        manifests,
        blobs,
        serving: HashSet::new(),
    }
}

#[test]
fn max_idle_expires_manifests_and_their_unshared_blobs() {
    let classes = [Class {
        max_idle: days(7),
        ..class("images")
    }];
    let s = snap(
        vec![
            manifest("m1", &["b1", "shared"], 10),
            manifest("m2", &["b2", "shared"], 1),
        ],
        vec![blob("b1", 10, 10), blob("b2", 10, 1), blob("shared", 10, 1)],
    );
    let p = plan(&classes, &Limits::default(), &s);
    assert_eq!(evicted(&p), ["b1", "m1"]);
    let m1 = p.evictions.iter().find(|e| e.digest == d("m1")).unwrap();
    assert_eq!(m1.class, "images");
    assert!(m1.reason.contains("max_idle"), "{}", m1.reason);
    assert_eq!(m1.idle_ms, 10 * DAY);
    assert_eq!((p.bytes_before, p.bytes_after), (32, 21));
}

#[test]
fn max_age_counts_from_caching_not_from_access() {
    let classes = [Class {
        max_age: days(30),
        ..class("aging")
    }];
    let mut old = manifest("m1", &["b1"], 0);
    old.cached_at = NOW - 40 * DAY;
    let s = snap(
        vec![old, manifest("m2", &["b2"], 0)],
        vec![blob("b1", 1, 0), blob("b2", 1, 0)],
    );
    assert_eq!(evicted(&plan(&classes, &Limits::default(), &s)), ["b1", "m1"]);
}

#[test]
fn pinned_content_survives_everything() {
    let classes = [Class {
        artifact_type: Some(Globs::One("application/vnd.dev.cosign.*".into())),
        pin: true,
        ..class("signatures")
    }];
    let mut sig = manifest("sig", &["b3"], 400);
    sig.artifact_type = Some(COSIGN.into());
    sig.subject = Some(d("m1"));
    let s = snap(
        vec![manifest("m1", &["b1"], 400), sig],
        vec![blob("b1", 100, 400), blob("b3", 100, 400)],
    );
    let limits = Limits {
        max_cache_bytes: Some(10),
        ..Default::default()
    };
    let p = plan(&classes, &limits, &s);
    assert_eq!(
        evicted(&p),
        ["b1", "m1"],
        "the subject goes under pressure, its pinned signature stays"
    );
}

#[test]
fn referrers_follow_their_subject() {
    let classes = [Class {
        max_idle: days(7),
        ..class("images")
    }];
    let mut sig = manifest("sig", &["b3"], 0);
    sig.artifact_type = Some(COSIGN.into());
    sig.subject = Some(d("m1"));
    let s = snap(
        vec![manifest("m1", &["b1"], 30), sig],
        vec![blob("b1", 1, 30), blob("b3", 1, 0)],
    );
    let p = plan(&classes, &Limits::default(), &s);
    assert_eq!(evicted(&p), ["b1", "b3", "m1", "sig"]);
    assert!(p
        .evictions
        .iter()
        .any(|e| e.digest == d("sig") && e.reason.contains("subject")));
}

#[test]
fn shared_blobs_stay_while_a_referencing_manifest_stays() {
    let classes = [
        Class {
            repository: Some(Globs::One("short/*".into())),
            max_idle: days(1),
            ..class("short")
        },
        Class {
            max_idle: days(365),
            ..class("long")
        },
    ];
    let mut short = manifest("m1", &["shared", "b1"], 5);
    short.repository = "short/app".into();
    let s = snap(
        vec![short, manifest("m2", &["shared"], 5)],
        vec![blob("shared", 5, 5), blob("b1", 5, 5)],
    );
    assert_eq!(evicted(&plan(&classes, &Limits::default(), &s)), ["b1", "m1"]);
}

#[test]
fn index_children_stay_with_their_index() {
    let classes = [Class {
        max_idle: days(7),
        ..class("all")
    }];
    let mut idx = manifest("idx", &["child"], 1);
    idx.media_type = INDEX.into();
    idx.artifact_type = None;
    let s = snap(vec![idx, manifest("child", &["b1"], 30)], vec![blob("b1", 1, 30)]);
    assert!(
        plan(&classes, &Limits::default(), &s).evictions.is_empty(),
        "a child idle by itself stays with its index"
    );
    let mut idx = manifest("idx", &["child"], 30);
    idx.media_type = INDEX.into();
    let s = snap(vec![idx, manifest("child", &["b1"], 30)], vec![blob("b1", 1, 30)]);
    assert_eq!(evicted(&plan(&classes, &Limits::default(), &s)), ["b1", "child", "idx"]);
}

#[test]
fn class_quota_evicts_least_recently_used_first() {
    let classes = [Class {
        max_bytes: Some(25),
        ..class("capped")
    }];
    let s = snap(
        vec![
            manifest("m1", &["b1"], 3),
            manifest("m2", &["b2"], 1),
            manifest("m3", &["b3"], 2),
        ],
        vec![blob("b1", 10, 3), blob("b2", 10, 1), blob("b3", 10, 2)],
    );
    let p = plan(&classes, &Limits::default(), &s);
    assert_eq!(evicted(&p), ["b1", "m1"]);
    assert!(p.bytes_after <= 25, "{}", p.bytes_after);
}

#[test]
fn cache_limit_evicts_down_to_the_low_watermark_in_lru_order() {
    let s = snap(
        vec![
            manifest("m1", &["b1"], 3),
            manifest("m2", &["b2"], 1),
            manifest("m3", &["b3"], 2),
        ],
        vec![
            blob("b1", 30, 3),
            blob("b2", 30, 1),
            blob("b3", 30, 2),
            blob("loose", 30, 5),
        ],
    );
    // 123 bytes; high watermark 90% of 100 = 90; low 80% = 80.
    let limits = Limits {
        max_cache_bytes: Some(100),
        high_watermark: 90,
        low_watermark: 80,
    };
    let p = plan(&[], &limits, &s);
    assert_eq!(
        evicted(&p),
        ["b1", "loose", "m1"],
        "oldest first: the loose blob, then m1 with its layer"
    );
    assert!(p.bytes_after <= 80);
    let under = Limits {
        max_cache_bytes: Some(200),
        ..limits
    };
    assert!(plan(&[], &under, &s).evictions.is_empty());
}

#[test]
fn blobs_being_served_are_never_evicted() {
    let classes = [Class {
        max_idle: days(1),
        ..class("short")
    }];
    let mut s = snap(
        vec![manifest("m1", &["b1"], 9)],
        vec![blob("b1", 10, 9), blob("loose", 10, 9)],
    );
    s.serving.insert(d("b1"));
    s.serving.insert(d("loose"));
    let limits = Limits {
        max_cache_bytes: Some(1),
        ..Default::default()
    };
    assert_eq!(evicted(&plan(&classes, &limits, &s)), ["m1"]);
}

#[test]
fn unreferenced_blobs_are_judged_by_their_own_media_type() {
    let classes = [Class {
        media_type: Some(Globs::One("application/vnd.oci.image.layer.*".into())),
        max_idle: days(2),
        ..class("layers")
    }];
    let s = snap(vec![], vec![blob("loose", 1, 3), blob("b1", 1, 1)]);
    assert_eq!(evicted(&plan(&classes, &Limits::default(), &s)), ["loose"]);
}
