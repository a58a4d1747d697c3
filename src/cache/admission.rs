//! Admission: the filter policy applied on the serving path.
//!
//! Before any upstream contact, rules that need no manifest (upstream, repository, tag)
//! may already refuse. Once the manifest is known, the full decision is made; an allowed
//! manifest records what policy needs later: the tag and platform its children were reached
//! with (so that decisions bound to a tag hold for the digests it resolved to), and, in
//! strict mode, the blobs it lets in.

use std::sync::Arc;

use super::{Cache, Manifest, Target};
use crate::error::{Error, Result};
use crate::oci::media::AcceptClass;
use crate::oci::{manifest, Digest};
use crate::policy::cosign::Judgement;
use crate::policy::filter::{self, Conditions, Decision, ManifestFacts, Subject, Verdict};
use crate::store::index::Context;

/// A decision and the facts it rests on.
struct Judged {
    decision: Decision,
    parsed: manifest::Parsed,
    tag: Option<String>,
    context: Context,
    /// The signature verdict, when the rule required one.
    signature: Option<Judgement>,
}

fn describe(m: &Manifest, j: &Judged) -> String {
    let verdict = match &j.decision.verdict {
        Verdict::Allow => "allow".to_owned(),
        Verdict::Deny(reason) => format!("deny ({reason})"),
        Verdict::AllowIf(_) => "allow if its conditions hold".to_owned(),
    };
    let signature = match &j.signature {
        Some(s) => format!(" signature: {}: {}", s.outcome.as_str(), s.detail),
        None => String::new(),
    };
    format!(
        "{} {} artifactType={} -> {verdict} [rule {}]{signature}",
        m.digest,
        m.media_type,
        j.parsed.artifact_type.as_deref().unwrap_or("-"),
        j.decision.rule
    )
}

impl Cache {
    fn policy_is_open(&self) -> bool {
        let p = &self.settings.policy;
        p.rules.is_empty() && p.default == filter::Action::Allow && !p.blobs_require_manifest
    }

    /// Refuses before any upstream contact when rules that need no manifest already deny.
    /// A digest is judged with the tag it was last reached through.
    pub(super) fn precheck(&self, t: &Target, tag: Option<&str>, digest: Option<&Digest>) -> Result<()> {
        if self.policy_is_open() {
            return Ok(());
        }
        let context_tag = match (tag, digest) {
            (None, Some(d)) => self
                .store
                .index
                .context(t.upstream.name(), &t.repo, d)?
                .and_then(|c| c.tag),
            _ => None,
        };
        let tag = tag.or(context_tag.as_deref());
        let subject = Subject {
            upstream: t.upstream.name().to_owned(),
            repository: t.repo.clone(),
            tag: tag.map(str::to_owned),
            ..Default::default()
        };
        match filter::evaluate(&self.settings.policy.rules, self.settings.policy.default, &subject) {
            Some(
                d @ Decision {
                    verdict: Verdict::Deny(_),
                    ..
                },
            ) => self.refuse(t, None, d),
            _ => Ok(()),
        }
    }

    /// The full decision for a manifest about to be served.
    pub(super) async fn admit_manifest(self: &Arc<Self>, t: &Target, tag: Option<&str>, m: &Manifest) -> Result<()> {
        if self.policy_is_open() {
            return Ok(());
        }
        let Judged {
            decision,
            parsed,
            tag,
            context,
            ..
        } = Box::pin(self.judge(t, tag, m, None)).await?;
        let index = &self.store.index;
        let up = t.upstream.name();
        if let Verdict::Deny(_) = decision.verdict {
            return self.refuse(t, Some(&m.digest), decision);
        }
        self.count_decision(&decision.rule, true);
        tracing::debug!(upstream = up, repo = %t.repo, digest = %m.digest, rule = %decision.rule, "policy allows");
        if tag.is_some() && context.tag != tag {
            index.put_context(
                up,
                &t.repo,
                &m.digest,
                &Context {
                    tag: tag.clone(),
                    platform: context.platform.clone(),
                },
            )?;
        }
        for child in &parsed.manifests {
            let platform = child.platform.as_ref().and_then(filter::platform_string);
            index.put_context(
                up,
                &t.repo,
                &child.digest,
                &Context {
                    tag: tag.clone(),
                    platform,
                },
            )?;
        }
        if self.settings.policy.blobs_require_manifest {
            for blob in parsed.config.iter().chain(&parsed.layers) {
                index.allow_blob(up, &t.repo, &blob.digest)?;
            }
        }
        Ok(())
    }

