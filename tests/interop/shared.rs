//! The shared blob tier on a real Garage cluster (three nodes, replication factor 3) behind
//! a cluster of entrepot nodes in front of docker-registry: blobs fetched once go up to the
//! tier; nodes that start with empty disks later serve them from it, with no blob from the
//! upstream; and they still do with one Garage node gone.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

const UPSTREAM: &str = "registry.interop.test";
const SECRET: &str = "interop-cluster-secret-0123456789";

/// Three Garage nodes on loopback, one layout, one bucket and a key that may use it.
struct Garage {
    nodes: Vec<Proc>,
    s3: String,
    key_id: String,
    secret: String,
}

fn garage(config: &Path, args: &[&str]) -> String {
    run(Command::new("garage").arg("-c").arg(config).args(args))
}

fn start_garage(dir: &Path) -> Garage {
    let rpc_secret = sha256_hex(format!("{:?}", Instant::now()).as_bytes());
    let mut nodes = Vec::new();
    let mut configs = Vec::new();
    let mut s3 = Vec::new();
    for name in ["garage-1", "garage-2", "garage-3"] {
        let root = dir.join(name);
        std::fs::create_dir_all(&root).unwrap();
        let (rpc, api, admin) = (free_port(), free_port(), free_port());
        let config = root.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{0}/meta\"\ndata_dir = \"{0}/data\"\ndb_engine = \"sqlite\"\nreplication_factor = 3\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{rpc_secret}\"\n[s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{api}\"\nroot_domain = \".s3.garage.localhost\"\n[admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                root.display()
            ),
        )
        .unwrap();
        let node = Proc::start(
            name,
            Command::new("garage").arg("-c").arg(&config).arg("server"),
            dir.join(format!("{name}.log")),
        );
        wait_listening(&format!("127.0.0.1:{api}"), &node);
        wait_listening(&format!("127.0.0.1:{rpc}"), &node);
        nodes.push(node);
        configs.push(config);
        s3.push(format!("http://127.0.0.1:{api}"));
    }
    let ids: Vec<String> = configs
        .iter()
        .map(|c| garage(c, &["node", "id", "-q"]).trim().to_owned())
        .collect();
    for id in &ids[1..] {
        garage(&configs[0], &["node", "connect", id]);
    }
    for id in &ids {
        let short = id.split('@').next().unwrap();
        garage(&configs[0], &["layout", "assign", "-z", "dc1", "-c", "1G", short]);
    }
    garage(&configs[0], &["layout", "apply", "--version", "1"]);
    let key = garage(&configs[0], &["key", "create", "entrepot-key"]);
    let field = |name: &str| {
        key.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {key}"))
    };
    let (key_id, secret) = (field("Key ID:"), field("Secret key:"));
    garage(&configs[0], &["bucket", "create", "entrepot"]);
    garage(
        &configs[0],
        &[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            "entrepot",
            "--key",
            "entrepot-key",
        ],
    );
    Garage {
        nodes,
        s3: s3.swap_remove(0),
        key_id,
        secret,
    }
}

/// An entrepot node on the tier; in a cluster with `peers` when given; `storage` is added
/// to its `[storage]` table.
fn start_node(
    dir: &Path,
    name: &'static str,
    addr: &str,
    peers: Option<&[String]>,
    registry: &str,
    g: &Garage,
    storage: &str,
) -> Proc {
    let config = dir.join(format!("{name}.toml"));
    let cluster = match peers {
        Some(peers) => {
            let list: Vec<String> = peers.iter().map(|p| format!("\"http://{p}\"")).collect();
            format!(
                "[cluster]\nself = \"http://{addr}\"\npeers = [{}]\nsecret = \"{SECRET}\"\n",
                list.join(", ")
            )
        }
        None => String::new(),
    };
    std::fs::write(
        &config,
        format!(
            "listen = \"{addr}\"\ndata_dir = \"{}\"\nsweep_interval = \"1h\"\n[[upstream]]\nname = \"{UPSTREAM}\"\nurl = \"http://{registry}\"\n{cluster}[storage]\ntype = \"s3\"\nendpoint = \"{}\"\nbucket = \"entrepot\"\nregion = \"garage\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nlocal_max_bytes = \"1GiB\"\n{storage}",
            dir.join(format!("{name}-data")).display(),
            g.s3,
            g.key_id,
            g.secret
        ),
    )
    .unwrap();
    serve_entrepot(dir, name, &config, addr)
}

