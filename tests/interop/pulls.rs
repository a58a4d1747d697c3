use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::certs;
use crate::support::*;

#[test]
fn skopeo_pulls_through_entrepot_byte_identical_and_offline() {
    if !tools_present(&["docker-registry", "skopeo", "tar", "gzip"]) {
        return;
    }
    let mut w = world();
    let images = IMAGES;
    for (i, (image, all)) in images.iter().enumerate() {
        let direct = w.dir.join(format!("direct-{i}"));
        let via = w.dir.join(format!("via-{i}"));
        let via_prefix = w.dir.join(format!("via-prefix-{i}"));
        skopeo_to_dir(&format!("{}/{image}", w.registry_addr), &direct, *all);
        skopeo_to_dir(&format!("{}/{image}", w.entrepot_addr), &via, *all);
        skopeo_to_dir(
            &format!("{}/registry.interop.test/{image}", w.entrepot_addr),
            &via_prefix,
            *all,
        );
        let expected = dir_contents(&direct);
        assert!(expected.len() >= 3, "{image}: {} files", expected.len());
        assert!(
            dir_contents(&via) == expected,
            "{image}: content through entrepot differs\n{}",
            w.entrepot.log_text()
        );
        assert!(
            dir_contents(&via_prefix) == expected,
            "{image}: content through the path prefix differs"
        );

        let raw_direct = run(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/{image}", w.registry_addr),
        ]));
        let raw_via = run(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/{image}", w.entrepot_addr),
        ]));
        assert_eq!(raw_direct, raw_via, "{image}: manifest bytes differ");
        run(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/{image}", w.entrepot_addr),
        ]));
    }
    let docker_manifest = std::fs::read_to_string(w.dir.join("direct-1/manifest.json")).unwrap();
    assert!(
        docker_manifest.contains("application/vnd.docker.distribution.manifest.v2+json"),
        "the v2s2 image is Docker schema2"
    );

    // The upstream goes away: what was pulled is still served, by tag and by digest.
    w.registry.stop();
    for (i, (image, all)) in images.iter().enumerate() {
        let offline = w.dir.join(format!("offline-{i}"));
        skopeo_to_dir(&format!("{}/{image}", w.entrepot_addr), &offline, *all);
        assert!(
            dir_contents(&offline) == dir_contents(&w.dir.join(format!("direct-{i}"))),
            "{image}: offline copy differs"
        );
        let manifest = std::fs::read(w.dir.join(format!("direct-{i}/manifest.json"))).unwrap();
        let by_digest = format!(
            "{}/{}@sha256:{}",
            w.entrepot_addr,
            image.split(':').next().unwrap(),
            sha256_hex(&manifest)
        );
        run(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{by_digest}"),
        ]));
    }
    let log = std::fs::read_to_string(&w.entrepot.log).unwrap();
    assert!(log.contains("serving stale tag"), "stale serving was logged\n{log}");
}

#[test]
fn containerd_pulls_through_entrepot_as_a_mirror() {
    if !tools_present(&["docker-registry", "skopeo", "containerd", "ctr", "tar", "gzip"]) {
        return;
    }
    let w = world();
    let containerd = Containerd::start(&w.dir);
    // The registry host's own server is unreachable: only the mirror can serve the pull.
    containerd.mirror("registry.interop.test", &w.entrepot_addr);
    for image in [
        "registry.interop.test/interop/oci:v1",
        "registry.interop.test/interop/multi:v1",
        "registry.interop.test/interop/docker:v1",
    ] {
        containerd.pull(image);
    }
    let listed = containerd.ctr(&["images", "ls"]);
    let expected = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/interop/multi:v1", w.registry_addr),
    ]));
    let multi_digest = format!("sha256:{}", sha256_hex(expected.as_bytes()));
    assert!(
        listed.contains(&multi_digest),
        "containerd holds the index by its upstream digest:\n{listed}"
    );
    let log = std::fs::read_to_string(&w.entrepot.log).unwrap();
    assert!(
        log.contains("path=/v2/interop/multi/manifests/v1"),
        "containerd's requests reached entrepot:\n{log}"
    );
    drop(containerd);
}

