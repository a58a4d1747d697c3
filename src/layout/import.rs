//! `entrepot import`: an OCI image layout (directory or tar, entrepot's own or one skopeo
//! or umoci wrote) into the cache. Every blob is hashed as it is read and staged; only when
//! the whole bundle has verified is anything published, so a corrupt or truncated bundle
//! leaves the store as it was. Content already cached is verified and skipped.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{tar, ANN_ACCEPT, ANN_REPOSITORY, ANN_TAG, ANN_UPSTREAM, ANN_VALIDATED, REF_NAME};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::oci::digest::Hasher;
use crate::oci::manifest::{self, Descriptor};
use crate::oci::media::{self, AcceptClass};
use crate::oci::Digest;
use crate::progress::Meter;
use crate::store::blobs::Staged;
use crate::store::index::{BlobRecord, ManifestRecord, TagRecord};
use crate::store::Store;
use crate::upstream::Upstreams;

pub enum Source {
    Dir(PathBuf),
    Tar(Box<dyn Read + Send>),
}

/// Where entries without entrepot's annotations go (a bundle skopeo wrote, say).
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    pub upstream: Option<String>,
    pub repository: Option<String>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub manifests: usize,
    pub tags: usize,
    pub blobs_added: usize,
    pub blobs_present: usize,
    pub bytes_added: u64,
}

impl Summary {
    /// What `entrepot import` prints.
    pub fn text(&self) -> String {
        format!(
            "imported {} manifest(s), {} tag(s), {} new blob(s) ({} bytes), {} blob(s) already cached\n",
            self.manifests, self.tags, self.blobs_added, self.bytes_added, self.blobs_present
        )
    }
}

/// The largest `index.json` read.
const MAX_INDEX: u64 = 16 << 20;

/// Blobs read and verified, not yet published.
#[derive(Default)]
struct Bundle {
    index_json: Option<Vec<u8>>,
    layout: bool,
    staged: BTreeMap<Digest, Staged>,
    present: usize,
}

impl Bundle {
    fn discard(self) {
        for (_, s) in self.staged {
            s.discard();
        }
    }
}

/// Reads, verifies and loads a bundle. Blocking.
/// `meter` counts the blob bytes read (its total is the caller's estimate).
pub fn import(
    store: &Store,
    upstreams: &Upstreams,
    source: Source,
    placement: &Placement,
    meter: &Meter,
) -> Result<Summary> {
    let mut bundle = Bundle::default();
    let read = match source {
        Source::Dir(dir) => read_dir(store, &dir, &mut bundle, meter),
        Source::Tar(input) => read_tar(store, input, &mut bundle, meter),
    };
    let planned = read.and_then(|()| plan(store, upstreams, &bundle, placement));
    match planned {
        Ok(plan) => commit(store, bundle, plan),
        Err(e) => {
            bundle.discard();
            Err(e)
        }
    }
}

fn refused(detail: impl std::fmt::Display) -> Error {
    Error::Internal(format!("bundle refused: {detail}"))
}

fn read_tar(store: &Store, input: Box<dyn Read + Send>, bundle: &mut Bundle, meter: &Meter) -> Result<()> {
    // `take` returns our errors; the reader wants io errors: carry ours through and back.
    let mut failed = None;
    let read = tar::read_files(input, |path, content| {
        take(store, path, content, bundle, meter).map_err(|e| {
            let io = std::io::Error::other(e.to_string());
            failed = Some(e);
            io
        })
    });
    match (read, failed) {
        (_, Some(e)) => Err(e),
        (Err(e), None) => Err(refused(e)),
        (Ok(()), None) => Ok(()),
    }
}

