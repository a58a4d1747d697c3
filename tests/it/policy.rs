//! Filtering policy, end to end: the shipped examples as written, first-match order,
//! denied content never fetched, strict mode, required referrers, tag-bound decisions.

use crate::support::registry::{DOCKER_MANIFEST, OCI_INDEX};
use crate::support::*;

const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
const SIF_CONFIG: &str = "application/vnd.sylabs.sif.config.v1+json";
const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
const COSIGN: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

async fn setup(policy: &str) -> (tempfile::TempDir, TestRegistry, TestProxy) {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start_with(Options {
        referrers_api: true,
        ..Default::default()
    })
    .await;
    let ups = format!("{}{policy}\n", upstream("reg.test", &reg.url(), ""));
    let proxy = TestProxy::start(dir.path(), "tag_ttl = \"0s\"", &ups).await;
    (dir, reg, proxy)
}

fn assert_denied(got: &Got, reason_part: &str) {
    assert_eq!(got.status, 403, "{:?}", got.body);
    assert_eq!(got.error_code(), "DENIED");
    let message = got.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains(reason_part), "{message}");
}

#[tokio::test]
async fn shipped_examples_work_as_written() {
    // The signing example names the key where an operator puts it; here, a key of our own.
    let keys = tempfile::tempdir().unwrap();
    let key = CosignKey::new();
    let key_path = keys.path().join("cosign.pub");
    key.write_pem(&key_path);
    let (_dir, reg, proxy) = setup(&shipped_policy_examples(&key_path)).await;

    // Signed by our key only.
    reg.put_artifact("prod/app", Some("v1"), IMAGE_CONFIG, &[LAYER]);
    assert_denied(
        &get(&proxy.url("/v2/prod/app/manifests/v1")).await,
        "signed-only requires a cosign signature",
    );
    let (stranger, stranger_bytes, _) = reg.put_artifact("prod/stranger", Some("v1"), IMAGE_CONFIG, &[LAYER]);
    put_cosign_referrer(
        &reg,
        "prod/stranger",
        &stranger,
        stranger_bytes.len(),
        &CosignKey::new(),
    );
    assert_denied(
        &get(&proxy.url("/v2/prod/stranger/manifests/v1")).await,
        "no signature verifies with a trusted key",
    );
    let (signed, signed_bytes, _) = reg.put_artifact("prod/signed", Some("v1"), IMAGE_CONFIG, &[LAYER]);
    put_cosign_referrer(&reg, "prod/signed", &signed, signed_bytes.len(), &key);
    assert_eq!(get(&proxy.url("/v2/prod/signed/manifests/v1")).await.status, 200);
    // An SBOM before a release is served.
    let (release, release_bytes, _) = reg.put_artifact("release/app", Some("v1"), IMAGE_CONFIG, &[LAYER]);
    assert_denied(
        &get(&proxy.url("/v2/release/app/manifests/v1")).await,
        "with-sbom requires a referrer",
    );
    reg.put_referrer("release/app", &release, release_bytes.len(), "application/spdx+json");
    assert_eq!(get(&proxy.url("/v2/release/app/manifests/v1")).await.status, 200);

    // Singularity: denied, and its blobs never fetched.
    let (_, _, sif_blobs) = reg.put_artifact(
        "lab/sim",
        Some("v1"),
        SIF_CONFIG,
        &["application/vnd.sylabs.sif.layer.v1.sif"],
    );
    assert_denied(
        &get(&proxy.url("/v2/lab/sim/manifests/v1")).await,
        "SIF images are not allowed here",
    );
    // Foreign layers: denied.
    reg.put_artifact("win/app", Some("v1"), IMAGE_CONFIG, &[LAYER, FOREIGN]);
    assert_denied(
        &get(&proxy.url("/v2/win/app/manifests/v1")).await,
        "foreign and non-distributable",
    );

    // The charts/ tree: images and Helm charts in, anything else out.
    reg.put_artifact("charts/app", Some("image"), IMAGE_CONFIG, &[LAYER]);
    reg.put_artifact(
        "charts/app",
        Some("chart"),
        HELM_CONFIG,
        &["application/vnd.cncf.helm.chart.content.v1.tar+gzip"],
    );
    reg.put_artifact("charts/app", Some("wasm"), WASM_CONFIG, &["application/wasm"]);
    assert_eq!(get(&proxy.url("/v2/charts/app/manifests/image")).await.status, 200);
    assert_eq!(get(&proxy.url("/v2/charts/app/manifests/chart")).await.status, 200);
    assert_denied(
        &get(&proxy.url("/v2/charts/app/manifests/wasm")).await,
        "only container images and Helm charts",
    );
    // Outside the tree the same artifact is fine.
    reg.put_artifact("other/app", Some("wasm"), WASM_CONFIG, &["application/wasm"]);
    assert_eq!(get(&proxy.url("/v2/other/app/manifests/wasm")).await.status, 200);

    // Platforms: the index is served unchanged, the windows child is refused.
    let (amd, amd_bytes, _) = reg.put_artifact("multi/app", None, IMAGE_CONFIG, &[LAYER]);
    let (arm, arm_bytes, _) = reg.put_artifact("multi/app", None, IMAGE_CONFIG, &[LAYER, LAYER]);
    let (win, win_bytes, _) = reg.put_artifact("multi/app", None, IMAGE_CONFIG, &[LAYER, LAYER, LAYER]);
    let (index, index_bytes) = reg.put_index(
        "multi/app",
        "latest",
        &[
            (&amd, amd_bytes.len(), "linux/amd64"),
            (&arm, arm_bytes.len(), "linux/arm64"),
            (&win, win_bytes.len(), "windows/amd64"),
        ],
    );
    let got = request(
        http::Method::GET,
        &proxy.url("/v2/multi/app/manifests/latest"),
        &[("accept", OCI_INDEX)],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.bytes(), &index_bytes);
    assert_eq!(got.header("docker-content-digest"), Some(index.as_str()));
    assert_eq!(
        get(&proxy.url(&format!("/v2/multi/app/manifests/{amd}"))).await.status,
        200
    );
    assert_eq!(
        get(&proxy.url(&format!("/v2/multi/app/manifests/{arm}"))).await.status,
        200
    );
    assert_denied(
        &get(&proxy.url(&format!("/v2/multi/app/manifests/{win}"))).await,
        "only linux/amd64 and linux/arm64",
    );

    // None of the denied manifests' blobs was asked of the upstream.
    for b in &sif_blobs {
        assert_eq!(reg.count("GET", b) + reg.count("HEAD", b), 0);
    }
    let counts: std::collections::HashMap<_, _> = proxy.app.cache.decisions().into_iter().collect();
    assert_eq!(counts["no-sif"], (0, 1));
    assert_eq!(counts["other-platforms"], (0, 1));
    assert!(counts["charts-tree-content"].0 >= 2);
}

