//! Processes the interop tests start (registries, entrepots, containerd, dockerd), and the
//! images they seed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;

/// A process this test started; killed (by its own handle) when dropped.
pub struct Proc {
    pub child: Child,
    name: &'static str,
    pub log: PathBuf,
}

impl Proc {
    pub fn start(name: &'static str, cmd: &mut Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { child, name, log }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, so that the process shuts down cleanly, then waits for it.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
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

pub fn tools_present(tools: &[&str]) -> bool {
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

/// Whether python3 can import `module` (the test command installs what the tests use).
pub fn python_module_present(module: &str) -> bool {
    let ok = Command::new("python3")
        .arg("-c")
        .arg(format!("import {module}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var("ENTREPOT_INTEROP").as_deref() == Ok("require") {
        panic!("python module {module} missing (the test command installs it)");
    }
    if !ok {
        eprintln!("SKIPPED: python module {module} missing");
    }
    ok
}

pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn run(cmd: &mut Command) -> String {
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
pub fn wait_listening(addr: &str, what: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{addr} never listened\n{}", what.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A docker-registry storing under `storage`; `http_extra` goes into its `http:` section
/// (a `tls:` block). Returns the process and its address.
pub fn start_registry(dir: &Path, name: &'static str, storage: &Path, http_extra: &str) -> (Proc, String) {
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
pub fn entrepot_config(dir: &Path, name: &str, body: &str) -> (String, PathBuf) {
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
pub fn serve_entrepot(dir: &Path, name: &'static str, config: &Path, addr: &str) -> Proc {
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
pub fn start_entrepot(dir: &Path, name: &'static str, body: &str) -> (Proc, String, PathBuf) {
    let (addr, config) = entrepot_config(dir, name, body);
    (serve_entrepot(dir, name, &config, &addr), addr, config)
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// An OCI layout with a single-arch image (`single`) and a two-platform index (`multi`),
/// whose layers are real gzip tarballs with correct diff_ids, so containerd can unpack them.
pub fn build_layout(dir: &Path) -> PathBuf {
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
            r#"{{"architecture":"{arch}","os":"linux","config":{{"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}},"history":[{{"created":"1970-01-01T00:00:00Z","created_by":"entrepot interop test"}}]}}"#
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

pub struct World {
    _dir: tempfile::TempDir,
    pub dir: PathBuf,
    pub registry: Proc,
    pub registry_addr: String,
    pub entrepot: Proc,
    pub entrepot_addr: String,
    pub entrepot_config: PathBuf,
}

/// A seeded docker-registry, and the entrepot binary in front of it (`tag_ttl = 0s`, so
/// every tag pull revalidates, and stale serving is exercised once the registry stops).
pub fn world() -> World {
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

/// The images `world` seeds, and whether each is a multi-platform index (`skopeo --all`).
pub const IMAGES: [(&str, bool); 3] = [
    ("interop/oci:v1", false),
    ("interop/docker:v1", false),
    ("interop/multi:v1", true),
];

/// `skopeo copy` into a `dir:` directory: the manifest and every blob, as files.
pub fn skopeo_to_dir(src: &str, out: &Path, all: bool) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--src-tls-verify=false"]);
    if all {
        cmd.arg("--all");
    }
    cmd.arg(format!("docker://{src}")).arg(format!("dir:{}", out.display()));
    run(&mut cmd);
}

pub fn dir_contents(p: &Path) -> Vec<(String, Vec<u8>)> {
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

/// The entrepot binary with a config file; panics with its output when it fails.
pub fn entrepot(args: &[&str], config: &Path) -> String {
    run(Command::new(env!("CARGO_BIN_EXE_entrepot"))
        .args(args)
        .arg("--config")
        .arg(config))
}

/// containerd on its own socket and root under `dir`, with `hosts.toml` mirror files.
pub struct Containerd {
    _proc: Proc,
    socket: PathBuf,
    hosts_dir: PathBuf,
}

impl Containerd {
    pub fn start(dir: &Path) -> Containerd {
        let cd = dir.join("containerd");
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
        let proc = Proc::start(
            "containerd",
            Command::new("containerd").arg("--config").arg(&config),
            cd.join("containerd.log"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start\n{}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Containerd {
            _proc: proc,
            socket,
            hosts_dir: cd.join("certs.d"),
        }
    }

    /// Pulls of `host` go to `mirror` (plain HTTP); the host's own server is unreachable,
    /// so only the mirror can answer.
    pub fn mirror(&self, host: &str, mirror: &str) {
        let hosts = self.hosts_dir.join(host);
        std::fs::create_dir_all(&hosts).unwrap();
        std::fs::write(
            hosts.join("hosts.toml"),
            format!("server = \"http://127.0.0.1:9\"\n\n[host.\"http://{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"),
        )
        .unwrap();
    }

    pub fn ctr(&self, args: &[&str]) -> String {
        run(Command::new("ctr").arg("--address").arg(&self.socket).args(args))
    }

    /// `ctr images pull` of the linux/amd64 image, unpacked, through the mirrors.
    pub fn pull(&self, image: &str) -> String {
        self.ctr(&[
            "images",
            "pull",
            "--plain-http",
            "--hosts-dir",
            self.hosts_dir.to_str().unwrap(),
            "--snapshotter",
            "native",
            "--platform",
            "linux/amd64",
            image,
        ])
    }
}

/// The Docker Engine on a private socket and data root under `dir`, with `mirror` as
/// Docker Hub's registry mirror (and trusted over plain HTTP). Stopped with SIGTERM, so that
/// it stops the containerd it started.
pub struct Dockerd {
    proc: Proc,
    socket: PathBuf,
}

impl Dockerd {
    pub fn start(dir: &Path, mirror: &str) -> Dockerd {
        let root = dir.join("docker");
        std::fs::create_dir_all(&root).unwrap();
        let socket = root.join("docker.sock");
        let proc = Proc::start(
            "dockerd",
            Command::new("dockerd")
                .args([
                    "--storage-driver=vfs",
                    "--iptables=false",
                    "--ip6tables=false",
                    "--bridge=none",
                ])
                .arg("--host")
                .arg(format!("unix://{}", socket.display()))
                .arg("--data-root")
                .arg(root.join("data"))
                .arg("--exec-root")
                .arg(root.join("exec"))
                .arg("--pidfile")
                .arg(root.join("docker.pid"))
                .arg("--insecure-registry")
                .arg(mirror)
                .arg("--registry-mirror")
                .arg(format!("http://{mirror}")),
            root.join("dockerd.log"),
        );
        let dockerd = Dockerd { proc, socket };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !Command::new("docker")
            .arg("--host")
            .arg(format!("unix://{}", dockerd.socket.display()))
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            assert!(
                Instant::now() < deadline,
                "dockerd did not start\n{}",
                dockerd.proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        dockerd
    }

    pub fn run(&self, args: &[&str]) -> String {
        run(Command::new("docker")
            .arg("--host")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args))
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.proc.terminate();
    }
}

/// An HTTP answer, as curl received it.
pub struct Answer {
    pub status: u16,
    pub digest: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.text();
        write!(
            f,
            "{} {:?} {:?} {:.200}",
            self.status, self.content_type, self.digest, text
        )
    }
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A GET with curl, headers and body, whatever the status.
pub fn fetch(url: &str, accept: Option<&str>) -> Answer {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-i", "--max-time", "60"]);
    if let Some(a) = accept {
        cmd.arg("-H").arg(format!("Accept: {a}"));
    }
    let out = cmd.arg(url).output().unwrap();
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end from {url}"));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.trim().to_owned())
    };
    Answer {
        status: head.split_whitespace().nth(1).unwrap().parse().unwrap(),
        digest: header("docker-content-digest"),
        content_type: header("content-type"),
        body: raw[split + 4..].to_vec(),
    }
}

/// Copies every image of `IMAGES` straight from the registry into `dir/direct-<i>`: what
/// `copy_images_like_the_registry` compares with.
pub fn copy_images_from_the_registry(dir: &Path, registry: &str) {
    for (i, (image, all)) in IMAGES.iter().enumerate() {
        skopeo_to_dir(&format!("{registry}/{image}"), &dir.join(format!("direct-{i}")), *all);
    }
}

/// skopeo copies every image of `IMAGES` through `addr` (logged in with `creds` when
/// given) into `dir/<round>-<i>`, each byte for byte what the registry holds; `logs` are
/// shown when it fails.
pub fn copy_images_like_the_registry(dir: &Path, addr: &str, round: &str, creds: Option<&str>, logs: &[&Proc]) {
    for (i, (image, all)) in IMAGES.iter().enumerate() {
        let out = dir.join(format!("{round}-{i}"));
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--src-tls-verify=false"]);
        if let Some(creds) = creds {
            cmd.args(["--src-creds", creds]);
        }
        if *all {
            cmd.arg("--all");
        }
        let o = cmd
            .arg(format!("docker://{addr}/{image}"))
            .arg(format!("dir:{}", out.display()))
            .output()
            .unwrap();
        let logs: Vec<String> = logs.iter().map(|p| p.log_text()).collect();
        assert!(
            o.status.success(),
            "{round} {image}: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            logs.join("\n")
        );
        assert!(
            dir_contents(&out) == dir_contents(&dir.join(format!("direct-{i}"))),
            "{round} {image}: differs from the registry's"
        );
    }
}

/// A counter summed over entrepot nodes: the series whose line starts with `prefix`.
pub fn counter(nodes: &[&str], prefix: &str) -> u64 {
    nodes
        .iter()
        .map(|addr| {
            fetch(&format!("http://{addr}/metrics"), None)
                .text()
                .lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64
        })
        .sum()
}

/// An image manifest's first layer and its config, as the registry lists them.
pub fn blobs_of(registry: &str, repo: &str, reference: &str) -> Vec<String> {
    let m = fetch(
        &format!("http://{registry}/v2/{repo}/manifests/{reference}"),
        Some("application/vnd.oci.image.manifest.v1+json"),
    );
    let m: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
    vec![
        m["layers"][0]["digest"].as_str().unwrap().to_owned(),
        m["config"]["digest"].as_str().unwrap().to_owned(),
    ]
}

/// The digest of the `i`th manifest an index lists, as the registry lists it.
pub fn index_child(registry: &str, repo: &str, tag: &str, i: usize) -> String {
    let index = fetch(
        &format!("http://{registry}/v2/{repo}/manifests/{tag}"),
        Some("application/vnd.oci.image.index.v1+json"),
    );
    let index: serde_json::Value = serde_json::from_slice(&index.body).unwrap();
    index["manifests"][i]["digest"].as_str().unwrap().to_owned()
}

/// GETs every URL at once, each by its own curl (logged in with `creds` when given), into
/// files under `dir`; returns the `sha256:` digest of each body, in order.
pub fn concurrent_gets(urls: Vec<String>, dir: &Path, creds: Option<&str>) -> Vec<String> {
    let clients: Vec<_> = urls
        .into_iter()
        .enumerate()
        .map(|(i, url)| {
            let out = dir.join(format!("concurrent-{i}"));
            let creds = creds.map(str::to_owned);
            std::thread::spawn(move || {
                let mut cmd = Command::new("curl");
                cmd.args(["-fsS", "--max-time", "60"]);
                if let Some(creds) = creds {
                    cmd.args(["-u", &creds]);
                }
                run(cmd.arg("-o").arg(&out).arg(&url));
                format!("sha256:{}", sha256_hex(&std::fs::read(&out).unwrap()))
            })
        })
        .collect();
    clients.into_iter().map(|c| c.join().unwrap()).collect()
}

/// Pushes a blob to a registry as a client does (POST, then PUT with the digest); returns
/// its digest.
pub fn push_blob(registry: &str, repo: &str, bytes: &[u8]) -> String {
    let digest = format!("sha256:{}", sha256_hex(bytes));
    let head = run(Command::new("curl").args([
        "-sS",
        "-X",
        "POST",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("http://{registry}/v2/{repo}/blobs/uploads/"),
    ]));
    let location = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("location")))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no upload location: {head}"));
    let location = if location.starts_with("http") {
        location
    } else {
        format!("http://{registry}{location}")
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    put(
        &format!("{location}{sep}digest={digest}"),
        "application/octet-stream",
        bytes,
    );
    digest
}

/// Pushes a manifest under `reference`; returns its digest.
pub fn push_manifest(registry: &str, repo: &str, reference: &str, media_type: &str, body: &str) -> String {
    put(
        &format!("http://{registry}/v2/{repo}/manifests/{reference}"),
        media_type,
        body.as_bytes(),
    );
    format!("sha256:{}", sha256_hex(body.as_bytes()))
}

fn put(url: &str, content_type: &str, body: &[u8]) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    run(Command::new("curl")
        .args([
            "-fsS",
            "-X",
            "PUT",
            "-H",
            &format!("Content-Type: {content_type}"),
            "--data-binary",
        ])
        .arg(format!("@{}", file.path().display()))
        .arg(url));
}
