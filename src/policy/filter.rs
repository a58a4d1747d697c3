//! Filtering: which manifests may enter. `[[policy]]` rules are tried in order and the first
//! whose every field matches decides; `default_policy` decides when none does. Pure
//! functions: the cache gathers the facts (`Subject`) and acts on the `Decision`.

use serde::Deserialize;

use super::cosign::Keyring;
use super::glob::Globs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
}

/// One `[[policy]]` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Shown in logs, counters and `policy check`; defaults to `policy[<index>]`.
    #[serde(default)]
    pub name: String,
    pub action: Action,
    pub reason: Option<String>,
    pub upstream: Option<Globs>,
    pub repository: Option<Globs>,
    pub tag: Option<Globs>,
    pub media_type: Option<Globs>,
    pub artifact_type: Option<Globs>,
    pub layer_media_type: Option<Globs>,
    pub platform: Option<Globs>,
    /// An allowed manifest is served only once it has a referrer of one of these artifact
    /// types (an SBOM, an attestation). A presence check: it says nothing of who made it.
    pub require_referrer: Option<Globs>,
    /// An allowed manifest is served only once a cosign signature by one of these keys
    /// verifies for its digest.
    pub require_signature: Option<RequireSignature>,
}

/// `require_signature = { cosign_keys = [...], each_child = false }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequireSignature {
    /// PEM public keys (`cosign generate-key-pair` writes `cosign.pub`).
    pub cosign_keys: Vec<std::path::PathBuf>,
    /// Each child of an index must carry its own signature (`cosign sign --recursive`).
    /// Otherwise a child is covered by the verified signature of the index listing it.
    #[serde(default)]
    pub each_child: bool,
    /// The keys, loaded by the config.
    #[serde(skip)]
    pub keyring: Keyring,
}

/// What an allow rule requires before it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conditions {
    pub referrer: Option<Globs>,
    pub signature: Option<RequireSignature>,
    /// The rule's own `reason`, when it gives one.
    pub reason: Option<String>,
}

/// The facts a rule is matched against.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub upstream: String,
    pub repository: String,
    /// The tag the manifest was reached through, when it was.
    pub tag: Option<String>,
    /// `None` while the manifest is not known yet (a decision before any upstream contact).
    pub manifest: Option<ManifestFacts>,
    /// `os/arch[/variant]` from the index that lists this manifest, when known.
    pub platform: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ManifestFacts {
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub layer_media_types: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(String),
    /// Allowed once the conditions hold; else denied.
    AllowIf(Conditions),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The rule that decided, or `default_policy`.
    pub rule: String,
    pub verdict: Verdict,
}

pub const DEFAULT_RULE: &str = "default_policy";

/// A field's verdict on a subject: it matches, it does not, or it needs the manifest.
enum Field {
    Yes,
    No,
    Unknown,
}

fn field(globs: &Option<Globs>, value: Option<&str>) -> Field {
    match (globs, value) {
        (None, _) => Field::Yes,
        (Some(g), Some(v)) if g.matches(v) => Field::Yes,
        _ => Field::No,
    }
}

impl Rule {
    fn test(&self, s: &Subject) -> Field {
        let base = [
            field(&self.upstream, Some(&s.upstream)),
            field(&self.repository, Some(&s.repository)),
            field(&self.tag, s.tag.as_deref()),
            platform_field(&self.platform, s.platform.as_deref()),
        ];
        if base.iter().any(|f| matches!(f, Field::No)) {
            return Field::No;
        }
        let needs_manifest =
            self.media_type.is_some() || self.artifact_type.is_some() || self.layer_media_type.is_some();
        let Some(m) = &s.manifest else {
            return if needs_manifest { Field::Unknown } else { Field::Yes };
        };
        let layers = match &self.layer_media_type {
            None => Field::Yes,
            Some(g) if m.layer_media_types.iter().any(|l| g.matches(l)) => Field::Yes,
            Some(_) => Field::No,
        };
        let fields = [
            field(&self.media_type, Some(&m.media_type)),
            field(&self.artifact_type, m.artifact_type.as_deref()),
            layers,
        ];
        if fields.iter().all(|f| matches!(f, Field::Yes)) {
            Field::Yes
        } else {
            Field::No
        }
    }