fn read_dir(store: &Store, dir: &Path, bundle: &mut Bundle, meter: &Meter) -> Result<()> {
    for name in ["oci-layout", "index.json"] {
        if let Ok(mut f) = std::fs::File::open(dir.join(name)) {
            take(store, name, &mut f, bundle, meter)?;
        }
    }
    let blobs = dir.join("blobs");
    for alg in std::fs::read_dir(&blobs).map_err(|e| refused(format!("{}: {e}", blobs.display())))? {
        let alg = alg?;
        for file in std::fs::read_dir(alg.path())? {
            let file = file?;
            let path = format!(
                "blobs/{}/{}",
                alg.file_name().to_string_lossy(),
                file.file_name().to_string_lossy()
            );
            take(store, &path, &mut std::fs::File::open(file.path())?, bundle, meter)?;
        }
    }
    Ok(())
}

/// Takes one file of the layout: the two metadata files are kept, blobs are verified
/// against the digest their path names and staged (or skipped when already cached).
fn take(store: &Store, path: &str, content: &mut dyn Read, bundle: &mut Bundle, meter: &Meter) -> Result<()> {
    match path {
        "oci-layout" => {
            let mut text = String::new();
            content.take(4096).read_to_string(&mut text).map_err(refused)?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| refused(format!("oci-layout: {e}")))?;
            if v["imageLayoutVersion"].as_str().is_none() {
                return Err(refused("oci-layout has no imageLayoutVersion"));
            }
            bundle.layout = true;
        }
        "index.json" => {
            let mut bytes = Vec::new();
            content.take(MAX_INDEX).read_to_end(&mut bytes).map_err(refused)?;
            bundle.index_json = Some(bytes);
        }
        _ => {
            let Some(rest) = path.strip_prefix("blobs/") else {
                return Ok(());
            };
            let Some((alg, hex)) = rest.split_once('/') else {
                return Ok(());
            };
            let d: Digest = format!("{alg}:{hex}")
                .parse()
                .map_err(|e| refused(format!("{path}: {e}")))?;
            let mut hasher = Hasher::new(d.algorithm());
            let already = store.blobs.exists(&d) || store.index.has_manifest(&d)?;
            let mut ingest = if already { None } else { Some(store.blobs.ingest(&d)?) };
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = match content.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        if let Some(i) = ingest {
                            i.abort();
                        }
                        return Err(refused(format!("{d}: {e}")));
                    }
                };
                hasher.update(&buf[..n]);
                meter.add(n as u64);
                if let Some(i) = ingest.as_mut() {
                    if let Err(e) = i.write(&buf[..n]) {
                        if let Some(i) = ingest {
                            i.abort();
                        }
                        return Err(e.into());
                    }
                }
            }
            let actual = hasher.finish();
            if actual != d {
                if let Some(i) = ingest {
                    i.abort();
                }
                return Err(refused(format!("{d} does not match its content ({actual})")));
            }
            match ingest {
                Some(i) => {
                    bundle.staged.insert(d, i.stage()?);
                }
                None => bundle.present += 1,
            }
        }
    }
    Ok(())
}

/// A manifest to record, and the tags that resolve to it.
struct ManifestPlan {
    upstream: String,
    repo: String,
    bytes: Vec<u8>,
    parsed: manifest::Parsed,
}

struct TagPlan {
    upstream: String,
    repo: String,
    tag: String,
    class: String,
    digest: Digest,
    media_type: String,
    validated_at: u64,
}

struct Plan {
    manifests: BTreeMap<Digest, ManifestPlan>,
    tags: Vec<TagPlan>,
}

fn manifest_bytes(store: &Store, bundle: &Bundle, d: &Digest) -> Result<Option<Vec<u8>>> {
    if let Some(s) = bundle.staged.get(d) {
        return Ok(Some(s.read_all()?));
    }
    if let Some((_, b)) = store.index.manifest(d)? {
        return Ok(Some(b.to_vec()));
    }
    match store.blobs.committed(d)? {
        Some(blob) => Ok(Some(blob.read_all()?)),
        None => Ok(None),
    }
}