#[tokio::test]
async fn the_first_matching_rule_wins() {
    let allow_first = "[[policy]]\naction = \"allow\"\nrepository = \"team/*\"\n[[policy]]\naction = \"deny\"\nartifact_type = \"application/vnd.wasm.*\"\nreason = \"no wasm\"\n";
    let (_dir, reg, proxy) = setup(allow_first).await;
    reg.put_artifact("team/mod", Some("v1"), WASM_CONFIG, &["application/wasm"]);
    assert_eq!(get(&proxy.url("/v2/team/mod/manifests/v1")).await.status, 200);
    drop(proxy);

    let deny_first = "[[policy]]\naction = \"deny\"\nartifact_type = \"application/vnd.wasm.*\"\nreason = \"no wasm\"\n[[policy]]\naction = \"allow\"\nrepository = \"team/*\"\n";
    let (_dir, reg, proxy) = setup(deny_first).await;
    reg.put_artifact("team/mod", Some("v1"), WASM_CONFIG, &["application/wasm"]);
    assert_denied(&get(&proxy.url("/v2/team/mod/manifests/v1")).await, "no wasm");
}

#[tokio::test]
async fn repository_and_upstream_rules_refuse_before_any_upstream_contact() {
    let rules = "[[policy]]\naction = \"deny\"\nupstream = \"reg.test\"\nrepository = \"blocked/*\"\nreason = \"blocked tree\"\n";
    let (_dir, reg, proxy) = setup(rules).await;
    let (d, _, blobs) = reg.put_artifact("blocked/app", Some("v1"), IMAGE_CONFIG, &[LAYER]);
    for path in [
        "/v2/blocked/app/manifests/v1".to_owned(),
        format!("/v2/blocked/app/manifests/{d}"),
        format!("/v2/blocked/app/blobs/{}", blobs[1]),
        "/v2/blocked/app/tags/list".to_owned(),
        format!("/v2/blocked/app/referrers/{d}"),
    ] {
        assert_denied(&get(&proxy.url(&path)).await, "blocked tree");
    }
    assert_eq!(reg.total_requests(), 0, "nothing reached the upstream: {:?}", reg.log());
}

