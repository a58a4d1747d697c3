//! Interop: real clients (skopeo, containerd's ctr) pull through the entrepot binary from a
//! real upstream (CNCF distribution, Debian's `docker-registry`), all on loopback.
//!
//! The tools come from the test command (`scripts/test` installs them). Run alone, these
//! tests skip when a tool is missing, unless `ENTREPOT_INTEROP=require`, which the test
//! command sets, so that CI cannot pass without running them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;

#[path = "common/certs.rs"]
mod certs;

/// A process this test started; killed (by its own handle) when dropped.
struct Proc {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Proc {
    fn start(name: &'static str, cmd: &mut Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { child, name, log }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, so that the process shuts down cleanly, then waits for it.
    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    fn log_text(&self) -> String {
        format!(
            "--- {} log ---\n{}",
            self.name,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tools_present(tools: &[&str]) -> bool {
    let missing: Vec<_> = tools.iter().filter(|t| which(t).is_none()).collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("ENTREPOT_INTEROP").as_deref() == Ok("require") {
        panic!("interop tools missing: {missing:?} (the test command installs them)");
    }
    eprintln!("SKIPPED: interop tools missing: {missing:?}");
    false
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (30 s at most) until `addr` accepts connections; `what` explains a failure.
fn wait_listening(addr: &str, what: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{addr} never listened\n{}", what.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A docker-registry storing under `storage`; `http_extra` goes into its `http:` section
/// (a `tls:` block). Returns the process and its address.
fn start_registry(dir: &Path, name: &'static str, storage: &Path, http_extra: &str) -> (Proc, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let config = dir.join(format!("{name}.yml"));
    let yaml = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{http_extra}",
        storage.display()
    );
    std::fs::write(&config, yaml).unwrap();
    let registry = Proc::start(
        name,
        Command::new("docker-registry").arg("serve").arg(&config),
        dir.join(format!("{name}.log")),
    );
    wait_listening(&addr, &registry);
    (registry, addr)
}

/// A config for the entrepot binary on a free port, its data under `dir/<name>-data`, with
/// `body` (upstreams, tls, …) appended. Returns the address and the config file.
fn entrepot_config(dir: &Path, name: &str, body: &str) -> (String, PathBuf) {
    let addr = format!("127.0.0.1:{}", free_port());
    let config = dir.join(format!("{name}.toml"));
    let data = dir.join(format!("{name}-data"));
    std::fs::write(
        &config,
        format!("listen = \"{addr}\"\ndata_dir = \"{}\"\n{body}", data.display()),
    )
    .unwrap();
    (addr, config)
}

/// `entrepot serve` with that config, once it listens.
fn serve_entrepot(dir: &Path, name: &'static str, config: &Path, addr: &str) -> Proc {
    let entrepot = Proc::start(
        name,
        Command::new(env!("CARGO_BIN_EXE_entrepot"))
            .arg("serve")
            .arg("--config")
            .arg(config),
        dir.join(format!("{name}.log")),
    );
    wait_listening(addr, &entrepot);
    entrepot
}

/// Both: a config and the server on it. Returns the process, its address and the config.
fn start_entrepot(dir: &Path, name: &'static str, body: &str) -> (Proc, String, PathBuf) {
    let (addr, config) = entrepot_config(dir, name, body);
    (serve_entrepot(dir, name, &config, &addr), addr, config)
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// An OCI layout with a single-arch image (`single`) and a two-platform index (`multi`),
/// whose layers are real gzip tarballs with correct diff_ids, so containerd can unpack them.
fn build_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let image = |arch: &str, seed: u8| -> (String, usize) {
        let root = dir.join(format!("rootfs-{arch}"));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/arch"), arch).unwrap();
        // Incompressible-ish content, so the layer has some size.
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> (seed % 7 + 8)) as u8)
            .collect();
        std::fs::write(root.join("data.bin"), data).unwrap();
        let tar_path = dir.join(format!("layer-{arch}.tar"));
        run(Command::new("tar")
            .arg("--sort=name")
            .arg("--mtime=@0")
            .arg("--owner=0")
            .arg("--group=0")
            .arg("-cf")
            .arg(&tar_path)
            .arg("-C")
            .arg(&root)
            .arg("."));
        let tar = std::fs::read(&tar_path).unwrap();
        let diff_id = format!("sha256:{}", sha256_hex(&tar));
        run(Command::new("gzip").arg("-n").arg("-f").arg(&tar_path));
        let gz = std::fs::read(dir.join(format!("layer-{arch}.tar.gz"))).unwrap();
        let (layer, layer_size) = put(&gz);
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux","config":{{"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
        );
        let (config_digest, config_size) = put(config.as_bytes());
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":{layer_size}}}]}}"#
        );
        put(manifest.as_bytes())
    };
    let (amd, amd_size) = image("amd64", 1);
    let (arm, arm_size) = image("arm64", 2);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{amd}","size":{amd_size},"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{arm}","size":{arm_size},"platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#
    );
    let (multi, multi_size) = put(index.as_bytes());
    let top = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{amd}","size":{amd_size},"annotations":{{"org.opencontainers.image.ref.name":"single"}}}},{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{multi}","size":{multi_size},"annotations":{{"org.opencontainers.image.ref.name":"multi"}}}}]}}"#
    );
    std::fs::write(layout.join("index.json"), top).unwrap();
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    layout
}

