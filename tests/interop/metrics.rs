//! What operators' own tools make of entrepot: `promtool check metrics` on a live
//! `/metrics` after real pulls, the alert rules checked and unit-tested by promtool, and
//! every query of the rules and the Grafana dashboard checked against the metrics a live
//! entrepot exports.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::*;

const RULES: &str = "deploy/prometheus/entrepot-alerts.yml";
const RULE_TESTS: &str = "deploy/prometheus/entrepot-alerts.test.yml";
const DASHBOARD: &str = "deploy/grafana/entrepot.json";

fn repo_file(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `promtool ARGS` with `stdin`; its combined output, asserting success.
fn promtool(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The metric families a `/metrics` page declares, with the series names each stands for
/// (a histogram's `_bucket`, `_sum` and `_count`).
fn exported_names(page: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in page.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        names.insert(name.to_owned());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

/// The metric names a query text mentions (`entrepot_…`).
fn queried_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("entrepot_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Every `expr` of the dashboard's panels, with the panel's title.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("a dashboard has panels") {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        let targets = panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
        assert!(!targets.is_empty(), "panel {title:?} queries nothing");
        for t in targets {
            out.push((
                title.clone(),
                t["expr"].as_str().expect("a target has an expr").to_owned(),
            ));
        }
    }
    out
}

/// The value of the one series `name{labels…}` on the page, if it is there.
fn series_value(page: &str, name: &str, labels: &[&str]) -> Option<f64> {
    page.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn prometheus_tools_accept_the_live_metrics_the_alert_rules_and_the_dashboard() {
    if !tools_present(&["docker-registry", "skopeo", "promtool", "curl"]) {
        return;
    }
    let w = world();
    for (i, (image, all)) in IMAGES.iter().enumerate() {
        skopeo_to_dir(
            &format!("{}/{image}", w.entrepot_addr),
            &w.dir.join(format!("m-{i}")),
            *all,
        );
    }
    // A client's mistake and a tag the upstream does not have, beside the pulls.
    for path in ["/v2/interop/oci/manifests/nope", "/v2/interop/oci/blobs/sha256:zz"] {
        run(Command::new("curl").args(["-s", "-o", "/dev/null", &format!("http://{}{path}", w.entrepot_addr)]));
    }
    let page = run(Command::new("curl").args(["-fsS", &format!("http://{}/metrics", w.entrepot_addr)]));

    // Prometheus' own linter accepts the page as it is after real traffic.
    let lint = promtool(&["check", "metrics"], &page);
    assert!(lint.trim().is_empty(), "promtool check metrics complains:\n{lint}");
    let upstream = "upstream=\"registry.interop.test\"";
    assert!(
        series_value(
            &page,
            "entrepot_upstream_requests_total",
            &[upstream, "result=\"answered\""]
        )
        .unwrap_or(0.0)
            > 0.0,
        "the pulls' upstream requests are counted:\n{page}"
    );
    assert!(
        series_value(&page, "entrepot_upstream_bytes_total", &[upstream]).unwrap_or(0.0) > 0.0,
        "{page}"
    );
    assert!(
        series_value(&page, "entrepot_http_requests_total", &["status=\"404\""]).is_some(),
        "{page}"
    );

    // The alert rules parse, and their unit tests pass.
    let rules = repo_file(RULES);
    let check = promtool(&["check", "rules", rules.to_str().unwrap()], "");
    assert!(check.contains("SUCCESS"), "{check}");
    let tested = promtool(&["test", "rules", repo_file(RULE_TESTS).to_str().unwrap()], "");
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Every metric the rules and the dashboard query is one this entrepot exports.
    let exported = exported_names(&page);
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_file(DASHBOARD)).unwrap()).unwrap();
    let queries = dashboard_queries(&dashboard);
    let mut asked = queried_names(&rules_text);
    for (_, expr) in &queries {
        asked.extend(queried_names(expr));
    }
    assert!(asked.len() >= 10, "the rules and the dashboard query {asked:?}");
    let unknown: Vec<_> = asked.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "queried but not exported: {unknown:?}\nexported: {exported:?}"
    );

    // The dashboard's queries are valid PromQL: promtool checks them as recording rules.
    let mut as_rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (title, expr)) in queries.iter().enumerate() {
        let expr = expr.replace("$__rate_interval", "5m");
        as_rules.push_str(&format!(
            "      - record: dashboard:panel_{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
        assert!(!title.is_empty(), "panel {i} has a title");
    }
    let file = w.dir.join("dashboard-queries.yml");
    std::fs::write(&file, as_rules).unwrap();
    promtool(&["check", "rules", file.to_str().unwrap()], "");
}

#[test]
fn names_are_read_from_queries_and_exposition() {
    let page = "# HELP a_total x\n# TYPE entrepot_a_total counter\n# TYPE entrepot_lat_seconds histogram\n";
    let exported = exported_names(page);
    assert!(exported.contains("entrepot_a_total") && exported.contains("entrepot_lat_seconds_bucket"));
    let asked = queried_names("sum(rate(entrepot_a_total{x=\"y\"}[5m])) / entrepot_b");
    assert_eq!(
        asked,
        BTreeSet::from(["entrepot_a_total".to_owned(), "entrepot_b".to_owned()])
    );
}
