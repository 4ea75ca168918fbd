//! `pouch load` and `pouch save`: OCI archives (a tarred OCI image layout, as
//! `skopeo copy … oci-archive:` writes) and docker-archives (`docker save`'s format, both the
//! classic one and Docker 25's, which is an OCI layout plus `manifest.json`).

use super::digest::Digest;
use super::manifest::{self, Descriptor, Document};
use super::reference::ImageRef;
use super::store::{ContentStore, StoreError, REF_NAME};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;

/// Errors of load and save.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Not an archive we understand.
    #[error("{path}: {why}")]
    Format {
        /// The archive.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// I/O on the archive.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The archive.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The store failed (a blob that does not match its name, …).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A document is unusable.
    #[error(transparent)]
    Document(#[from] manifest::ManifestError),
}

type Result<T> = std::result::Result<T, ArchiveError>;

/// The format of `pouch save`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchiveFormat {
    /// A tarred OCI image layout.
    OciArchive,
    /// `docker save`'s format (readable by `docker load`, `podman load`, skopeo).
    DockerArchive,
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Loads every image of the archive at `path` into the store; returns the names recorded.
/// Blobs named by digest are verified against it; nothing unverified becomes visible.
pub fn load(store: &ContentStore, path: &Path) -> Result<Vec<String>> {
    let _writer = store.lock_writer()?;
    let pstr = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|source| ArchiveError::Io {
        what: "open",
        path: pstr.clone(),
        source,
    })?;
    let mut head = [0u8; 4];
    let mut f = std::io::BufReader::with_capacity(1 << 20, f);
    let n = {
        let b = std::io::BufRead::fill_buf(&mut f).map_err(|source| ArchiveError::Io {
            what: "read",
            path: pstr.clone(),
            source,
        })?;
        let n = b.len().min(4);
        head[..n].copy_from_slice(&b[..n]);
        n
    };
    let reader: Box<dyn Read> = match super::unpack::Compression::sniff(&head[..n]) {
        super::unpack::Compression::Gzip => Box::new(flate2::read::GzDecoder::new(f)),
        super::unpack::Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(f).map_err(|source| ArchiveError::Io {
                what: "read",
                path: pstr.clone(),
                source,
            })?,
        ),
        super::unpack::Compression::None => Box::new(f),
    };
    let mut ar = tar::Archive::new(reader);
    // Small files (JSON) by name; blobs straight into the store.
    let mut small: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut by_name: BTreeMap<String, Digest> = BTreeMap::new();
    let entries = ar.entries().map_err(|source| ArchiveError::Io {
        what: "read",
        path: pstr.clone(),
        source,
    })?;
    for e in entries {
        let mut e = e.map_err(|source| ArchiveError::Io {
            what: "read entry of",
            path: pstr.clone(),
            source,
        })?;
        if !e.header().entry_type().is_file() {
            continue;
        }
        let name = e
            .path()
            .map(|p| p.to_string_lossy().trim_start_matches("./").to_string())
            .unwrap_or_default();
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            let expected: Digest =
                format!("sha256:{hex}")
                    .parse()
                    .map_err(|e| ArchiveError::Format {
                        path: pstr.clone(),
                        why: format!("entry {name:?}: {e}"),
                    })?;
            store.put_reader(&mut e, Some(&expected))?;
            by_name.insert(name, expected);
        } else if name.ends_with(".json") || name == "oci-layout" {
            if e.size() > 64 << 20 {
                return Err(ArchiveError::Format {
                    path: pstr,
                    why: format!("entry {name:?} is too big for a JSON document"),
                });
            }
            let mut buf = Vec::new();
            e.read_to_end(&mut buf).map_err(|source| ArchiveError::Io {
                what: "read",
                path: pstr.clone(),
                source,
            })?;
            small.insert(name, buf);
        } else if name.ends_with(".tar") || name.ends_with("layer.tar") || name.ends_with(".tar.gz")
        {
            // Classic docker-archive layer: the digest is what it is.
            let (d, _) = store.put_reader(&mut e, None)?;
            by_name.insert(name, d);
        }
    }
    let mut names = Vec::new();
    if let Some(m) = small.get("manifest.json") {
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(m).map_err(|e| ArchiveError::Format {
                path: pstr.clone(),
                why: format!("manifest.json: {e}"),
            })?;
        for entry in entries {
            names.extend(load_docker_entry(store, &pstr, &entry, &small, &by_name)?);
        }
    } else if let Some(ix) = small.get("index.json") {
        let index: manifest::Index =
            serde_json::from_slice(ix).map_err(|e| ArchiveError::Format {
                path: pstr.clone(),
                why: format!("index.json: {e}"),
            })?;
        for d in &index.manifests {
            names.extend(load_oci_entry(store, &pstr, d)?);
        }
    } else {
        return Err(ArchiveError::Format {
            path: pstr,
            why: "neither an OCI archive (index.json) nor a docker-archive (manifest.json)".into(),
        });
    }
    Ok(names)
}

