use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

use super::*;

/// SubjectPublicKeyInfo headers for a P-256 point and an Ed25519 key.
const P256_SPKI: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";
const ED25519_SPKI: &str = "302a300506032b6570032100";

fn pem(spki_prefix: &str, key: &[u8]) -> String {
    let mut der = hex::decode(spki_prefix).unwrap();
    der.extend_from_slice(key);
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
}

/// A key pair made with ring, for tests here and in the config's.
pub(crate) enum Signer {
    P256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl Signer {
    pub(crate) fn p256() -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        Signer::P256(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap())
    }

    pub(crate) fn ed25519() -> Signer {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Signer::Ed25519(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
    }

    /// The public key, as `cosign generate-key-pair` writes it.
    pub(crate) fn public_pem(&self) -> String {
        match self {
            Signer::P256(k) => pem(P256_SPKI, k.public_key().as_ref()),
            Signer::Ed25519(k) => pem(ED25519_SPKI, k.public_key().as_ref()),
        }
    }

    fn public(&self, name: &str) -> PublicKey {
        PublicKey::from_pem(name, self.public_pem().as_bytes()).unwrap()
    }

    fn sign(&self, message: &[u8]) -> String {
        let sig = match self {
            Signer::P256(k) => k.sign(&SystemRandom::new(), message).unwrap().as_ref().to_vec(),
            Signer::Ed25519(k) => k.sign(message).as_ref().to_vec(),
        };
        base64::engine::general_purpose::STANDARD.encode(sig)
    }
}

fn subject() -> Digest {
    Digest::sha256_of(b"the image manifest")
}

fn payload(d: &Digest) -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"example/app"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
    )
    .into_bytes()
}

fn ring_of(signers: &[(&Signer, &str)]) -> Keyring {
    Keyring::new(signers.iter().map(|(s, n)| s.public(n)).collect(), "")
}

#[test]
fn a_simple_signing_payload_signed_by_a_trusted_key_for_the_subject_is_signed() {
    let k = Signer::p256();
    let keys = ring_of(&[(&k, "a.pub")]);
    let p = payload(&subject());
    assert_eq!(
        simple_signing(&keys, &p, &k.sign(&p), &subject()),
        Finding::Signed { key: "a.pub".into() }
    );
}

#[test]
fn another_key_a_changed_payload_another_digest_and_garbage_are_each_told_apart() {
    let (trusted, other) = (Signer::p256(), Signer::p256());
    let keys = ring_of(&[(&trusted, "a.pub")]);
    let p = payload(&subject());
    assert_eq!(
        simple_signing(&keys, &p, &other.sign(&p), &subject()),
        Finding::NoTrustedKey
    );
    let signature = trusted.sign(&p);
    let mut changed = p.clone();
    let at = changed.len() - 5;
    changed[at] = b'X';
    assert_eq!(
        simple_signing(&keys, &changed, &signature, &subject()),
        Finding::NoTrustedKey
    );
    let elsewhere = Digest::sha256_of(b"another manifest");
    let p2 = payload(&elsewhere);
    assert_eq!(
        simple_signing(&keys, &p2, &trusted.sign(&p2), &subject()),
        Finding::OtherSubject {
            key: "a.pub".into(),
            names: elsewhere.to_string()
        }
    );
    assert!(matches!(
        simple_signing(&keys, &p, "not base64!", &subject()),
        Finding::Malformed(_)
    ));
    let not_cosign = br#"{"critical":{"type":"something else"}}"#;
    assert!(matches!(
        simple_signing(&keys, not_cosign, &trusted.sign(not_cosign), &subject()),
        Finding::Malformed(_)
    ));
}

#[test]
fn payload_keys_are_read_without_case_as_cosign_reads_them() {
    let k = Signer::ed25519();
    let keys = ring_of(&[(&k, "ed.pub")]);
    let p = format!(
        r#"{{"critical":{{"image":{{"Docker-manifest-digest":"{}"}},"type":"cosign container image signature"}}}}"#,
        subject()
    );
    assert_eq!(
        simple_signing(&keys, p.as_bytes(), &k.sign(p.as_bytes()), &subject()),
        Finding::Signed { key: "ed.pub".into() }
    );
}

fn dsse_bundle(k: &Signer, predicate: &str, names: &Digest) -> Vec<u8> {
    let statement = format!(
        r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"name":"x","digest":{{"sha256":"{}"}}}}],"predicateType":"{predicate}","predicate":{{}}}}"#,
        names.hex()
    );
    let sig = k.sign(&pae(IN_TOTO, statement.as_bytes()));
    let b64 = base64::engine::general_purpose::STANDARD.encode(&statement);
    format!(
        r#"{{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{{"publicKey":{{"hint":"h"}}}},"dsseEnvelope":{{"payload":"{b64}","payloadType":"{IN_TOTO}","signatures":[{{"sig":"{sig}","keyid":""}}]}}}}"#
    )
    .into_bytes()
}