#[test]
fn two_sites_carry_content_on_disk_and_serve_it_with_the_upstream_gone() {
    if !tools_present(&["docker-registry", "skopeo", "umoci", "tar", "gzip"]) {
        return;
    }
    let mut w = world();
    let images = IMAGES;
    for (i, (image, all)) in images.iter().enumerate() {
        skopeo_to_dir(
            &format!("{}/{image}", w.registry_addr),
            &w.dir.join(format!("direct-{i}")),
            *all,
        );
    }

    // Site A: seed and export the archive through the running server (its operator
    // socket), then export a layout directory with the server stopped.
    let refs: Vec<String> = images
        .iter()
        .map(|(i, _)| format!("registry.interop.test/{i}"))
        .collect();
    let mut seed_args = vec!["seed"];
    seed_args.extend(refs.iter().map(String::as_str));
    let seeded = entrepot(&seed_args, &w.entrepot_config);
    assert!(seeded.contains("3 reference(s), 0 failed"), "{seeded}");
    let bundle = w.dir.join("site-b.tar");
    let layout = w.dir.join("site-b-layout");
    let exported = entrepot(&["export", "--out", bundle.to_str().unwrap()], &w.entrepot_config);
    assert!(exported.contains("3 tag(s)"), "{exported}");
    w.entrepot.terminate();
    let stopped = entrepot(&["export", "--out", layout.to_str().unwrap()], &w.entrepot_config);
    assert_eq!(
        stopped.lines().next(),
        exported.lines().next(),
        "the same content either way"
    );
    w.registry.stop();

    // Other tools read what entrepot wrote.
    let from_archive = w.dir.join("from-archive");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!(
            "oci-archive:{}:registry.interop.test/interop/oci:v1",
            bundle.display()
        ))
        .arg(format!("dir:{}", from_archive.display())));
    assert!(
        dir_contents(&from_archive) == dir_contents(&w.dir.join("direct-0")),
        "skopeo reads the exported archive byte-identical"
    );
    let listed = run(Command::new("umoci").args(["ls", "--layout"]).arg(&layout));
    assert!(listed.contains("registry.interop.test/interop/multi:v1"), "{listed}");
    let unpacked = w.dir.join("unpacked");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:registry.interop.test/interop/oci:v1", layout.display()))
        .arg(&unpacked));
    assert_eq!(
        std::fs::read_to_string(unpacked.join("rootfs/etc/arch")).unwrap(),
        "amd64"
    );

    // Site B: no upstream at all.
    let offline = format!(
        "offline = true\n[[upstream]]\nname = \"registry.interop.test\"\nurl = \"http://{}\"\n",
        w.registry_addr
    );
    let (b_addr, b_config) = entrepot_config(&w.dir, "site-b", &offline);
    let imported = entrepot(&["import", bundle.to_str().unwrap()], &b_config);
    assert!(imported.contains("3 tag(s)"), "{imported}");
    let site_b = serve_entrepot(&w.dir, "site-b", &b_config, &b_addr);
    for (i, (image, all)) in images.iter().enumerate() {
        let out = w.dir.join(format!("site-b-{i}"));
        skopeo_to_dir(&format!("{b_addr}/{image}"), &out, *all);
        assert!(
            dir_contents(&out) == dir_contents(&w.dir.join(format!("direct-{i}"))),
            "{image} from site B differs\n{}",
            site_b.log_text()
        );
    }

    // An archive skopeo made imports too, placed with --repository, into a running site
    // (through its operator socket).
    let skopeo_archive = w.dir.join("skopeo.tar");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("dir:{}", w.dir.join("direct-0").display()))
        .arg(format!("oci-archive:{}:v7", skopeo_archive.display())));
    let (c_addr, c_config) = entrepot_config(&w.dir, "site-c", &offline);
    let _site_c = serve_entrepot(&w.dir, "site-c", &c_config, &c_addr);
    let imported = entrepot(
        &[
            "import",
            "--repository",
            "mirrored/oci",
            skopeo_archive.to_str().unwrap(),
        ],
        &c_config,
    );
    assert!(imported.contains("1 manifest(s)"), "{imported}");
    let via_c = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{c_addr}/mirrored/oci:v7"),
    ]));
    let in_archive = run(Command::new("skopeo")
        .arg("inspect")
        .arg("--raw")
        .arg(format!("oci-archive:{}:v7", skopeo_archive.display())));
    assert_eq!(via_c, in_archive);
}

