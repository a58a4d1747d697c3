//! Tiered mirrors: an edge entrepot whose upstream is a regional entrepot, in front of a
//! real docker-registry. Names survive both hops (`?ns=` at the edge, the upstream's name as
//! the regional's path prefix through `repository_prefix`); the edge keeps serving when the
//! regional loses its upstream, and when the regional itself is gone.

use std::process::Command;

use crate::support::*;

const ACCEPT_ALL: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// skopeo through `addr` gives what it gives straight from the registry (copied earlier to
/// `direct-<i>`).
fn assert_copies_like_the_registry(dir: &std::path::Path, addr: &str, round: &str, logs: &[&Proc]) {
    for (i, (image, all)) in IMAGES.iter().enumerate() {
        let out = dir.join(format!("{round}-{i}"));
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--src-tls-verify=false"]);
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

#[test]
fn an_edge_pulls_through_a_regional_entrepot_and_keeps_serving_when_the_tiers_above_go() {
    if !tools_present(&["docker-registry", "skopeo", "curl"]) {
        return;
    }
    let mut w = world();
    for (i, (image, all)) in IMAGES.iter().enumerate() {
        skopeo_to_dir(
            &format!("{}/{image}", w.registry_addr),
            &w.dir.join(format!("direct-{i}")),
            *all,
        );
    }
    // The regional node serves two upstreams and has no default: a name reaches the
    // registry only with its upstream's prefix.
    let regional_body = format!(
        "tag_ttl = \"0s\"\n[[upstream]]\nname = \"registry.interop.test\"\nurl = \"http://{}\"\n[[upstream]]\nname = \"elsewhere.test\"\nurl = \"http://127.0.0.1:9\"\n",
        w.registry_addr
    );
    let (mut regional, regional_addr, _) = start_entrepot(&w.dir, "regional", &regional_body);
    let edge_body = format!(
        "tag_ttl = \"0s\"\n[[upstream]]\nname = \"registry.interop.test\"\nurl = \"http://{regional_addr}\"\nrepository_prefix = \"registry.interop.test\"\n"
    );
    let (edge, edge_addr, _) = start_entrepot(&w.dir, "edge", &edge_body);

    assert_copies_like_the_registry(&w.dir, &edge_addr, "through-both", &[&edge, &regional]);
    // containerd's form at the edge: the registry's name as ?ns=, the bare repository.
    let direct = fetch(
        &format!("http://{}/v2/interop/oci/manifests/v1", w.registry_addr),
        Some(ACCEPT_ALL),
    );
    let ns = fetch(
        &format!("http://{edge_addr}/v2/interop/oci/manifests/v1?ns=registry.interop.test"),
        Some(ACCEPT_ALL),
    );
    assert_eq!((ns.status, &ns.digest), (200, &direct.digest), "{ns:?}");
    // The regional node's upstream goes: both tiers serve from their caches.
    w.registry.stop();
    assert_copies_like_the_registry(&w.dir, &edge_addr, "registry-gone", &[&edge, &regional]);

    // The regional node goes too: the edge serves what it holds, alone.
    regional.stop();
    assert_copies_like_the_registry(&w.dir, &edge_addr, "regional-gone", &[&edge]);
    let stale = fetch(
        &format!("http://{edge_addr}/v2/interop/multi/manifests/v1"),
        Some(ACCEPT_ALL),
    );
    assert_eq!(stale.status, 200, "{stale:?}");
}