fn load_oci_entry(store: &ContentStore, path: &str, d: &Descriptor) -> Result<Vec<String>> {
    let bytes = store
        .read_blob(&d.digest)
        .map_err(|_| ArchiveError::Format {
            path: path.to_string(),
            why: format!(
                "index.json names {} but the archive does not hold it",
                d.digest
            ),
        })?;
    let name = d
        .annotation(REF_NAME)
        .or_else(|| d.annotation(super::store::CONTAINERD_NAME))
        .map(str::to_string);
    match manifest::parse_document(
        &bytes,
        Some(&d.media_type),
        &format!("manifest {}", d.digest),
    )? {
        Document::Index(ix) => {
            // Pick the host's platform (or the only entry) and record it under the name.
            let want = super::pull::PlatformSpec::host();
            let chosen = super::pull::select_platform(name.as_deref().unwrap_or(path), &ix, &want)
                .or_else(|e| ix.manifests.first().ok_or(e))
                .map_err(|e| ArchiveError::Format {
                    path: path.to_string(),
                    why: e.to_string(),
                })?
                .clone();
            let mut rec = chosen.clone();
            rec.annotations = None;
            rec.annotations
                .get_or_insert_with(Default::default)
                .insert(super::store::SOURCE_INDEX.to_string(), d.digest.to_string());
            finish(store, path, name, rec)
        }
        Document::Manifest(_) => {
            let mut rec = d.clone();
            rec.annotations = None;
            finish(store, path, name, rec)
        }
    }
}

fn finish(
    store: &ContentStore,
    path: &str,
    name: Option<String>,
    rec: Descriptor,
) -> Result<Vec<String>> {
    let image = store.image(&rec)?;
    for l in &image.manifest.layers {
        if !store.has_blob(&l.digest) {
            return Err(ArchiveError::Format {
                path: path.to_string(),
                why: format!("layer {} is missing from the archive", l.digest),
            });
        }
    }
    if image.has_tar_layers() {
        super::snapshot::ensure_snapshots(store, &image).map_err(|e| ArchiveError::Format {
            path: path.to_string(),
            why: e.to_string(),
        })?;
    }
    let name = match name {
        // An OCI archive may carry just a tag as its ref name ("latest"): keep it readable.
        Some(n) => match n.parse::<ImageRef>() {
            Ok(r) if n.contains('/') || n.contains(':') => r.to_string(),
            _ => format!("localhost/{}:{}", "loaded", sanitize_tag(&n)),
        },
        None => format!("localhost/loaded@{}", rec.digest),
    };
    store.set_image(&name, &rec)?;
    Ok(vec![name])
}

fn sanitize_tag(t: &str) -> String {
    let s: String = t
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() {
        "latest".into()
    } else {
        s
    }
}

