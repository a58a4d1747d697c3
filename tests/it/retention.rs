//! Retention, end to end: classes, idle expiry, pins, quotas, shared blobs, watermarks,
//! blobs being served, and the operator endpoints and commands.

use http::Method;
use http_body_util::BodyExt;

use crate::support::*;

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const COSIGN: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

async fn setup(top: &str, classes: &str) -> (tempfile::TempDir, TestRegistry, TestProxy) {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start_with(Options {
        referrers_api: true,
        ..Default::default()
    })
    .await;
    let proxy = TestProxy::start(
        dir.path(),
        top,
        &format!("{}{classes}", upstream("reg.test", &reg.url(), "")),
    )
    .await;
    (dir, reg, proxy)
}

fn has_blob(proxy: &TestProxy, d: &str) -> bool {
    proxy.app.cache.store.blobs.exists(&d.parse().unwrap())
}

fn has_manifest(proxy: &TestProxy, d: &str) -> bool {
    proxy.app.cache.store.index.has_manifest(&d.parse().unwrap()).unwrap()
}

#[tokio::test]
async fn idle_content_goes_and_shared_blobs_stay_while_referenced() {
    let classes = "[[retention]]\nname = \"images\"\nmedia_type = \"*\"\nmax_idle = \"7d\"\n";
    let (_dir, reg, proxy) = setup("", classes).await;
    let shared = reg.put_blob(vec![7u8; 5000]);
    let old_layer = reg.put_blob(vec![1u8; 5000]);
    let new_layer = reg.put_blob(vec![2u8; 5000]);
    let config = reg.put_blob("{}");
    let manifest = |layers: &[&str]| {
        let l: Vec<String> = layers
            .iter()
            .map(|d| format!(r#"{{"mediaType":"{LAYER}","digest":"{d}","size":5000}}"#))
            .collect();
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"{IMAGE_CONFIG}","digest":"{config}","size":2}},"layers":[{}]}}"#,
            l.join(",")
        )
    };
    let old = reg.put_manifest(
        "team/old",
        Some("v1"),
        "application/vnd.oci.image.manifest.v1+json",
        manifest(&[&shared, &old_layer]),
    );
    let new = reg.put_manifest(
        "team/new",
        Some("v1"),
        "application/vnd.oci.image.manifest.v1+json",
        manifest(&[&shared, &new_layer]),
    );
    pull(&proxy, "team/old", "v1").await;
    pull(&proxy, "team/new", "v1").await;
    age(&proxy.app, "team/old", 10);

    let plan = proxy.app.cache.sweep(false).await.unwrap();
    let gone: Vec<String> = plan.evictions.iter().map(|e| e.digest.to_string()).collect();
    assert!(gone.contains(&old) && gone.contains(&old_layer), "{gone:?}");
    assert!(!has_manifest(&proxy, &old) && !has_blob(&proxy, &old_layer));
    assert!(
        has_blob(&proxy, &shared),
        "the shared layer stays while team/new references it"
    );
    assert!(has_manifest(&proxy, &new) && has_blob(&proxy, &new_layer) && has_blob(&proxy, &config));
    // The tag went with its manifest: the next pull asks the upstream again.
    let before = reg.count("GET", "/v2/team/old/manifests/v1");
    assert_eq!(get(&proxy.url("/v2/team/old/manifests/v1")).await.cache(), "miss");
    assert_eq!(reg.count("GET", "/v2/team/old/manifests/v1"), before + 1);

    // Once nothing references it, the shared layer goes too.
    age(&proxy.app, "team/old", 10);
    age(&proxy.app, "team/new", 10);
    proxy.app.cache.sweep(false).await.unwrap();
    assert!(!has_blob(&proxy, &shared));
}