#[test]
fn nodes_with_empty_disks_serve_from_the_shared_tier_on_garage_even_with_a_garage_node_gone() {
    if !tools_present(&["docker-registry", "skopeo", "garage", "curl"]) {
        return;
    }
    let w = world();
    copy_images_from_the_registry(&w.dir, &w.registry_addr);
    let mut g = start_garage(&w.dir);
    let addrs: Vec<String> = (0..2).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let mut a = start_node(&w.dir, "node-a", &addrs[0], Some(&addrs), &w.registry_addr, &g, "");
    let mut b = start_node(&w.dir, "node-b", &addrs[1], Some(&addrs), &w.registry_addr, &g, "");
    let first: Vec<&str> = addrs.iter().map(String::as_str).collect();

    // 16 clients over the two nodes ask for one cold layer at once: one upstream GET, and
    // every client gets the layer's bytes.
    let layer = blobs_of(&w.registry_addr, "interop/oci", "v1").swap_remove(0);
    let urls = (0..16)
        .map(|i| format!("http://{}/v2/interop/oci/blobs/{layer}", addrs[i % 2]))
        .collect();
    for got in concurrent_gets(urls, &w.dir, None) {
        assert_eq!(got, layer);
    }
    let requests = format!("entrepot_upstream_requests_total{{upstream=\"{UPSTREAM}\",");
    assert_eq!(
        counter(&first, &requests),
        1,
        "one upstream request for 16 clients on 2 nodes"
    );

    // Through A: each of the four distinct blobs is fetched once, by its owner, and goes up.
    copy_images_like_the_registry(&w.dir, &addrs[0], "first", None, &[&a, &b]);
    let uploaded = "entrepot_shared_tier_total{op=\"upload\",result=\"uploaded\"}";
    let deadline = Instant::now() + Duration::from_secs(60);
    while counter(&first, uploaded) < 4 {
        assert!(
            Instant::now() < deadline,
            "uploads: {}\n{}",
            counter(&first, uploaded),
            a.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(counter(&first, uploaded), 4);

    // Both nodes come back on the same addresses with empty disks: every blob comes from
    // the tier (the upstream only confirms, with a HEAD, and sends the small manifests).
    a.stop();
    b.stop();
    let a2 = start_node(&w.dir, "node-a2", &addrs[0], Some(&addrs), &w.registry_addr, &g, "");
    let b2 = start_node(&w.dir, "node-b2", &addrs[1], Some(&addrs), &w.registry_addr, &g, "");
    copy_images_like_the_registry(&w.dir, &addrs[1], "empty-disks", None, &[&a2, &b2]);
    // Less than the smallest layer came from the upstream (the manifests); each of the four
    // blobs was read from the tier once, by its owner.
    let smallest_layer = (0..IMAGES.len())
        .flat_map(|i| dir_contents(&w.dir.join(format!("direct-{i}"))))
        .map(|(_, bytes)| bytes.len())
        .filter(|n| *n > 16 << 10)
        .min()
        .unwrap() as u64;
    let from_upstream = counter(
        &first,
        &format!("entrepot_upstream_bytes_total{{upstream=\"{UPSTREAM}\"}}"),
    );
    assert!(
        from_upstream < smallest_layer,
        "{from_upstream} bytes came from the upstream (smallest layer: {smallest_layer})"
    );
    assert_eq!(
        counter(&first, "entrepot_shared_tier_total{op=\"read\",result=\"hit\"}"),
        4
    );

    // One Garage node goes (replication 3): a node with an empty disk still reads all.
    g.nodes[2].stop();
    let c_addr = format!("127.0.0.1:{}", free_port());
    let c = start_node(&w.dir, "node-c", &c_addr, None, &w.registry_addr, &g, "");
    copy_images_like_the_registry(&w.dir, &c_addr, "garage-node-gone", None, &[&c]);
    assert_eq!(
        counter(&[&c_addr], "entrepot_shared_tier_total{op=\"read\",result=\"hit\"}"),
        4
    );
}

fn get_blob(addr: &str, repo: &str, digest: &str) {
    run(Command::new("curl")
        .args(["-fsS", "-o", "/dev/null"])
        .arg(format!("http://{addr}/v2/{repo}/blobs/{digest}")));
}

fn wait_uploaded(addr: &str, n: u64, log: &Proc) {
    let uploaded = "entrepot_shared_tier_total{op=\"upload\",result=\"uploaded\"}";
    let deadline = Instant::now() + Duration::from_secs(60);
    while counter(&[addr], uploaded) < n {
        assert!(
            Instant::now() < deadline,
            "uploads: {}\n{}",
            counter(&[addr], uploaded),
            log.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_tier_keeps_within_its_budget_what_nodes_used_last() {
    if !tools_present(&["docker-registry", "garage", "curl"]) {
        return;
    }
    let w = world();
    let g = start_garage(&w.dir);
    let addr = format!("127.0.0.1:{}", free_port());
    let node = start_node(
        &w.dir,
        "node",
        &addr,
        None,
        &w.registry_addr,
        &g,
        "max_bytes = \"100KiB\"\n",
    );
    // Two layers of some 70 KB each and their configs: the budget holds one layer.
    let old = blobs_of(&w.registry_addr, "interop/oci", "v1");
    let newer = blobs_of(
        &w.registry_addr,
        "interop/multi",
        &index_child(&w.registry_addr, "interop/multi", "v1", 1),
    );
    for d in &old {
        get_blob(&addr, "interop/oci", d);
    }
    wait_uploaded(&addr, 2, &node);
    // Uploads and uses a second apart: the tier orders by the millisecond.
    std::thread::sleep(Duration::from_millis(1100));
    for d in &newer {
        get_blob(&addr, "interop/multi", d);
    }
    wait_uploaded(&addr, 4, &node);
    std::thread::sleep(Duration::from_millis(1100));
    // The oldest upload is the one used last: the access report says so.
    get_blob(&addr, "interop/oci", &old[0]);
    let gc = entrepot(&["gc"], &w.dir.join("node.toml"));

    let shared = shared_of(&g);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let holds = |d: &str| runtime.block_on(shared.contains(&d.parse().unwrap())).unwrap();
    assert!(holds(&old[0]), "the layer used last was evicted\n{}", node.log_text());
    assert!(
        !holds(&newer[0]),
        "the layer used before it stayed\n{gc}\n{:?}\n{}",
        runtime.block_on(shared.list("")).unwrap(),
        node.log_text()
    );
    let listed = runtime.block_on(shared.list("blobs/")).unwrap();
    assert!(listed.iter().map(|o| o.size).sum::<u64>() <= 100 << 10, "{listed:?}");
    assert!(counter(&[&addr], "entrepot_shared_tier_total{op=\"evict\",result=\"deleted\"}") >= 1);
}

/// Every object under `blobs/` hashes to its key: no partial or unverified object is
/// visible under a digest. Returns the digests found.
fn audit(shared: &entrepot::store::shared::Shared, runtime: &tokio::runtime::Runtime) -> Vec<String> {
    use http_body_util::BodyExt;
    runtime.block_on(async {
        let mut found = Vec::new();
        for o in shared.list("blobs/").await.unwrap() {
            let digest = o.key.trim_start_matches("blobs/").replacen('/', ":", 1);
            let body = shared.get(&digest.parse().unwrap(), None).await.unwrap().unwrap();
            let bytes = body.body.collect().await.unwrap().to_bytes();
            assert_eq!(
                format!("sha256:{}", sha256_hex(&bytes)),
                digest,
                "{} holds other bytes",
                o.key
            );
            found.push(digest);
        }
        found
    })
}

fn shared_of(g: &Garage) -> entrepot::store::shared::Shared {
    entrepot::store::shared::Shared::new(&entrepot::config::StorageConfig {
        endpoint: g.s3.clone(),
        bucket: "entrepot".into(),
        region: "garage".into(),
        access_key_id: g.key_id.clone(),
        secret_access_key: g.secret.clone(),
        virtual_host_style: false,
        limits: Default::default(),
    })
    .unwrap()
}

#[test]
fn killed_nodes_leave_no_partial_object_and_the_others_serve() {
    if !tools_present(&["docker-registry", "garage", "curl"]) {
        return;
    }
    let w = world();
    let mut g = start_garage(&w.dir);
    // A 48 MiB blob: it goes up in parts (from 32 MiB), and long enough to be cut.
    let blob: Vec<u8> = (0..48u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let digest = push_blob(&w.registry_addr, "big/blob", &blob);
    let through = |addr: &str, out: &str| {
        let out = w.dir.join(out);
        run(Command::new("curl")
            .args(["-fsS", "--max-time", "120", "-o"])
            .arg(&out)
            .arg(format!("http://{addr}/v2/big/blob/blobs/{digest}")));
        format!("sha256:{}", sha256_hex(&std::fs::read(&out).unwrap()))
    };

    // Node A serves the blob, then is killed as its upload runs.
    let a_addr = format!("127.0.0.1:{}", free_port());
    let mut a = start_node(&w.dir, "node-a", &a_addr, None, &w.registry_addr, &g, "");
    assert_eq!(through(&a_addr, "via-a"), digest);
    a.stop();
    let shared = shared_of(&g);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    audit(&shared, &runtime);

    // Node B serves it while a Garage node is killed under its transfer and upload.
    let b_addr = format!("127.0.0.1:{}", free_port());
    let b = start_node(&w.dir, "node-b", &b_addr, None, &w.registry_addr, &g, "");
    let client = {
        let (b_addr, dir, digest) = (b_addr.clone(), w.dir.clone(), digest.clone());
        std::thread::spawn(move || {
            let out = dir.join("via-b");
            run(Command::new("curl")
                .args(["-fsS", "--max-time", "120", "-o"])
                .arg(&out)
                .arg(format!("http://{b_addr}/v2/big/blob/blobs/{digest}")));
            format!("sha256:{}", sha256_hex(&std::fs::read(&out).unwrap()))
        })
    };
    g.nodes[1].stop();
    assert_eq!(client.join().unwrap(), digest, "{}", b.log_text());
    // Whoever uploaded it, the tier ends up holding it, verified.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !runtime.block_on(shared.contains(&digest.parse().unwrap())).unwrap() {
        assert!(Instant::now() < deadline, "never uploaded\n{}", b.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(audit(&shared, &runtime), vec![digest.clone()]);
    // A third node, with an empty disk, reads it from the tier with a Garage node down.
    let c_addr = format!("127.0.0.1:{}", free_port());
    let c = start_node(&w.dir, "node-c", &c_addr, None, &w.registry_addr, &g, "");
    assert_eq!(through(&c_addr, "via-c"), digest, "{}", c.log_text());
    assert_eq!(
        counter(&[&c_addr], "entrepot_shared_tier_total{op=\"read\",result=\"hit\"}"),
        1
    );
}

#[test]
fn with_owners_and_upstream_gone_a_node_with_an_empty_disk_serves_from_the_tier_alone() {
    if !tools_present(&["docker-registry", "skopeo", "garage", "curl"]) {
        return;
    }
    let mut w = world();
    copy_images_from_the_registry(&w.dir, &w.registry_addr);
    let g = start_garage(&w.dir);
    let addrs: Vec<String> = (0..2).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let mut a = start_node(&w.dir, "node-a", &addrs[0], Some(&addrs), &w.registry_addr, &g, "");
    let mut b = start_node(&w.dir, "node-b", &addrs[1], Some(&addrs), &w.registry_addr, &g, "");
    copy_images_like_the_registry(&w.dir, &addrs[0], "first", None, &[&a, &b]);

    // The tier ends up with the three tags, the four blobs and the manifests, the
    // uploads settled.
    let shared = shared_of(&g);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let count = |prefix: &str| runtime.block_on(shared.list(prefix)).unwrap().len();
    let all: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let uploads = || {
        counter(
            &all,
            "entrepot_shared_tier_total{op=\"upload_manifest\",result=\"uploaded\"}",
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = u64::MAX;
    loop {
        let now = uploads();
        if count("tags/") == 3 && count("blobs/") == 4 && count("manifests/") >= 4 && now == last {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tier: {} tags, {} blobs",
            count("tags/"),
            count("blobs/")
        );
        last = now;
        std::thread::sleep(Duration::from_millis(500));
    }

    // Both nodes and the registry go. A node comes back on A's address with an empty disk:
    // every pull is served from the tier, tags stale (the registry cannot revalidate them).
    a.stop();
    b.stop();
    w.registry.stop();
    let a2 = start_node(&w.dir, "node-a2", &addrs[0], Some(&addrs), &w.registry_addr, &g, "");
    copy_images_like_the_registry(&w.dir, &addrs[0], "tier-alone", None, &[&a2]);
    let stale = fetch(
        &format!("http://{}/v2/interop/oci/manifests/v1", addrs[0]),
        Some("application/vnd.oci.image.manifest.v1+json"),
    );
    assert_eq!(stale.status, 200);
    let warned = Command::new("curl")
        .args(["-sI", "-H", "Accept: application/vnd.oci.image.manifest.v1+json"])
        .arg(format!("http://{}/v2/interop/oci/manifests/v1", addrs[0]))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&warned.stdout)
            .to_ascii_lowercase()
            .contains("warning: 299"),
        "{}",
        String::from_utf8_lossy(&warned.stdout)
    );
}
