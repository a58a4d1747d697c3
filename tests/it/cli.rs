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
