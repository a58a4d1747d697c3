//! Manifest media types and the `Accept` classes that tag resolution is keyed by.
//!
//! A tag's digest is one fact, resolved with every modern type accepted ([`AcceptClass::ALL`]).
//! What a narrower client receives is content negotiation on top of it: the manifest itself
//! when the client accepts its type, else what the upstream would answer that client (a
//! platform's manifest picked from an index, or a 404).

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The manifest media types entrepot knows, in the order they are offered upstream.
const KNOWN: [&str; 6] = [
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1_SIGNED,
    DOCKER_SCHEMA1,
];
const MODERN: u8 = 0b1111;

/// The set of known manifest media types a client accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AcceptClass(u8);

impl AcceptClass {
    /// Every modern manifest type: what a client sending no usable `Accept` gets.
    pub const ALL: AcceptClass = AcceptClass(MODERN);

    /// Reads all `Accept` header values. Parameters are ignored except `q=0`, which excludes.
    pub fn from_accept<'a>(values: impl IntoIterator<Item = &'a str>) -> AcceptClass {
        let mut bits = 0u8;
        for item in values.into_iter().flat_map(|v| v.split(',')) {
            let mut parts = item.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused = parts.any(|p| matches!(p.replace(' ', "").as_str(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            if refused {
                continue;
            }
            if let Some(i) = KNOWN.iter().position(|k| k.eq_ignore_ascii_case(media)) {
                bits |= 1 << i;
            }
        }
        if bits == 0 {
            AcceptClass::ALL
        } else {
            AcceptClass(bits)
        }
    }

    /// The class whose answer this class gets: a client accepting every modern type gets
    /// what `ALL` gets, whatever else it lists.
    pub fn widened(self) -> AcceptClass {
        if self.0 & MODERN == MODERN {
            AcceptClass::ALL
        } else {
            self
        }
    }

    pub fn accepts(self, media_type: &str) -> bool {
        match KNOWN.iter().position(|k| *k == media_type) {
            Some(i) => self.0 & (1 << i) != 0,
            // A type entrepot does not know (an artifact manifest, say) was resolved through
            // this class upstream, so it is what this class gets.
            None => true,
        }
    }

    /// The `Accept` header entrepot sends upstream for this class.
    pub fn header_value(self) -> String {
        let types: Vec<&str> = KNOWN
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, t)| *t)
            .collect();
        types.join(", ")
    }

    /// A short stable key for the index.
    pub fn key(self) -> String {
        format!("{:02x}", self.0)
    }
}

/// Docker's schema 1 (deprecated, refused by current clients): distribution signs it anew on
/// every request, so its bytes never match a digest twice.
pub fn is_schema1(media_type: &str) -> bool {
    let bare = media_type.split(';').next().unwrap_or_default().trim();
    bare.eq_ignore_ascii_case(DOCKER_SCHEMA1) || bare.eq_ignore_ascii_case(DOCKER_SCHEMA1_SIGNED)
}

/// Whether a media type names an index (a list of manifests) rather than a single manifest.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_wildcard_accept_means_every_modern_type() {
        assert_eq!(AcceptClass::from_accept([]), AcceptClass::ALL);
        assert_eq!(AcceptClass::from_accept(["*/*"]), AcceptClass::ALL);
        assert!(!AcceptClass::ALL.accepts(DOCKER_SCHEMA1));
        assert!(AcceptClass::ALL.accepts(OCI_INDEX));
    }

    #[test]
    fn classes_differ_by_accepted_types() {
        let docker = AcceptClass::from_accept([DOCKER_MANIFEST]);
        let both = AcceptClass::from_accept([&format!("{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.9") as &str]);
        assert_ne!(docker, both);
        assert!(docker.accepts(DOCKER_MANIFEST));
        assert!(!docker.accepts(OCI_MANIFEST));
        assert_eq!(docker.header_value(), DOCKER_MANIFEST);
        assert!(both.accepts(OCI_MANIFEST));
        let split_headers = AcceptClass::from_accept([DOCKER_MANIFEST, OCI_MANIFEST]);
        assert_eq!(split_headers, both);
    }

    #[test]
    fn a_class_with_every_modern_type_is_widened_to_all() {
        let everything = AcceptClass::from_accept([&format!(
            "{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_LIST}, {DOCKER_SCHEMA1_SIGNED}"
        ) as &str]);
        assert_ne!(everything, AcceptClass::ALL);
        assert_eq!(everything.widened(), AcceptClass::ALL);
        let docker = AcceptClass::from_accept([DOCKER_MANIFEST]);
        assert_eq!(docker.widened(), docker);
        assert!(is_schema1(
            "application/vnd.docker.distribution.manifest.v1+prettyjws; charset=utf-8"
        ));
        assert!(!is_schema1(DOCKER_MANIFEST));
    }

    #[test]
    fn q_zero_excludes_a_type() {
        let c = AcceptClass::from_accept([&format!("{OCI_INDEX};q=0, {OCI_MANIFEST}") as &str]);
        assert!(!c.accepts(OCI_INDEX));
        assert!(c.accepts(OCI_MANIFEST));
    }
}
