//! Tiered mirrors: an edge entrepot whose upstream is a regional entrepot, in front of a
//! real docker-registry. Names survive both hops (`?ns=` at the edge, the upstream's name as
//! the regional's path prefix through `repository_prefix`); the edge keeps serving when the
//! regional loses its upstream, and when the regional itself is gone.

use crate::support::*;

const ACCEPT_ALL: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

#[test]
fn an_edge_pulls_through_a_regional_entrepot_and_keeps_serving_when_the_tiers_above_go() {
    if !tools_present(&["docker-registry", "skopeo", "curl"]) {
        return;
    }
    let mut w = world();
    copy_images_from_the_registry(&w.dir, &w.registry_addr);
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

    copy_images_like_the_registry(&w.dir, &edge_addr, "through-both", None, &[&edge, &regional]);
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
    copy_images_like_the_registry(&w.dir, &edge_addr, "registry-gone", None, &[&edge, &regional]);

    // The regional node goes too: the edge serves what it holds, alone.
    regional.stop();
    copy_images_like_the_registry(&w.dir, &edge_addr, "regional-gone", None, &[&edge]);
    let stale = fetch(
        &format!("http://{edge_addr}/v2/interop/multi/manifests/v1"),
        Some(ACCEPT_ALL),
    );
    assert_eq!(stale.status, 200, "{stale:?}");
}
