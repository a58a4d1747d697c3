//! The distribution-spec grammar for repository names and tags, checked by hand so that
//! nothing derived from a request path reaches the disk or an upstream unchecked.

/// Longest repository name accepted, upstream prefix included (distribution's limit).
pub const MAX_NAME_LEN: usize = 255;

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('/').all(is_valid_component)
}

/// One path component: alphanumeric runs joined by `.`, `_`, `__` or any run of `-`.
pub fn is_valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn is_valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty() && b.len() <= 128 && word(b[0]) && b[1..].iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// Splits a reference as clients write it, `name[:tag|@digest]`, the tag defaulting to
/// `latest`. The name may start with a registry host with a port (`localhost:5000/a`).
pub fn split_reference(r: &str) -> (&str, &str) {
    if let Some((name, digest)) = r.split_once('@') {
        return (name, digest);
    }
    let last_slash = r.rfind('/').map_or(0, |i| i + 1);
    match r[last_slash..].rfind(':') {
        Some(i) => (&r[..last_slash + i], &r[last_slash + i + 1..]),
        None => (r, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn name_checks_never_panic(s in ".{0,300}") {
            let _ = is_valid_name(&s);
            let _ = is_valid_tag(&s);
            let _ = split_reference(&s);
        }

        #[test]
        fn names_of_the_grammar_are_accepted(s in "[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){0,3}(/[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){0,2}){0,4}") {
            prop_assert!(is_valid_name(&s), "{s:?}");
        }

        #[test]
        fn tags_of_the_grammar_are_accepted(s in "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}") {
            prop_assert!(is_valid_tag(&s));
        }
    }

    #[test]
    fn names_follow_the_spec_grammar() {
        for ok in [
            "alpine",
            "library/alpine",
            "a/b/c",
            "my-app",
            "my--app",
            "a.b",
            "a_b",
            "a__b",
            "docker.io/x",
        ] {
            assert!(is_valid_name(ok), "{ok} refused");
        }
        for bad in [
            "", "/", "a/", "/a", "A", "a//b", "a___b", "a..b", "-a", "a-", "..", "a/../b", "a/./b", "%2e%2e", "a b",
            "a:b", "a\\b", "é",
        ] {
            assert!(!is_valid_name(bad), "{bad:?} accepted");
        }
        assert!(!is_valid_name(&"a".repeat(MAX_NAME_LEN + 1)));
    }

    #[test]
    fn references_split_like_clients_write_them() {
        assert_eq!(
            split_reference("docker.io/library/alpine:3.20"),
            ("docker.io/library/alpine", "3.20")
        );
        assert_eq!(split_reference("localhost:5000/a/b"), ("localhost:5000/a/b", "latest"));
        assert_eq!(split_reference("localhost:5000/a/b:v1"), ("localhost:5000/a/b", "v1"));
        assert_eq!(split_reference("ghcr.io/o/a@sha256:abc"), ("ghcr.io/o/a", "sha256:abc"));
        assert_eq!(split_reference("alpine"), ("alpine", "latest"));
    }

    #[test]
    fn tags_follow_the_spec_grammar() {
        for ok in ["latest", "3.20", "v1.0.0-rc1", "_x", "A", "sha256-abc.sig"] {
            assert!(is_valid_tag(ok), "{ok} refused");
        }
        for bad in ["", ".x", "-x", "a:b", "a/b", "a b"] {
            assert!(!is_valid_tag(bad), "{bad:?} accepted");
        }
        assert!(is_valid_tag(&"a".repeat(128)));
        assert!(!is_valid_tag(&"a".repeat(129)));
    }
}
