//! The content store: an OCI image layout under the data root, plus the bookkeeping beside it.
//!
//! ```text
//! <data-root>/oci/          OCI image layout (oci-layout, index.json, blobs/sha256/<hex>):
//!                           `skopeo inspect oci:<data-root>/oci:<reference>` reads it
//! <data-root>/ingest/       downloads in progress (<hex>.partial), resumed by the next pull
//! <data-root>/snapshots/    unpacked layers, one directory per chain ID
//! <data-root>/gc.lock       shared by every writer, exclusive for garbage collection
//! <data-root>/index.lock    serialises read-modify-write of index.json
//! ```
//!
//! Guarantees: a blob under `blobs/` always matches its digest (it is verified before the
//! rename that makes it visible); `index.json` is replaced atomically; two `pouch` processes can
//! pull, tag and remove at the same time; garbage collection never removes what a running
//! writer is about to reference (writers hold `gc.lock` shared).

use super::digest::{Digest, Hasher};
use super::manifest::{self, Descriptor, Document, ImageConfig, Index};
use nix::fcntl::{Flock, FlockArg};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The default data root.
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/pouch";
/// The annotation holding an image's name in `index.json` (what `oci:DIR:NAME` matches).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd uses for the same purpose; written too, for its tools.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Annotation: the index the manifest was selected from, if any.
pub const SOURCE_INDEX: &str = "io.pouch.image.index-digest";