#[tokio::test]
async fn strict_mode_serves_only_blobs_of_allowed_manifests() {
    let rules = "blobs_require_manifest = true\n[[policy]]\naction = \"deny\"\nartifact_type = \"application/vnd.sylabs.sif.*\"\nreason = \"no SIF\"\n";
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let ups = format!(
        "{}{}",
        upstream("reg.test", &reg.url(), ""),
        rules.split_once('\n').unwrap().1
    );
    let proxy = TestProxy::start(dir.path(), rules.split_once('\n').unwrap().0, &ups).await;
    let (_, _, image_blobs) = reg.put_artifact("team/app", Some("v1"), IMAGE_CONFIG, &[LAYER]);
    let (_, _, sif_blobs) = reg.put_artifact("team/app", Some("sif"), SIF_CONFIG, &[LAYER]);
    let stray = reg.put_blob("not referenced by anything");

    // Before any manifest, no blob.
    assert_denied(
        &get(&proxy.url(&format!("/v2/team/app/blobs/{}", image_blobs[1]))).await,
        "blobs_require_manifest",
    );
    assert_eq!(get(&proxy.url("/v2/team/app/manifests/v1")).await.status, 200);
    for b in &image_blobs {
        assert_eq!(get(&proxy.url(&format!("/v2/team/app/blobs/{b}"))).await.status, 200);
        assert_eq!(head(&proxy.url(&format!("/v2/team/app/blobs/{b}"))).await.status, 200);
    }
    // Allowed in team/app is not allowed in another repository.
    assert_denied(
        &get(&proxy.url(&format!("/v2/team/other/blobs/{}", image_blobs[1]))).await,
        "blobs_require_manifest",
    );
    assert_eq!(get(&proxy.url("/v2/team/app/manifests/sif")).await.status, 403);
    assert_denied(
        &get(&proxy.url(&format!("/v2/team/app/blobs/{}", sif_blobs[1]))).await,
        "blobs_require_manifest",
    );
    assert_denied(
        &get(&proxy.url(&format!("/v2/team/app/blobs/{stray}"))).await,
        "blobs_require_manifest",
    );
    for b in sif_blobs.iter().skip(1).chain([&stray]) {
        assert_eq!(
            reg.count("GET", b) + reg.count("HEAD", b),
            0,
            "a refused blob reached the upstream"
        );
    }
}

#[tokio::test]
async fn a_required_referrer_gates_the_manifest() {
    let rules = "default_policy = \"deny\"\n";
    let policy = "[[policy]]\nname = \"signed\"\naction = \"allow\"\nrepository = \"prod/*\"\nrequire_referrer = \"application/vnd.dev.cosign.*\"\n";
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start_with(Options {
        referrers_api: true,
        ..Default::default()
    })
    .await;
    let proxy = TestProxy::start(
        dir.path(),
        &format!("{rules}tag_ttl = \"0s\""),
        &format!("{}{policy}", upstream("reg.test", &reg.url(), "")),
    )
    .await;
    let (d, bytes, _) = reg.put_artifact("prod/app", Some("v1"), IMAGE_CONFIG, &[LAYER]);
    assert_denied(
        &get(&proxy.url("/v2/prod/app/manifests/v1")).await,
        "requires a referrer",
    );
    reg.put_referrer("prod/app", &d, bytes.len(), COSIGN);
    assert_eq!(get(&proxy.url("/v2/prod/app/manifests/v1")).await.status, 200);
    reg.put_artifact("dev/app", Some("v1"), IMAGE_CONFIG, &[LAYER]);
    assert_denied(&get(&proxy.url("/v2/dev/app/manifests/v1")).await, "default_policy");
}

