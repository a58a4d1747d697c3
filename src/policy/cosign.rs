//! cosign signatures, judged against the keys a policy rule trusts. Pure: the cache fetches
//! the evidence (signature manifests and their payloads); this says what it proves.
//!
//! cosign keeps a signature in one of two forms, each verified its own way:
//! - **simple signing** (the tag `sha256-<hex>.sig`, or a referrer of artifact type
//!   `application/vnd.dev.cosign.artifact.sig.v1+json`): each layer is a JSON payload naming
//!   the signed digest in `critical.image.docker-manifest-digest`; its signature, base64,
//!   over the payload's bytes, is the layer's `dev.cosignproject.cosign/signature` annotation;
//! - **Sigstore bundles** (cosign 3, a referrer of artifact type
//!   `application/vnd.dev.sigstore.bundle.v0.3+json`): a DSSE envelope around an in-toto
//!   statement whose subject is the digest, signed over DSSE's pre-authentication encoding;
//!   or a message signature over the manifest's own bytes.
//!
//! A signature proves something only once it verifies: the digest a payload names is read
//! after the signature over it checks out. Transparency-log entries a bundle may carry are
//! not checked: this is key-based verification, as `cosign verify --key K
//! --insecure-ignore-tlog` does it, which works offline.

use std::sync::Arc;

use base64::Engine;
use ring::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use rustls_pki_types::{alg_id, pem::PemObject, SubjectPublicKeyInfoDer};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::oci::Digest;

pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const COSIGN_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// `application/vnd.dev.sigstore.bundle.v0.3+json`, and the older
/// `application/vnd.dev.sigstore.bundle+json;version=0.2`.
const BUNDLE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
/// The in-toto predicate of a cosign 3 image signature. Attestations (SBOMs, provenance)
/// signed by the same key are not signatures of the image.
const SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
const IN_TOTO: &str = "application/vnd.in-toto+json";
/// `critical.type` of a simple-signing payload: cosign's, and what cosign 3 writes.
const SIMPLE_SIGNING_TYPES: [&str; 2] = ["cosign container image signature", SIGN_PREDICATE];

pub fn is_bundle(media_type: &str) -> bool {
    media_type.starts_with(BUNDLE_PREFIX)
}

/// Whether a manifest or descriptor of this artifact type holds signatures.
pub fn is_signature_type(artifact_type: &str) -> bool {
    artifact_type == COSIGN_ARTIFACT || is_bundle(artifact_type)
}

/// The tag cosign stores a digest's signatures under.
pub fn signature_tag(d: &Digest) -> String {
    format!("{}-{}.sig", d.algorithm().name(), d.hex())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    EcdsaP256,
    EcdsaP384,
    Rsa,
    Ed25519,
}

/// A trusted public key, from its PEM (`-----BEGIN PUBLIC KEY-----`, as `cosign
/// generate-key-pair` writes it).
#[derive(Debug, Clone)]
pub struct PublicKey {
    /// Where it came from, to name it in verdicts.
    pub name: String,
    algorithm: Algorithm,
    /// The SubjectPublicKeyInfo's key bits, as ring takes them.
    bits: Vec<u8>,
}

impl PublicKey {
    pub fn from_pem(name: &str, pem: &[u8]) -> Result<PublicKey, String> {
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem)
            .map_err(|e| format!("no PEM public key (-----BEGIN PUBLIC KEY-----): {e}"))?;
        let (algorithm_id, bits) =
            split_spki(spki.as_ref()).ok_or_else(|| "the PEM does not hold a DER SubjectPublicKeyInfo".to_owned())?;
        let algorithm = [
            (alg_id::ECDSA_P256, Algorithm::EcdsaP256),
            (alg_id::ECDSA_P384, Algorithm::EcdsaP384),
            (alg_id::RSA_ENCRYPTION, Algorithm::Rsa),
            (alg_id::ED25519, Algorithm::Ed25519),
        ]
        .into_iter()
        .find(|(id, _)| id.as_ref() == algorithm_id)
        .map(|(_, a)| a)
        .ok_or_else(|| "unsupported key type (ECDSA P-256 or P-384, RSA, Ed25519 are supported)".to_owned())?;
        Ok(PublicKey {
            name: name.to_owned(),
            algorithm,
            bits: bits.to_vec(),
        })
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        // cosign signs with ECDSA in ASN.1 form, with RSA in PKCS#1 v1.5 (PSS when asked).
        let algorithms: &[&'static dyn VerificationAlgorithm] = match self.algorithm {
            Algorithm::EcdsaP256 => &[&sig::ECDSA_P256_SHA256_ASN1],
            Algorithm::EcdsaP384 => &[&sig::ECDSA_P384_SHA384_ASN1],
            Algorithm::Rsa => &[&sig::RSA_PKCS1_2048_8192_SHA256, &sig::RSA_PSS_2048_8192_SHA256],
            Algorithm::Ed25519 => &[&sig::ED25519],
        };
        algorithms.iter().any(|a| {
            UnparsedPublicKey::new(*a, &self.bits)
                .verify(message, signature)
                .is_ok()
        })
    }
}