    /// Whether the rule can judge what has no manifest: a blob, a repository.
    pub fn names_only_upstream_and_repository(&self) -> bool {
        self.tag.is_none()
            && self.media_type.is_none()
            && self.artifact_type.is_none()
            && self.layer_media_type.is_none()
            && self.platform.is_none()
            && self.require_referrer.is_none()
            && self.require_signature.is_none()
    }

    fn decide(&self) -> Decision {
        let verdict = match self.action {
            Action::Deny => Verdict::Deny(
                self.reason
                    .clone()
                    .unwrap_or_else(|| format!("denied by policy rule {}", self.name)),
            ),
            Action::Allow if self.require_referrer.is_none() && self.require_signature.is_none() => Verdict::Allow,
            Action::Allow => Verdict::AllowIf(Conditions {
                referrer: self.require_referrer.clone(),
                signature: self.require_signature.clone(),
                reason: self.reason.clone(),
            }),
        };
        Decision {
            rule: self.name.clone(),
            verdict,
        }
    }
}

/// Platform globs match `os/arch` and `os/arch/variant`; no platform known, no match.
fn platform_field(globs: &Option<Globs>, platform: Option<&str>) -> Field {
    let Some(g) = globs else { return Field::Yes };
    let Some(p) = platform else { return Field::No };
    let short = p.splitn(3, '/').take(2).collect::<Vec<_>>().join("/");
    if g.matches(p) || g.matches(&short) {
        Field::Yes
    } else {
        Field::No
    }
}

/// The first matching rule's decision, or the default's. `None` when the subject has no
/// manifest yet and a rule that might match needs one: fetch it and ask again.
pub fn evaluate(rules: &[Rule], default: Action, s: &Subject) -> Option<Decision> {
    for rule in rules {
        match rule.test(s) {
            Field::Yes => return Some(rule.decide()),
            Field::No => continue,
            Field::Unknown => return None,
        }
    }
    let verdict = match default {
        Action::Allow => Verdict::Allow,
        Action::Deny => Verdict::Deny("not allowed by any policy rule (default_policy = \"deny\")".into()),
    };
    Some(Decision {
        rule: DEFAULT_RULE.into(),
        verdict,
    })
}