#[tokio::test]
async fn decisions_on_a_tag_hold_for_the_digest_it_resolved_to() {
    let rules = "default_policy = \"deny\"";
    let policy = "[[policy]]\naction = \"allow\"\ntag = \"v*\"\n";
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start().await;
    let proxy = TestProxy::start(
        dir.path(),
        rules,
        &format!("{}{policy}", upstream("reg.test", &reg.url(), "")),
    )
    .await;
    let (released, _, _) = reg.put_artifact("team/app", Some("v1"), IMAGE_CONFIG, &[LAYER]);
    let (unreleased, _, _) = reg.put_artifact("team/app", Some("nightly"), IMAGE_CONFIG, &[LAYER, LAYER]);
    assert_eq!(get(&proxy.url("/v2/team/app/manifests/v1")).await.status, 200);
    assert_eq!(
        get(&proxy.url(&format!("/v2/team/app/manifests/{released}")))
            .await
            .status,
        200
    );
    assert_eq!(get(&proxy.url("/v2/team/app/manifests/nightly")).await.status, 403);
    assert_eq!(
        get(&proxy.url(&format!("/v2/team/app/manifests/{unreleased}")))
            .await
            .status,
        403
    );

    // Children of an index allowed through a tag are reached with that tag.
    let (child, child_bytes, _) = reg.put_artifact("team/app", None, IMAGE_CONFIG, &[LAYER, LAYER, LAYER]);
    reg.put_index("team/app", "v2", &[(&child, child_bytes.len(), "linux/amd64")]);
    assert_eq!(
        get(&proxy.url(&format!("/v2/team/app/manifests/{child}"))).await.status,
        403,
        "not reached through a tag yet"
    );
    assert_eq!(get(&proxy.url("/v2/team/app/manifests/v2")).await.status, 200);
    assert_eq!(
        get(&proxy.url(&format!("/v2/team/app/manifests/{child}"))).await.status,
        200
    );
}

#[tokio::test]
async fn docker_manifests_are_judged_too() {
    let policy = "[[policy]]\naction = \"deny\"\nmedia_type = \"application/vnd.docker.distribution.manifest.v2+json\"\nreason = \"docker schema 2 refused here\"\n";
    let (_dir, reg, proxy) = setup(policy).await;
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{}","size":2}},"layers":[]}}"#,
        reg.put_blob("{}")
    );
    reg.put_manifest("team/old", Some("v1"), DOCKER_MANIFEST, body);
    assert_denied(&get(&proxy.url("/v2/team/old/manifests/v1")).await, "docker schema 2");
}

#[tokio::test]
async fn policy_check_explains_an_index_child_by_child() {
    let keys = tempfile::tempdir().unwrap();
    let key_path = keys.path().join("cosign.pub");
    CosignKey::new().write_pem(&key_path);
    let (_dir, reg, proxy) = setup(&shipped_policy_examples(&key_path)).await;
    let (amd, amd_bytes, amd_blobs) = reg.put_artifact("multi/app", None, IMAGE_CONFIG, &[LAYER]);
    let (win, win_bytes, _) = reg.put_artifact("multi/app", None, IMAGE_CONFIG, &[LAYER, LAYER]);
    reg.put_index(
        "multi/app",
        "latest",
        &[
            (&amd, amd_bytes.len(), "linux/amd64"),
            (&win, win_bytes.len(), "windows/amd64"),
        ],
    );
    let t = proxy.app.upstreams.resolve("multi/app", None).unwrap();
    let text = proxy.app.cache.explain(&t, "latest").await.unwrap();
    assert!(text.contains("reg.test/multi/app:latest"), "{text}");
    let amd_line = text.lines().find(|l| l.contains("linux/amd64")).unwrap();
    assert!(amd_line.contains("-> allow [rule linux-platforms]"), "{text}");
    let win_line = text.lines().find(|l| l.contains("windows/amd64")).unwrap();
    assert!(
        win_line.contains("-> deny") && win_line.contains("[rule other-platforms]"),
        "{text}"
    );
    for b in &amd_blobs {
        assert_eq!(reg.count("GET", b), 0, "policy check pulled a blob");
    }
}

