//! `require_signature`: cosign signatures made here (keys and signatures by `openssl`, not
//! by entrepot's code), pushed to a real docker-registry in both forms cosign stores them
//! (the `sha256-<hex>.sig` tag, and a Sigstore bundle referrer through the referrers tag
//! schema, docker-registry 2.8 having no referrers API), and judged by an enforcing entrepot
//! in front of it; then the same verdicts offline, on a site that imported the export.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::support::*;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const IN_TOTO: &str = "application/vnd.in-toto+json";
const ACCEPT_ALL: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

/// A key pair made by openssl: `ec` (P-256, cosign's default), `rsa` or `ed25519`.
struct Key {
    kind: &'static str,
    private: PathBuf,
    public: PathBuf,
}

impl Key {
    fn new(dir: &Path, name: &str, kind: &'static str) -> Key {
        let private = dir.join(format!("{name}.key"));
        let public = dir.join(format!("{name}.pub"));
        let mut gen = Command::new("openssl");
        match kind {
            "ec" => gen.args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
            "rsa" => gen.args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
            "ed25519" => gen.args(["genpkey", "-algorithm", "ed25519"]),
            other => panic!("no key kind {other}"),
        };
        run(gen.arg("-out").arg(&private));
        run(Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public));
        Key { kind, private, public }
    }

    /// A signature over `message`, base64, as cosign writes it: ECDSA (DER) and RSA
    /// (PKCS#1 v1.5) over SHA-256, Ed25519 over the message itself.
    fn sign(&self, message: &[u8]) -> String {
        let dir = self.private.parent().unwrap();
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let (msg, sig) = (dir.join(format!("msg-{n}")), dir.join(format!("sig-{n}")));
        std::fs::write(&msg, message).unwrap();
        let mut cmd = Command::new("openssl");
        if self.kind == "ed25519" {
            cmd.args(["pkeyutl", "-sign", "-rawin", "-inkey"])
                .arg(&self.private)
                .arg("-in");
        } else {
            cmd.args(["dgst", "-sha256", "-sign"])
                .arg(&self.private)
                .arg("-out")
                .arg(&sig);
        }
        cmd.arg(&msg);
        if self.kind == "ed25519" {
            cmd.arg("-out").arg(&sig);
        }
        run(&mut cmd);
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&sig).unwrap())
    }
}

/// Pushes to the registry with curl, as a signing tool would.
struct Registry {
    addr: String,
}

impl Registry {
    fn blob(&self, repo: &str, bytes: &[u8]) -> (String, usize) {
        (push_blob(&self.addr, repo, bytes), bytes.len())
    }

    fn manifest(&self, repo: &str, reference: &str, media_type: &str, body: &str) -> String {
        push_manifest(&self.addr, repo, reference, media_type, body)
    }

    /// A tag's digest, media type and size, as the registry answers it.
    fn resolve(&self, repo: &str, tag: &str) -> (String, String, usize) {
        let a = fetch(
            &format!("http://{}/v2/{repo}/manifests/{tag}", self.addr),
            Some(ACCEPT_ALL),
        );
        assert_eq!(a.status, 200, "{repo}:{tag}: {a:?}");
        (a.digest.unwrap(), a.content_type.unwrap(), a.body.len())
    }

    /// cosign's tag form: one manifest under `sha256-<hex>.sig`, a layer per signature.
    fn sig_tag(&self, repo: &str, subject: &str, signatures: &[(Vec<u8>, String)]) {
        let (config, config_size) = self.blob(
            repo,
            br#"{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        );
        let layers: Vec<String> = signatures
            .iter()
            .map(|(payload, signature)| {
                let (d, size) = self.blob(repo, payload);
                format!(
                    r#"{{"mediaType":"{SIMPLE_SIGNING}","digest":"{d}","size":{size},"annotations":{{"dev.cosignproject.cosign/signature":"{signature}"}}}}"#
                )
            })
            .collect();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_size}}},"layers":[{}]}}"#,
            layers.join(",")
        );
        let tag = format!("{}.sig", subject.replace(':', "-"));
        self.manifest(repo, &tag, OCI_MANIFEST, &manifest);
    }

    /// cosign 3's form: a Sigstore bundle referrer, listed under the referrers tag schema.
    fn bundle_referrer(&self, repo: &str, subject: (&str, &str, usize), bundle: &str) {
        let (empty, _) = self.blob(repo, b"{}");
        let (layer, size) = self.blob(repo, bundle.as_bytes());
        let (digest, media_type, subject_size) = subject;
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{BUNDLE}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[{{"mediaType":"{BUNDLE}","digest":"{layer}","size":{size}}}],"subject":{{"mediaType":"{media_type}","digest":"{digest}","size":{subject_size}}}}}"#
        );
        let referrer = self.manifest(
            repo,
            &format!("bundle-{}", &sha256_hex(bundle.as_bytes())[..12]),
            OCI_MANIFEST,
            &manifest,
        );
        let list = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{referrer}","size":{},"artifactType":"{BUNDLE}"}}]}}"#,
            manifest.len()
        );
        self.manifest(repo, &digest.replace(':', "-"), OCI_INDEX, &list);
    }
}