fn load_docker_entry(
    store: &ContentStore,
    path: &str,
    entry: &DockerManifestEntry,
    small: &BTreeMap<String, Vec<u8>>,
    by_name: &BTreeMap<String, Digest>,
) -> Result<Vec<String>> {
    let fmt = |why: String| ArchiveError::Format {
        path: path.to_string(),
        why,
    };
    let config = match by_name.get(&entry.config) {
        Some(d) => store.read_blob(d)?,
        None => small
            .get(&entry.config)
            .cloned()
            .ok_or_else(|| fmt(format!("config {:?} is not in the archive", entry.config)))?,
    };
    let config_digest = store.put_blob(&config, None)?;
    let mut layers = Vec::new();
    for l in &entry.layers {
        let d = by_name
            .get(l)
            .ok_or_else(|| fmt(format!("layer {l:?} is not in the archive")))?;
        let blob = store.blob_path(d);
        let size = std::fs::metadata(&blob).map(|m| m.len()).unwrap_or(0);
        let mut head = [0u8; 4];
        let n = std::fs::File::open(&blob)
            .and_then(|mut f| f.read(&mut head))
            .unwrap_or(0);
        let mt = match super::unpack::Compression::sniff(&head[..n]) {
            super::unpack::Compression::Gzip => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            super::unpack::Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            super::unpack::Compression::None => "application/vnd.docker.image.rootfs.diff.tar",
        };
        layers.push(Descriptor::new(mt, d.clone(), size));
    }
    let m = manifest::Manifest {
        schema_version: 2,
        media_type: Some(manifest::DOCKER_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::new(manifest::DOCKER_CONFIG, config_digest, config.len() as u64),
        layers,
        annotations: None,
    };
    let mbytes = serde_json::to_vec(&m).expect("serialises");
    let md = store.put_blob(&mbytes, None)?;
    let rec = Descriptor::new(manifest::DOCKER_MANIFEST, md, mbytes.len() as u64);
    let tags = entry.repo_tags.clone().unwrap_or_default();
    if tags.is_empty() {
        return finish(store, path, None, rec);
    }
    let mut out = Vec::new();
    for t in tags {
        let r: ImageRef = t
            .parse()
            .map_err(|e: super::reference::ReferenceError| fmt(e.to_string()))?;
        out.extend(finish(store, path, Some(r.to_string()), rec.clone())?);
    }
    Ok(out)
}

/// Writes the named images to `out` as one archive.
pub fn save(
    store: &ContentStore,
    names: &[(String, Descriptor)],
    format: ArchiveFormat,
    out: &mut dyn Write,
) -> Result<()> {
    let mut ar = tar::Builder::new(out);
    let mut written: BTreeSet<Digest> = BTreeSet::new();
    let add_bytes = |ar: &mut tar::Builder<&mut dyn Write>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        ar.append_data(&mut h, name, data)
    };
    let io = |source| ArchiveError::Io {
        what: "write",
        path: "archive".into(),
        source,
    };
    let mut add_blob = |ar: &mut tar::Builder<&mut dyn Write>, d: &Digest| -> Result<()> {
        if !written.insert(d.clone()) {
            return Ok(());
        }
        let p = store.blob_path(d);
        let mut f = std::fs::File::open(&p).map_err(|_| StoreError::MissingBlob(d.clone()))?;
        let mut h = tar::Header::new_ustar();
        h.set_size(f.metadata().map(|m| m.len()).unwrap_or(0));
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        ar.append_data(&mut h, format!("blobs/sha256/{}", d.hex()), &mut f)
            .map_err(io)
    };
    let mut index_entries = Vec::new();
    let mut docker_entries = Vec::new();
    for (name, desc) in names {
        let image = store.image(desc)?;
        add_blob(&mut ar, &desc.digest)?;
        add_blob(&mut ar, &image.manifest.config.digest)?;
        for l in &image.manifest.layers {
            add_blob(&mut ar, &l.digest)?;
        }
        let mut d = desc.clone();
        d.annotations = None;
        d.annotations
            .get_or_insert_with(Default::default)
            .insert(REF_NAME.into(), name.clone());
        index_entries.push(d);
        if format == ArchiveFormat::DockerArchive {
            if !image.has_tar_layers() || image.manifest.config.media_type == manifest::WASM_CONFIG
            {
                return Err(ArchiveError::Format {
                    path: name.clone(),
                    why: "a wasm artifact has no docker-archive form; save it with --format oci-archive".into(),
                });
            }
            let tag = name
                .parse::<ImageRef>()
                .ok()
                .filter(|r| r.tag.is_some())
                .map(|r| {
                    let s = r.to_string();
                    s.strip_prefix("docker.io/library/")
                        .map(str::to_string)
                        .unwrap_or(s)
                });
            docker_entries.push(DockerManifestEntry {
                config: format!("blobs/sha256/{}", image.manifest.config.digest.hex()),
                repo_tags: Some(tag.into_iter().collect()),
                layers: image
                    .manifest
                    .layers
                    .iter()
                    .map(|l| format!("blobs/sha256/{}", l.digest.hex()))
                    .collect(),
            });
        }
    }
    let index = manifest::Index {
        schema_version: 2,
        media_type: Some(manifest::OCI_INDEX.into()),
        manifests: index_entries,
        annotations: None,
        other: Default::default(),
    };
    add_bytes(&mut ar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io)?;
    add_bytes(
        &mut ar,
        "index.json",
        &serde_json::to_vec(&index).expect("json"),
    )
    .map_err(io)?;
    if format == ArchiveFormat::DockerArchive {
        add_bytes(
            &mut ar,
            "manifest.json",
            &serde_json::to_vec(&docker_entries).expect("json"),
        )
        .map_err(io)?;
    }
    ar.finish().map_err(io)?;
    Ok(())
}
