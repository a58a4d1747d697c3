//! The status page in a real browser: headless Chromium loads `/-/status` from the entrepot
//! binary after real pulls, and what it renders is checked against `/metrics`.

use std::path::Path;
use std::process::Command;

use crate::html::text_of;
use crate::support::*;

/// Chromium, headless, as this machine allows it (no sandbox as root, no background
/// connections out), with a fresh profile in `dir`.
fn chromium(dir: &Path, args: &[&str]) -> String {
    let profile = dir.join("chromium-profile");
    let mut cmd = Command::new("timeout");
    cmd.args([
        "120",
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args);
    run(&mut cmd)
}

/// The hit ratio `/metrics` implies: lookups answered without a download over all.
fn hit_ratio(metrics: &str) -> String {
    let (mut saved, mut all) = (0.0, 0.0);
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("entrepot_cache_lookups_total{"))
    {
        let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        all += n;
        if !line.contains("result=\"miss\"") {
            saved += n;
        }
    }
    assert!(all > 0.0, "the pulls were counted:\n{metrics}");
    format!("{:.1}%", saved * 100.0 / all)
}

#[test]
fn chromium_shows_the_status_of_a_cache_after_real_pulls() {
    if !tools_present(&["docker-registry", "skopeo", "chromium", "curl", "timeout"]) {
        return;
    }
    let w = world();
    for (i, (image, all)) in IMAGES.iter().enumerate() {
        skopeo_to_dir(
            &format!("{}/{image}", w.entrepot_addr),
            &w.dir.join(format!("s-{i}")),
            *all,
        );
    }
    // The same image again: served from the cache this time.
    skopeo_to_dir(
        &format!("{}/interop/oci:v1", w.entrepot_addr),
        &w.dir.join("s-again"),
        false,
    );
    let metrics = run(Command::new("curl").args(["-fsS", &format!("http://{}/metrics", w.entrepot_addr)]));
    let url = format!("http://{}/-/status", w.entrepot_addr);

    let dom = chromium(&w.dir, &["--dump-dom", &url]);
    let hits = text_of(&dom, "hit-ratio");
    assert!(
        hits.contains(&hit_ratio(&metrics)),
        "the page's ratio is /metrics' ({}): {hits}",
        hit_ratio(&metrics)
    );
    let upstreams = text_of(&dom, "upstreams");
    assert!(
        upstreams.contains("registry.interop.test") && upstreams.contains("answering"),
        "{upstreams}"
    );
    let repos = text_of(&dom, "repositories");
    for repo in ["interop/oci", "interop/docker", "interop/multi"] {
        assert!(
            repos.contains(&format!("registry.interop.test/{repo}")),
            "{repo} in {repos}"
        );
    }
    assert!(
        repos.find("interop/oci").unwrap() < repos.find("interop/docker").unwrap(),
        "the repository pulled twice comes first: {repos}"
    );
    let store = text_of(&dom, "store");
    assert!(store.contains("iB"), "the store's size: {store}");

    // A screenshot renders (ENTREPOT_STATUS_SCREENSHOT keeps it, for docs/status.png).
    let shot = std::env::var("ENTREPOT_STATUS_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| w.dir.join("status.png"));
    chromium(
        &w.dir,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1100",
            &url,
        ],
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a screenshot of the page"
    );
}
