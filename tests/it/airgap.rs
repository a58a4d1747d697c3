//! Air-gap: seed → export → import into a fresh cache → serve offline; incremental
//! exports; corrupt and truncated bundles refused without a trace; catalog offline.

use std::sync::Arc;

use entrepot::layout::export::{self, Output, Selection};
use entrepot::layout::import::{self, Placement, Source};
use entrepot::progress::Meter;
use entrepot::seed::{self, Puller};
use http::Method;

use crate::support::registry::{OCI_INDEX, OCI_MANIFEST};
use crate::support::*;

const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

struct Site {
    _dir: tempfile::TempDir,
    proxy: TestProxy,
}

async fn site(reg: &TestRegistry, extra: &str) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::in_front_of(dir.path(), reg, "reg.test", extra).await;
    Site { _dir: dir, proxy }
}

async fn seed_all(proxy: &TestProxy, refs: &[&str], referrers: bool) {
    let puller = Arc::new(Puller(proxy.app.clone()));
    let opts = seed::Options {
        platforms: vec![],
        referrers,
        parallel: 2,
    };
    let results = seed::seed(
        puller,
        refs.iter().map(|r| r.to_string()).collect(),
        opts,
        |_, _, _, _| {},
    )
    .await;
    for (r, result) in results {
        assert!(result.is_ok(), "{r}: {result:?}");
    }
}

fn export_tar(proxy: &TestProxy, sel: &Selection) -> (Vec<u8>, export::Summary) {
    let path = tempfile::NamedTempFile::new().unwrap();
    let file = std::fs::File::create(path.path()).unwrap();
    let summary = export::export(&proxy.app.cache.store, sel, Output::Tar(Box::new(file)), &Meter::none()).unwrap();
    (std::fs::read(path.path()).unwrap(), summary)
}

fn import_tar(proxy: &TestProxy, bytes: Vec<u8>) -> entrepot::Result<import::Summary> {
    import::import(
        &proxy.app.cache.store,
        &proxy.app.upstreams,
        Source::Tar(Box::new(std::io::Cursor::new(bytes))),
        &Placement::default(),
        &Meter::none(),
    )
}

fn store_files(proxy: &TestProxy) -> (usize, usize) {
    let blobs = proxy.app.cache.store.blobs.list().unwrap().len();
    let tmp = std::fs::read_dir(proxy.app.config.data_dir.join("tmp"))
        .unwrap()
        .count();
    (blobs, tmp)
}

/// A multi-platform image with a signature, and a plain image.
fn content(reg: &TestRegistry) -> (String, String, String) {
    let (amd, amd_b, _) = reg.put_artifact("team/multi", None, IMAGE_CONFIG, &[LAYER]);
    let (arm, arm_b, _) = reg.put_artifact("team/multi", None, IMAGE_CONFIG, &[LAYER, LAYER]);
    let (index, index_b) = reg.put_index(
        "team/multi",
        "v1",
        &[(&amd, amd_b.len(), "linux/amd64"), (&arm, arm_b.len(), "linux/arm64")],
    );
    let sig = reg.put_referrer(
        "team/multi",
        &index,
        index_b.len(),
        "application/vnd.dev.cosign.artifact.sig.v1+json",
    );
    let (plain, _, _) = reg.put_image("team/app", "3.20", &[70_000, 1000], 1);
    (index, sig, plain)
}