/// A P-256 key made with ring, its public half as the PEM cosign writes, and signatures in
/// cosign's form (ASN.1 ECDSA over SHA-256, base64).
struct CosignKey(ring::signature::EcdsaKeyPair);

impl CosignKey {
    fn new() -> CosignKey {
        use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        CosignKey(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap())
    }

    fn write_pem(&self, path: &std::path::Path) {
        use base64::Engine;
        use ring::signature::KeyPair;
        // SubjectPublicKeyInfo: id-ecPublicKey, prime256v1, then the point.
        let mut der = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
        der.extend_from_slice(self.0.public_key().as_ref());
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        std::fs::write(
            path,
            format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n"),
        )
        .unwrap();
    }

    fn sign(&self, message: &[u8]) -> String {
        use base64::Engine;
        let sig = self.0.sign(&ring::rand::SystemRandom::new(), message).unwrap();
        base64::engine::general_purpose::STANDARD.encode(sig.as_ref())
    }
}

/// cosign's OCI 1.1 form: a referrer of artifact type `…cosign.artifact.sig.v1+json` whose
/// layer is the simple-signing payload, its signature in the layer's annotation.
fn put_cosign_referrer(
    reg: &TestRegistry,
    repo: &str,
    subject: &str,
    subject_size: usize,
    key: &CosignKey,
) -> (String, String) {
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"reg.test/{repo}"}},"image":{{"docker-manifest-digest":"{subject}"}},"type":"cosign container image signature"}},"optional":null}}"#
    );
    let payload_digest = reg.put_blob(payload.clone());
    let empty = reg.put_blob("{}");
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"{COSIGN}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"{payload_digest}","size":{},"annotations":{{"dev.cosignproject.cosign/signature":"{}"}}}}],"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{subject}","size":{subject_size}}}}}"#,
        payload.len(),
        key.sign(payload.as_bytes())
    );
    (
        reg.put_manifest(repo, None, "application/vnd.oci.image.manifest.v1+json", m),
        payload_digest,
    )
}

/// A registry with the referrers API, a key, and an entrepot whose rule `signed` requires
/// a signature by it under `prod/*` (`options` add to `require_signature`; `extra` opens
/// the config). The config parts are kept to start the proxy again.
struct SignedSite {
    dir: tempfile::TempDir,
    key: CosignKey,
    key_path: std::path::PathBuf,
    reg: TestRegistry,
    proxy: TestProxy,
    extra: String,
    upstreams: String,
}

async fn signed_site(options: &str, extra: &str) -> SignedSite {
    let dir = tempfile::tempdir().unwrap();
    let key = CosignKey::new();
    let key_path = dir.path().join("cosign.pub");
    key.write_pem(&key_path);
    let reg = TestRegistry::start_with(Options {
        referrers_api: true,
        ..Default::default()
    })
    .await;
    let upstreams = format!(
        "{}[[policy]]\nname = \"signed\"\naction = \"allow\"\nrepository = \"prod/*\"\nrequire_signature = {{ cosign_keys = [{:?}]{options} }}\n",
        upstream("reg.test", &reg.url(), ""),
        key_path.display().to_string()
    );
    let proxy = TestProxy::start(dir.path(), extra, &upstreams).await;
    SignedSite {
        dir,
        key,
        key_path,
        reg,
        proxy,
        extra: extra.to_owned(),
        upstreams,
    }
}