/// A DER element's content and what follows it, when the element has this tag.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// `SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT
/// STRING }`: the AlgorithmIdentifier's content and the key bits.
fn split_spki(der: &[u8]) -> Option<(&[u8], &[u8])> {
    const SEQUENCE: u8 = 0x30;
    const BIT_STRING: u8 = 0x03;
    let (spki, trailing) = element(der, SEQUENCE)?;
    let (algorithm, rest) = element(spki, SEQUENCE)?;
    let (bit_string, rest2) = element(rest, BIT_STRING)?;
    // The key bits are whole bytes: no unused bits.
    let (&0, bits) = bit_string.split_first()? else {
        return None;
    };
    (trailing.is_empty() && rest2.is_empty()).then_some((algorithm, bits))
}

/// The keys one rule trusts, and a fingerprint of them: a verdict is remembered under it,
/// so that a key removed from the config revokes what it verified at the next start.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Arc<Vec<PublicKey>>,
    pub fingerprint: String,
}

impl PartialEq for Keyring {
    fn eq(&self, other: &Keyring) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for Keyring {}

impl Keyring {
    /// `salt` goes into the fingerprint beside the keys: what else the verdicts depend on.
    pub fn new(keys: Vec<PublicKey>, salt: &str) -> Keyring {
        let mut parts: Vec<Vec<u8>> = keys.iter().map(|k| k.bits.clone()).collect();
        parts.sort();
        let mut h = Sha256::new();
        for p in &parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        h.update(salt.as_bytes());
        Keyring {
            keys: Arc::new(keys),
            fingerprint: hex::encode(&h.finalize()[..8]),
        }
    }

    pub fn names(&self) -> String {
        self.keys.iter().map(|k| k.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// The first key under which `signature` verifies `message`.
    fn signer(&self, message: &[u8], signature: &[u8]) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.verifies(message, signature))
    }
}

/// What one signature proves about a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// It verifies under this key and names the subject.
    Signed { key: String },
    /// It verifies under this key, but names another digest.
    OtherSubject { key: String, names: String },
    /// It verifies under none of the keys: another key made it, or what it covers changed
    /// after signing. (The two look the same without the other key.)
    NoTrustedKey,
    /// Not a signature cosign makes.
    Malformed(String),
}

fn decode(b64: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()
}

/// A simple-signing payload and its base64 signature, from one layer of a signature manifest.
pub fn simple_signing(keys: &Keyring, payload: &[u8], signature: &str, subject: &Digest) -> Finding {
    let Some(signature) = decode(signature) else {
        return Finding::Malformed("the signature annotation is not base64".into());
    };
    let Some(key) = keys.signer(payload, &signature) else {
        return Finding::NoTrustedKey;
    };
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return Finding::Malformed("the signed payload is not JSON".into());
    };
    let critical = field(&payload, "critical");
    let kind = critical.and_then(|c| field(c, "type")).and_then(|t| t.as_str());
    if !kind.is_some_and(|k| SIMPLE_SIGNING_TYPES.contains(&k)) {
        return Finding::Malformed(format!(
            "the payload's critical.type is {kind:?}, not a cosign image signature"
        ));
    }
    let named = critical
        .and_then(|c| field(c, "image"))
        .and_then(|i| field(i, "docker-manifest-digest"))
        .and_then(|d| d.as_str());
    match named {
        Some(n) if n == subject.to_string() => Finding::Signed { key: key.name.clone() },
        Some(n) => Finding::OtherSubject {
            key: key.name.clone(),
            names: n.to_owned(),
        },
        None => Finding::Malformed("the payload names no critical.image.docker-manifest-digest".into()),
    }
}

/// A JSON object's field, its name compared without case (cosign reads the payload with
/// Go's decoder, which does the same: `Docker-manifest-digest` is found too).
fn field<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    let map = v.as_object()?;
    map.get(name)
        .or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    dsse_envelope: Option<Envelope>,
    message_signature: Option<MessageSignature>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageSignature {
    message_digest: Option<MessageDigest>,
    signature: String,
}

#[derive(Deserialize)]
struct MessageDigest {
    algorithm: String,
    digest: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    predicate_type: String,
    subject: Vec<StatementSubject>,
}

#[derive(Deserialize)]
struct StatementSubject {
    digest: std::collections::BTreeMap<String, String>,
}

/// A Sigstore bundle from a referrer of `subject`, whose manifest bytes are `manifest`.
pub fn bundle(keys: &Keyring, json: &[u8], subject: &Digest, manifest: &[u8]) -> Finding {
    let b: Bundle = match serde_json::from_slice(json) {
        Ok(b) => b,
        Err(e) => return Finding::Malformed(format!("not a Sigstore bundle: {e}")),
    };
    if !is_bundle(&b.media_type) {
        return Finding::Malformed(format!("a bundle of media type {:?}", b.media_type));
    }
    match (b.dsse_envelope, b.message_signature) {
        (Some(envelope), _) => dsse(keys, &envelope, subject),
        (None, Some(message)) => message_signature(keys, &message, manifest),
        (None, None) => Finding::Malformed("the bundle holds neither a DSSE envelope nor a message signature".into()),
    }
}