#[tokio::test]
async fn seed_export_import_and_serve_offline_byte_identical() {
    let reg = TestRegistry::start_with(Options {
        referrers_api: true,
        ..Default::default()
    })
    .await;
    let (index, sig, _plain) = content(&reg);
    let a = site(&reg, "").await;
    seed_all(&a.proxy, &["reg.test/team/multi:v1", "reg.test/team/app:3.20"], true).await;
    // Seeding again fetches nothing new.
    let before = reg.total_requests();
    seed_all(&a.proxy, &["reg.test/team/app:3.20"], false).await;
    assert_eq!(
        reg.log()[before..]
            .iter()
            .filter(|l| l.path.contains("/blobs/"))
            .count(),
        0
    );

    let (bundle, summary) = export_tar(&a.proxy, &Selection::default());
    assert_eq!(summary.tags, 2);
    assert!(summary.missing.is_empty(), "{:?}", summary.missing);

    let b = site(&reg, "offline = true").await;
    let imported = import_tar(&b.proxy, bundle.clone()).unwrap();
    assert_eq!(imported.tags, 2);
    assert!(imported.blobs_added >= 6, "{imported:?}");
    let sig_path = format!("/v2/team/multi/manifests/{sig}");
    let cases = [
        ("/v2/team/multi/manifests/v1", OCI_INDEX),
        ("/v2/team/app/manifests/3.20", OCI_MANIFEST),
        (&sig_path as &str, OCI_MANIFEST),
    ];
    let mut from_site_a = Vec::new();
    for (path, accept) in cases {
        from_site_a.push(request(Method::GET, &a.proxy.url(path), &[("accept", accept)]).await);
    }
    let requests = reg.total_requests();

    for ((path, accept), from_a) in cases.into_iter().zip(from_site_a) {
        let from_b = request(Method::GET, &b.proxy.url(path), &[("accept", accept)]).await;
        assert_eq!(from_b.status, 200, "{path}");
        assert_eq!(from_b.bytes(), from_a.bytes(), "{path}");
        assert_eq!(
            from_b.header("docker-content-digest"),
            from_a.header("docker-content-digest")
        );
    }
    let manifest = get(&b.proxy.url("/v2/team/app/manifests/3.20")).await.json();
    for layer in manifest["layers"].as_array().unwrap() {
        let d = layer["digest"].as_str().unwrap();
        let from_b = get(&b.proxy.url(&format!("/v2/team/app/blobs/{d}"))).await;
        assert_eq!(
            from_b.bytes(),
            get(&a.proxy.url(&format!("/v2/team/app/blobs/{d}"))).await.bytes()
        );
    }
    let referrers = get(&b.proxy.url(&format!("/v2/team/multi/referrers/{index}")))
        .await
        .json();
    assert_eq!(referrers["manifests"][0]["digest"], sig.as_str());
    let tags = get(&b.proxy.url("/v2/team/app/tags/list")).await.json();
    assert_eq!(tags["tags"], serde_json::json!(["3.20"]));
    let catalog = get(&b.proxy.url("/v2/_catalog")).await.json();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["reg.test/team/app", "reg.test/team/multi"])
    );
    assert_eq!(reg.total_requests(), requests, "site B never contacted the upstream");

    // Importing twice changes nothing.
    let again = import_tar(&b.proxy, bundle).unwrap();
    assert_eq!(again.blobs_added, 0);
}

#[tokio::test]
async fn incremental_exports_hold_only_what_is_new() {
    let reg = TestRegistry::start().await;
    let a = site(&reg, "").await;
    reg.put_image("team/app", "v1", &[5000], 1);
    seed_all(&a.proxy, &["reg.test/team/app:v1"], false).await;
    let (_, first) = export_tar(&a.proxy, &Selection::default());
    assert_eq!((first.manifests, first.blobs), (1, 2));

    let (d2, _, _) = reg.put_image("team/app", "v2", &[6000], 2);
    seed_all(&a.proxy, &["reg.test/team/app:v2"], false).await;
    let (bundle, second) = export_tar(
        &a.proxy,
        &Selection {
            since: Some(first.mark),
            ..Default::default()
        },
    );
    assert_eq!((second.manifests, second.tags, second.blobs), (1, 1, 2), "{second:?}");
    let text = String::from_utf8_lossy(&bundle);
    assert!(text.contains(&d2) && text.contains("reg.test/team/app:v2") && !text.contains("reg.test/team/app:v1"));
}

#[tokio::test]
async fn corrupt_and_truncated_bundles_are_refused_and_leave_the_store_as_it_was() {
    let reg = TestRegistry::start().await;
    let a = site(&reg, "").await;
    let (_, _, layers) = reg.put_image("team/app", "v1", &[50_000], 3);
    seed_all(&a.proxy, &["reg.test/team/app:v1"], false).await;
    let (bundle, _) = export_tar(&a.proxy, &Selection::default());

    let b = site(&reg, "offline = true").await;
    let before = store_files(&b.proxy);
    // A flipped byte inside the layer's content.
    let mut corrupt = bundle.clone();
    let layer_path = format!("blobs/sha256/{}", layers[0].trim_start_matches("sha256:"));
    let header = find(&corrupt, layer_path.as_bytes()).expect("the layer is in the bundle");
    corrupt[header + 512 + 100] ^= 0xff;
    let err = import_tar(&b.proxy, corrupt).unwrap_err().to_string();
    assert!(err.contains(&layers[0]), "{err}");
    assert_eq!(store_files(&b.proxy), before);

    let truncated = bundle[..bundle.len() / 2].to_vec();
    assert!(import_tar(&b.proxy, truncated).is_err());
    assert_eq!(store_files(&b.proxy), before);
    assert_eq!(get(&b.proxy.url("/v2/team/app/manifests/v1")).await.status, 404);
}

