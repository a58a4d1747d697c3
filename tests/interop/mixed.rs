//! The traffic of a site: one entrepot on its default settings in front of a real
//! docker-registry, and clients with different `Accept` headers taking turns on it.
//!
//! What the upstream answers each `Accept` comes from distribution itself: every request
//! through entrepot is compared with the same request sent straight to the registry.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The `Accept` headers clients send: today's (every type), an old Docker engine's, CI
/// scripts' single types, and schema 1 only.
fn accepts() -> Vec<String> {
    vec![
        format!("{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_LIST}"),
        format!("{DOCKER_MANIFEST}, {DOCKER_LIST}"),
        DOCKER_MANIFEST.to_owned(),
        OCI_MANIFEST.to_owned(),
        OCI_INDEX.to_owned(),
        SCHEMA1_SIGNED.to_owned(),
    ]
}

/// Every `Accept` on every tag, through entrepot and straight from the registry: the same
/// status and digest, except where the registry falls back to Docker schema 1, which
/// entrepot answers with a clear 404 instead.
fn assert_negotiates_like_the_registry(entrepot: &str, registry: &str, tags: &[&str], log: &Proc) {
    for tag in tags {
        let (repo, reference) = tag.split_once(':').unwrap();
        for accept in accepts() {
            let path = format!("/v2/{repo}/manifests/{reference}");
            let direct = fetch(&format!("http://{registry}{path}"), Some(&accept));
            let via = fetch(&format!("http://{entrepot}{path}"), Some(&accept));
            let schema1 = direct
                .content_type
                .as_deref()
                .is_some_and(|c| c.contains("distribution.manifest.v1+"));
            let what = format!(
                "{tag} with Accept {accept:?}: registry {direct:?}\nentrepot {via:?}\n{}",
                log.log_text()
            );
            if schema1 {
                // Signed anew on every request: refused plainly, never taken for corruption.
                assert_eq!(via.status, 404, "{what}");
                let text = via.text();
                assert!(
                    text.contains("MANIFEST_UNKNOWN") && (text.contains("schema 1") || text.contains("Accept")),
                    "{what}"
                );
            } else if direct.status == 200 {
                assert_eq!((via.status, &via.digest), (200, &direct.digest), "{what}");
                assert_eq!(via.body, direct.body, "{what}");
            } else {
                // A refusal stays a refusal: the registry's 404, or for a conversion it
                // cannot make (400 MANIFEST_INVALID), the 404 of a type not accepted.
                assert_eq!(via.status, 404, "{what}");
                assert!(via.text().contains("MANIFEST_UNKNOWN"), "{what}");
                assert!(direct.status == 404 || via.text().contains("Accept"), "{what}");
            }
        }
    }
}

/// A narrow request of the kind that used to make a tag vanish for everybody.
fn narrow_request(entrepot: &str, tag: &str) {
    let (repo, reference) = tag.split_once(':').unwrap();
    let got = fetch(
        &format!("http://{entrepot}/v2/{repo}/manifests/{reference}"),
        Some(DOCKER_MANIFEST),
    );
    assert_eq!(
        got.status, 404,
        "an OCI manifest is not offered to a Docker-only client"
    );
}

fn oras_pull(target: &str, out: &Path) {
    let script = format!(
        "import oras.client\nc = oras.client.OrasClient(insecure=True)\nprint(c.pull(target={target:?}, outdir={:?}))\n",
        out.display().to_string()
    );
    run(Command::new("python3").arg("-c").arg(script));
}

fn oras_push(target: &str, dir: &Path, file: &str) {
    let script = format!(
        "import os, oras.client\nos.chdir({:?})\nc = oras.client.OrasClient(insecure=True)\nc.push(files=[{file:?}], target={target:?}, disable_path_validation=True)\n",
        dir.display().to_string()
    );
    run(Command::new("python3").arg("-c").arg(script));
}

/// podman with its own storage under `dir`.
fn podman(dir: &Path, args: &[&str]) -> String {
    run(Command::new("podman")
        .arg("--root")
        .arg(dir.join("podman/root"))
        .arg("--runroot")
        .arg(dir.join("podman/run"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ])
        .args(args))
}