#[test]
fn a_dsse_bundle_is_verified_over_its_pre_authentication_encoding() {
    let k = Signer::p256();
    let keys = ring_of(&[(&k, "a.pub")]);
    let manifest = b"the image manifest";
    let good = dsse_bundle(&k, SIGN_PREDICATE, &subject());
    assert_eq!(
        bundle(&keys, &good, &subject(), manifest),
        Finding::Signed { key: "a.pub".into() }
    );
    let other = Digest::sha256_of(b"x");
    assert!(matches!(
        bundle(&keys, &dsse_bundle(&k, SIGN_PREDICATE, &other), &subject(), manifest),
        Finding::OtherSubject { .. }
    ));
    // An SBOM attestation by the same key does not sign the image.
    assert!(matches!(
        bundle(
            &keys,
            &dsse_bundle(&k, "https://cyclonedx.org/bom", &subject()),
            &subject(),
            manifest
        ),
        Finding::Malformed(_)
    ));
    let stranger = Signer::ed25519();
    assert_eq!(
        bundle(
            &keys,
            &dsse_bundle(&stranger, SIGN_PREDICATE, &subject()),
            &subject(),
            manifest
        ),
        Finding::NoTrustedKey
    );
}

#[test]
fn a_message_signature_bundle_signs_the_manifest_bytes() {
    let k = Signer::ed25519();
    let keys = ring_of(&[(&k, "ed.pub")]);
    let manifest = b"the image manifest";
    let make = |signed: &[u8]| {
        let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(signed));
        format!(
            r#"{{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","messageSignature":{{"messageDigest":{{"algorithm":"SHA2_256","digest":"{digest}"}},"signature":"{}"}}}}"#,
            k.sign(signed)
        )
    };
    assert_eq!(
        bundle(&keys, make(manifest).as_bytes(), &subject(), manifest),
        Finding::Signed { key: "ed.pub".into() }
    );
    assert!(matches!(
        bundle(&keys, make(b"another").as_bytes(), &subject(), manifest),
        Finding::OtherSubject { .. }
    ));
    assert!(matches!(
        bundle(&keys, b"{}", &subject(), manifest),
        Finding::Malformed(_)
    ));
}

#[test]
fn one_valid_signature_among_failures_is_enough_and_failures_rank_by_what_they_tell() {
    let keys = ring_of(&[(&Signer::p256(), "a.pub")]);
    let signed = ("tag".to_owned(), Finding::Signed { key: "a.pub".into() });
    let stranger = ("referrer 1".to_owned(), Finding::NoTrustedKey);
    let other = (
        "referrer 2".to_owned(),
        Finding::OtherSubject {
            key: "a.pub".into(),
            names: "sha256:00".into(),
        },
    );
    let garbage = ("referrer 3".to_owned(), Finding::Malformed("x".into()));
    let verdict = conclude(&keys, &[stranger.clone(), signed]);
    assert_eq!(verdict.outcome, Outcome::Verified);
    assert!(verdict.detail.contains("a.pub (tag)"), "{}", verdict.detail);
    let outcome = |f: &[(String, Finding)]| conclude(&keys, f).outcome;
    assert_eq!(
        outcome(&[garbage.clone(), stranger.clone(), other]),
        Outcome::WrongDigest
    );
    assert_eq!(outcome(&[garbage.clone(), stranger]), Outcome::UnknownKey);
    assert_eq!(outcome(&[garbage]), Outcome::Malformed);
    assert_eq!(outcome(&[]), Outcome::Unsigned);
}

#[test]
fn keys_parse_from_pem_and_the_fingerprint_follows_the_keys_not_their_order() {
    let (a, b) = (Signer::p256(), Signer::ed25519());
    let ab = Keyring::new(vec![a.public("a"), b.public("b")], "x");
    let ba = Keyring::new(vec![b.public("b"), a.public("a")], "x");
    assert_eq!(ab.fingerprint, ba.fingerprint);
    assert_ne!(ab.fingerprint, Keyring::new(vec![a.public("a")], "x").fingerprint);
    assert_ne!(
        ab.fingerprint,
        Keyring::new(vec![a.public("a"), b.public("b")], "y").fingerprint
    );
    assert!(PublicKey::from_pem("x", b"not a key").is_err());
    // An X25519 key is a key, but not one cosign signs with.
    let x25519 = pem("302a300506032b656e032100", &[7; 32]);
    let e = PublicKey::from_pem("x", x25519.as_bytes()).unwrap_err();
    assert!(e.contains("unsupported key type"), "{e}");
}

#[test]
fn a_spki_with_trailing_bytes_or_short_lengths_is_refused() {
    let k = Signer::p256();
    let Signer::P256(pair) = &k else { unreachable!() };
    let mut der = hex::decode(P256_SPKI).unwrap();
    der.extend_from_slice(pair.public_key().as_ref());
    assert!(split_spki(&der).is_some());
    let mut trailing = der.clone();
    trailing.push(0);
    assert!(split_spki(&trailing).is_none());
    assert!(split_spki(&der[..der.len() - 1]).is_none());
    assert!(split_spki(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
}

#[test]
fn signature_artifacts_and_tags_are_recognised() {
    assert!(is_signature_type(COSIGN_ARTIFACT));
    assert!(is_signature_type("application/vnd.dev.sigstore.bundle.v0.3+json"));
    assert!(is_signature_type(
        "application/vnd.dev.sigstore.bundle+json;version=0.2"
    ));
    assert!(!is_signature_type("application/spdx+json"));
    let d = subject();
    assert_eq!(signature_tag(&d), format!("sha256-{}.sig", d.hex()));
}