fn plan(store: &Store, upstreams: &Upstreams, bundle: &Bundle, placement: &Placement) -> Result<Plan> {
    if !bundle.layout {
        return Err(refused("no oci-layout file: not an OCI image layout"));
    }
    let index_bytes = bundle.index_json.as_ref().ok_or_else(|| refused("no index.json"))?;
    let index =
        manifest::parse(index_bytes, Some(media::OCI_INDEX)).map_err(|e| refused(format!("index.json: {e}")))?;
    let mut plan = Plan {
        manifests: BTreeMap::new(),
        tags: Vec::new(),
    };
    let now = now_ms();
    for entry in &index.manifests {
        let (upstream, repo, tag) = place(upstreams, entry, placement)?;
        let bytes = manifest_bytes(store, bundle, &entry.digest)?
            .ok_or_else(|| refused(format!("{} is listed but not in the bundle", entry.digest)))?;
        let parsed =
            manifest::parse(&bytes, Some(&entry.media_type)).map_err(|e| refused(format!("{}: {e}", entry.digest)))?;
        let ann = entry.annotations.as_ref();
        if let Some(tag) = tag {
            let class = ann
                .and_then(|a| a.get(ANN_ACCEPT))
                .and_then(|v| v.as_str())
                .map_or(AcceptClass::ALL.key(), str::to_owned);
            let validated_at = ann
                .and_then(|a| a.get(ANN_VALIDATED))
                .and_then(|v| v.as_str())
                .and_then(|v| v.parse().ok())
                .unwrap_or(now);
            plan.tags.push(TagPlan {
                upstream: upstream.clone(),
                repo: repo.clone(),
                tag,
                class,
                digest: entry.digest.clone(),
                media_type: parsed.media_type.clone(),
                validated_at,
            });
        }
        add_manifest(store, bundle, &mut plan, &entry.digest, &upstream, &repo, bytes, parsed)?;
    }
    Ok(plan)
}

/// Records a manifest and, recursively, the manifests an index lists that the bundle holds.
#[allow(clippy::too_many_arguments)]
fn add_manifest(
    store: &Store,
    bundle: &Bundle,
    plan: &mut Plan,
    d: &Digest,
    upstream: &str,
    repo: &str,
    bytes: Vec<u8>,
    parsed: manifest::Parsed,
) -> Result<()> {
    if plan.manifests.contains_key(d) {
        return Ok(());
    }
    let children: Vec<Descriptor> = parsed.manifests.clone();
    plan.manifests.insert(
        d.clone(),
        ManifestPlan {
            upstream: upstream.to_owned(),
            repo: repo.to_owned(),
            bytes,
            parsed,
        },
    );
    for child in children {
        if let Some(b) = manifest_bytes(store, bundle, &child.digest)? {
            let p =
                manifest::parse(&b, Some(&child.media_type)).map_err(|e| refused(format!("{}: {e}", child.digest)))?;
            add_manifest(store, bundle, plan, &child.digest, upstream, repo, b, p)?;
        }
    }
    Ok(())
}

/// Where an `index.json` entry belongs: entrepot's annotations, else its ref.name read as
/// a client reads a reference, else the placement given on the command line.
fn place(upstreams: &Upstreams, entry: &Descriptor, placement: &Placement) -> Result<(String, String, Option<String>)> {
    let ann = entry.annotations.clone().unwrap_or_default();
    let get = |k: &str| ann.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    if let (Some(up), Some(repo)) = (get(ANN_UPSTREAM), get(ANN_REPOSITORY)) {
        let t = upstreams
            .resolve(&repo, Some(&up))
            .map_err(|e| refused(format!("{}: {e}", entry.digest)))?;
        return Ok((t.upstream.name().to_owned(), t.repo, get(ANN_TAG)));
    }
    let ref_name = get(REF_NAME);
    let (name, tag) = match ref_name.as_deref() {
        Some(r) if r.contains('/') || placement.repository.is_none() && r.contains(':') => {
            let last_slash = r.rfind('/').map_or(0, |i| i + 1);
            match r[last_slash..].rfind(':') {
                Some(i) => (
                    Some(r[..last_slash + i].to_owned()),
                    Some(r[last_slash + i + 1..].to_owned()),
                ),
                None => (Some(r.to_owned()), None),
            }
        }
        Some(tag) => (placement.repository.clone(), Some(tag.to_owned())),
        None => (placement.repository.clone(), None),
    };
    let name = name.ok_or_else(|| {
        refused(format!(
            "{} names no repository (ref.name {ref_name:?}); pass --repository",
            entry.digest
        ))
    })?;
    let t = upstreams
        .resolve(&name, placement.upstream.as_deref())
        .map_err(|e| refused(format!("{}: {e}", entry.digest)))?;
    let tag = tag.filter(|t| crate::oci::name::is_valid_tag(t));
    Ok((t.upstream.name().to_owned(), t.repo, tag))
}