/// DSSE's pre-authentication encoding: what a DSSE signature is made over.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

fn dsse(keys: &Keyring, envelope: &Envelope, subject: &Digest) -> Finding {
    let Some(payload) = decode(&envelope.payload) else {
        return Finding::Malformed("the DSSE payload is not base64".into());
    };
    let message = pae(&envelope.payload_type, &payload);
    let Some(key) = envelope
        .signatures
        .iter()
        .filter_map(|s| decode(&s.sig))
        .find_map(|s| keys.signer(&message, &s))
    else {
        return Finding::NoTrustedKey;
    };
    if envelope.payload_type != IN_TOTO {
        return Finding::Malformed(format!("a DSSE payload of type {:?}", envelope.payload_type));
    }
    let statement: Statement = match serde_json::from_slice(&payload) {
        Ok(s) => s,
        Err(e) => return Finding::Malformed(format!("not an in-toto statement: {e}")),
    };
    if statement.predicate_type != SIGN_PREDICATE {
        return Finding::Malformed(format!(
            "an attestation ({}), not an image signature ({SIGN_PREDICATE})",
            statement.predicate_type
        ));
    }
    let algorithm = subject.algorithm().name();
    let named: Vec<&String> = statement
        .subject
        .iter()
        .filter_map(|s| s.digest.get(algorithm))
        .collect();
    if named.iter().any(|hex| hex.eq_ignore_ascii_case(subject.hex())) {
        Finding::Signed { key: key.name.clone() }
    } else {
        Finding::OtherSubject {
            key: key.name.clone(),
            names: named
                .iter()
                .map(|h| format!("{algorithm}:{h}"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// A message signature signs the artifact's bytes: here, the manifest's (whose digest the
/// cache has checked: a signature over them binds the subject).
fn message_signature(keys: &Keyring, m: &MessageSignature, manifest: &[u8]) -> Finding {
    let Some(signature) = decode(&m.signature) else {
        return Finding::Malformed("the message signature is not base64".into());
    };
    if let Some(key) = keys.signer(manifest, &signature) {
        return Finding::Signed { key: key.name.clone() };
    }
    // It does not verify over this manifest. If it says it signed another one, say which.
    match &m.message_digest {
        Some(md) if md.algorithm == "SHA2_256" => match decode(&md.digest) {
            Some(d) if d.as_slice() != Sha256::digest(manifest).as_slice() => Finding::OtherSubject {
                key: "(not verified)".into(),
                names: format!("sha256:{}", hex::encode(d)),
            },
            _ => Finding::NoTrustedKey,
        },
        _ => Finding::NoTrustedKey,
    }
}

/// Why a subject is or is not signed, as remembered and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Verified,
    /// No signature found.
    Unsigned,
    /// Signatures, none under a trusted key.
    UnknownKey,
    /// A trusted key signed another digest.
    WrongDigest,
    /// Signatures cosign does not make.
    Malformed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Verified => "verified",
            Outcome::Unsigned => "unsigned",
            Outcome::UnknownKey => "unknown_key",
            Outcome::WrongDigest => "wrong_digest",
            Outcome::Malformed => "malformed",
        }
    }
}

/// A verdict on one subject, and what it rests on, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judgement {
    pub outcome: Outcome,
    pub detail: String,
}

impl Judgement {
    pub fn verified(&self) -> bool {
        self.outcome == Outcome::Verified
    }
}

/// The verdict from every signature found (each with where it was found): signed when one
/// verifies for the subject; else the most telling failure.
pub fn conclude(keys: &Keyring, findings: &[(String, Finding)]) -> Judgement {
    if let Some((place, key)) = findings.iter().find_map(|(place, f)| match f {
        Finding::Signed { key } => Some((place, key)),
        _ => None,
    }) {
        return Judgement {
            outcome: Outcome::Verified,
            detail: format!("signed with {key} ({place})"),
        };
    }
    let first = |want: fn(&Finding) -> bool| findings.iter().find(|(_, f)| want(f));
    if let Some((place, Finding::OtherSubject { key, names })) = first(|f| matches!(f, Finding::OtherSubject { .. })) {
        return Judgement {
            outcome: Outcome::WrongDigest,
            detail: format!("the signature ({place}, key {key}) is for {names}, not this digest"),
        };
    }
    if let Some((place, _)) = first(|f| matches!(f, Finding::NoTrustedKey)) {
        return Judgement {
            outcome: Outcome::UnknownKey,
            detail: format!(
                "no signature verifies with a trusted key ({}): {} found, first {place}; signed by another key, or changed after signing",
                keys.names(),
                findings.len()
            ),
        };
    }
    if let Some((place, Finding::Malformed(why))) = first(|f| matches!(f, Finding::Malformed(_))) {
        return Judgement {
            outcome: Outcome::Malformed,
            detail: format!("bad signature ({place}): {why}"),
        };
    }
    Judgement {
        outcome: Outcome::Unsigned,
        detail: "no cosign signature found (neither the .sig tag nor a signature referrer)".into(),
    }
}

#[cfg(test)]
pub(crate) mod tests;
