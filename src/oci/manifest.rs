//! Reading what entrepot needs out of a manifest or index: the digests it references, its
//! subject and its artifact type. Manifests are only ever *read* here; the bytes served are
//! always the upstream's own.

use serde::Deserialize;

use super::digest::Digest;
use super::media;

/// A content descriptor, reduced to the fields entrepot uses.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default)]
    blobs: Vec<Descriptor>,
    subject: Option<Descriptor>,
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What a manifest says about itself and its graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub media_type: String,
    /// `artifactType`, else the config's media type (image-spec artifact guidance).
    pub artifact_type: Option<String>,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, thiserror::Error)]
#[error("manifest is not valid JSON of a known shape: {0}")]
pub struct ManifestError(#[from] serde_json::Error);

impl Parsed {
    /// Every digest this manifest points at: config, layers, children, but not its subject.
    pub fn references(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(&self.layers).chain(&self.manifests)
    }
}

/// Parses manifest bytes. `content_type` is the upstream's `Content-Type`, which wins over
/// the body's own `mediaType` when it names a manifest type (old Docker manifests omit it).
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Parsed, ManifestError> {
    let raw: Raw = serde_json::from_slice(bytes)?;
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or_default().trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != media::OCTET_STREAM && *c != "text/plain");
    let media_type = match (header, &raw.media_type) {
        (Some(h), _) => h.to_owned(),
        (None, Some(m)) => m.clone(),
        (None, None) if !raw.manifests.is_empty() => media::OCI_INDEX.to_owned(),
        (None, None) => media::OCI_MANIFEST.to_owned(),
    };
    let artifact_type = raw
        .artifact_type
        .clone()
        .or_else(|| raw.config.as_ref().map(|c| c.media_type.clone()));
    let mut layers = raw.layers;
    layers.extend(raw.blobs);
    Ok(Parsed {
        media_type,
        artifact_type,
        config: raw.config,
        layers,
        manifests: raw.manifests,
        subject: raw.subject,
        annotations: raw.annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&bytes, None);
        }

        #[test]
        fn parsing_json_shaped_noise_never_panics(s in r#"\{("(mediaType|layers|manifests|config|subject|artifactType|digest|size)":("[a-z:0-9]{0,70}"|-?[0-9]{1,20}|\[\]|\{\}|null),?){0,6}\}"#) {
            let _ = parse(s.as_bytes(), Some("application/vnd.oci.image.index.v1+json"));
        }
    }

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn reads_an_image_manifest_with_subject() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.dev.cosign.v1+json","digest":"{}","size":2}},
            "layers":[{{"mediaType":"application/octet-stream","digest":"{}","size":3}}],
            "subject":{{"mediaType":"{}","digest":"{}","size":4}}}}"#,
            media::OCI_MANIFEST,
            d('a'),
            d('b'),
            media::OCI_MANIFEST,
            d('c')
        );
        let p = parse(body.as_bytes(), None).unwrap();
        assert_eq!(p.media_type, media::OCI_MANIFEST);
        assert_eq!(p.artifact_type.as_deref(), Some("application/vnd.dev.cosign.v1+json"));
        let refs: Vec<String> = p.references().map(|r| r.digest.to_string()).collect();
        assert_eq!(refs, [d('a'), d('b')]);
        assert_eq!(p.subject.unwrap().digest.to_string(), d('c'));
    }

    #[test]
    fn explicit_artifact_type_wins_and_header_names_the_type() {
        let body = format!(
            r#"{{"schemaVersion":2,"artifactType":"application/x.sbom","manifests":[{{"mediaType":"{}","digest":"{}","size":1}}]}}"#,
            media::OCI_MANIFEST,
            d('e')
        );
        let p = parse(body.as_bytes(), Some(media::OCI_INDEX)).unwrap();
        assert_eq!(p.media_type, media::OCI_INDEX);
        assert_eq!(p.artifact_type.as_deref(), Some("application/x.sbom"));
        assert_eq!(p.manifests.len(), 1);
    }

    #[test]
    fn rejects_bad_digests_inside() {
        let body = r#"{"schemaVersion":2,"layers":[{"mediaType":"x","digest":"sha256:nothex","size":1}]}"#;
        assert!(parse(body.as_bytes(), None).is_err());
        assert!(parse(b"not json", None).is_err());
    }
}
