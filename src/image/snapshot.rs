//! Layer snapshots: one directory per chain ID under `<data-root>/snapshots/`, holding that
//! layer's changes in overlayfs form (whiteouts as 0:0 character devices, opaque directories
//! marked with `trusted.overlay.opaque`). Images that share a base share its snapshots; a
//! container's rootfs is an overlay of them with a writable upper of its own.
//!
//! A snapshot directory exists only complete: layers are unpacked into a temporary directory
//! beside it and renamed into place after their diff ID was verified.

use super::digest::{chain_ids, Digest};
use super::store::{ContentStore, StoredImage};
use super::unpack::{self, Compression, UnpackError};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Errors while unpacking an image into snapshots.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The layer is hostile or broken.
    #[error("layer {layer}: {source}")]
    Unpack {
        /// The layer digest.
        layer: Digest,
        /// Why.
        source: UnpackError,
    },
    /// The layer unpacked to another diff ID than the image config lists.
    #[error("layer {layer} unpacks to {actual}, but the image config says {expected}: the image is corrupt")]
    DiffId {
        /// The layer digest.
        layer: Digest,
        /// From the config.
        expected: Digest,
        /// Computed.
        actual: Digest,
    },
    /// Config and manifest disagree.
    #[error("image {0}: the manifest has {1} layers but the config lists {2} diff IDs")]
    LayerCount(Digest, usize, usize),
    /// A layer media type we cannot unpack.
    #[error("layer {0} has media type {1:?}, which is not a tar layer (plain, gzip or zstd)")]
    MediaType(Digest, String),
    /// Filesystem error.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] super::store::StoreError),
}

/// The directory of the snapshot for `chain` (present or not).
pub fn snapshot_path(store: &ContentStore, chain: &Digest) -> PathBuf {
    store.snapshots_dir().join(chain.hex())
}

/// A temporary directory an unpack writes into; removed on drop unless committed.
pub struct PendingSnapshot {
    tmp: PathBuf,
    target: PathBuf,
    done: bool,
}

impl PendingSnapshot {
    /// A fresh, empty temporary directory for `chain`.
    pub fn new(store: &ContentStore, chain: &Digest) -> Result<PendingSnapshot, SnapshotError> {
        let target = snapshot_path(store, chain);
        let tmp = store.snapshots_dir().join(format!(
            ".tmp-{}-{}-{}",
            chain.hex(),
            std::process::id(),
            unique()
        ));
        fs::create_dir(&tmp).map_err(|source| SnapshotError::Io {
            what: "create",
            path: tmp.clone(),
            source,
        })?;
        Ok(PendingSnapshot {
            tmp,
            target,
            done: false,
        })
    }

    /// Where to unpack.
    pub fn dir(&self) -> &Path {
        &self.tmp
    }

    /// Makes the snapshot visible (a concurrent unpack of the same chain may have won; then
    /// ours is dropped).
    ///
    /// The unpacked files reach the disk first (`syncfs` of the data root's filesystem, one call
    /// for the whole tree), and the rename after it: a power loss never leaves a visible
    /// snapshot with empty or missing files, as blobs are synced before their rename too.
    pub fn commit(mut self) -> Result<PathBuf, SnapshotError> {
        self.done = true;
        if self.target.exists() {
            let _ = remove_tree(&self.tmp);
            return Ok(self.target.clone());
        }
        if let Err(source) = sync_filesystem(&self.tmp) {
            let _ = remove_tree(&self.tmp);
            return Err(SnapshotError::Io {
                what: "sync the unpacked layer in",
                path: self.tmp.clone(),
                source,
            });
        }
        match fs::rename(&self.tmp, &self.target) {
            Ok(()) => {
                if let Some(parent) = self.target.parent() {
                    let _ = fs::File::open(parent).and_then(|d| d.sync_all());
                }
                Ok(self.target.clone())
            }
            Err(_) if self.target.exists() => {
                let _ = remove_tree(&self.tmp);
                Ok(self.target.clone())
            }
            Err(source) => {
                let _ = remove_tree(&self.tmp);
                Err(SnapshotError::Io {
                    what: "rename snapshot into",
                    path: self.target.clone(),
                    source,
                })
            }
        }
    }
}

impl Drop for PendingSnapshot {
    fn drop(&mut self) {
        if !self.done {
            let _ = remove_tree(&self.tmp);
        }
    }
}