#[tokio::test]
async fn a_required_signature_is_verified_through_the_referrers_api_and_its_evidence_served() {
    let SignedSite {
        dir,
        key,
        key_path,
        reg,
        proxy,
        extra,
        upstreams,
    } = signed_site(
        "",
        "tag_ttl = \"0s\"\nnegative_ttl = \"0s\"\nblobs_require_manifest = true",
    )
    .await;
    let (child, child_bytes, blobs) = reg.put_artifact("prod/app", Some("amd64"), IMAGE_CONFIG, &[LAYER]);
    let (index, index_bytes) = reg.put_index("prod/app", "v1", &[(&child, child_bytes.len(), "linux/amd64")]);

    // Unsigned: refused, and neither its children nor its blobs are served.
    assert_denied(
        &get(&proxy.url("/v2/prod/app/manifests/v1")).await,
        "no cosign signature found",
    );
    assert_denied(
        &get(&proxy.url(&format!("/v2/prod/app/manifests/{child}"))).await,
        "no cosign signature found",
    );
    assert_eq!(reg.count("GET", "/blobs/"), 0, "no blob of a refused image is fetched");

    // Signed (the index, as cosign signs it): the index, its child and its blobs are served.
    let (signature, payload) = put_cosign_referrer(&reg, "prod/app", &index, index_bytes.len(), &key);
    assert_eq!(get(&proxy.url("/v2/prod/app/manifests/v1")).await.status, 200);
    assert_eq!(
        get(&proxy.url(&format!("/v2/prod/app/manifests/{child}"))).await.status,
        200
    );
    for b in &blobs {
        assert_eq!(get(&proxy.url(&format!("/v2/prod/app/blobs/{b}"))).await.status, 200);
    }
    // A client verifying for itself finds the signature through entrepot: the referrer, its
    // manifest and its payload, though the rule's own condition would refuse them.
    let listed = get(&proxy.url(&format!("/v2/prod/app/referrers/{index}"))).await;
    let listed = String::from_utf8_lossy(listed.bytes()).into_owned();
    assert!(listed.contains(&signature), "{listed}");
    assert_eq!(
        get(&proxy.url(&format!("/v2/prod/app/manifests/{signature}")))
            .await
            .status,
        200
    );
    assert_eq!(
        get(&proxy.url(&format!("/v2/prod/app/blobs/{payload}"))).await.status,
        200
    );

    // A verified digest is not verified again: more pulls ask nothing more about signatures.
    let asked = reg.count("GET", "/referrers/") + reg.count("GET", ".sig");
    for _ in 0..3 {
        assert_eq!(
            get(&proxy.url(&format!("/v2/prod/app/manifests/{index}"))).await.status,
            200
        );
    }
    assert_eq!(reg.count("GET", "/referrers/") + reg.count("GET", ".sig"), asked);

    // The key leaves the config: at the next start, what it verified is refused.
    proxy.stop().await;
    CosignKey::new().write_pem(&key_path);
    let proxy = TestProxy::start(dir.path(), &extra, &upstreams).await;
    assert_denied(
        &get(&proxy.url(&format!("/v2/prod/app/manifests/{index}"))).await,
        "no signature verifies with a trusted key",
    );
    assert_denied(
        &get(&proxy.url(&format!("/v2/prod/app/manifests/{child}"))).await,
        "no cosign signature found",
    );
}

#[tokio::test]
async fn each_child_requires_every_child_of_a_signed_index_to_carry_its_own_signature() {
    // The directory is bound: dropped, it would take the proxy's data with it.
    let SignedSite {
        dir: _dir,
        key,
        reg,
        proxy,
        ..
    } = signed_site(", each_child = true", "tag_ttl = \"0s\"\nnegative_ttl = \"0s\"").await;
    let (amd, amd_bytes, _) = reg.put_artifact("prod/app", None, IMAGE_CONFIG, &[LAYER]);
    let (arm, arm_bytes, _) = reg.put_artifact("prod/app", None, IMAGE_CONFIG, &[LAYER, LAYER]);
    let (index, index_bytes) = reg.put_index(
        "prod/app",
        "v1",
        &[
            (&amd, amd_bytes.len(), "linux/amd64"),
            (&arm, arm_bytes.len(), "linux/arm64"),
        ],
    );
    put_cosign_referrer(&reg, "prod/app", &index, index_bytes.len(), &key);
    put_cosign_referrer(&reg, "prod/app", &amd, amd_bytes.len(), &key);
    assert_eq!(get(&proxy.url("/v2/prod/app/manifests/v1")).await.status, 200);
    assert_eq!(
        get(&proxy.url(&format!("/v2/prod/app/manifests/{amd}"))).await.status,
        200
    );
    assert_denied(
        &get(&proxy.url(&format!("/v2/prod/app/manifests/{arm}"))).await,
        "no cosign signature found",
    );
}