    /// The decision for a manifest, with the facts it rests on. `platform` overrides what
    /// the index knows (for `policy check`, which walks an index's children itself).
    async fn judge(
        self: &Arc<Self>,
        t: &Target,
        tag: Option<&str>,
        m: &Manifest,
        platform: Option<Option<String>>,
    ) -> Result<Judged> {
        let parsed = manifest::parse(&m.bytes, Some(&m.media_type)).map_err(Error::internal)?;
        let mut context = self
            .store
            .index
            .context(t.upstream.name(), &t.repo, &m.digest)?
            .unwrap_or_default();
        if let Some(p) = platform {
            context.platform = p;
        }
        let tag = tag.map(str::to_owned).or(context.tag.clone());
        let subject = Subject {
            upstream: t.upstream.name().to_owned(),
            repository: t.repo.clone(),
            tag: tag.clone(),
            manifest: Some(ManifestFacts {
                media_type: m.media_type.clone(),
                artifact_type: parsed.artifact_type.clone(),
                layer_media_types: parsed.layers.iter().map(|l| l.media_type.clone()).collect(),
            }),
            platform: context.platform.clone(),
        };
        let decision = filter::evaluate(&self.settings.policy.rules, self.settings.policy.default, &subject)
            .ok_or_else(|| Error::internal("a policy decision with the manifest known is always made"))?;
        let (verdict, signature) = match decision.verdict {
            Verdict::AllowIf(conditions) => self.check(t, m, &parsed, &conditions, &decision.rule).await?,
            verdict => (verdict, None),
        };
        let decision = Decision {
            rule: decision.rule,
            verdict,
        };
        Ok(Judged {
            decision,
            parsed,
            tag,
            context,
            signature,
        })
    }

    /// An allow rule's conditions, checked: allowed, or denied with the first that fails.
    /// Signature evidence is exempt: clients that verify for themselves fetch it.
    async fn check(
        self: &Arc<Self>,
        t: &Target,
        m: &Manifest,
        parsed: &manifest::Parsed,
        c: &Conditions,
        rule: &str,
    ) -> Result<(Verdict, Option<Judgement>)> {
        if super::signatures::is_evidence(parsed) {
            return Ok((Verdict::Allow, None));
        }
        let deny = |why: String| Verdict::Deny(c.reason.as_ref().map_or(why.clone(), |r| format!("{r} ({why})")));
        if let Some(types) = &c.referrer {
            let referrers = self.referrers(t, &m.digest).await?.items;
            if !referrers
                .iter()
                .any(|r| r.artifact_type.as_deref().is_some_and(|a| types.matches(a)))
            {
                return Ok((
                    deny(format!("policy rule {rule} requires a referrer of type {types}")),
                    None,
                ));
            }
        }
        if let Some(required) = &c.signature {
            let j = self.signature_judgement(t, m, parsed, required, rule).await?;
            if !j.verified() {
                let why = format!(
                    "policy rule {rule} requires a cosign signature by {}: {}",
                    required.keyring.names(),
                    j.detail
                );
                return Ok((deny(why), Some(j)));
            }
            return Ok((Verdict::Allow, Some(j)));
        }
        Ok((Verdict::Allow, None))
    }

