//! `entrepot export`: what is cached, or a selection of it, as an OCI image layout. The tar
//! form is streamed: `index.json` is worked out from the index first, then every blob is
//! copied from its file straight into the archive.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::{tar, ANN_ACCEPT, ANN_REPOSITORY, ANN_TAG, ANN_UPSTREAM, ANN_VALIDATED, LAYOUT_VERSION, REF_NAME};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::oci::manifest;
use crate::oci::media::{self, AcceptClass};
use crate::oci::Digest;
use crate::policy::cosign;
use crate::policy::glob::Globs;
use crate::progress::Meter;
use crate::store::index::TagEntry;
use crate::store::Store;

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Selection {
    pub upstream: Option<Globs>,
    pub repository: Option<Globs>,
    pub tag: Option<Globs>,
    /// Only what was cached after this mark (printed by an earlier export).
    pub since: Option<u64>,
}

pub enum Output {
    Dir(PathBuf),
    Tar(Box<dyn Write + Send>),
}

#[derive(Debug, Default)]
pub struct Summary {
    pub manifests: usize,
    pub tags: usize,
    pub blobs: usize,
    pub bytes: u64,
    /// Blobs a manifest references that this cache never fetched (other platforms, say).
    pub missing: Vec<Digest>,
    /// Pass to `--since` next time to export only what is new.
    pub mark: u64,
}

impl Summary {
    /// What `entrepot export` prints.
    pub fn text(&self) -> String {
        let mut text = format!(
            "exported {} manifest(s) ({} tag(s)), {} blob(s), {} bytes\n",
            self.manifests, self.tags, self.blobs, self.bytes
        );
        if !self.missing.is_empty() {
            text.push_str(&format!(
                "{} referenced blob(s) or manifest(s) are not cached here and were left out\n",
                self.missing.len()
            ));
        }
        text.push_str(&format!(
            "export mark: {} (pass --since {} to export only what is newer)\n",
            self.mark, self.mark
        ));
        text
    }
}

/// One `index.json` entry.
struct Root {
    digest: Digest,
    annotations: Map<String, Value>,
}

/// Works out what to export, then writes it. Blocking.
/// `meter` is told the planned bytes, then counts manifests and blobs as they are written.
pub fn export(store: &Store, sel: &Selection, out: Output, meter: &Meter) -> Result<Summary> {
    let mark = now_ms();
    let plan = select(store, sel)?;
    let blob_bytes: u64 = (plan.blobs.iter())
        .filter_map(|d| store.blobs.size(d).ok().flatten())
        .sum();
    meter.set_total(Some(
        blob_bytes + plan.manifests.values().map(|m| m.len() as u64).sum::<u64>(),
    ));
    let index = plan.index_json();
    let mut summary = Summary {
        mark,
        tags: plan.tags,
        missing: plan.missing.clone(),
        ..Default::default()
    };
    let mut sink: Box<dyn Sink> = match out {
        Output::Dir(dir) => Box::new(DirSink::new(&dir)?),
        Output::Tar(w) => Box::new(TarSink(tar::Writer::new(w))),
    };
    sink.file(
        "oci-layout",
        LAYOUT_VERSION.len() as u64,
        &mut LAYOUT_VERSION.as_bytes(),
    )?;
    sink.file("index.json", index.len() as u64, &mut index.as_bytes())?;
    sink.dir("blobs")?;
    for alg in plan
        .manifests
        .keys()
        .chain(plan.blobs.iter())
        .map(|d| d.algorithm().name())
        .collect::<BTreeSet<_>>()
    {
        sink.dir(&format!("blobs/{alg}"))?;
    }
    for (d, bytes) in &plan.manifests {
        sink.file(&blob_path(d), bytes.len() as u64, &mut &bytes[..])?;
        meter.add(bytes.len() as u64);
        summary.manifests += 1;
        summary.bytes += bytes.len() as u64;
    }
    for d in &plan.blobs {
        let blob =
            (store.blobs.committed(d)?).ok_or_else(|| Error::Internal(format!("blob {d} is gone from the store")))?;
        let size = blob.size();
        sink.file(&blob_path(d), size, &mut Counting(blob.reader(), meter))?;
        summary.blobs += 1;
        summary.bytes += size;
    }
    sink.finish()?;
    Ok(summary)
}

