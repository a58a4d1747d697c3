//! Three entrepot nodes in a `[cluster]` in front of a real docker-registry: one upstream
//! fetch per digest across them, whichever node the clients ask, and a lost node costing a
//! duplicate fetch, never a failed pull.

use std::path::Path;
use std::process::Command;

use crate::support::*;

const UPSTREAM: &str = "registry.interop.test";
const SECRET: &str = "interop-cluster-secret-0123456789";
/// Clients log in ([auth] without anonymous access); peers come in with the secret.
const CREDS: &str = "puller:puller-pw";

/// Requests the nodes sent straight to the registry, all results, summed over the nodes
/// (requests to a peer are counted under `<upstream>@<peer>`).
fn upstream_requests(nodes: &[&str]) -> u64 {
    counter(
        nodes,
        &format!("entrepot_upstream_requests_total{{upstream=\"{UPSTREAM}\","),
    )
}

fn start_node(dir: &Path, name: &'static str, addr: &str, peers: &[String], registry: &str) -> Proc {
    let config = dir.join(format!("{name}.toml"));
    let htpasswd = dir.join("cluster.htpasswd");
    if !htpasswd.exists() {
        let (user, pw) = CREDS.split_once(':').unwrap();
        crate::htpasswd::write_htpasswd(&htpasswd, &[(user, pw)]);
    }
    let peer_list: Vec<String> = peers.iter().map(|p| format!("\"http://{p}\"")).collect();
    std::fs::write(
        &config,
        format!(
            "listen = \"{addr}\"\ndata_dir = \"{}\"\ntag_ttl = \"1h\"\nblobs_require_manifest = true\n[auth]\nhtpasswd = \"{}\"\n[[upstream]]\nname = \"{UPSTREAM}\"\nurl = \"http://{registry}\"\n[cluster]\nself = \"http://{addr}\"\npeers = [{}]\nsecret = \"{SECRET}\"\n",
            dir.join(format!("{name}-data")).display(),
            htpasswd.display(),
            peer_list.join(", ")
        ),
    )
    .unwrap();
    serve_entrepot(dir, name, &config, addr)
}

/// A GET through a node as the test's client, whose body must come back whole.
fn get_through(addr: &str, path: &str) -> Vec<u8> {
    let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";
    let out = Command::new("curl")
        .args(["-fsS", "--max-time", "60", "-u", CREDS, "-H"])
        .arg(format!("Accept: {accept}"))
        .arg(format!("http://{addr}/v2/{path}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{path}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn three_nodes_fetch_each_digest_once_and_survive_a_lost_node() {
    if !tools_present(&["docker-registry", "skopeo", "curl"]) {
        return;
    }
    let w = world();
    copy_images_from_the_registry(&w.dir, &w.registry_addr);
    let addrs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let a = start_node(&w.dir, "node-a", &addrs[0], &addrs, &w.registry_addr);
    let mut b = start_node(&w.dir, "node-b", &addrs[1], &addrs, &w.registry_addr);
    let mut c = start_node(&w.dir, "node-c", &addrs[2], &addrs, &w.registry_addr);
    let all: Vec<&str> = addrs.iter().map(String::as_str).collect();

    // 16 clients spread over the three nodes ask for one cold layer at once: one upstream
    // request in all, and every client gets the layer's bytes.
    let layer = blobs_of(&w.registry_addr, "interop/oci", "v1").swap_remove(0);
    // Strict mode: each node lets a blob in only for a manifest it allowed.
    for addr in &addrs {
        get_through(addr, "interop/oci/manifests/v1");
    }
    let before = upstream_requests(&all);
    let urls = (0..16)
        .map(|i| format!("http://{}/v2/interop/oci/blobs/{layer}", addrs[i % 3]))
        .collect();
    for got in concurrent_gets(urls, &w.dir, Some(CREDS)) {
        assert_eq!(got, layer);
    }
    assert_eq!(
        upstream_requests(&all) - before,
        1,
        "one upstream GET for 16 clients on 3 nodes"
    );

    // Strict mode: a blob asked through a node that is not its owner is fetched once, by
    // its owner, which lets it out to the peer whether or not it judged the manifest itself
    // (the asking node did). Were it refused, the asking node would fetch it again.
    let arm = index_child(&w.registry_addr, "interop/multi", "v1", 1);
    let arm_layer = blobs_of(&w.registry_addr, "interop/multi", &arm).swap_remove(0);
    let roots: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
    let owner_url = entrepot::cluster::Cluster::new(entrepot::config::ClusterConfig {
        self_url: roots[0].clone(),
        peers: roots.clone(),
        secret: SECRET.into(),
        ca_file: None,
    })
    .owner(&arm_layer)
    .to_owned();
    let owner = roots.iter().position(|r| *r == owner_url).unwrap();
    let asker = (owner + 1) % 3;
    get_through(&addrs[asker], "interop/multi/manifests/v1");
    get_through(&addrs[asker], &format!("interop/multi/manifests/{arm}"));
    let owner_before = upstream_requests(&all[owner..=owner]);
    let bytes = get_through(&addrs[asker], &format!("interop/multi/blobs/{arm_layer}"));
    assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), arm_layer);
    assert_eq!(
        upstream_requests(&all[owner..=owner]) - owner_before,
        1,
        "the owner fetched the blob for its peer"
    );

    // Whole images through one node, then the others: the others ask nothing upstream.
    copy_images_like_the_registry(&w.dir, &addrs[0], "via-a", Some(CREDS), &[&a, &b, &c]);
    let after_a = upstream_requests(&all);
    copy_images_like_the_registry(&w.dir, &addrs[1], "via-b", Some(CREDS), &[&a, &b, &c]);
    copy_images_like_the_registry(&w.dir, &addrs[2], "via-c", Some(CREDS), &[&a, &b, &c]);
    assert_eq!(
        upstream_requests(&all),
        after_a,
        "the second and third node fetched upstream"
    );

    // A node whose peer list differs is not a peer: 421, and its own fetch instead.
    let misdirected = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {SECRET}"))
        .args(["-H", "Entrepot-Cluster: 0000000000000000"])
        .arg(format!("http://{}/v2/{UPSTREAM}/interop/oci/blobs/{layer}", addrs[0]))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&misdirected.stdout), "421");

    // Node C goes, and B comes back with an empty disk on the same address: what C owned,
    // B fetches itself (a duplicate fetch, never a failed pull); what A owns, A serves.
    c.stop();
    b.stop();
    let b2 = start_node(&w.dir, "node-b2", &addrs[1], &addrs, &w.registry_addr);
    let a_before = upstream_requests(&all[..1]);
    copy_images_like_the_registry(&w.dir, &addrs[1], "via-b-without-c", Some(CREDS), &[&a, &b2]);
    assert!(
        upstream_requests(&all[1..2]) > 0,
        "B fetched nothing itself: C owned nothing?"
    );
    assert_eq!(
        upstream_requests(&all[..1]),
        a_before,
        "A served what it owns from its cache"
    );
}