struct World {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    registry: Proc,
    registry_addr: String,
    entrepot: Proc,
    entrepot_addr: String,
    entrepot_config: PathBuf,
}

/// A seeded docker-registry, and the entrepot binary in front of it (`tag_ttl = 0s`, so
/// every tag pull revalidates, and stale serving is exercised once the registry stops).
fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let (registry, registry_addr) = start_registry(&dir, "docker-registry", &dir.join("registry-data"), "");

    let layout = build_layout(&dir);
    let oci = |tag: &str| format!("oci:{}:{tag}", layout.display());
    let dest = |repo: &str| format!("docker://{registry_addr}/{repo}");
    run(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &oci("single"),
        &dest("interop/oci:v1"),
    ]));
    run(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &oci("single"),
        &dest("interop/docker:v1"),
    ]));
    run(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        "--all",
        &oci("multi"),
        &dest("interop/multi:v1"),
    ]));

    let upstream = format!("tag_ttl = \"0s\"\nlog = \"info\"\n[[upstream]]\nname = \"registry.interop.test\"\nurl = \"http://{registry_addr}\"\n");
    let (entrepot, entrepot_addr, config) = start_entrepot(&dir, "entrepot", &upstream);
    World {
        _dir: tmp,
        dir,
        registry,
        registry_addr,
        entrepot,
        entrepot_addr,
        entrepot_config: config,
    }
}

/// `skopeo copy` into a `dir:` directory: the manifest and every blob, as files.
fn skopeo_to_dir(src: &str, out: &Path, all: bool) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--src-tls-verify=false"]);
    if all {
        cmd.arg("--all");
    }
    cmd.arg(format!("docker://{src}")).arg(format!("dir:{}", out.display()));
    run(&mut cmd);
}

fn dir_contents(p: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn skopeo_pulls_through_entrepot_byte_identical_and_offline() {
    if !tools_present(&["docker-registry", "skopeo", "tar", "gzip"]) {
        return;
    }
    let mut w = world();
    let images = [
        ("interop/oci:v1", false),
        ("interop/docker:v1", false),
        ("interop/multi:v1", true),
    ];
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
    let cd = w.dir.join("containerd");
    std::fs::create_dir_all(&cd).unwrap();
    let socket = cd.join("containerd.sock");
    let config = cd.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{}\"\n",
            cd.join("root").display(),
            cd.join("state").display(),
            socket.display()
        ),
    )
    .unwrap();
    let containerd = Proc::start(
        "containerd",
        Command::new("containerd").arg("--config").arg(&config),
        cd.join("containerd.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "containerd did not start\n{}",
            containerd.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The registry host's own server is unreachable: only the mirror can serve the pull.
    let hosts = cd.join("certs.d/registry.interop.test");
    std::fs::create_dir_all(&hosts).unwrap();
    std::fs::write(
        hosts.join("hosts.toml"),
        format!(
            "server = \"http://127.0.0.1:9\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            w.entrepot_addr
        ),
    )
    .unwrap();
    let ctr = |args: &[&str]| {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(&socket).args(args);
        run(&mut cmd)
    };
    let hosts_dir = cd.join("certs.d");
    let hosts_dir = hosts_dir.to_str().unwrap();
    for image in [
        "registry.interop.test/interop/oci:v1",
        "registry.interop.test/interop/multi:v1",
        "registry.interop.test/interop/docker:v1",
    ] {
        ctr(&[
            "images",
            "pull",
            "--plain-http",
            "--hosts-dir",
            hosts_dir,
            "--snapshotter",
            "native",
            "--platform",
            "linux/amd64",
            image,
        ]);
    }
    let listed = ctr(&["images", "ls"]);
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

/// The entrepot binary with a config file; panics with its output when it fails.
fn entrepot(args: &[&str], config: &Path) -> String {
    run(Command::new(env!("CARGO_BIN_EXE_entrepot"))
        .args(args)
        .arg("--config")
        .arg(config))
}

#[test]
fn two_sites_carry_content_on_disk_and_serve_it_with_the_upstream_gone() {
    if !tools_present(&["docker-registry", "skopeo", "umoci", "tar", "gzip"]) {
        return;
    }
    let mut w = world();
    let images = [
        ("interop/oci:v1", false),
        ("interop/docker:v1", false),
        ("interop/multi:v1", true),
    ];
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
