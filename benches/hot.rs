//! Micro-benchmarks of the hot functions (criterion):
//! digest hashing throughput, the sled index with a million records (get, put, full scan),
//! reference parsing and routing, manifest parsing, counting a request in the metrics,
//! matching policy globs, verifying a cosign signature and reading a remembered verdict.
//!
//! ```sh
//! cargo bench --bench hot
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use entrepot::oci::digest::{Algorithm, Hasher};
use entrepot::oci::{manifest, Digest};
use entrepot::store::index::{BlobRecord, Index, MetaStore};

fn hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("sha256");
    for size in [64 << 10, 1 << 20, 4 << 20] {
        let data = vec![7u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, data| {
            b.iter(|| {
                let mut h = Hasher::new(Algorithm::Sha256);
                h.update(black_box(data));
                h.finish()
            })
        });
    }
    group.finish();
}

const RECORDS: u64 = 1_000_000;

fn record(i: u64) -> BlobRecord {
    BlobRecord {
        size: i,
        media_type: None,
        cached_at: i,
        last_access: i,
        hits: 0,
        upstream: "docker.io".into(),
    }
}

fn index(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::open(&dir.path().join("index")).unwrap();
    let digests: Vec<Digest> = (0..RECORDS).map(|i| Digest::sha256_of(&i.to_le_bytes())).collect();
    for (i, d) in digests.iter().enumerate() {
        idx.put_blob(d, &record(i as u64)).unwrap();
    }
    let mut group = c.benchmark_group("index_1M");
    let mut i = 0usize;
    group.bench_function("get", |b| {
        b.iter(|| {
            i = (i + 7919) % digests.len();
            idx.blob(black_box(&digests[i])).unwrap()
        })
    });
    let mut j = 0u64;
    group.bench_function("put", |b| {
        b.iter(|| {
            j += 1;
            idx.put_blob(&digests[(j % RECORDS) as usize], &record(j)).unwrap()
        })
    });
    group.sample_size(10);
    group.bench_function("scan_sizes", |b| b.iter(|| idx.blob_sizes().unwrap().len()));
    group.finish();
}

fn routing(c: &mut Criterion) {
    let config = entrepot::Config::parse(
        "default_upstream = \"docker.io\"\n[[upstream]]\nname = \"docker.io\"\nurl = \"https://registry-1.docker.io\"\n[[upstream]]\nname = \"ghcr.io\"\nurl = \"https://ghcr.io\"\n",
    )
    .unwrap();
    let upstreams = entrepot::upstream::Upstreams::build(&config, Default::default()).unwrap();
    let path = "/v2/ghcr.io/org/team/app/manifests/v1.2.3";
    c.bench_function("route_and_resolve", |b| {
        b.iter(|| {
            let route = entrepot::http::route::parse(black_box(path)).unwrap();
            upstreams.resolve(&route.name, None).unwrap().repo.len()
        })
    });
    c.bench_function("name_grammar", |b| {
        b.iter(|| entrepot::oci::name::is_valid_name(black_box("org/team/some-app_name.v2")))
    });
}

fn manifests(c: &mut Criterion) {
    let children: Vec<String> = (0..10)
        .map(|i| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":1234,"platform":{{"os":"linux","architecture":"arch{i}"}}}}"#,
                Digest::sha256_of(&[i])
            )
        })
        .collect();
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        children.join(",")
    );
    c.bench_function("parse_index_10", |b| {
        b.iter(|| {
            manifest::parse(black_box(index.as_bytes()), None)
                .unwrap()
                .manifests
                .len()
        })
    });
}

/// What every request pays to be counted, and what a policy rule pays per glob.
fn counting_and_globs(c: &mut Criterion) {
    let metrics = entrepot::metrics::Metrics::default();
    let statuses = ["200", "404", "200", "304"];
    let mut i = 0;
    c.bench_function("counter_add_3_labels", |b| {
        b.iter(|| {
            i += 1;
            let labels = [("route", "manifest"), ("method", "GET"), ("status", statuses[i % 4])];
            metrics.requests.add(black_box(&labels), 1)
        })
    });
    let cases = [
        (
            "application/vnd.sylabs.sif.*",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        ("ghcr.io/myorg/*", "ghcr.io/myorg/team/app"),
        ("*/library/*", "docker.io/library/alpine"),
        (
            "application/vnd.oci.image.layer.v1.tar*",
            "application/vnd.sylabs.sif.config.v1+json",
        ),
    ];
    c.bench_function("glob_match", |b| {
        b.iter(|| {
            (cases.iter())
                .filter(|(p, t)| entrepot::policy::glob::matches(black_box(p), black_box(t)))
                .count()
        })
    });
}

/// What `require_signature` costs: one verification (a digest's first pull) and the
/// remembered verdict every later pull reads instead.
fn signatures(c: &mut Criterion) {
    use base64::Engine;
    use entrepot::policy::cosign::{self, Judgement, Keyring, Outcome, PublicKey};
    use entrepot::store::index::SignatureVerdict;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    spki.extend_from_slice(pair.public_key().as_ref());
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", b64(&spki));
    let keys = Keyring::new(vec![PublicKey::from_pem("cosign.pub", pem.as_bytes()).unwrap()], "");
    let subject = Digest::sha256_of(b"an image manifest");
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"x"}},"image":{{"docker-manifest-digest":"{subject}"}},"type":"cosign container image signature"}},"optional":null}}"#
    );
    let signature = b64(pair.sign(&rng, payload.as_bytes()).unwrap().as_ref());
    c.bench_function("cosign_verify_p256", |b| {
        b.iter(|| cosign::simple_signing(&keys, black_box(payload.as_bytes()), black_box(&signature), &subject))
    });
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(dir.path()).unwrap();
    let verdict = SignatureVerdict {
        decided_at: 1,
        judgement: Judgement {
            outcome: Outcome::Verified,
            detail: "signed with cosign.pub (tag sha256-….sig, layer 0)".into(),
        },
    };
    index
        .put_signature_verdict(&keys.fingerprint, "docker.io", "myorg/app", &subject, &verdict)
        .unwrap();
    c.bench_function("signature_verdict_read", |b| {
        b.iter(|| {
            index
                .signature_verdict(black_box(&keys.fingerprint), "docker.io", "myorg/app", &subject)
                .unwrap()
        })
    });
}

criterion_group!(
    benches,
    hashing,
    index,
    routing,
    manifests,
    counting_and_globs,
    signatures
);
criterion_main!(benches);