fn raw_manifest(reference: &str) -> String {
    run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]))
}

#[test]
fn a_site_mixed_traffic_on_one_entrepot_in_front_of_a_real_registry() {
    let tools = [
        "docker-registry",
        "skopeo",
        "containerd",
        "ctr",
        "podman",
        "dockerd",
        "docker",
        "curl",
        "python3",
        "tar",
        "gzip",
    ];
    if !tools_present(&tools) || !python_module_present("oras.client") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_registry, reg) = start_registry(dir, "docker-registry", &dir.join("registry-data"), "");
    let layout = build_layout(dir);
    let oci = |tag: &str| format!("oci:{}:{tag}", layout.display());
    let push = |src: &str, dest: &str, extra: &[&str]| {
        run(Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .args(extra)
            .arg(src)
            .arg(format!("docker://{reg}/{dest}")));
    };
    push(&oci("single"), "interop/oci:v1", &[]);
    push(&oci("single"), "interop/docker:v1", &["--format", "v2s2"]);
    push(&oci("multi"), "interop/multi:v1", &["--all"]);
    push(&oci("multi"), "interop/dlist:v1", &["--all", "--format", "v2s2"]);
    std::fs::write(dir.join("chart.txt"), "an artifact, as oras pushes one").unwrap();
    oras_push(&format!("{reg}/interop/artifact:v1"), dir, "chart.txt");

    // The shipped defaults: only addresses and paths are set. The registry is also the
    // site's "Docker Hub", reached under another name, for the Docker Engine's mirror.
    let port = reg.rsplit(':').next().unwrap();
    let upstreams = format!(
        "default_upstream = \"docker.io\"\n[[upstream]]\nname = \"registry.interop.test\"\nurl = \"http://{reg}\"\n[[upstream]]\nname = \"docker.io\"\nurl = \"http://localhost:{port}\"\n"
    );
    let (entrepot, ep, _) = start_entrepot(dir, "entrepot", &upstreams);
    let tags = [
        "interop/oci:v1",
        "interop/docker:v1",
        "interop/multi:v1",
        "interop/dlist:v1",
    ];

    // A Docker-only client first: the registry refuses it the OCI manifest, and that
    // answer is about that client only.
    narrow_request(&ep, "interop/oci:v1");
    let full = fetch(&format!("http://{ep}/v2/interop/oci/manifests/v1"), Some(&accepts()[0]));
    assert_eq!(full.status, 200, "{:?}\n{}", full, entrepot.log_text());
    assert_negotiates_like_the_registry(&ep, &reg, &tags, &entrepot);

    // containerd's ctr, through a hosts.toml mirror, by the registry's configured name and
    // by its own host (containerd sends `?ns=<host>`). The hosts' own servers are
    // unreachable: each pull is entrepot's.
    let containerd = Containerd::start(dir);
    containerd.mirror("registry.interop.test", &ep);
    containerd.mirror(&reg, &ep);
    for tag in tags {
        narrow_request(&ep, "interop/oci:v1");
        containerd.pull(&format!("registry.interop.test/{tag}"));
        containerd.pull(&format!("{reg}/{tag}"));
    }

    // skopeo: byte-identical to the registry's own answers, every platform.
    for (i, tag) in tags.iter().enumerate() {
        narrow_request(&ep, "interop/oci:v1");
        let (direct, via) = (dir.join(format!("direct-{i}")), dir.join(format!("via-{i}")));
        skopeo_to_dir(&format!("{reg}/{tag}"), &direct, true);
        skopeo_to_dir(&format!("{ep}/registry.interop.test/{tag}"), &via, true);
        assert!(
            dir_contents(&via) == dir_contents(&direct),
            "{tag} differs\n{}",
            entrepot.log_text()
        );
    }

    // podman, by address.
    for tag in tags {
        narrow_request(&ep, "interop/oci:v1");
        podman(
            dir,
            &[
                "pull",
                "--tls-verify=false",
                &format!("{ep}/registry.interop.test/{tag}"),
            ],
        );
    }

    // oras asks for the OCI manifest type alone.
    narrow_request(&ep, "interop/oci:v1");
    let pulled = dir.join("oras-out");
    oras_pull(&format!("{ep}/registry.interop.test/interop/artifact:v1"), &pulled);
    assert_eq!(
        std::fs::read_to_string(pulled.join("chart.txt")).unwrap(),
        "an artifact, as oras pushes one"
    );

    // The Docker Engine, by address and as Docker Hub's registry mirror.
    let docker = Dockerd::start(dir, &ep);
    for tag in tags {
        narrow_request(&ep, "interop/oci:v1");
        docker.run(&["pull", &format!("{ep}/registry.interop.test/{tag}")]);
        docker.run(&["pull", tag]);
    }
    let config_digest = |tag: &str| {
        let m: serde_json::Value = serde_json::from_str(&raw_manifest(&format!("{reg}/{tag}"))).unwrap();
        m["config"]["digest"].as_str().unwrap().to_owned()
    };
    let id = docker.run(&["image", "inspect", "--format", "{{.Id}}", "interop/docker:v1"]);
    assert_eq!(
        id.trim(),
        config_digest("interop/docker:v1"),
        "the mirror served Docker Hub's name"
    );
    let log = std::fs::read_to_string(&entrepot.log).unwrap();
    assert!(
        log.contains("path=/v2/interop/docker/manifests/v1"),
        "the mirror was used"
    );

    // After all of them, every Accept still gets what the registry gives it.
    assert_negotiates_like_the_registry(&ep, &reg, &tags, &entrepot);

    // A tag re-pushed upstream is served at its new digest on the next pull.
    let before = raw_manifest(&format!("{ep}/registry.interop.test/interop/oci:v1"));
    push(&oci("multi"), "interop/oci:v1", &["--all"]);
    std::thread::sleep(Duration::from_millis(1100)); // the default tag_ttl
    let moved = raw_manifest(&format!("{ep}/registry.interop.test/interop/oci:v1"));
    assert_ne!(moved, before);
    assert_eq!(moved, raw_manifest(&format!("{reg}/interop/oci:v1")));
    containerd.pull("registry.interop.test/interop/oci:v1");
    podman(
        dir,
        &[
            "pull",
            "--tls-verify=false",
            &format!("{ep}/registry.interop.test/interop/oci:v1"),
        ],
    );

    // A blob cached from one repository, asked for through one that does not hold it: the
    // registry refuses it there, and so does entrepot.
    let arm_layer = {
        let index: serde_json::Value = serde_json::from_str(&raw_manifest(&format!("{reg}/interop/multi:v1"))).unwrap();
        let arm = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["platform"]["architecture"] == "arm64")
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_owned();
        let m: serde_json::Value = serde_json::from_str(&raw_manifest(&format!("{reg}/interop/multi@{arm}"))).unwrap();
        m["layers"][0]["digest"].as_str().unwrap().to_owned()
    };
    for (repo, held) in [("interop/multi", true), ("interop/docker", false)] {
        let direct = fetch(&format!("http://{reg}/v2/{repo}/blobs/{arm_layer}"), None);
        let via = fetch(
            &format!("http://{ep}/v2/registry.interop.test/{repo}/blobs/{arm_layer}"),
            None,
        );
        assert_eq!(direct.status, if held { 200 } else { 404 }, "the registry scopes blobs");
        assert_eq!(
            via.status,
            direct.status,
            "{repo}: {}\n{}",
            via.text(),
            entrepot.log_text()
        );
        if !held {
            assert!(via.text().contains("BLOB_UNKNOWN"), "{}", via.text());
        }
    }

    // No false integrity alarm for any of it.
    let metrics = fetch(&format!("http://{ep}/metrics"), None).text();
    assert!(metrics.contains("entrepot_digest_mismatches_total 0"), "{metrics}");
    let log = std::fs::read_to_string(&entrepot.log).unwrap();
    assert!(!log.contains("failed verification"), "{log}");
    drop(containerd);
}