/// cosign's simple-signing payload for a digest.
fn payload(digest: &str) -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"registry.sig.test/x"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    )
    .into_bytes()
}

/// A cosign 3 signature bundle: a DSSE envelope around an in-toto statement on `digest`.
fn dsse_bundle(key: &Key, digest: &str) -> String {
    let statement = format!(
        r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"name":"registry.sig.test/x","digest":{{"sha256":"{}"}}}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{{}}}}"#,
        digest.trim_start_matches("sha256:")
    );
    let mut pae = format!("DSSEv1 {} {IN_TOTO} {} ", IN_TOTO.len(), statement.len()).into_bytes();
    pae.extend_from_slice(statement.as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(&statement);
    format!(
        r#"{{"mediaType":"{BUNDLE}","verificationMaterial":{{"publicKey":{{"hint":""}}}},"dsseEnvelope":{{"payload":"{b64}","payloadType":"{IN_TOTO}","signatures":[{{"sig":"{}","keyid":""}}]}}}}"#,
        key.sign(&pae)
    )
}

fn policy(keys: &[&Key]) -> String {
    let paths: Vec<String> = keys
        .iter()
        .map(|k| format!("{:?}", k.public.display().to_string()))
        .collect();
    format!(
        "[[policy]]\nname = \"signed-only\"\naction = \"allow\"\nrepository = \"signed/*\"\nrequire_signature = {{ cosign_keys = [{}] }}\n",
        paths.join(", ")
    )
}

fn manifest_status(entrepot: &str, repo: &str, reference: &str) -> Answer {
    fetch(
        &format!("http://{entrepot}/v2/{repo}/manifests/{reference}"),
        Some(ACCEPT_ALL),
    )
}

fn assert_refused(a: &Answer, why: &str) {
    assert_eq!(a.status, 403, "{a:?}");
    let text = a.text();
    assert!(
        text.contains("DENIED") && text.contains("signed-only") && text.contains(why),
        "{text}"
    );
}