/// `syncfs(2)` of the filesystem holding `dir`.
fn sync_filesystem(dir: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let d = fs::File::open(dir)?;
    // SAFETY: a valid open descriptor.
    if unsafe { libc::syncfs(d.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Compression of a layer, from its media type (or its first bytes when the type is unknown
/// but tar-like).
pub fn layer_compression(
    digest: &Digest,
    media_type: &str,
) -> Result<Option<Compression>, SnapshotError> {
    if let Some(c) = Compression::from_media_type(media_type) {
        return Ok(Some(c));
    }
    if media_type.is_empty() {
        return Ok(None); // sniff
    }
    Err(SnapshotError::MediaType(
        digest.clone(),
        media_type.to_string(),
    ))
}

/// Unpacks every missing layer of `image` from blobs in the store; returns the snapshot
/// directories, base first. Blobs must be present.
pub fn ensure_snapshots(
    store: &ContentStore,
    image: &StoredImage,
) -> Result<Vec<PathBuf>, SnapshotError> {
    let diff_ids = &image.config.rootfs.diff_ids;
    let layers = &image.manifest.layers;
    if diff_ids.len() != layers.len() {
        return Err(SnapshotError::LayerCount(
            image.manifest_descriptor.digest.clone(),
            layers.len(),
            diff_ids.len(),
        ));
    }
    let chains = chain_ids(diff_ids);
    let mut out = Vec::with_capacity(layers.len());
    for ((layer, diff_id), chain) in layers.iter().zip(diff_ids).zip(&chains) {
        let path = snapshot_path(store, chain);
        if !path.exists() {
            unpack_blob(store, layer, diff_id, chain)?;
        }
        out.push(path);
    }
    Ok(out)
}

/// Unpacks one layer blob into the snapshot `chain`, verifying its diff ID.
pub fn unpack_blob(
    store: &ContentStore,
    layer: &super::manifest::Descriptor,
    diff_id: &Digest,
    chain: &Digest,
) -> Result<PathBuf, SnapshotError> {
    let blob = store.blob_path(&layer.digest);
    let mut f = fs::File::open(&blob).map_err(|source| SnapshotError::Io {
        what: "open layer",
        path: blob.clone(),
        source,
    })?;
    let compression = match layer_compression(&layer.digest, &layer.media_type)? {
        Some(c) => c,
        None => {
            let mut head = [0u8; 4];
            let n = io::Read::read(&mut f, &mut head).unwrap_or(0);
            io::Seek::seek(&mut f, io::SeekFrom::Start(0)).ok();
            Compression::sniff(&head[..n])
        }
    };
    let pending = PendingSnapshot::new(store, chain)?;
    let stats = unpack::unpack_layer(
        io::BufReader::with_capacity(1 << 20, f),
        compression,
        pending.dir(),
    )
    .map_err(|source| SnapshotError::Unpack {
        layer: layer.digest.clone(),
        source,
    })?;
    if stats.diff_id != *diff_id {
        return Err(SnapshotError::DiffId {
            layer: layer.digest.clone(),
            expected: diff_id.clone(),
            actual: stats.diff_id,
        });
    }
    pending.commit()
}

/// Removes a directory tree without following symlinks.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Apparent size of a tree (best effort).
pub fn du(path: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| du(&e.path())).sum())
        .unwrap_or(0)
}

/// Mounts an overlay of `lowers` (base first) with `upper`/`work` at `target`: the rootfs of
/// a native container. `upper` and `work` must be empty directories on one filesystem.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), SnapshotError> {
    use nix::mount::{mount, MsFlags};
    // overlayfs wants the topmost lower first.
    let lowerdir: Vec<String> = lowers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| SnapshotError::Io {
        what: "mount overlay on",
        path: target.to_path_buf(),
        source: io::Error::from(e),
    })
}

/// A container's root filesystem prepared from an image under `dir`:
/// - tar-layer images: an overlay of the snapshots (read-only, shared) with `dir/upper` and
///   `dir/work` (the container's own writable layer) mounted at `dir/rootfs`;
/// - wasm artifacts (raw wasm layers, nothing else): no overlay; `dir/rootfs` holds the
///   module as `/module.wasm` (a hard link to the read-only blob, or a copy).
///
/// Returns the rootfs path. Undo with [`release_rootfs`].
pub fn prepare_rootfs(
    store: &ContentStore,
    image: &StoredImage,
    dir: &Path,
) -> Result<PathBuf, SnapshotError> {
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| SnapshotError::Io { what, path, source }
    };
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(&rootfs).map_err(io("create", &rootfs))?;
    if !image.has_tar_layers() {
        let layer = image
            .manifest
            .layers
            .iter()
            .find(|l| super::manifest::WASM_LAYERS.contains(&l.media_type.as_str()))
            .ok_or_else(|| {
                SnapshotError::MediaType(
                    image.manifest_descriptor.digest.clone(),
                    "no wasm layer".into(),
                )
            })?;
        let blob = store.blob_path(&layer.digest);
        let module = rootfs.join("module.wasm");
        if fs::hard_link(&blob, &module).is_err() {
            fs::copy(&blob, &module).map_err(io("copy module to", &module))?;
        }
        return Ok(rootfs);
    }
    let lowers = ensure_snapshots(store, image)?;
    let (upper, work) = (dir.join("upper"), dir.join("work"));
    fs::create_dir_all(&upper).map_err(io("create", &upper))?;
    fs::create_dir_all(&work).map_err(io("create", &work))?;
    if lowers.is_empty() {
        return Err(SnapshotError::LayerCount(
            image.manifest_descriptor.digest.clone(),
            0,
            0,
        ));
    }
    mount_overlay(&lowers, &upper, &work, &rootfs)?;
    Ok(rootfs)
}

/// Unmounts and removes what [`prepare_rootfs`] made under `dir` (idempotent).
pub fn release_rootfs(dir: &Path) -> Result<(), SnapshotError> {
    let rootfs = dir.join("rootfs");
    match nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(SnapshotError::Io {
                what: "unmount",
                path: rootfs,
                source: io::Error::from(e),
            })
        }
    }
    for d in ["rootfs", "upper", "work"] {
        let p = dir.join(d);
        remove_tree(&p).map_err(|source| SnapshotError::Io {
            what: "remove",
            path: p.clone(),
            source,
        })?;
    }
    Ok(())
}
