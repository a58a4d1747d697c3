//! Which upstream a request is for, and the repository name that upstream knows.
//!
//! In order: containerd's `?ns=<host>`; a first path component naming a configured upstream
//! (`/v2/docker.io/library/alpine/…`); the default upstream. A first component that looks
//! like a registry host but names no `[[upstream]]` is refused: the table is closed.

use std::sync::Arc;

use super::{Upstream, Upstreams};
use crate::error::{Error, Result};
use crate::oci::name;

/// Where content comes from: an upstream and the repository name it knows.
#[derive(Debug, Clone)]
pub struct Target {
    pub upstream: Arc<Upstream>,
    pub repo: String,
    /// Asked by another node of the cluster, for a client that node has let in.
    pub for_peer: bool,
}

impl Upstreams {
    /// The target of a name as a client wrote it, `?ns=` given apart.
    pub fn resolve(&self, path_name: &str, ns: Option<&str>) -> Result<Target> {
        if let Some(ns) = ns {
            let up = self.get(ns).ok_or_else(|| not_configured(ns))?;
            return target(up, path_name);
        }
        if let Some((first, rest)) = path_name.split_once('/') {
            if let Some(up) = self.get(first) {
                return target(up, rest);
            }
            if looks_like_host(first) {
                if !name::is_valid_name(path_name) {
                    return Err(Error::NameInvalid(shown(path_name)));
                }
                return Err(not_configured(first));
            }
        }
        let up = self.default_upstream().ok_or_else(|| {
            Error::NameUnknown(format!(
                "{}: no default upstream; prefix the name with an upstream or use ?ns=",
                shown(path_name)
            ))
        })?;
        target(up, path_name)
    }
}

fn target(up: &Arc<Upstream>, repo: &str) -> Result<Target> {
    if !name::is_valid_name(repo) {
        return Err(Error::NameInvalid(shown(repo)));
    }
    let repo = if up.config.library_prefix && !repo.contains('/') {
        format!("library/{repo}")
    } else {
        repo.to_owned()
    };
    Ok(Target {
        upstream: up.clone(),
        repo,
        for_peer: false,
    })
}

/// Docker's rule for the first component of a reference: a host has a dot or a port, or is
/// `localhost`.
fn looks_like_host(c: &str) -> bool {
    c.contains('.') || c.contains(':') || c == "localhost"
}

fn not_configured(host: &str) -> Error {
    Error::NameUnknown(format!("upstream {} is not configured here", shown(host)))
}

/// A client-supplied string, cut short for messages.
fn shown(s: &str) -> String {
    s.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn upstreams() -> Upstreams {
        let c = Config::parse(
            r#"
default_upstream = "docker.io"
[[upstream]]
name = "docker.io"
url = "https://registry-1.docker.io"
[[upstream]]
name = "ghcr.io"
url = "https://ghcr.io"
[[upstream]]
name = "localhost:5001"
url = "http://127.0.0.1:5001"
"#,
        )
        .unwrap();
        Upstreams::build(&c, Default::default()).unwrap()
    }

    fn r(name: &str, ns: Option<&str>) -> Result<(String, String)> {
        upstreams()
            .resolve(name, ns)
            .map(|t| (t.upstream.name().to_owned(), t.repo))
    }

    #[test]
    fn a_repository_prefix_names_the_repository_upstream_not_here() {
        let c = crate::config::Config::parse(
            r#"
[[upstream]]
name = "docker.io"
url = "http://regional.example:5000"
repository_prefix = "docker.io"
library_prefix = true
"#,
        )
        .unwrap();
        let ups = Upstreams::build(&c, Default::default()).unwrap();
        let t = ups.resolve("alpine", Some("docker.io")).unwrap();
        assert_eq!(t.repo, "library/alpine");
        assert_eq!(t.upstream.remote(&t.repo), "docker.io/library/alpine");
        assert_eq!(upstreams().get("ghcr.io").unwrap().remote("org/app"), "org/app");
    }

    #[test]
    fn routes_by_ns_prefix_and_default() {
        assert_eq!(
            r("library/alpine", Some("docker.io")).unwrap(),
            ("docker.io".into(), "library/alpine".into())
        );
        assert_eq!(
            r("alpine", Some("registry-1.docker.io")).unwrap(),
            ("docker.io".into(), "library/alpine".into())
        );
        assert_eq!(
            r("org/app", Some("GHCR.IO")).unwrap(),
            ("ghcr.io".into(), "org/app".into())
        );
        assert_eq!(
            r("docker.io/alpine", None).unwrap(),
            ("docker.io".into(), "library/alpine".into())
        );
        assert_eq!(
            r("index.docker.io/library/alpine", None).unwrap(),
            ("docker.io".into(), "library/alpine".into())
        );
        assert_eq!(
            r("ghcr.io/org/app", None).unwrap(),
            ("ghcr.io".into(), "org/app".into())
        );
        assert_eq!(
            r("localhost:5001/a/b", None).unwrap(),
            ("localhost:5001".into(), "a/b".into())
        );
        assert_eq!(
            r("alpine", None).unwrap(),
            ("docker.io".into(), "library/alpine".into())
        );
        assert_eq!(r("org/app", None).unwrap(), ("docker.io".into(), "org/app".into()));
        assert_eq!(r("ghcr.io/x", Some("docker.io")).map(|t| t.1).unwrap(), "ghcr.io/x");
    }

    #[test]
    fn refuses_undeclared_upstreams_and_bad_names() {
        assert!(matches!(r("alpine", Some("evil.example")), Err(Error::NameUnknown(_))));
        assert!(matches!(r("evil.example/x", None), Err(Error::NameUnknown(_))));
        assert!(matches!(r("localhost/x", None), Err(Error::NameUnknown(_))));
        assert!(matches!(r("Alpine", None), Err(Error::NameInvalid(_))));
        assert!(matches!(r("docker.io/..", None), Err(Error::NameInvalid(_))));
        assert!(matches!(r("a//b", None), Err(Error::NameInvalid(_))));
    }
}