/// skopeo copies through entrepot; returns whether it could and what it said.
fn skopeo_copy(entrepot: &str, image: &str, out: &Path, all: bool) -> (bool, String) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--src-tls-verify=false"]);
    if all {
        cmd.arg("--all");
    }
    let o = cmd
        .arg(format!("docker://{entrepot}/{image}"))
        .arg(format!("dir:{}", out.display()))
        .output()
        .unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn only_images_signed_by_a_trusted_key_are_served_online_and_after_import_offline() {
    if !tools_present(&["docker-registry", "skopeo", "openssl", "curl"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_registry, registry_addr) = start_registry(dir, "docker-registry", &dir.join("registry-data"), "");
    let reg = Registry { addr: registry_addr };
    let layout = build_layout(dir);
    let repos = [
        ("ecdsa", "single"),
        ("rsa", "single"),
        ("bundle", "multi"),
        ("other-key", "single"),
        ("other-digest", "single"),
        ("tampered", "single"),
        ("unsigned", "single"),
        ("two", "single"),
        ("late", "single"),
    ];
    for (repo, image) in repos {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--dest-tls-verify=false"]);
        if image == "multi" {
            cmd.arg("--all");
        }
        run(cmd
            .arg(format!("oci:{}:{image}", layout.display()))
            .arg(format!("docker://{}/signed/{repo}:v1", reg.addr)));
    }
    let (trusted, rsa, ed, stranger) = (
        Key::new(dir, "trusted", "ec"),
        Key::new(dir, "rsa", "rsa"),
        Key::new(dir, "ed", "ed25519"),
        Key::new(dir, "stranger", "ec"),
    );
    let (single, _, _) = reg.resolve("signed/ecdsa", "v1");
    let (multi, multi_type, multi_size) = reg.resolve("signed/bundle", "v1");
    let p = payload(&single);
    reg.sig_tag("signed/ecdsa", &single, &[(p.clone(), trusted.sign(&p))]);
    reg.sig_tag("signed/rsa", &single, &[(p.clone(), rsa.sign(&p))]);
    reg.bundle_referrer(
        "signed/bundle",
        (&multi, &multi_type, multi_size),
        &dsse_bundle(&ed, &multi),
    );
    reg.sig_tag("signed/other-key", &single, &[(p.clone(), stranger.sign(&p))]);
    let elsewhere = payload(&multi);
    reg.sig_tag(
        "signed/other-digest",
        &single,
        &[(elsewhere.clone(), trusted.sign(&elsewhere))],
    );
    let mut changed = p.clone();
    changed.extend_from_slice(b" ");
    reg.sig_tag("signed/tampered", &single, &[(changed, trusted.sign(&p))]);
    reg.sig_tag(
        "signed/two",
        &single,
        &[(p.clone(), stranger.sign(&p)), (p.clone(), ed.sign(&p))],
    );

    let body = format!(
        "tag_ttl = \"1s\"\nnegative_ttl = \"1s\"\n[[upstream]]\nname = \"registry.sig.test\"\nurl = \"http://{}\"\n{}",
        reg.addr,
        policy(&[&trusted, &rsa, &ed])
    );
    let (site_a, addr, config) = start_entrepot(dir, "entrepot", &body);

    // Signed: skopeo copies them, byte for byte what the registry holds.
    for (repo, all) in [("ecdsa", false), ("bundle", true)] {
        let (through, direct) = (dir.join(format!("through-{repo}")), dir.join(format!("direct-{repo}")));
        let (ok, said) = skopeo_copy(&addr, &format!("signed/{repo}:v1"), &through, all);
        assert!(ok, "signed/{repo}: {said}\n{}", site_a.log_text());
        skopeo_to_dir(&format!("{}/signed/{repo}:v1", reg.addr), &direct, all);
        assert!(dir_contents(&through) == dir_contents(&direct), "signed/{repo} differs");
    }
    for repo in ["rsa", "two"] {
        let a = manifest_status(&addr, &format!("signed/{repo}"), "v1");
        assert_eq!(a.status, 200, "signed/{repo}: {a:?}\n{}", site_a.log_text());
    }
    // Refused, each for its own reason; skopeo hears it.
    let (ok, said) = skopeo_copy(&addr, "signed/unsigned:v1", &dir.join("unsigned"), false);
    assert!(!ok && said.contains("no cosign signature found"), "{said}");
    let refusals = [
        ("unsigned", "no cosign signature found"),
        ("other-key", "no signature verifies with a trusted key"),
        ("tampered", "no signature verifies with a trusted key"),
        ("other-digest", &format!("is for {multi}, not this digest")),
        ("late", "no cosign signature found"),
    ];
    for (repo, why) in refusals {
        assert_refused(&manifest_status(&addr, &format!("signed/{repo}"), "v1"), why);
        // By digest too: the verdict is on the digest, not on the tag.
        assert_refused(&manifest_status(&addr, &format!("signed/{repo}"), &single), why);
    }
    // A blob of a refused image is never fetched through it.
    let blobs = fetch(&format!("http://{addr}/v2/signed/unsigned/blobs/{single}"), None);
    assert_ne!(blobs.status, 200, "{blobs:?}");

    // Signed upstream after the refusal: served once the refusal's TTL (negative_ttl) passes.
    reg.sig_tag("signed/late", &single, &[(p.clone(), trusted.sign(&p))]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = manifest_status(&addr, "signed/late", "v1");
        if a.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "signed/late still refused: {a:?}");
        std::thread::sleep(Duration::from_millis(250));
    }

    // policy check: the index and each child, with the signature verdict.
    let check = entrepot(&["policy", "check", "registry.sig.test/signed/bundle:v1"], &config);
    assert!(
        check.contains("signature: verified: signed with") && check.contains("ed.pub"),
        "{check}"
    );
    assert_eq!(check.matches("listed by the signed index").count(), 2, "{check}");
    let metrics = fetch(&format!("http://{addr}/metrics"), None).text();
    for outcome in ["verified", "unsigned", "unknown_key", "wrong_digest"] {
        let series = format!("entrepot_signature_verdicts_total{{rule=\"signed-only\",outcome=\"{outcome}\"}}");
        assert!(metrics.contains(&series), "{series} missing");
    }

    // Export by tag: the signatures go with their subjects. An offline site with the same
    // policy reaches the same verdicts from what it imported.
    let bundle_tar = dir.join("signed.tar");
    let exported = entrepot(
        &["export", "--out", bundle_tar.to_str().unwrap(), "--tag", "v1"],
        &config,
    );
    assert!(exported.contains("exported"), "{exported}");
    let offline = format!(
        "offline = true\n[[upstream]]\nname = \"registry.sig.test\"\nurl = \"http://{}\"\n{}",
        reg.addr,
        policy(&[&trusted, &rsa, &ed])
    );
    let (b_addr, b_config) = entrepot_config(dir, "site-b", &offline);
    entrepot(&["import", bundle_tar.to_str().unwrap()], &b_config);
    let site_b = serve_entrepot(dir, "site-b", &b_config, &b_addr);
    for repo in ["ecdsa", "rsa", "two", "late"] {
        let a = manifest_status(&b_addr, &format!("signed/{repo}"), "v1");
        assert_eq!(a.status, 200, "offline signed/{repo}: {a:?}\n{}", site_b.log_text());
    }
    let (ok, said) = skopeo_copy(&b_addr, "signed/bundle:v1", &dir.join("offline-bundle"), true);
    assert!(ok, "offline signed/bundle: {said}\n{}", site_b.log_text());
    for (repo, why) in &refusals[..4] {
        assert_refused(&manifest_status(&b_addr, &format!("signed/{repo}"), "v1"), why);
    }
}