/// Errors of the content store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error on a named path.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Content did not match the digest it was announced with.
    #[error("content announced as {expected} has digest {actual} ({size} bytes): the source is corrupt or not what it claims; nothing was stored")]
    DigestMismatch {
        /// Announced digest.
        expected: Digest,
        /// Actual digest.
        actual: Digest,
        /// Bytes received.
        size: u64,
    },
    /// Content had another size than announced.
    #[error("content {digest} is {actual} bytes, {expected} were announced; nothing was stored")]
    SizeMismatch {
        /// The digest.
        digest: Digest,
        /// Announced size.
        expected: u64,
        /// Actual size.
        actual: u64,
    },
    /// A blob that should be present is not.
    #[error("blob {0} is not in the store (pull the image again)")]
    MissingBlob(Digest),
    /// No image of that name.
    #[error("no image {0:?} in the store (see `pouch images`)")]
    NoSuchImage(String),
    /// A document in the store is broken.
    #[error("{0}")]
    Document(#[from] manifest::ManifestError),
    /// index.json is broken.
    #[error("{path}: not a valid OCI index: {source}")]
    BadIndex {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: serde_json::Error,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The store under one data root.
#[derive(Clone, Debug)]
pub struct ContentStore {
    root: PathBuf,
    layout: PathBuf,
}

/// A held lock (released on drop).
pub struct LockGuard {
    _lock: Flock<File>,
}

/// One tagged image in `index.json`.
#[derive(Clone, Debug)]
pub struct ImageRecord {
    /// Its name (`org.opencontainers.image.ref.name`), a full reference.
    pub name: String,
    /// The manifest descriptor.
    pub descriptor: Descriptor,
}

/// An image as the store knows it: manifest, config and what kind of thing it is.
#[derive(Clone, Debug)]
pub struct StoredImage {
    /// The manifest's descriptor (digest, size, media type).
    pub manifest_descriptor: Descriptor,
    /// The manifest.
    pub manifest: manifest::Manifest,
    /// The config blob as stored.
    pub config_bytes: Vec<u8>,
    /// The config, parsed when it is an image config (wasm artifact configs parse too: they
    /// share `architecture`/`os`).
    pub config: ImageConfig,
}

impl StoredImage {
    /// Whether this is a wasm image (artifact or compat image).
    pub fn is_wasm(&self) -> bool {
        self.manifest.config.media_type == manifest::WASM_CONFIG
            || manifest::is_wasm_platform(&self.config.os, &self.config.architecture)
            || self
                .manifest
                .layers
                .iter()
                .any(|l| manifest::WASM_LAYERS.contains(&l.media_type.as_str()))
    }

    /// Whether the layers are tar layers to unpack (not raw wasm artifact layers).
    pub fn has_tar_layers(&self) -> bool {
        self.manifest
            .layers
            .iter()
            .all(|l| !manifest::WASM_LAYERS.contains(&l.media_type.as_str()))
    }

    /// Total size of config + layers.
    pub fn size(&self) -> u64 {
        self.manifest_descriptor.size
            + self.manifest.config.size
            + self.manifest.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().expect("path has a parent");
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        path.file_name().unwrap().to_string_lossy()
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    let r = (|| {
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

impl ContentStore {
    /// Opens the store under `data_root`, creating the layout if it is missing.
    pub fn open(data_root: &Path) -> Result<ContentStore> {
        let layout = data_root.join("oci");
        for d in [
            data_root.to_path_buf(),
            layout.join("blobs/sha256"),
            data_root.join("ingest"),
            data_root.join("snapshots"),
        ] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&d)
                .map_err(io_err("create directory", &d))?;
        }
        let s = ContentStore {
            root: data_root.to_path_buf(),
            layout,
        };
        let marker = s.layout.join("oci-layout");
        if !marker.exists() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644)
                .map_err(io_err("write", &marker))?;
        }
        let index = s.layout.join("index.json");
        if !index.exists() {
            let _g = s.lock_index()?;
            if !index.exists() {
                s.write_index(&Index {
                    schema_version: 2,
                    media_type: Some(manifest::OCI_INDEX.to_string()),
                    manifests: vec![],
                    annotations: None,
                    other: Default::default(),
                })?;
            }
        }
        Ok(s)
    }

    /// The data root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The OCI layout directory (`oci:<this>:<name>` for skopeo).
    pub fn layout_dir(&self) -> &Path {
        &self.layout
    }

    /// Where unpacked layers live.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    fn lock(&self, name: &str, arg: FlockArg) -> Result<LockGuard> {
        let p = self.root.join(name);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&p)
            .map_err(io_err("open lock", &p))?;
        let lock = Flock::lock(f, arg).map_err(|(_, e)| io_err("lock", &p)(io::Error::from(e)))?;
        Ok(LockGuard { _lock: lock })
    }

    /// Held by every writer (pull, load, tag) for its whole run: garbage collection waits.
    pub fn lock_writer(&self) -> Result<LockGuard> {
        self.lock("gc.lock", FlockArg::LockShared)
    }

    /// Held by garbage collection: no writer runs meanwhile.
    pub fn lock_gc(&self) -> Result<LockGuard> {
        self.lock("gc.lock", FlockArg::LockExclusive)
    }

    fn lock_index(&self) -> Result<LockGuard> {
        self.lock("index.lock", FlockArg::LockExclusive)
    }

    /// Path of a blob (present or not).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.layout.join("blobs/sha256").join(d.hex())
    }

    /// Whether a blob is present.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).exists()
    }

    /// Reads a whole blob.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(d);
        fs::read(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob(d.clone())
            } else {
                io_err("read blob", &p)(e)
            }
        })
    }

    /// Stores `data`, verifying it against `expected` (and `size`) when given. Returns its
    /// digest. A blob already present is left as it is.
    pub fn put_blob(&self, data: &[u8], expected: Option<&Digest>) -> Result<Digest> {
        let actual = Digest::of(data);
        if let Some(e) = expected {
            if *e != actual {
                return Err(StoreError::DigestMismatch {
                    expected: e.clone(),
                    actual,
                    size: data.len() as u64,
                });
            }
        }
        let p = self.blob_path(&actual);
        if !p.exists() {
            write_atomic(&p, data, 0o444).map_err(io_err("write blob", &p))?;
        }
        Ok(actual)
    }

    /// Starts or resumes the download of `digest`. `None` if the blob is already present.
    /// The partial file is locked: a second process downloading the same blob waits, then
    /// finds it present.
    pub fn ingest(&self, digest: &Digest, size: Option<u64>) -> Result<Option<Ingest>> {
        if self.has_blob(digest) {
            return Ok(None);
        }
        let path = self
            .root
            .join("ingest")
            .join(format!("{}.partial", digest.hex()));
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("open", &path))?;
        let mut file = Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| io_err("lock", &path)(io::Error::from(e)))?;
        if self.has_blob(digest) {
            // Another process finished it while we waited.
            let _ = fs::remove_file(&path);
            return Ok(None);
        }
        // Hash what an interrupted download left, so the resumed one only fetches the rest.
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        file.seek(SeekFrom::Start(0))
            .map_err(io_err("read", &path))?;
        loop {
            let n = file.read(&mut buf).map_err(io_err("read", &path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let mut ing = Ingest {
            file,
            path,
            final_path: self.blob_path(digest),
            digest: digest.clone(),
            size,
            hasher,
        };
        if size.is_some_and(|s| ing.hasher.len() > s) {
            ing.reset()?;
        }
        Ok(Some(ing))
    }

    /// Streams `reader` into the store, verifying it against `expected` when given; the blob
    /// becomes visible only if it matches. Returns its digest and size.
    pub fn put_reader(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64)> {
        let dir = self.root.join("ingest");
        let tmp = dir.join(format!(".put-{}-{}", std::process::id(), unique()));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let r = (|| -> Result<Digest> {
            loop {
                let n = reader.read(&mut buf).map_err(io_err("read into", &tmp))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                f.write_all(&buf[..n]).map_err(io_err("write", &tmp))?;
            }
            let len = hasher.len();
            let actual = hasher.clone().finish();
            if let Some(e) = expected {
                if *e != actual {
                    return Err(StoreError::DigestMismatch {
                        expected: e.clone(),
                        actual,
                        size: len,
                    });
                }
            }
            let dest = self.blob_path(&actual);
            if !dest.exists() {
                f.sync_all().map_err(io_err("sync", &tmp))?;
                fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o444))
                    .map_err(io_err("chmod", &tmp))?;
                fs::rename(&tmp, &dest).map_err(io_err("rename", &tmp))?;
            }
            Ok(actual)
        })();
        let _ = fs::remove_file(&tmp);
        let d = r?;
        Ok((d, hasher.len()))
    }

    /// Records `name` → `descriptor` in `index.json`, replacing what the name pointed to.
    pub fn set_image(&self, name: &str, descriptor: &Descriptor) -> Result<()> {
        let _g = self.lock_index()?;
        let mut index = self.read_index()?;
        index
            .manifests
            .retain(|d| d.annotation(REF_NAME) != Some(name));
        let mut d = descriptor.clone();
        let ann = d.annotations.get_or_insert_with(BTreeMap::new);
        ann.insert(REF_NAME.to_string(), name.to_string());
        ann.insert(CONTAINERD_NAME.to_string(), name.to_string());
        index.manifests.push(d);
        self.write_index(&index)
    }

    /// Removes `name` from `index.json`; whether it was there.
    pub fn remove_image(&self, name: &str) -> Result<bool> {
        let _g = self.lock_index()?;
        let mut index = self.read_index()?;
        let before = index.manifests.len();
        index
            .manifests
            .retain(|d| d.annotation(REF_NAME) != Some(name));
        let removed = index.manifests.len() != before;
        if removed {
            self.write_index(&index)?;
        }
        Ok(removed)
    }

    /// The images in `index.json`, in the order they were recorded.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        Ok(self
            .read_index()?
            .manifests
            .into_iter()
            .filter_map(|d| {
                let name = d.annotation(REF_NAME)?.to_string();
                Some(ImageRecord {
                    name,
                    descriptor: d,
                })
            })
            .collect())
    }

    /// Reads a stored image by manifest descriptor.
    pub fn image(&self, descriptor: &Descriptor) -> Result<StoredImage> {
        let bytes = self.read_blob(&descriptor.digest)?;
        let what = format!("manifest {}", descriptor.digest);
        let manifest = match manifest::parse_document(&bytes, Some(&descriptor.media_type), &what)?
        {
            Document::Manifest(m) => *m,
            Document::Index(_) => {
                return Err(StoreError::Document(manifest::ManifestError::Unsupported {
                    what,
                    media_type: "an index where an image manifest was recorded".into(),
                }))
            }
        };
        let config_bytes = self.read_blob(&manifest.config.digest)?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes).unwrap_or_default();
        Ok(StoredImage {
            manifest_descriptor: descriptor.clone(),
            manifest,
            config_bytes,
            config,
        })
    }

    fn read_index(&self) -> Result<Index> {
        let p = self.layout.join("index.json");
        let bytes = fs::read(&p).map_err(io_err("read", &p))?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::BadIndex { path: p, source })
    }

    fn write_index(&self, index: &Index) -> Result<()> {
        let p = self.layout.join("index.json");
        let bytes = serde_json::to_vec(index).expect("index serialises");
        write_atomic(&p, &bytes, 0o644).map_err(io_err("write", &p))
    }

    /// Every blob reachable from `index.json` (manifests, configs, layers, and the indexes
    /// recorded as sources).
    pub fn referenced_blobs(&self) -> Result<BTreeSet<Digest>> {
        let mut keep = BTreeSet::new();
        for rec in self.images()? {
            self.walk(&rec.descriptor, &mut keep)?;
            if let Some(ix) = rec.descriptor.annotation(SOURCE_INDEX) {
                if let Ok(d) = ix.parse::<Digest>() {
                    keep.insert(d);
                }
            }
        }
        Ok(keep)
    }

    fn walk(&self, d: &Descriptor, keep: &mut BTreeSet<Digest>) -> Result<()> {
        if !keep.insert(d.digest.clone()) {
            return Ok(());
        }
        let Ok(bytes) = self.read_blob(&d.digest) else {
            return Ok(());
        };
        match manifest::parse_document(&bytes, Some(&d.media_type), "stored document") {
            Ok(Document::Manifest(m)) => {
                keep.insert(m.config.digest.clone());
                keep.extend(m.layers.iter().map(|l| l.digest.clone()));
            }
            Ok(Document::Index(ix)) => {
                for m in &ix.manifests {
                    if self.has_blob(&m.digest) {
                        self.walk(m, keep)?;
                    }
                }
            }
            Err(_) => {}
        }
        Ok(())
    }

    /// The chain IDs (snapshot keys) every tagged image needs.
    pub fn referenced_snapshots(&self) -> Result<BTreeSet<Digest>> {
        let mut keep = BTreeSet::new();
        for rec in self.images()? {
            if let Ok(img) = self.image(&rec.descriptor) {
                keep.extend(super::digest::chain_ids(&img.config.rootfs.diff_ids));
            }
        }
        Ok(keep)
    }

    /// Records that `holder` (e.g. a mounted rootfs) uses the snapshots `chains`: garbage
    /// collection keeps them until [`ContentStore::release`].
    pub fn hold(&self, holder: &str, chains: &[Digest]) -> Result<()> {
        let dir = self.root.join("holds");
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let body: String = chains.iter().map(|c| format!("{c}\n")).collect();
        let p = dir.join(Digest::of(holder.as_bytes()).hex());
        write_atomic(&p, body.as_bytes(), 0o644).map_err(io_err("write", &p))
    }

    /// Drops what [`ContentStore::hold`] recorded for `holder`.
    pub fn release(&self, holder: &str) -> Result<()> {
        let p = self
            .root
            .join("holds")
            .join(Digest::of(holder.as_bytes()).hex());
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &p)(e)),
            _ => Ok(()),
        }
    }

    fn held_snapshots(&self) -> BTreeSet<Digest> {
        let mut out = BTreeSet::new();
        if let Ok(rd) = fs::read_dir(self.root.join("holds")) {
            for e in rd.flatten() {
                if let Ok(s) = fs::read_to_string(e.path()) {
                    out.extend(s.lines().filter_map(|l| l.parse::<Digest>().ok()));
                }
            }
        }
        out
    }

    /// Garbage collection: removes blobs no tagged image references, snapshots no tagged
    /// image (nor `in_use`) needs, and abandoned downloads. Waits for running writers.
    pub fn gc(&self, in_use: &BTreeSet<Digest>) -> Result<GcReport> {
        let _g = self.lock_gc()?;
        let mut report = GcReport::default();
        let keep = self.referenced_blobs()?;
        let blobs = self.layout.join("blobs/sha256");
        for e in fs::read_dir(&blobs).map_err(io_err("list", &blobs))? {
            let e = e.map_err(io_err("list", &blobs))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let keep_it = format!("sha256:{name}")
                .parse::<Digest>()
                .map(|d| keep.contains(&d))
                .unwrap_or(false);
            if !keep_it {
                report.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path()).map_err(io_err("remove", &e.path()))?;
                report.blobs += 1;
            }
        }
        let mut snaps = self.referenced_snapshots()?;
        snaps.extend(in_use.iter().cloned());
        snaps.extend(self.held_snapshots());
        let sdir = self.snapshots_dir();
        for e in fs::read_dir(&sdir).map_err(io_err("list", &sdir))? {
            let e = e.map_err(io_err("list", &sdir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let keep_it = format!("sha256:{name}")
                .parse::<Digest>()
                .map(|d| snaps.contains(&d))
                .unwrap_or(false);
            if !keep_it {
                report.bytes += super::snapshot::du(&e.path());
                super::snapshot::remove_tree(&e.path())
                    .map_err(io_err("remove snapshot", &e.path()))?;
                report.snapshots += 1;
            }
        }
        let idir = self.root.join("ingest");
        for e in fs::read_dir(&idir).map_err(io_err("list", &idir))? {
            let e = e.map_err(io_err("list", &idir))?;
            report.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(e.path()).map_err(io_err("remove", &e.path()))?;
            report.partials += 1;
        }
        Ok(report)
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// What garbage collection removed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct GcReport {
    /// Blobs removed.
    pub blobs: u64,
    /// Snapshots removed.
    pub snapshots: u64,
    /// Partial downloads removed.
    pub partials: u64,
    /// Bytes freed (apparent size).
    pub bytes: u64,
}

/// A download in progress, locked, resumable.
pub struct Ingest {
    file: Flock<File>,
    path: PathBuf,
    final_path: PathBuf,
    digest: Digest,
    size: Option<u64>,
    hasher: Hasher,
}

impl Ingest {
    /// Bytes already there (from an interrupted download): fetch from here.
    pub fn offset(&self) -> u64 {
        self.hasher.len()
    }

    /// The digest being downloaded.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// A reader over the bytes already there.
    pub fn existing(&self) -> Result<impl Read> {
        let f = File::open(&self.path).map_err(io_err("open", &self.path))?;
        Ok(f.take(self.offset()))
    }

    /// Drops what was there (the server cannot resume, or it was wrong).
    pub fn reset(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .map_err(io_err("truncate", &self.path))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(io_err("seek", &self.path))?;
        self.hasher = Hasher::new();
        Ok(())
    }

    /// Appends downloaded bytes.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.file
            .write_all(data)
            .map_err(io_err("write", &self.path))?;
        self.hasher.update(data);
        Ok(())
    }

    /// Verifies size and digest, then makes the blob visible. On a mismatch the partial file
    /// is removed (it can never become right) and nothing is stored.
    pub fn commit(self) -> Result<()> {
        let len = self.hasher.len();
        let actual = self.hasher.clone().finish();
        if let Some(s) = self.size {
            if s != len {
                let _ = fs::remove_file(&self.path);
                return Err(StoreError::SizeMismatch {
                    digest: self.digest,
                    expected: s,
                    actual: len,
                });
            }
        }
        if actual != self.digest {
            let _ = fs::remove_file(&self.path);
            return Err(StoreError::DigestMismatch {
                expected: self.digest,
                actual,
                size: len,
            });
        }
        self.file.sync_all().map_err(io_err("sync", &self.path))?;
        fs::set_permissions(
            &self.path,
            std::os::unix::fs::PermissionsExt::from_mode(0o444),
        )
        .map_err(io_err("chmod", &self.path))?;
        fs::rename(&self.path, &self.final_path).map_err(io_err("rename", &self.path))?;
        if let Some(dir) = self.final_path.parent() {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }

    /// Removes the partial file (a wrong blob).
    pub fn discard(self) {
        let _ = fs::remove_file(&self.path);
    }
}
