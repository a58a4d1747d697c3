//! The `entrepot` binary itself: configuration errors and signals.

use std::process::{Command, Stdio};

use crate::support::free_port;

fn entrepot() -> Command {
    Command::new(env!("CARGO_BIN_EXE_entrepot"))
}

#[test]
fn a_bad_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "listen = \"nowhere\"\n[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n",
            "listen",
        ),
        ("[[upstream]]\nname = \"a\"\nurl = \"gopher://x\"\n", "upstream[0].url"),
        (
            "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\ncolour = \"red\"\n",
            "colour",
        ),
        (
            "tag_ttl = \"whenever\"\n[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n",
            "tag_ttl",
        ),
        (
            "[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n[[policy]]\nname = \"no-sif\"\naction = \"deny\"\nartifact_typ = \"x\"\n",
            "policy[0]",
        ),
    ];
    for (text, key) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = entrepot().arg("serve").arg("--config").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "stderr names {key:?}: {stderr}");
    }
    let out = entrepot()
        .args(["serve", "--config", "/nonexistent/entrepot.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[[upstream]]\nname = \"a.test\"\nurl = \"http://127.0.0.1:1\"\n",
    )
    .unwrap();
    let mut child = entrepot()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--offline",
            "--config",
        ])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    crate::support::wait_for_port(port);
    assert!(dir.path().join("data/index").exists());
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// A GET on a fresh connection; the whole answer, head and body.
fn raw_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

/// A GET on a fresh connection; the status code.
fn status_of(port: u16, path: &str) -> u16 {
    raw_get(port, path)[9..12].parse().unwrap()
}

#[test]
fn the_server_logs_a_line_per_request_in_json_and_writes_them_all_before_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\nlog_format = \"json\"\noffline = true\ndata_dir = {:?}\n\
             [[upstream]]\nname = \"a.test\"\nurl = \"http://127.0.0.1:1\"\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = entrepot()
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    crate::support::wait_for_port(port);
    let asked = [
        ("/v2/", 200),
        ("/v2/a.test/team/app/manifests/v1?ns=a.test", 404),
        ("/v2/a.test/team/app/blobs/sha256:nothex", 400),
        ("/metrics", 200),
    ];
    for (path, status) in asked {
        assert_eq!(status_of(port, path), status, "{path}");
    }
    let metrics = raw_get(port, "/metrics");
    assert!(metrics.contains("\nentrepot_log_lines_dropped_total 0\n"), "{metrics}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());

    // Every line is a JSON object, tracing's events and access lines alike; each request
    // has its line, written before the process exited.
    let text = std::fs::read_to_string(dir.path().join("log")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access: Vec<_> = lines.iter().filter(|l| l["target"] == "entrepot::access").collect();
    for (asked, status) in asked {
        let (path, query) = asked.split_once('?').map_or((asked, None), |(p, q)| (p, Some(q)));
        assert!(
            access.iter().any(|l| l["fields"]["path"] == path
                && l["fields"].get("query").and_then(|q| q.as_str()) == query
                && l["fields"]["status"] == status),
            "no access line for {asked} with {status}: {text}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "shutting down: draining connections"),
        "tracing's own events are JSON too: {text}"
    );
}