/// Links `root`, and everything it reaches through the bundle's manifests (an index's
/// children, their config and layers), into the repository.
fn link_reachable(store: &Store, plan: &Plan, upstream: &str, repo: &str, root: &Digest) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    let mut next = vec![root];
    while let Some(d) = next.pop() {
        if seen.insert(d) {
            next.extend(
                plan.manifests
                    .get(d)
                    .into_iter()
                    .flat_map(|m| m.parsed.references())
                    .map(|r| &r.digest),
            );
        }
    }
    store
        .index
        .link(upstream, repo, &seen.into_iter().collect::<Vec<_>>())?;
    Ok(())
}

fn commit(store: &Store, bundle: Bundle, plan: Plan) -> Result<Summary> {
    let now = now_ms();
    let mut summary = Summary {
        blobs_present: bundle.present,
        ..Default::default()
    };
    // Manifests live in the index; their staged files are not needed as blobs.
    let mut staged = bundle.staged;
    for (d, m) in &plan.manifests {
        if let Some(s) = staged.remove(d) {
            s.discard();
        }
        let rec = ManifestRecord {
            media_type: m.parsed.media_type.clone(),
            size: m.bytes.len() as u64,
            references: m.parsed.references().map(|r| r.digest.clone()).collect(),
            subject: m.parsed.subject.as_ref().map(|s| s.digest.clone()),
            artifact_type: m.parsed.artifact_type.clone(),
            upstream: m.upstream.clone(),
            repository: m.repo.clone(),
            cached_at: now,
            last_access: now,
            hits: 0,
        };
        if !store.index.has_manifest(d)? {
            store.index.put_manifest(d, &rec, &m.bytes)?;
        }
        // Stored already, perhaps for another repository: the bundle places it in this one.
        link_reachable(store, &plan, &m.upstream, &m.repo, d)?;
        let refs: Vec<Descriptor> = m.parsed.references().cloned().collect();
        store.index.learn_media_types(&refs)?;
        summary.manifests += 1;
    }
    let upstream_of: HashMap<Digest, String> = plan
        .manifests
        .values()
        .flat_map(|m| m.parsed.references().map(|r| (r.digest.clone(), m.upstream.clone())))
        .collect();
    for (d, s) in staged {
        let size = s.publish()?;
        let upstream = upstream_of.get(&d).cloned().unwrap_or_default();
        let rec = BlobRecord::fresh(size, store.index.media_type(&d)?, upstream);
        store.index.put_blob(&d, &rec)?;
        summary.blobs_added += 1;
        summary.bytes_added += size;
    }
    for t in &plan.tags {
        // A manifest two repositories share is placed once in a bundle: each tag's
        // repository holds what the tag reaches.
        link_reachable(store, &plan, &t.upstream, &t.repo, &t.digest)?;
        let rec = TagRecord {
            digest: t.digest.clone(),
            media_type: t.media_type.clone(),
            fetched_at: now,
            validated_at: t.validated_at,
        };
        store.index.put_tag(&t.upstream, &t.repo, &t.tag, &t.class, &rec)?;
        summary.tags += 1;
    }
    Ok(summary)
}