/// `os/arch[/variant]` from an index entry's `platform`.
pub fn platform_string(platform: &serde_json::Value) -> Option<String> {
    let os = platform.get("os")?.as_str()?;
    let arch = platform.get("architecture")?.as_str()?;
    Some(match platform.get("variant").and_then(|v| v.as_str()) {
        Some(v) if !v.is_empty() => format!("{os}/{arch}/{v}"),
        _ => format!("{os}/{arch}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(toml_text: &str) -> Vec<Rule> {
        #[derive(Deserialize)]
        struct F {
            policy: Vec<Rule>,
        }
        let mut r = toml::from_str::<F>(toml_text).unwrap().policy;
        for (i, rule) in r.iter_mut().enumerate() {
            if rule.name.is_empty() {
                rule.name = format!("policy[{i}]");
            }
        }
        r
    }

    fn image(media: &str, artifact: &str, layers: &[&str]) -> ManifestFacts {
        ManifestFacts {
            media_type: media.into(),
            artifact_type: Some(artifact.into()),
            layer_media_types: layers.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn subject(repo: &str, tag: Option<&str>, m: Option<ManifestFacts>, platform: Option<&str>) -> Subject {
        Subject {
            upstream: "docker.io".into(),
            repository: repo.into(),
            tag: tag.map(Into::into),
            manifest: m,
            platform: platform.map(Into::into),
        }
    }

    const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
    const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    const SIF: &str = "application/vnd.sylabs.sif.config.v1+json";

    #[test]
    fn each_field_matches_and_first_match_wins() {
        let r = rules(
            r#"
[[policy]]
action = "deny"
artifact_type = "application/vnd.sylabs.sif.*"
reason = "no SIF"
[[policy]]
action = "deny"
layer_media_type = ["application/vnd.docker.image.rootfs.foreign.*", "application/vnd.oci.image.layer.nondistributable.*"]
[[policy]]
action = "allow"
platform = ["linux/amd64", "linux/arm64"]
[[policy]]
action = "deny"
platform = "*"
reason = "platform"
[[policy]]
name = "no-latest"
action = "deny"
upstream = "docker.io"
repository = "library/*"
tag = "latest"
[[policy]]
action = "deny"
media_type = "application/vnd.docker.distribution.manifest.v1+*"
"#,
        );
        let d = |s: &Subject| evaluate(&r, Action::Allow, s).unwrap();
        let sif = d(&subject("x/y", None, Some(image(OCI, SIF, &[])), None));
        assert_eq!(
            (sif.rule.as_str(), sif.verdict),
            ("policy[0]", Verdict::Deny("no SIF".into()))
        );
        let win = d(&subject(
            "x/y",
            None,
            Some(image(
                OCI,
                IMAGE_CONFIG,
                &["application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"],
            )),
            None,
        ));
        assert_eq!(win.rule, "policy[1]");
        assert!(matches!(win.verdict, Verdict::Deny(ref r) if r.contains("policy[1]")));
        assert_eq!(
            d(&subject(
                "x/y",
                None,
                Some(image(OCI, IMAGE_CONFIG, &[])),
                Some("linux/arm64/v8")
            ))
            .verdict,
            Verdict::Allow
        );
        assert_eq!(
            d(&subject(
                "x/y",
                None,
                Some(image(OCI, IMAGE_CONFIG, &[])),
                Some("windows/amd64")
            ))
            .rule,
            "policy[3]"
        );
        assert_eq!(
            d(&subject(
                "library/alpine",
                Some("latest"),
                Some(image(OCI, IMAGE_CONFIG, &[])),
                None
            ))
            .rule,
            "no-latest"
        );
        assert_eq!(
            d(&subject(
                "library/alpine",
                Some("3"),
                Some(image(OCI, IMAGE_CONFIG, &[])),
                None
            ))
            .rule,
            DEFAULT_RULE
        );
        let schema1 = d(&subject(
            "a",
            None,
            Some(image(
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
                "",
                &[],
            )),
            None,
        ));
        assert_eq!(schema1.rule, "policy[5]");
    }

    #[test]
    fn decisions_without_the_manifest_stop_at_the_first_rule_that_needs_it() {
        let r = rules(
            r#"
[[policy]]
action = "deny"
repository = "blocked/*"
[[policy]]
action = "deny"
artifact_type = "x/*"
[[policy]]
action = "deny"
repository = "late/*"
"#,
        );
        assert_eq!(
            evaluate(&r, Action::Allow, &subject("blocked/a", None, None, None))
                .unwrap()
                .rule,
            "policy[0]"
        );
        assert!(evaluate(&r, Action::Allow, &subject("late/a", None, None, None)).is_none());
        assert!(evaluate(&r, Action::Allow, &subject("other/a", None, None, None)).is_none());
    }

    #[test]
    fn default_deny_and_required_referrers() {
        let r = rules(
            r#"
[[policy]]
action = "allow"
repository = "signed/*"
require_referrer = "application/vnd.dev.cosign.*"
"#,
        );
        let signed = evaluate(&r, Action::Deny, &subject("signed/a", None, None, None)).unwrap();
        assert!(matches!(&signed.verdict, Verdict::AllowIf(c) if c.referrer.is_some() && c.signature.is_none()));
        let other = evaluate(
            &r,
            Action::Deny,
            &subject("other/a", None, Some(image(OCI, IMAGE_CONFIG, &[])), None),
        )
        .unwrap();
        assert_eq!(other.rule, DEFAULT_RULE);
        assert!(matches!(other.verdict, Verdict::Deny(_)));
    }

    #[test]
    fn platform_strings() {
        let p = serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
        assert_eq!(platform_string(&p).as_deref(), Some("linux/arm64/v8"));
        let p = serde_json::json!({"os": "linux", "architecture": "amd64"});
        assert_eq!(platform_string(&p).as_deref(), Some("linux/amd64"));
        assert_eq!(platform_string(&serde_json::json!({})), None);
    }
}
