//! entrepot: a caching pull-through proxy for OCI registries.
//!
//! # Layout
//! Dependencies point one way: a module uses only the modules listed before it here (the
//! `layers` test below reads every file's `crate::` paths and holds the code to this list).
//! - [`clock`]: time as the index records it, and ages for people;
//! - [`sync`]: locks taken over when poisoned;
//! - [`logging`]: log lines off the request path (batched writer, access lines, JSON);
//! - [`progress`]: bytes, rate and time left of long operator work, for a terminal or a log;
//! - [`oci`]: digests, names, media types, reading manifests;
//! - [`policy`]: what may enter (filter rules) and how long it stays (retention), pure;
//! - [`config`]: the TOML file, validated into runtime types;
//! - [`error`]: the one error type, mapped to distribution-spec status and codes;
//! - [`metrics`]: counters and histograms, in Prometheus text;
//! - [`store`]: blob bytes behind the blob-store seam (local content-addressed files today,
//!   verified before commit) and the sled index;
//! - [`cluster`]: several nodes, one fetch: who owns a digest or a tag, peers' tokens;
//! - [`upstream`]: the closed table of upstream registries, request targets, typed registry
//!   calls, auth, redirects, timeouts;
//! - [`cache`]: hits, fills, coalescing, tag negotiation and revalidation, stale-if-error,
//!   repository links, retention sweeps, scrub;
//! - [`access`]: who may pull what;
//! - [`report`]: the operator commands' reports;
//! - [`layout`]: OCI image layouts out (export) and in (import);
//! - [`tls`]: the listener's certificates, reloadable;
//! - [`app`]: wires config, store, upstreams, cache, access and TLS together;
//! - [`seed`]: warming the cache with references;
//! - [`http`]: routes, headers, ranges, sendfile bodies, the rescue from errors to
//!   responses, each request's access line, the operator socket's endpoints;
//! - [`server`]: the listeners, silent connections, graceful shutdown;
//! - [`ops`]: the operator commands (`gc`, `scrub`, `cache stats`, `policy check`, `seed`,
//!   `export`, `import`), through a running server's socket or on the data directory.

#![forbid(unsafe_code)]

pub mod access;
pub mod app;
pub mod cache;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod error;
pub mod http;
pub mod layout;
pub mod logging;
pub mod metrics;
pub mod oci;
pub mod ops;
pub mod policy;
pub mod progress;
pub mod report;
pub mod seed;
pub mod server;
pub mod store;
pub mod sync;
pub mod tls;
pub mod upstream;

pub use app::App;
pub use config::Config;
pub use error::{Error, Result};

#[cfg(test)]
mod layers {
    use std::path::Path;

    /// The modules in the order of the map above.
    fn map() -> Vec<String> {
        include_str!("lib.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//! - [`"))
            .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_owned()))
            .collect()
    }

    /// The top modules a file's code names (`crate::x`, `crate::{x, y}`), comments aside.
    fn used(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let names = match rest.strip_prefix('{') {
                    Some(group) => group.split('}').next().unwrap_or_default().split(',').collect(),
                    None => vec![rest],
                };
                for n in names {
                    let ident: String = n
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    out.push(ident);
                }
            }
        }
        out
    }

    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn dependencies_point_one_way_as_the_map_says() {
        let order = map();
        let rank = |m: &str| order.iter().position(|o| o == m);
        for declared in include_str!("lib.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("pub mod "))
        {
            let name = declared.trim_end_matches(';');
            assert!(rank(name).is_some(), "module {name} is missing from the map in lib.rs");
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        let mut upward = Vec::new();
        for file in all {
            let relative = file.strip_prefix(&src).unwrap();
            let top = relative
                .iter()
                .next()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            let Some(own) = rank(&top) else { continue }; // lib.rs, main.rs
            for dep in used(&std::fs::read_to_string(&file).unwrap()) {
                if rank(&dep).is_some_and(|r| r > own) {
                    upward.push(format!("{} uses {dep}, listed after {top}", relative.display()));
                }
            }
        }
        upward.sort();
        upward.dedup();
        assert!(upward.is_empty(), "imports against the map:\n{}", upward.join("\n"));
    }

    #[test]
    fn the_reader_sees_grouped_and_plain_paths_but_not_comments() {
        let text = "use crate::{cache::X, http};\n// crate::server\nlet x = crate::ops::run();";
        assert_eq!(used(text), ["cache", "http", "ops"]);
    }
}
