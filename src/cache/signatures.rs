//! Signatures: the evidence a `require_signature` rule asks for, gathered through the normal
//! paths (the `.sig` tag and the referrers, their manifests and payload blobs: fetched with
//! the upstream's auth, coalesced, cached, so that they export with their subject and verify
//! offline), judged by `policy::cosign`, and the verdict remembered.

use std::sync::Arc;

use super::{BlobSource, Cache, Manifest, Target};
use crate::error::{Error, Result};
use crate::oci::manifest::{self, Parsed};
use crate::oci::media::AcceptClass;
use crate::oci::Digest;
use crate::policy::cosign::{self, Finding, Judgement, Keyring, Outcome};
use crate::policy::filter::RequireSignature;
use crate::store::index::SignatureVerdict;

/// A signature payload or bundle larger than this is not read (cosign's are under a few KiB;
/// a bundle with a certificate chain and log entries, tens of KiB).
const MAX_SIGNATURE_BYTES: u64 = 1 << 20;

/// Whether a manifest is signature evidence rather than content: a signature artifact, or a
/// referrers list of nothing but signatures. Evidence is served to clients that verify for
/// themselves without a signature of its own; it cannot run (its layers are JSON), and a
/// manifest it lists is judged on its own when fetched.
pub(super) fn is_evidence(p: &Parsed) -> bool {
    let layer_is_signature =
        |l: &manifest::Descriptor| l.media_type == cosign::SIMPLE_SIGNING || cosign::is_bundle(&l.media_type);
    let signature_manifest = !p.layers.is_empty() && p.layers.iter().all(layer_is_signature);
    let signature_list = !p.manifests.is_empty()
        && p.manifests
            .iter()
            .all(|m| m.artifact_type.as_deref().is_some_and(cosign::is_signature_type));
    signature_manifest || signature_list
}

impl Cache {
    /// Whether `m` is signed by one of the keys `required` trusts. A verified digest is not
    /// verified again; a refusal is, once `negative_ttl` has passed (a signature may be
    /// added upstream; a missing `.sig` tag is remembered as long), and never while offline.
    pub(super) async fn signature_judgement(
        self: &Arc<Self>,
        t: &Target,
        m: &Manifest,
        parsed: &Parsed,
        required: &RequireSignature,
        rule: &str,
    ) -> Result<Judgement> {
        let keys = &required.keyring;
        let index = &self.store.index;
        let up = t.upstream.name();
        if let Some(v) = index.signature_verdict(&keys.fingerprint, up, &t.repo, &m.digest)? {
            let refused_ago = self.clock.now_ms().saturating_sub(v.decided_at);
            if v.judgement.verified()
                || self.settings.offline
                || refused_ago < self.settings.negative_ttl.as_millis() as u64
            {
                return Ok(v.judgement);
            }
        }
        let findings = self.signature_findings(t, m, keys).await?;
        let judgement = cosign::conclude(keys, &findings);
        self.metrics
            .signature_verdicts
            .add(&[("rule", rule), ("outcome", judgement.outcome.as_str())], 1);
        tracing::info!(upstream = up, repo = %t.repo, digest = %m.digest, rule, outcome = judgement.outcome.as_str(), detail = %judgement.detail, "signature verdict");
        let now = self.clock.now_ms();
        let remember = |d: &Digest, judgement: Judgement| {
            let v = SignatureVerdict {
                decided_at: now,
                judgement,
            };
            index.put_signature_verdict(&keys.fingerprint, up, &t.repo, d, &v)
        };
        remember(&m.digest, judgement.clone())?;
        // cosign signs an index, not each child (unless --recursive): a verified index
        // vouches for the children it lists, by digest.
        if judgement.verified() && !required.each_child {
            for child in &parsed.manifests {
                let covered = Judgement {
                    outcome: Outcome::Verified,
                    detail: format!("listed by the signed index {} ({})", m.digest, judgement.detail),
                };
                remember(&child.digest, covered)?;
            }
        }
        Ok(judgement)
    }