#[test]
fn skopeo_pulls_over_tls_with_a_ca_the_test_makes() {
    if !tools_present(&["docker-registry", "skopeo", "openssl", "tar", "gzip"]) {
        return;
    }
    let w = world();
    let pki = w.dir.join("pki");
    certs::server_pki(&pki);
    // skopeo reads every *.crt of a directory as a CA.
    let trust = w.dir.join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(pki.join("ca.crt"), trust.join("ca.crt")).unwrap();

    let tls = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n[[upstream]]\nname = \"registry.interop.test\"\nurl = \"http://{}\"\n",
        pki.join("server.crt").display(),
        pki.join("server.key").display(),
        w.registry_addr
    );
    let (server, addr, _) = start_entrepot(&w.dir, "entrepot-tls", &tls);
    let direct = w.dir.join("direct");
    skopeo_to_dir(&format!("{}/interop/oci:v1", w.registry_addr), &direct, false);
    let over_tls = w.dir.join("over-tls");
    run(Command::new("skopeo")
        .args(["copy", "--src-cert-dir"])
        .arg(&trust)
        .arg(format!("docker://{addr}/interop/oci:v1"))
        .arg(format!("dir:{}", over_tls.display())));
    assert!(
        dir_contents(&over_tls) == dir_contents(&direct),
        "content over TLS differs\n{}",
        server.log_text()
    );
    // Without the CA, skopeo refuses the certificate.
    let untrusted = Command::new("skopeo")
        .args(["inspect", &format!("docker://{addr}/interop/oci:v1")])
        .output()
        .unwrap();
    assert!(!untrusted.status.success());

    // New certificate files from another CA, and SIGHUP: new connections get them.
    certs::make_ca(&pki, "ca2");
    certs::make_cert(&pki, "ca2", "server", "serverAuth");
    let trust2 = w.dir.join("trust2");
    std::fs::create_dir_all(&trust2).unwrap();
    std::fs::copy(pki.join("ca2.crt"), trust2.join("ca2.crt")).unwrap();
    run(Command::new("kill").args(["-HUP", &server.child.id().to_string()]));
    let inspect = |trust: &Path| {
        let target = format!("docker://{addr}/interop/oci:v1");
        Command::new("skopeo")
            .arg("inspect")
            .arg("--cert-dir")
            .arg(trust)
            .arg(target)
            .output()
            .unwrap()
            .status
            .success()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !inspect(&trust2) {
        assert!(
            Instant::now() < deadline,
            "the reloaded certificate is never served\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!inspect(&trust), "the old certificate is gone");
}

#[test]
fn an_upstream_signed_by_a_private_ca_is_trusted_through_ca_file() {
    if !tools_present(&["docker-registry", "skopeo", "openssl", "tar", "gzip"]) {
        return;
    }
    let w = world();
    let pki = w.dir.join("upstream-pki");
    certs::server_pki(&pki);
    // A second registry over TLS, on the storage the first one was seeded into.
    let tls = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        pki.join("server.crt").display(),
        pki.join("server.key").display()
    );
    let (_tls_registry, tls_addr) = start_registry(&w.dir, "registry-tls", &w.dir.join("registry-data"), &tls);
    let upstream = format!("[[upstream]]\nname = \"private.test\"\nurl = \"https://{tls_addr}\"\n");
    let trusted = format!("{upstream}ca_file = \"{}\"\n", pki.join("ca.crt").display());
    let (trusting, trusting_addr, _) = start_entrepot(&w.dir, "trusting", &trusted);
    let (_untrusting, untrusting_addr, _) = start_entrepot(&w.dir, "untrusting", &upstream);
    let inspect = |addr: &str| {
        Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{addr}/interop/oci:v1"),
            ])
            .output()
            .unwrap()
    };
    let direct = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/interop/oci:v1", w.registry_addr),
    ]));
    let through = inspect(&trusting_addr);
    assert!(
        through.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&through.stderr),
        trusting.log_text()
    );
    assert_eq!(String::from_utf8_lossy(&through.stdout), direct);
    assert!(
        !inspect(&untrusting_addr).status.success(),
        "without ca_file the private CA is not trusted"
    );
}