/// A blob's bytes, counted on the meter as the sink reads them.
struct Counting<'a, R>(R, &'a Meter);

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.add(n as u64);
        Ok(n)
    }
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().name(), d.hex())
}

struct Plan {
    roots: Vec<Root>,
    manifests: BTreeMap<Digest, bytes::Bytes>,
    blobs: BTreeSet<Digest>,
    missing: Vec<Digest>,
    tags: usize,
}

impl Plan {
    fn index_json(&self) -> String {
        let manifests: Vec<Value> = self
            .roots
            .iter()
            .map(|r| {
                let m = &self.manifests[&r.digest];
                let media = manifest::parse(m, None).map(|p| p.media_type).unwrap_or_else(|_| media::OCI_MANIFEST.into());
                json!({ "mediaType": media, "digest": r.digest.to_string(), "size": m.len(), "annotations": r.annotations })
            })
            .collect();
        json!({ "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests }).to_string()
    }
}

fn matches(g: &Option<Globs>, v: &str) -> bool {
    g.as_ref().is_none_or(|g| g.matches(v))
}

fn select(store: &Store, sel: &Selection) -> Result<Plan> {
    let index = &store.index;
    let is_new = |cached_at: u64| sel.since.is_none_or(|s| cached_at > s);
    let mut roots = Vec::new();
    let mut seen_refs = BTreeSet::new();
    let mut wanted: Vec<(Digest, String, String)> = Vec::new();
    let mut tags = 0;
    let mut all_tags = index.tags_all()?;
    // The widest Accept class first, so that it is the one carrying ref.name.
    all_tags.sort_by_key(|t| (t.class != AcceptClass::ALL.key(), t.class.clone()));
    let mut exported_tags = BTreeSet::new();
    for entry in all_tags {
        if !(matches(&sel.upstream, &entry.upstream)
            && matches(&sel.repository, &entry.repo)
            && matches(&sel.tag, &entry.tag))
        {
            continue;
        }
        let Some((mrec, _)) = index.manifest(&entry.record.digest)? else {
            continue;
        };
        if !is_new(mrec.cached_at) {
            continue;
        }
        roots.push(tag_root(&entry, &mut seen_refs));
        wanted.push((entry.record.digest.clone(), entry.upstream.clone(), entry.repo.clone()));
        exported_tags.insert((entry.upstream, entry.repo, entry.tag, entry.class));
        tags += 1;
    }
    // Without a tag filter, manifests pulled by digest alone go too.
    if sel.tag.is_none() {
        for (d, rec) in index.manifests_all()? {
            if matches(&sel.upstream, &rec.upstream)
                && matches(&sel.repository, &rec.repository)
                && is_new(rec.cached_at)
            {
                wanted.push((d, rec.upstream, rec.repository));
            }
        }
    }
    let mut manifests = BTreeMap::new();
    let mut blobs = BTreeSet::new();
    let mut missing = Vec::new();
    let mut tagged: BTreeSet<Digest> = roots.iter().map(|r| r.digest.clone()).collect();
    // Each wanted manifest, the manifests it lists, and its referrers.
    while let Some((d, upstream, repo)) = wanted.pop() {
        // Its cosign signatures under their tag in this repository go with it, whatever the
        // tag filter: a site that verifies signatures verifies them offline.
        let signature_tag = cosign::signature_tag(&d);
        for (class, record) in index.tag_classes(&upstream, &repo, &signature_tag)? {
            let entry = TagEntry {
                upstream: upstream.clone(),
                repo: repo.clone(),
                tag: signature_tag.clone(),
                class,
                record,
            };
            let key = (
                entry.upstream.clone(),
                entry.repo.clone(),
                entry.tag.clone(),
                entry.class.clone(),
            );
            if index.has_manifest(&entry.record.digest)? && exported_tags.insert(key) {
                roots.push(tag_root(&entry, &mut seen_refs));
                tagged.insert(entry.record.digest.clone());
                wanted.push((entry.record.digest.clone(), upstream.clone(), repo.clone()));
                tags += 1;
            }
        }
        if manifests.contains_key(&d) {
            continue;
        }
        let Some((rec, bytes)) = index.manifest(&d)? else {
            missing.push(d);
            continue;
        };
        if !is_new(rec.cached_at) {
            continue;
        }
        let parsed = manifest::parse(&bytes, Some(&rec.media_type)).map_err(Error::internal)?;
        for child in &parsed.manifests {
            wanted.push((child.digest.clone(), upstream.clone(), repo.clone()));
        }
        for referrer in index.local_referrers(&d)? {
            wanted.push((referrer, upstream.clone(), repo.clone()));
        }
        for blob in parsed.config.iter().chain(&parsed.layers) {
            match index.blob(&blob.digest)? {
                Some(b) if store.blobs.exists(&blob.digest) => {
                    if is_new(b.cached_at) {
                        blobs.insert(blob.digest.clone());
                    }
                }
                _ => missing.push(blob.digest.clone()),
            }
        }
        if !tagged.contains(&d) && (parsed.subject.is_some() || sel.tag.is_none()) {
            let mut ann = Map::new();
            ann.insert(ANN_UPSTREAM.into(), upstream.clone().into());
            ann.insert(ANN_REPOSITORY.into(), repo.clone().into());
            roots.push(Root {
                digest: d.clone(),
                annotations: ann,
            });
        }
        manifests.insert(d, bytes);
    }
    // A child listed by an exported index needs no entry of its own.
    let children: BTreeSet<Digest> = manifests
        .values()
        .flat_map(|b| manifest::parse(b, None).map(|p| p.manifests).unwrap_or_default())
        .map(|c| c.digest)
        .collect();
    roots.retain(|r| r.annotations.contains_key(ANN_TAG) || !children.contains(&r.digest));
    missing.sort();
    missing.dedup();
    Ok(Plan {
        roots,
        manifests,
        blobs,
        missing,
        tags,
    })
}

/// A tag's entry in `index.json`; the first entry of a reference carries its `ref.name`.
fn tag_root(e: &TagEntry, seen_refs: &mut BTreeSet<String>) -> Root {
    let mut ann = Map::new();
    let reference = format!("{}/{}:{}", e.upstream, e.repo, e.tag);
    if seen_refs.insert(reference.clone()) {
        ann.insert(REF_NAME.into(), reference.into());
    }
    ann.insert(ANN_UPSTREAM.into(), e.upstream.clone().into());
    ann.insert(ANN_REPOSITORY.into(), e.repo.clone().into());
    ann.insert(ANN_TAG.into(), e.tag.clone().into());
    ann.insert(ANN_ACCEPT.into(), e.class.clone().into());
    ann.insert(ANN_VALIDATED.into(), e.record.validated_at.to_string().into());
    Root {
        digest: e.record.digest.clone(),
        annotations: ann,
    }
}

trait Sink {
    fn dir(&mut self, path: &str) -> Result<()>;
    fn file(&mut self, path: &str, size: u64, content: &mut dyn Read) -> Result<()>;
    fn finish(self: Box<Self>) -> Result<()>;
}

struct TarSink(tar::Writer<Box<dyn Write + Send>>);

impl Sink for TarSink {
    fn dir(&mut self, path: &str) -> Result<()> {
        Ok(self.0.dir(path)?)
    }

    fn file(&mut self, path: &str, size: u64, content: &mut dyn Read) -> Result<()> {
        Ok(self.0.file(path, size, content)?)
    }

    fn finish(self: Box<Self>) -> Result<()> {
        self.0.finish()?;
        Ok(())
    }
}

/// A layout directory; an existing one gains what is new (blobs are content-addressed).
struct DirSink {
    root: PathBuf,
}

impl DirSink {
    fn new(root: &Path) -> Result<DirSink> {
        std::fs::create_dir_all(root)?;
        Ok(DirSink { root: root.to_owned() })
    }
}

impl Sink for DirSink {
    fn dir(&mut self, path: &str) -> Result<()> {
        Ok(std::fs::create_dir_all(self.root.join(path))?)
    }

    fn file(&mut self, path: &str, _size: u64, content: &mut dyn Read) -> Result<()> {
        let target = self.root.join(path);
        let tmp = self.root.join(format!("{path}.partial"));
        let written = (|| -> Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::copy(content, &mut f)?;
            Ok(f.sync_all()?)
        })();
        super::settle(&tmp, &target, written)
    }

    fn finish(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