#[tokio::test]
async fn pinned_signatures_survive_pressure_and_referrers_follow_their_subject() {
    let top = "max_cache_bytes = \"1KiB\"";
    let classes =
        "[[retention]]\nname = \"signatures\"\nartifact_type = \"application/vnd.dev.cosign.*\"\npin = true\n";
    let (_dir, reg, proxy) = setup(top, classes).await;
    let (image, bytes, blobs) = reg.put_artifact("team/app", Some("v1"), IMAGE_CONFIG, &[LAYER]);
    let sig = reg.put_referrer("team/app", &image, bytes.len(), COSIGN);
    let sbom = reg.put_referrer("team/app", &image, bytes.len(), "application/spdx+json");
    pull(&proxy, "team/app", "v1").await;
    for d in [&sig, &sbom] {
        assert_eq!(
            get(&proxy.url(&format!("/v2/team/app/manifests/{d}"))).await.status,
            200
        );
    }
    // A download past the high watermark wakes the sweeper: no explicit sweep here.
    let big = reg.put_blob(vec![3u8; 4096]);
    assert_eq!(get(&proxy.url(&format!("/v2/team/app/blobs/{big}"))).await.status, 200);
    for _ in 0..500 {
        if !has_manifest(&proxy, &image) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!has_manifest(&proxy, &image), "the sweeper evicted the image");
    assert!(!has_blob(&proxy, &blobs[1]), "with its layer");
    // The padding blob was still being served when that sweep ran; a later one takes it.
    for _ in 0..500 {
        proxy.app.cache.sweep(false).await.unwrap();
        if !has_blob(&proxy, &big) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!has_blob(&proxy, &big));
    assert!(has_manifest(&proxy, &sig), "the pinned signature stays");
    assert!(!has_manifest(&proxy, &sbom), "the unpinned SBOM follows its subject");
}

#[tokio::test]
async fn a_class_quota_holds_after_a_sweep_evicting_the_least_recently_used() {
    let classes = "[[retention]]\nname = \"capped\"\nrepository = \"capped/*\"\nmax_bytes = \"25KB\"\n";
    let (_dir, reg, proxy) = setup("", classes).await;
    let mut images = Vec::new();
    for (i, repo) in ["capped/a", "capped/b", "capped/c"].iter().enumerate() {
        let (d, _, _) = reg.put_image(repo, "v1", &[10_000], i as u8);
        pull(&proxy, repo, "v1").await;
        images.push(d);
    }
    age(&proxy.app, "capped/a", 3);
    age(&proxy.app, "capped/c", 2);
    age(&proxy.app, "capped/b", 1);
    let plan = proxy.app.cache.sweep(false).await.unwrap();
    let stats = proxy.app.cache.usage().await.unwrap();
    let capped = stats.by_class.iter().find(|(n, _)| n == "capped").unwrap().1.clone();
    assert!(capped.bytes <= 25_000, "{capped:?} after {:?}", plan.evictions);
    assert!(!has_manifest(&proxy, &images[0]), "least recently used first");
    assert!(has_manifest(&proxy, &images[1]) && has_manifest(&proxy, &images[2]));
}