#[tokio::test]
async fn a_layout_with_only_a_tag_for_ref_name_is_placed_by_repository() {
    let reg = TestRegistry::start().await;
    let a = site(&reg, "").await;
    let (d, _, _) = reg.put_image("team/app", "v1", &[1000], 4);
    seed_all(&a.proxy, &["reg.test/team/app:v1"], false).await;
    let dir = tempfile::tempdir().unwrap();
    export::export(
        &a.proxy.app.cache.store,
        &Selection::default(),
        Output::Dir(dir.path().to_owned()),
        &Meter::none(),
    )
    .unwrap();
    // Rewrite index.json as skopeo writes it: ref.name is the bare tag, no other annotation.
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"stable"}}}}]}}"#,
        std::fs::metadata(
            dir.path()
                .join(format!("blobs/sha256/{}", d.trim_start_matches("sha256:")))
        )
        .unwrap()
        .len()
    );
    std::fs::write(dir.path().join("index.json"), index).unwrap();
    let b = site(&reg, "offline = true").await;
    let none = import::import(
        &b.proxy.app.cache.store,
        &b.proxy.app.upstreams,
        Source::Dir(dir.path().to_owned()),
        &Placement::default(),
        &Meter::none(),
    );
    assert!(none.unwrap_err().to_string().contains("--repository"));
    let placement = Placement {
        upstream: None,
        repository: Some("mirror/app".into()),
    };
    import::import(
        &b.proxy.app.cache.store,
        &b.proxy.app.upstreams,
        Source::Dir(dir.path().to_owned()),
        &placement,
        &Meter::none(),
    )
    .unwrap();
    let got = get(&b.proxy.url("/v2/mirror/app/manifests/stable")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("docker-content-digest"), Some(d.as_str()));
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The released binary, run as a server or as a command on a config.
struct Binary {
    config: std::path::PathBuf,
}

impl Binary {
    fn config(dir: &std::path::Path, name: &str, port: u16, body: &str) -> Binary {
        let config = dir.join(format!("{name}.toml"));
        let data = dir.join(format!("{name}-data"));
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = {:?}\n{body}",
                data.display().to_string()
            ),
        )
        .unwrap();
        Binary { config }
    }

    fn serve(&self, port: u16) -> std::process::Child {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_entrepot"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port);
        child
    }

    /// Runs a command, feeding it `stdin`; its stdout and stderr, asserting success.
    fn run(&self, args: &[&str], stdin: &[u8]) -> (Vec<u8>, String) {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_entrepot"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let stdin = stdin.to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = input.write_all(&stdin);
        });
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {stderr}");
        (out.stdout, stderr)
    }
}

/// Export and import with both servers running, through their operator sockets: a tar on
/// standard output into a running offline site on standard input, and a layout directory.
#[test]
fn export_and_import_through_running_servers() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reg = rt.block_on(TestRegistry::start());
    let (image, _, _) = reg.put_image("team/app", "v1", &[3000, 70_000], 5);
    let (a_port, b_port) = (free_port(), free_port());
    let a = Binary::config(dir.path(), "a", a_port, &upstream("reg.test", &reg.url(), ""));
    let offline = format!("offline = true\n{}", upstream("reg.test", "http://127.0.0.1:9", ""));
    let b = Binary::config(dir.path(), "b", b_port, &offline);
    let mut site_a = a.serve(a_port);
    let mut site_b = b.serve(b_port);

    let (_, seeded) = a.run(&["seed", "reg.test/team/app:v1"], b"");
    let line = seeded
        .lines()
        .find(|l| l.starts_with("[1/1] done: reg.test/team/app:v1 ("))
        .unwrap_or_default();
    assert!(
        line.contains(" KiB at ") && line.ends_with("/s)"),
        "bytes and rate: {seeded}"
    );
    let (archive, summary) = a.run(&["export", "--out", "-"], b"");
    assert!(
        summary.contains("exported 1 manifest(s) (1 tag(s)), 3 blob(s)"),
        "{summary}"
    );
    assert_eq!(&archive[..10], b"oci-layout", "a tar whose first entry is oci-layout");
    // Progress, in a pipe: plain lines, ending with what moved and how fast (no bar).
    let moved = summary.lines().find(|l| l.starts_with("export: ")).unwrap_or_default();
    assert!(
        moved.contains(" in ") && moved.ends_with("/s)") && !summary.contains('\r'),
        "{summary}"
    );
    let layout = dir.path().join("layout");
    let (_, told) = a.run(&["export", "--out", layout.to_str().unwrap()], b"");
    assert!(layout.join("index.json").is_file());
    assert!(told.contains("progress in its log"), "{told}");

    let (imported, told) = b.run(&["import", "-"], &archive);
    assert!(
        told.lines().any(|l| l.starts_with("import: ") && l.ends_with("/s)")),
        "{told}"
    );
    let imported = String::from_utf8_lossy(&imported);
    assert!(
        imported.contains("1 manifest(s), 1 tag(s), 3 new blob(s)"),
        "{imported}"
    );
    let (again, _) = b.run(&["import", layout.to_str().unwrap()], b"");
    assert!(String::from_utf8_lossy(&again).contains("0 new blob(s)"));

    let metrics = rt.block_on(get(&format!("http://127.0.0.1:{b_port}/metrics")));
    let metrics = String::from_utf8_lossy(metrics.bytes()).into_owned();
    let stored: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("entrepot_store_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(
        stored >= 73_000.0,
        "imported blobs count in the store's bytes: {stored}"
    );
    let served = rt.block_on(get(&format!("http://127.0.0.1:{b_port}/v2/team/app/manifests/v1")));
    assert_eq!(served.status, 200);
    assert_eq!(served.header("docker-content-digest"), Some(image.as_str()));
    for child in [&mut site_a, &mut site_b] {
        let _ = child.kill();
        let _ = child.wait();
    }
}
