//! Request paths of the distribution API, parsed by hand: a repository name has any number
//! of components, so the endpoint is found by splitting from the right.

use crate::error::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /v2/`
    Base,
    Manifest(String),
    Blob(String),
    Tags,
    Referrers(String),
    /// Blob uploads: push only, which a cache does not take.
    Upload,
    /// `GET /v2/_catalog`: the repositories this cache holds.
    Catalog,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The repository name as the client wrote it (prefix included), not yet validated.
    pub name: String,
    pub endpoint: Endpoint,
}

impl Route {
    pub fn label(&self) -> &'static str {
        match self.endpoint {
            Endpoint::Base => "base",
            Endpoint::Manifest(_) => "manifest",
            Endpoint::Blob(_) => "blob",
            Endpoint::Tags => "tags",
            Endpoint::Referrers(_) => "referrers",
            Endpoint::Upload => "upload",
            Endpoint::Catalog => "catalog",
        }
    }
}

pub fn parse(path: &str) -> Result<Route, Error> {
    if path == "/v2" || path == "/v2/" {
        return Ok(Route {
            name: String::new(),
            endpoint: Endpoint::Base,
        });
    }
    let rest = path.strip_prefix("/v2/").ok_or_else(|| not_found(path))?;
    if rest == "_catalog" {
        return Ok(Route {
            name: String::new(),
            endpoint: Endpoint::Catalog,
        });
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Ok(Route {
            name: name.to_owned(),
            endpoint: Endpoint::Tags,
        });
    }
    if let Some(i) = rest.rfind("/blobs/uploads") {
        let tail = &rest[i + "/blobs/uploads".len()..];
        if tail.is_empty() || tail.starts_with('/') {
            return Ok(Route {
                name: rest[..i].to_owned(),
                endpoint: Endpoint::Upload,
            });
        }
    }
    type Make = fn(String) -> Endpoint;
    let markers: [(&str, Make); 3] = [
        ("/manifests/", Endpoint::Manifest),
        ("/blobs/", Endpoint::Blob),
        ("/referrers/", Endpoint::Referrers),
    ];
    let found = markers
        .iter()
        .filter_map(|(m, make)| rest.rfind(m).map(|i| (i, *m, make)))
        .filter(|(i, m, _)| !rest[i + m.len()..].contains('/'))
        .max_by_key(|(i, _, _)| *i);
    match found {
        Some((i, m, make)) if i > 0 && i + m.len() < rest.len() => Ok(Route {
            name: rest[..i].to_owned(),
            endpoint: make(rest[i + m.len()..].to_owned()),
        }),
        _ => Err(not_found(path)),
    }
}

fn not_found(path: &str) -> Error {
    let shown: String = path.chars().take(100).collect();
    Error::NameUnknown(format!("no such endpoint: {shown}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsing_any_path_never_panics(s in "/.{0,300}") {
            let _ = parse(&s);
        }

        #[test]
        fn manifest_paths_give_back_name_and_reference(name in "[a-z0-9]{1,10}(/[a-z0-9]{1,10}){0,4}", tag in "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}") {
            let r = parse(&format!("/v2/{name}/manifests/{tag}")).unwrap();
            prop_assert_eq!(r.name, name);
            prop_assert_eq!(r.endpoint, Endpoint::Manifest(tag));
        }
    }

    fn r(path: &str) -> (String, Endpoint) {
        let r = parse(path).unwrap();
        (r.name, r.endpoint)
    }

    #[test]
    fn parses_endpoints_from_the_right() {
        assert_eq!(r("/v2/").1, Endpoint::Base);
        assert_eq!(r("/v2").1, Endpoint::Base);
        assert_eq!(
            r("/v2/a/b/manifests/latest"),
            ("a/b".into(), Endpoint::Manifest("latest".into()))
        );
        assert_eq!(
            r("/v2/docker.io/library/alpine/blobs/sha256:x"),
            ("docker.io/library/alpine".into(), Endpoint::Blob("sha256:x".into()))
        );
        assert_eq!(
            r("/v2/a/manifests/b/blobs/x"),
            ("a/manifests/b".into(), Endpoint::Blob("x".into()))
        );
        assert_eq!(
            r("/v2/a/blobs/b/manifests/x"),
            ("a/blobs/b".into(), Endpoint::Manifest("x".into()))
        );
        assert_eq!(r("/v2/a/tags/list"), ("a".into(), Endpoint::Tags));
        assert_eq!(
            r("/v2/a/referrers/sha256:x"),
            ("a".into(), Endpoint::Referrers("sha256:x".into()))
        );
        assert_eq!(r("/v2/a/blobs/uploads/"), ("a".into(), Endpoint::Upload));
        assert_eq!(r("/v2/a/blobs/uploads/123"), ("a".into(), Endpoint::Upload));
        assert_eq!(r("/v2/_catalog").1, Endpoint::Catalog);
    }

    #[test]
    fn unknown_paths_are_errors() {
        for p in [
            "/",
            "/v1/x",
            "/v2/a",
            "/v2/a/manifests/",
            "/v2/manifests/x",
            "/v2//manifests/x/y",
            "/v2/a/blobs/x/y",
        ] {
            assert!(parse(p).is_err(), "{p} parsed");
        }
    }
}