#[tokio::test]
async fn a_blob_being_served_is_not_evicted() {
    let (_dir, reg, proxy) = setup("max_cache_bytes = \"1KiB\"", "").await;
    // Larger than what loopback socket buffers can swallow, so the transfer stays open.
    let d = reg.put_blob(vec![9u8; 64 << 20]);
    let url = proxy.url(&format!("/v2/team/app/blobs/{d}"));
    assert_eq!(get(&url).await.status, 200);
    // A slow reader: one frame read, then holding the rest.
    let resp = client()
        .request(http::Request::get(&url).body(http_body_util::Empty::new()).unwrap())
        .await
        .unwrap();
    let mut body = resp.into_body();
    let _ = body.frame().await.unwrap().unwrap();
    // The first GET's fill crossed the budget and woke the background sweeper, which may
    // have evicted the blob before this transfer began: then it is being fetched again,
    // and is committed once the download ends, whatever this reader does.
    until("the blob is stored", || has_blob(&proxy, &d)).await;
    let plan = proxy.app.cache.sweep(false).await.unwrap();
    assert!(
        plan.evictions.iter().all(|e| e.digest.to_string() != d),
        "planned around the transfer"
    );
    assert!(has_blob(&proxy, &d));
    drop(body);
    // Once the transfer is over, the blob can go.
    for _ in 0..200 {
        proxy.app.cache.sweep(false).await.unwrap();
        if !has_blob(&proxy, &d) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the blob was never evicted after its transfer ended");
}

#[tokio::test]
async fn the_operator_endpoints_report_and_sweep() {
    let classes = "[[retention]]\nname = \"images\"\nmedia_type = \"*\"\nmax_idle = \"7d\"\n";
    let (_dir, reg, proxy) = setup("", classes).await;
    let (d, _, _) = reg.put_image("team/app", "v1", &[1000], 1);
    pull(&proxy, "team/app", "v1").await;
    age(&proxy.app, "team/app", 8);

    let not_on_the_listener = get(&proxy.url("/_entrepot/gc")).await;
    assert_ne!(
        not_on_the_listener.status, 200,
        "operator endpoints are not on the listener"
    );
    let socket = proxy.app.config.data_dir.join("admin.sock");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the socket is its owner's only");

    let (status, text) = admin(&socket, Method::GET, "/gc").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.starts_with("would evict 3 item(s)"), "{text}");
    assert!(
        text.contains(&d) && text.contains("class=images") && text.contains("max_idle 7days exceeded"),
        "{text}"
    );
    assert!(has_manifest(&proxy, &d), "a dry run changes nothing");

    let (_, text) = admin(&socket, Method::GET, "/stats").await;
    assert!(text.contains("images") && text.contains("reg.test"), "{text}");

    let (status, text) = admin(&socket, Method::DELETE, "/gc").await;
    assert_eq!(status, 405, "{text}");
    let (_, text) = admin(&socket, Method::POST, "/gc").await;
    assert!(text.starts_with("evicted 3 item(s)"), "{text}");
    assert!(!has_manifest(&proxy, &d));
}

#[test]
fn gc_stats_and_policy_check_commands_work_on_a_stopped_and_a_running_cache() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reg = rt.block_on(TestRegistry::start());
    let (d, _, _) = reg.put_image("team/app", "v1", &[1000], 2);
    let port = free_port();
    let config = binary_config(
        dir.path(),
        port,
        &reg,
        "[[retention]]\nname = \"images\"\nmedia_type = \"*\"\nmax_idle = \"7d\"\n[[policy]]\nname = \"no-v1\"\naction = \"deny\"\ntag = \"v1\"\nreason = \"v1 is withdrawn\"\n",
    );
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_entrepot"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let check = run(&["policy", "check", "reg.test/team/app:v1"]);
    assert!(
        check.contains(&d) && check.contains("deny (v1 is withdrawn)") && check.contains("[rule no-v1]"),
        "{check}"
    );
    let stats = run(&["cache", "stats"]);
    assert!(stats.contains("images") && stats.contains("total"), "{stats}");
    let dry = run(&["gc", "--dry-run"]);
    assert!(dry.starts_with("would evict 0 item(s)"), "{dry}");

    // With the cache running, its index is locked: the same commands succeed only by
    // asking the server, on its operator socket in the data directory.
    let mut server = serve_binary(&config, port);
    let stats = run(&["cache", "stats"]);
    assert!(stats.contains("images") && stats.contains("total"), "{stats}");
    let dry = run(&["gc", "--dry-run"]);
    assert!(dry.starts_with("would evict 0 item(s)"), "{dry}");
    // The server seeds itself and reports each reference back, refusals included.
    let seeded = std::process::Command::new(env!("CARGO_BIN_EXE_entrepot"))
        .args(["seed", "reg.test/team/app:v1", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&seeded.stdout),
        String::from_utf8_lossy(&seeded.stderr),
    );
    assert!(!seeded.status.success(), "a refused reference fails the seed");
    assert!(
        stdout.contains("FAILED reg.test/team/app:v1") && stdout.contains("v1 is withdrawn"),
        "{stdout}{stderr}"
    );
    assert!(stderr.contains("[1/1] FAILED: reg.test/team/app:v1"), "{stderr}");
    let _ = server.kill();
    let _ = server.wait();
    drop(reg);
}