    /// Every signature found for `m`, each with where it was found: the `.sig` tag, then the
    /// signature referrers (OCI 1.1, or the referrers tag schema where the upstream has no
    /// referrers API).
    async fn signature_findings(
        self: &Arc<Self>,
        t: &Target,
        m: &Manifest,
        keys: &Keyring,
    ) -> Result<Vec<(String, Finding)>> {
        let mut findings = Vec::new();
        let tag = cosign::signature_tag(&m.digest);
        match self.resolve_tag_for(t, &tag, AcceptClass::ALL).await {
            Ok(answer) => {
                self.read_signatures(t, &answer.manifest, &format!("tag {tag}"), keys, m, &mut findings)
                    .await?
            }
            Err(Error::ManifestUnknown(_) | Error::NotAcceptable(_)) => {}
            Err(e) => return Err(e),
        }
        let referrers = self.referrers(t, &m.digest).await?.items;
        for r in referrers
            .iter()
            .filter(|r| r.artifact_type.as_deref().is_some_and(cosign::is_signature_type))
        {
            let place = format!("referrer {}", r.digest);
            match self.lookup_or_fetch_by_digest(t, &r.digest).await {
                Ok(answer) => {
                    self.read_signatures(t, &answer.manifest, &place, keys, m, &mut findings)
                        .await?
                }
                Err(Error::ManifestUnknown(_)) => findings.push((
                    place,
                    Finding::Malformed("listed, but the upstream does not have it".into()),
                )),
                Err(e) => return Err(e),
            }
        }
        Ok(findings)
    }

    /// The findings of one signature manifest: one per signature layer.
    async fn read_signatures(
        self: &Arc<Self>,
        t: &Target,
        signatures: &Manifest,
        place: &str,
        keys: &Keyring,
        subject: &Manifest,
        out: &mut Vec<(String, Finding)>,
    ) -> Result<()> {
        let parsed = match manifest::parse(&signatures.bytes, Some(&signatures.media_type)) {
            Ok(p) => p,
            Err(e) => {
                out.push((place.to_owned(), Finding::Malformed(format!("not a manifest: {e}"))));
                return Ok(());
            }
        };
        for (i, layer) in parsed.layers.iter().enumerate() {
            let simple = layer.media_type == cosign::SIMPLE_SIGNING;
            if !simple && !cosign::is_bundle(&layer.media_type) {
                continue;
            }
            let place = format!("{place}, layer {i}");
            if layer.size > MAX_SIGNATURE_BYTES {
                out.push((
                    place,
                    Finding::Malformed(format!("a signature of {} bytes", layer.size)),
                ));
                continue;
            }
            let bytes = match self.small_blob(t, &layer.digest).await {
                Ok(b) => b,
                Err(Error::BlobUnknown) => {
                    out.push((place, Finding::Malformed("its payload blob is missing".into())));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let finding = if simple {
                let signature = layer
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(cosign::SIGNATURE_ANNOTATION))
                    .and_then(|s| s.as_str());
                match signature {
                    Some(s) => cosign::simple_signing(keys, &bytes, s, &subject.digest),
                    None => Finding::Malformed(format!("no {} annotation", cosign::SIGNATURE_ANNOTATION)),
                }
            } else {
                cosign::bundle(keys, &bytes, &subject.digest, &subject.bytes)
            };
            out.push((place, finding));
        }
        Ok(())
    }

    /// A small blob's bytes, cached on the way like any blob (and verified against its digest
    /// before a byte is read here).
    async fn small_blob(self: &Arc<Self>, t: &Target, d: &Digest) -> Result<Vec<u8>> {
        let reader = match self.find_blob(t, d).await?.0 {
            BlobSource::Committed(reader) => reader,
            BlobSource::Filling { fill, .. } => {
                fill.finished().await?;
                match self.committed_blob(d).await? {
                    Some(BlobSource::Committed(reader)) => reader,
                    _ => return Err(Error::BlobUnknown),
                }
            }
        };
        tokio::task::spawn_blocking(move || reader.read_all())
            .await
            .map_err(Error::internal)?
            .map_err(Error::from)
    }
}