    /// `policy check`: the decision for a reference and, for an index, for each child, with
    /// the manifests fetched (and cached) but no blob.
    pub async fn explain(self: &Arc<Self>, t: &Target, reference: &str) -> Result<String> {
        use std::fmt::Write;
        let (tag, m) = if reference.contains(':') {
            let d: Digest = reference.parse().map_err(|e| Error::DigestInvalid(format!("{e}")))?;
            (None, self.lookup_or_fetch_by_digest(t, &d).await?.manifest)
        } else {
            (
                Some(reference),
                self.resolve_tag_once(t, reference, AcceptClass::ALL).await?.manifest,
            )
        };
        let mut out = String::new();
        let judged = self.judge(t, tag, &m, None).await?;
        let _ = writeln!(
            out,
            "{}/{}{}{reference}",
            t.upstream.name(),
            t.repo,
            if tag.is_some() { ":" } else { "@" }
        );
        let _ = writeln!(out, "  {}", describe(&m, &judged));
        for child in &judged.parsed.manifests {
            let platform = child.platform.as_ref().and_then(filter::platform_string);
            let child_manifest = self.lookup_or_fetch_by_digest(t, &child.digest).await?.manifest;
            let j = self
                .judge(t, judged.tag.as_deref(), &child_manifest, Some(platform.clone()))
                .await?;
            let _ = writeln!(
                out,
                "    {:16} {}",
                platform.unwrap_or_else(|| "(no platform)".into()),
                describe(&child_manifest, &j)
            );
        }
        Ok(out)
    }

    /// Blobs: refused by the first matching rule that names nothing but upstream and
    /// repository, when it denies; in strict mode, also unless an allowed manifest of this
    /// repository references them. (Other rules judge manifests; strict mode carries their
    /// verdict to blobs.)
    pub(super) fn admit_blob(&self, t: &Target, d: &Digest) -> Result<()> {
        if self.policy_is_open() {
            return Ok(());
        }
        self.admit_repository(t)?;
        if self.settings.policy.blobs_require_manifest
            && !t.for_peer
            && !self.store.index.is_blob_allowed(t.upstream.name(), &t.repo, d)?
        {
            self.count_decision("blobs_require_manifest", false);
            tracing::info!(upstream = %t.upstream.name(), repo = %t.repo, digest = %d, "policy denies a blob no allowed manifest references");
            return Err(Error::Denied(format!(
                "blob {d} is not referenced by an allowed manifest of {} (blobs_require_manifest)",
                t.repo
            )));
        }
        Ok(())
    }

    /// Listings and blobs: refused by the first matching rule that names nothing but
    /// upstream and repository, when it denies.
    pub(super) fn admit_repository(&self, t: &Target) -> Result<()> {
        if self.policy_is_open() {
            return Ok(());
        }
        let rules = &self.settings.policy.rules;
        let repo_rules: Vec<_> = rules
            .iter()
            .filter(|r| r.names_only_upstream_and_repository())
            .cloned()
            .collect();
        let subject = Subject {
            upstream: t.upstream.name().to_owned(),
            repository: t.repo.clone(),
            ..Default::default()
        };
        match filter::evaluate(&repo_rules, filter::Action::Allow, &subject) {
            Some(
                decision @ Decision {
                    verdict: Verdict::Deny(_),
                    ..
                },
            ) => self.refuse(t, None, decision),
            _ => Ok(()),
        }
    }

    fn refuse(&self, t: &Target, digest: Option<&Digest>, d: Decision) -> Result<()> {
        let Verdict::Deny(reason) = d.verdict else {
            return Ok(());
        };
        self.count_decision(&d.rule, false);
        tracing::info!(upstream = %t.upstream.name(), repo = %t.repo, digest = ?digest, rule = %d.rule, %reason, "policy denies");
        Err(Error::Denied(reason))
    }

    /// Counts a decision, and names it in the request's access-log line.
    fn count_decision(&self, rule: &str, allowed: bool) {
        let verdict = if allowed { "allow" } else { "deny" };
        tracing::Span::current().record("policy", format!("{verdict}:{rule}").as_str());
        (self.metrics.policy_decisions).add(&[("rule", rule), ("decision", verdict)], 1);
    }
}
