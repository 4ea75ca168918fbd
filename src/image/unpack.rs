//! Safe extraction of one OCI layer tarball into an empty snapshot directory.
//!
//! Each layer is unpacked alone into a directory of its own, as containerd's overlay snapshotter
//! does; the snapshots are later stacked as overlay lowerdirs. Whiteouts are therefore turned into
//! their overlayfs forms while extracting: `dir/.wh.name` becomes a 0:0 character device
//! `dir/name`, and `dir/.wh..wh..opq` becomes the xattr `trusted.overlay.opaque=y` on `dir`.
//!
//! # Safety model
//!
//! A layer is untrusted input. Every directory an entry is created in is resolved from a file
//! descriptor of the snapshot root with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS)`, and the entry itself is created relative to that descriptor with the
//! `*at` calls, never following a symlink. Consequences:
//!
//! - nothing is ever written through a symlink, not even one that points inside the snapshot;
//!   an entry beneath a symlinked directory is refused;
//! - paths with a `..` component or a leading `/` are refused rather than rewritten;
//! - a hardlink must name a non-directory that an earlier entry of the same layer created;
//! - symlinks are stored as given (their targets are only data; extraction never follows them);
//! - on any failure the snapshot directory is emptied again.
//!
//! Needs Linux ≥ 5.6 (`openat2`), CAP_MKNOD for devices and whiteouts, CAP_CHOWN for owners and
//! CAP_SYS_ADMIN for `trusted.*` xattrs: in practice, root.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{self, FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{self, Gid, Uid, UnlinkatFlags};

use super::digest::{Digest, Hasher};

/// Longest entry path accepted, in bytes (`PATH_MAX` without its NUL). Bounding paths also bounds
/// the depth of the trees a layer can build, which keeps the removal walks below cheap.
const MAX_PATH: usize = 4095;

/// Prefix of whiteout names in Docker/OCI layers.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Whiteout names starting with this are markers, not deleted files.
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// The marker saying a directory hides everything below it in lower layers.
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
/// The overlayfs xattr that marks a directory opaque.
const OVERLAY_OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";
/// PAX records carrying extended attributes, as GNU tar, Go's archive/tar and Docker write them.
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip; concatenated members (as pigz and some registries write them) are read as one stream.
    Gzip,
    /// zstd; concatenated frames are read as one stream.
    Zstd,
}

impl Compression {
    /// The compression of a layer with media type `mt`.
    ///
    /// Knows the OCI layer types (`application/vnd.oci.image.layer.v1.tar`, `…+gzip`, `…+zstd`,
    /// and their `nondistributable` variants) and the Docker ones
    /// (`application/vnd.docker.image.rootfs.diff.tar`, `….tar.gzip`, `….tar.zstd`,
    /// `application/vnd.docker.image.rootfs.foreign.diff.tar.gzip`). Parameters after `;` and
    /// letter case are ignored. Returns `None` for any other type, including encrypted layers,
    /// which cannot be unpacked as they are.
    pub fn from_media_type(mt: &str) -> Option<Compression> {
        let mt = mt.split(';').next().unwrap_or_default().trim();
        let mt = mt.to_ascii_lowercase();
        match mt.as_str() {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The compression announced by the first bytes of a blob: `1f 8b` is gzip, `28 b5 2f fd` is
    /// zstd, anything else (including fewer bytes than the magic) is taken as a plain tar.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

/// What a successful [`unpack_layer`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar members read, including the ones skipped (unsupported types, PAX global headers).
    pub entries: u64,
    /// Length of the uncompressed tar stream, trailing padding included: the bytes `diff_id`
    /// covers.
    pub bytes: u64,
    /// sha256 of the whole uncompressed tar stream (the layer's diff ID in the image config).
    pub diff_id: Digest,
}

/// Why an entry of a layer was refused.
///
/// Every variant is something that would be unsafe or meaningless in a snapshot; the layer is
/// refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The path has a `..` component.
    ParentDir,
    /// The path starts with `/`.
    Absolute,
    /// The path is empty, holds a NUL byte or is longer than `PATH_MAX`.
    BadPath(&'static str),
    /// A directory on the way is a symlink; entries are never written through symlinks.
    ThroughSymlink {
        /// The symlink, relative to the layer root.
        component: String,
    },
    /// Something on the way exists but is not a directory.
    NotADirectory {
        /// That thing, relative to the layer root.
        component: String,
    },
    /// A directory on the way does not exist (hardlink targets are never created).
    Missing {
        /// The first missing directory, relative to the layer root.
        component: String,
    },
    /// The kernel reported that resolving the path would leave the snapshot.
    Escapes,
    /// A whiteout whose target is not a plain file name (`.wh.`, `.wh..`, `.wh...`).
    BadWhiteout {
        /// What the whiteout would hide.
        target: String,
    },
    /// The layer root (`.`) with a type other than directory.
    RootNotDirectory,
    /// A symlink or hardlink without a target.
    NoLinkTarget,
    /// A hardlink whose target is unusable (see `why`).
    HardlinkTarget {
        /// The target as written in the layer.
        target: String,
        /// What is wrong with it.
        why: Box<Rejection>,
    },
    /// A hardlink target that no earlier entry of this layer created.
    NotInLayer,
    /// A hardlink target that is a directory.
    IsDirectory,
    /// A hardlink to itself.
    LinksToItself,
    /// A uid or gid that is not a valid 32-bit id.
    BadOwner {
        /// The uid in the header.
        uid: u64,
        /// The gid in the header.
        gid: u64,
    },
    /// A header field or PAX record that cannot be parsed.
    BadHeader {
        /// Which field.
        field: &'static str,
        /// The parser's complaint.
        detail: String,
    },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::ParentDir => write!(f, "path leaves the snapshot (\"..\")"),
            Rejection::Absolute => {
                write!(
                    f,
                    "absolute path (entries must be relative to the layer root)"
                )
            }
            Rejection::BadPath(why) => write!(f, "{why}"),
            Rejection::ThroughSymlink { component } => write!(
                f,
                "{component:?} is a symlink; nothing is ever written through a symlink"
            ),
            Rejection::NotADirectory { component } => {
                write!(f, "{component:?} is not a directory")
            }
            Rejection::Missing { component } => write!(f, "{component:?} does not exist"),
            Rejection::Escapes => write!(f, "path resolution leaves the snapshot"),
            Rejection::BadWhiteout { target } => {
                write!(f, "whiteout of {target:?}, which is not a file name")
            }
            Rejection::RootNotDirectory => {
                write!(f, "the layer root (\".\") can only be a directory")
            }
            Rejection::NoLinkTarget => write!(f, "link without a target"),
            Rejection::HardlinkTarget { target, why } => {
                write!(f, "hardlink target {target:?}: {why}")
            }
            Rejection::NotInLayer => write!(f, "not created by an earlier entry of this layer"),
            Rejection::IsDirectory => {
                write!(f, "is a directory (directories cannot be hardlinked)")
            }
            Rejection::LinksToItself => write!(f, "hardlink to itself"),
            Rejection::BadOwner { uid, gid } => {
                write!(f, "owner {uid}:{gid} is not a valid uid:gid")
            }
            Rejection::BadHeader { field, detail } => {
                write!(f, "unreadable {field} in the header: {detail}")
            }
        }
    }
}

/// Why [`unpack_layer`] failed. Messages name the entry and what was wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The snapshot directory cannot be opened or read; nothing was written.
    #[error("snapshot directory {dest:?} cannot be opened: {source}")]
    Dest {
        /// The snapshot directory.
        dest: PathBuf,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// The snapshot directory was not empty; nothing was written and nothing removed.
    #[error(
        "snapshot directory {dest:?} is not empty (it holds {found:?}); \
         a layer is only unpacked into a fresh empty directory"
    )]
    DestNotEmpty {
        /// The snapshot directory.
        dest: PathBuf,
        /// One name found in it.
        found: String,
    },
    /// The compressed or tar stream is corrupt or truncated.
    #[error("layer stream ({compression}) is unreadable {position}: {source}")]
    Stream {
        /// The compression the stream was read with.
        compression: Compression,
        /// Where in the layer, e.g. `in entry "usr/bin/env"` or `after entry "etc/"`.
        position: String,
        /// The decoder's or tar reader's error.
        #[source]
        source: io::Error,
    },
    /// An entry was refused as unsafe or malformed.
    #[error("layer entry {entry:?}: {reason}")]
    Rejected {
        /// The entry's path as written in the layer.
        entry: String,
        /// What is wrong with it.
        reason: Rejection,
    },
    /// A filesystem operation for an entry failed.
    #[error("layer entry {entry:?}: {op} failed: {source}")]
    Io {
        /// The entry's path as written in the layer.
        entry: String,
        /// The operation, e.g. `create file`.
        op: &'static str,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// Unpacking failed and emptying the snapshot directory afterwards failed too: it is NOT
    /// empty and must be removed by hand.
    #[error(
        "{cause}; removing the partial snapshot in {dest:?} then failed too ({cleanup}), \
         remove it by hand"
    )]
    Cleanup {
        /// Why unpacking failed.
        cause: Box<UnpackError>,
        /// The snapshot directory.
        dest: PathBuf,
        /// Why removing its contents failed.
        cleanup: io::Error,
    },
}

/// Extracts the layer in `reader` (compressed as `compression`) into `dest`, which must be an
/// existing, EMPTY directory private to the caller while this runs.
///
/// Guarantees:
/// - nothing outside `dest` is ever written, whatever the tarball holds (see the module docs);
/// - on success `dest` holds the layer in overlayfs form (whiteouts as 0:0 character devices,
///   opaque directories as `trusted.overlay.opaque=y`), with owners, modes (setuid, setgid and
///   sticky included), mtimes and `SCHILY.xattr.*` xattrs from the headers. A later entry for the
///   same path replaces an earlier one (two directories merge; the later metadata wins);
/// - on error `dest` is empty again (and its own owner, mode and xattrs are restored), unless the
///   error is [`UnpackError::Cleanup`]; if `dest` was not empty to begin with, it is not touched;
/// - the whole stream is read to its end, so `diff_id` covers every uncompressed byte, padding
///   after the tar end included, and a corrupt compressed trailer (checksum) is an error.
pub fn unpack_layer<R: Read>(
    reader: R,
    compression: Compression,
    dest: &Path,
) -> Result<UnpackStats, UnpackError> {
    let dest_err = |e: Errno| UnpackError::Dest {
        dest: dest.to_path_buf(),
        source: e.into(),
    };
    let root = fcntl::open(
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(dest_err)?;
    if let Some(found) = list_names(root.as_fd())
        .map_err(dest_err)?
        .into_iter()
        .next()
    {
        return Err(UnpackError::DestNotEmpty {
            dest: dest.to_path_buf(),
            found: String::from_utf8_lossy(&found).into_owned(),
        });
    }
    let saved = RootState::save(root.as_fd()).map_err(dest_err)?;

    match extract(root.as_fd(), reader, compression) {
        Ok(stats) => Ok(stats),
        Err(cause) => {
            let cleaned = clear_dir(root.as_fd()).and_then(|()| saved.restore(root.as_fd()));
            match cleaned {
                Ok(()) => Err(cause),
                Err(e) => Err(UnpackError::Cleanup {
                    cause: Box::new(cause),
                    dest: dest.to_path_buf(),
                    cleanup: e.into(),
                }),
            }
        }
    }
}

/// Reads the stream to its end, applying every entry; see [`unpack_layer`].
fn extract<R: Read>(
    root: BorrowedFd<'_>,
    reader: R,
    compression: Compression,
) -> Result<UnpackStats, UnpackError> {
    let stream_err = |position: String| {
        move |source: io::Error| UnpackError::Stream {
            compression,
            position,
            source,
        }
    };
    let decoder =
        Decoder::new(reader, compression).map_err(stream_err("at its start".to_owned()))?;
    // The hash sits below the buffer so it sees exactly the decompressed bytes, each once.
    let hashing = HashingReader {
        inner: decoder,
        hasher: Hasher::new(),
    };
    let mut archive = tar::Archive::new(BufReader::with_capacity(64 * 1024, hashing));
    let mut extractor = Extractor {
        root,
        dir_times: BTreeMap::new(),
        buf: vec![0; 64 * 1024],
    };

    let mut count = 0u64;
    let mut last: Option<String> = None;
    let position = |last: &Option<String>| match last {
        Some(name) => format!("after entry {name:?}"),
        None => "before the first entry".to_owned(),
    };
    let entries = archive
        .entries()
        .map_err(stream_err("before the first entry".to_owned()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| stream_err(position(&last))(e))?;
        count += 1;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        extractor
            .apply(&mut entry)
            .map_err(|fail| fail.at(&name, compression))?;
        last = Some(name);
    }

    // The tar reader stops at the first zero block; the rest of the end marker and any padding
    // still belong to the stream the diff ID covers, and reading to EOF also makes the
    // decompressor check its trailer (gzip CRC, zstd frame end).
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(stream_err(format!(
        "after the end of the tar{}",
        last.map(|l| format!(" (last entry {l:?})"))
            .unwrap_or_default()
    )))?;
    let hasher = rest.into_inner().hasher;

    extractor.apply_dir_times(compression)?;
    Ok(UnpackStats {
        entries: count,
        bytes: hasher.len(),
        diff_id: hasher.finish(),
    })
}

/// The decompressed layer stream.
enum Decoder<R: Read> {
    Plain(R),
    Gzip(flate2::read::MultiGzDecoder<R>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<R>>),
}

impl<R: Read> Decoder<R> {
    fn new(reader: R, compression: Compression) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Decoder::Plain(reader),
            Compression::Gzip => Decoder::Gzip(flate2::read::MultiGzDecoder::new(reader)),
            Compression::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::new(reader)?),
        })
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}

/// Hashes everything read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Why applying one entry failed, before the entry's name is attached.
enum Fail {
    Reject(Rejection),
    Io(&'static str, io::Error),
    /// Reading the entry's data from the stream failed.
    Stream(io::Error),
}

impl Fail {
    fn at(self, entry: &str, compression: Compression) -> UnpackError {
        let entry = entry.to_owned();
        match self {
            Fail::Reject(reason) => UnpackError::Rejected { entry, reason },
            Fail::Io(op, source) => UnpackError::Io { entry, op, source },
            Fail::Stream(source) => UnpackError::Stream {
                compression,
                position: format!("in entry {entry:?}"),
                source,
            },
        }
    }
}

impl From<Rejection> for Fail {
    fn from(r: Rejection) -> Fail {
        Fail::Reject(r)
    }
}

/// Names the operation a system error came from.
trait OrFail<T> {
    fn or_fail(self, op: &'static str) -> Result<T, Fail>;
}

impl<T> OrFail<T> for Result<T, Errno> {
    fn or_fail(self, op: &'static str) -> Result<T, Fail> {
        self.map_err(|e| Fail::Io(op, e.into()))
    }
}

impl<T> OrFail<T> for io::Result<T> {
    fn or_fail(self, op: &'static str) -> Result<T, Fail> {
        self.map_err(|e| Fail::Io(op, e))
    }
}

/// What an entry becomes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    Hardlink,
    Device(SFlag),
    Fifo,
}

/// What was at an entry's place before it (see [`Extractor::clear_place`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Previous {
    Nothing,
    /// A directory, kept because the new entry is a directory too.
    KeptDirectory,
    /// An overlay whiteout (0:0 character device), removed.
    Whiteout,
    /// Anything else, removed.
    Replaced,
}

/// Metadata from an entry's header and PAX records.
struct Meta<'e> {
    /// The entry's path, for log lines.
    entry: &'e [u8],
    uid: Uid,
    gid: Gid,
    /// Permission bits plus setuid, setgid and sticky.
    mode: Mode,
    mtime: TimeSpec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

/// Where xattrs go: an open descriptor, or a name in a directory (for objects that cannot be
/// opened safely: symlinks, devices, fifos).
enum XattrTarget<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a [u8]),
}

struct Extractor<'r> {
    root: BorrowedFd<'r>,
    /// Directory mtimes, keyed by path below the root (empty = the root). Applied last, because
    /// creating a child changes its directory's mtime.
    dir_times: BTreeMap<Vec<u8>, TimeSpec>,
    buf: Vec<u8>,
}

impl Extractor<'_> {
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Fail> {
        let Some(kind) = classify(entry) else {
            return Ok(());
        };
        let raw_path = entry.path_bytes().into_owned();
        let comps = split_path(&raw_path)?;
        let meta = read_meta(entry, &raw_path)?;

        let Some((&name, dir)) = comps.split_last() else {
            // "." or "./": the entry describes the snapshot root itself.
            if kind != Kind::Dir {
                return Err(Rejection::RootNotDirectory.into());
            }
            self.set_meta_fd(self.root, &meta)?;
            self.dir_times.insert(Vec::new(), meta.mtime);
            return Ok(());
        };
        if name.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(dir, name, &meta);
        }
        let rel = comps.join(&b'/');

        // Validate a hardlink's target before anything is created or removed for it.
        let link_target = if kind == Kind::Hardlink {
            Some(self.hardlink_target(entry, &rel)?)
        } else {
            None
        };

        let parent = self.open_dir(dir, true)?;
        let parent = parent.as_fd();
        let previous = self.clear_place(parent, name, &rel, kind == Kind::Dir)?;

        match kind {
            Kind::Dir => {
                if previous != Previous::KeptDirectory {
                    stat::mkdirat(parent, name, Mode::from_bits_truncate(0o700))
                        .or_fail("create directory")?;
                }
                let fd = open_dir_beneath(parent, name).or_fail("open directory")?;
                self.set_meta_fd(fd.as_fd(), &meta)?;
                if previous == Previous::Whiteout {
                    // This layer deleted the lower directory and made a new one: nothing of the
                    // old one may show through.
                    fsetxattr(fd.as_fd(), OVERLAY_OPAQUE_XATTR, b"y")
                        .or_fail("mark directory opaque (xattr trusted.overlay.opaque)")?;
                }
                self.dir_times.insert(rel, meta.mtime);
            }
            Kind::File => {
                let fd = fcntl::openat(
                    parent,
                    name,
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_WRONLY
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .or_fail("create file")?;
                let mut file = File::from(fd);
                self.copy_data(entry, &mut file)?;
                self.set_meta_fd(file.as_fd(), &meta)?;
                stat::futimens(&file, &meta.mtime, &meta.mtime).or_fail("set mtime")?;
            }
            Kind::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or(Rejection::NoLinkTarget)?;
                if target.contains(&0) {
                    return Err(Rejection::BadPath("symlink target contains a NUL byte").into());
                }
                unistd::symlinkat(&*target, parent, name).or_fail("create symlink")?;
                self.set_meta_at(parent, name, &meta, false)?;
            }
            Kind::Hardlink => {
                let (target_dir, target_name, target_is_symlink) =
                    link_target.expect("validated above");
                unistd::linkat(
                    target_dir.as_fd(),
                    target_name.as_slice(),
                    parent,
                    name,
                    AtFlags::empty(),
                )
                .or_fail("create hardlink")?;
                // Like containerd: the link's header metadata applies to the shared inode.
                self.set_meta_at(parent, name, &meta, !target_is_symlink)?;
            }
            Kind::Device(sflag) => {
                let major = header_u32(entry.header().device_major(), "device major")?;
                let minor = header_u32(entry.header().device_minor(), "device minor")?;
                let dev = stat::makedev(major.into(), minor.into());
                stat::mknodat(parent, name, sflag, Mode::from_bits_truncate(0o600), dev)
                    .or_fail("create device node")?;
                self.set_meta_at(parent, name, &meta, true)?;
            }
            Kind::Fifo => {
                stat::mknodat(
                    parent,
                    name,
                    SFlag::S_IFIFO,
                    Mode::from_bits_truncate(0o600),
                    0,
                )
                .or_fail("create fifo")?;
                self.set_meta_at(parent, name, &meta, true)?;
            }
        }
        Ok(())
    }

    /// Applies a whiteout entry `dir/name` (`name` starts with `.wh.`) in overlayfs form.
    fn whiteout(&mut self, dir: &[&[u8]], name: &[u8], meta: &Meta) -> Result<(), Fail> {
        if name == WHITEOUT_OPAQUE {
            let fd = self.open_dir(dir, true)?;
            fsetxattr(fd.as_fd(), OVERLAY_OPAQUE_XATTR, b"y")
                .or_fail("mark directory opaque (xattr trusted.overlay.opaque)")?;
            return Ok(());
        }
        if name.starts_with(WHITEOUT_META_PREFIX) {
            // Other markers (e.g. AUFS's `.wh..wh.plnk`) mean nothing to overlayfs.
            tracing::debug!(
                "ignoring whiteout marker {:?}",
                String::from_utf8_lossy(name)
            );
            return Ok(());
        }
        let hidden = &name[WHITEOUT_PREFIX.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
            return Err(Rejection::BadWhiteout {
                target: String::from_utf8_lossy(hidden).into_owned(),
            }
            .into());
        }
        let parent = self.open_dir(dir, true)?;
        // A whiteout only hides what LOWER layers have (image-spec, "Whiteouts"); something this
        // layer already put there stays. It hides the lower one by itself, except that a lower
        // directory's contents would show through a directory: make that one opaque.
        match stat::fstatat(parent.as_fd(), hidden, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => {}
            Ok(st) if is_type(&st, SFlag::S_IFDIR) => {
                let fd = open_dir_beneath(parent.as_fd(), hidden).or_fail("open directory")?;
                return fsetxattr(fd.as_fd(), OVERLAY_OPAQUE_XATTR, b"y")
                    .or_fail("mark directory opaque (xattr trusted.overlay.opaque)");
            }
            Ok(_) => return Ok(()),
            Err(e) => return Err(e).or_fail("inspect existing entry"),
        }
        stat::mknodat(
            parent.as_fd(),
            hidden,
            SFlag::S_IFCHR,
            Mode::empty(),
            stat::makedev(0, 0),
        )
        .or_fail("create whiteout device")?;
        unistd::fchownat(
            parent.as_fd(),
            hidden,
            Some(meta.uid),
            Some(meta.gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .or_fail("set owner")?;
        Ok(())
    }

    /// Checks a hardlink entry's target and returns its directory, its name and whether it is a
    /// symlink (which gets no chmod).
    fn hardlink_target<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        rel: &[u8],
    ) -> Result<(OwnedFd, Vec<u8>, bool), Fail> {
        let raw = entry
            .link_name_bytes()
            .filter(|t| !t.is_empty())
            .ok_or(Rejection::NoLinkTarget)?;
        let wrap = |why: Rejection| {
            Fail::Reject(Rejection::HardlinkTarget {
                target: String::from_utf8_lossy(&raw).into_owned(),
                why: Box::new(why),
            })
        };
        let comps = split_path(&raw).map_err(wrap)?;
        let Some((&name, dir)) = comps.split_last() else {
            return Err(wrap(Rejection::IsDirectory));
        };
        if comps.join(&b'/') == rel {
            return Err(Rejection::LinksToItself.into());
        }
        let dir_fd = self.open_dir(dir, false).map_err(|f| match f {
            Fail::Reject(r) => wrap(r),
            other => other,
        })?;
        match stat::fstatat(dir_fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if is_type(&st, SFlag::S_IFDIR) => Err(wrap(Rejection::IsDirectory)),
            Ok(st) => Ok((dir_fd, name.to_vec(), is_type(&st, SFlag::S_IFLNK))),
            Err(Errno::ENOENT) => Err(wrap(Rejection::NotInLayer)),
            Err(e) => Err(e).or_fail("inspect hardlink target"),
        }
    }

    /// Opens the directory `comps` below the root without following any symlink, creating
    /// missing directories (0755, root-owned) if `create`.
    fn open_dir(&self, comps: &[&[u8]], create: bool) -> Result<OwnedFd, Fail> {
        if comps.is_empty() {
            return open_dir_beneath(self.root, b".").or_fail("open snapshot root");
        }
        // Usually the whole path exists: one call. Otherwise walk it a component at a time,
        // which creates what is missing and tells exactly which component is wrong.
        if let Ok(fd) = open_dir_beneath(self.root, &comps.join(&b'/')) {
            return Ok(fd);
        }
        let mut cur = open_dir_beneath(self.root, b".").or_fail("open snapshot root")?;
        for (i, &comp) in comps.iter().enumerate() {
            let component = || String::from_utf8_lossy(&comps[..=i].join(&b'/')).into_owned();
            let next = match open_dir_beneath(cur.as_fd(), comp) {
                Err(Errno::ENOENT) if create => {
                    match stat::mkdirat(cur.as_fd(), comp, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(e).or_fail("create parent directory"),
                    }
                    let fd = open_dir_beneath(cur.as_fd(), comp).or_fail("open directory")?;
                    // Explicit, so neither the umask nor a setgid parent decides.
                    unistd::fchown(&fd, Some(Uid::from_raw(0)), Some(Gid::from_raw(0)))
                        .or_fail("set owner")?;
                    stat::fchmod(&fd, Mode::from_bits_truncate(0o755)).or_fail("set mode")?;
                    Ok(fd)
                }
                other => other,
            };
            cur = match next {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    return Err(Rejection::Missing {
                        component: component(),
                    }
                    .into())
                }
                // O_NOFOLLOW | O_DIRECTORY on a symlink reports ENOTDIR, not ELOOP: look.
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    let component = component();
                    return Err(
                        match stat::fstatat(cur.as_fd(), comp, AtFlags::AT_SYMLINK_NOFOLLOW) {
                            Ok(st) if !is_type(&st, SFlag::S_IFLNK) => {
                                Rejection::NotADirectory { component }
                            }
                            _ => Rejection::ThroughSymlink { component },
                        }
                        .into(),
                    );
                }
                Err(Errno::EXDEV) => return Err(Rejection::Escapes.into()),
                Err(e) => return Err(e).or_fail("open directory"),
            };
        }
        Ok(cur)
    }

    /// Makes room for a new entry `name` in `parent` (`rel` is its path below the root): a
    /// later entry replaces an earlier one, except that two directories merge.
    fn clear_place(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        new_is_dir: bool,
    ) -> Result<Previous, Fail> {
        let st = match stat::fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(Previous::Nothing),
            Err(e) => return Err(e).or_fail("inspect existing entry"),
        };
        if is_type(&st, SFlag::S_IFDIR) {
            if new_is_dir {
                return Ok(Previous::KeptDirectory);
            }
            remove_tree(parent, name).or_fail("remove replaced directory")?;
            // Its pending mtimes (its own and its descendants') no longer apply.
            self.dir_times.retain(|k, _| {
                !(k.as_slice() == rel || (k.starts_with(rel) && k.get(rel.len()) == Some(&b'/')))
            });
        } else {
            unistd::unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)
                .or_fail("remove replaced entry")?;
            if is_type(&st, SFlag::S_IFCHR) && st.st_rdev == 0 {
                return Ok(Previous::Whiteout);
            }
        }
        Ok(Previous::Replaced)
    }

    fn copy_data<R: Read>(&mut self, data: &mut R, file: &mut File) -> Result<(), Fail> {
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Fail::Stream(e)),
            };
            file.write_all(&self.buf[..n]).or_fail("write file data")?;
        }
    }

    /// Owner, mode and xattrs of an opened file or directory (the mtime is the caller's: files
    /// get it now, directories at the end). Order matters: chown clears setuid/setgid and
    /// `security.capability`, so the mode and xattrs come after it.
    fn set_meta_fd(&self, fd: BorrowedFd<'_>, meta: &Meta) -> Result<(), Fail> {
        unistd::fchown(fd, Some(meta.uid), Some(meta.gid)).or_fail("set owner")?;
        stat::fchmod(fd, meta.mode).or_fail("set mode")?;
        set_xattrs(XattrTarget::Fd(fd), meta)
    }

    /// Owner, mode (if `chmod`), xattrs and mtime of `name` in `parent`, never following it if
    /// it is a symlink.
    fn set_meta_at(
        &self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        meta: &Meta,
        chmod: bool,
    ) -> Result<(), Fail> {
        unistd::fchownat(
            parent,
            name,
            Some(meta.uid),
            Some(meta.gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .or_fail("set owner")?;
        if chmod {
            stat::fchmodat(parent, name, meta.mode, FchmodatFlags::NoFollowSymlink)
                .or_fail("set mode")?;
        }
        set_xattrs(XattrTarget::At(parent, name), meta)?;
        stat::utimensat(
            parent,
            name,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .or_fail("set mtime")
    }

    fn apply_dir_times(&self, compression: Compression) -> Result<(), UnpackError> {
        for (rel, mtime) in &self.dir_times {
            let name = if rel.is_empty() { &b"."[..] } else { rel };
            let fail = |f: Fail| f.at(&String::from_utf8_lossy(name), compression);
            let fd = open_dir_beneath(self.root, name)
                .or_fail("open directory")
                .map_err(fail)?;
            stat::futimens(&fd, mtime, mtime)
                .or_fail("set mtime")
                .map_err(fail)?;
        }
        Ok(())
    }
}

/// What an entry's type makes of it; `None` for members that are skipped.
fn classify<R: Read>(entry: &tar::Entry<'_, R>) -> Option<Kind> {
    use tar::EntryType as T;
    let header = entry.header();
    Some(match header.entry_type() {
        // Old (pre-POSIX) archives mark directories only by a trailing slash on a type '\0'
        // entry; Go's archive/tar (and so containerd) reads them as directories too.
        T::Regular if header.as_old().linkflag[0] == 0 && entry.path_bytes().ends_with(b"/") => {
            Kind::Dir
        }
        // The tar crate expands GNU sparse entries into their full contents.
        T::Regular | T::Continuous | T::GNUSparse => Kind::File,
        T::Directory => Kind::Dir,
        T::Symlink => Kind::Symlink,
        T::Link => Kind::Hardlink,
        T::Char => Kind::Device(SFlag::S_IFCHR),
        T::Block => Kind::Device(SFlag::S_IFBLK),
        T::Fifo => Kind::Fifo,
        T::XGlobalHeader => {
            tracing::debug!("ignoring a PAX global header");
            return None;
        }
        other => {
            tracing::warn!(
                "layer entry {:?}: skipping unsupported tar entry type {:?}",
                String::from_utf8_lossy(&entry.path_bytes()),
                other.as_byte() as char
            );
            return None;
        }
    })
}

/// The components of an entry path, with `.` and empty components dropped (so `./a//b/` is
/// `a`, `b`, and `.` is the root). Refuses `..`, absolute paths, NUL bytes, empty and overlong
/// paths.
fn split_path(raw: &[u8]) -> Result<Vec<&[u8]>, Rejection> {
    if raw.is_empty() {
        return Err(Rejection::BadPath("empty path"));
    }
    if raw.contains(&0) {
        return Err(Rejection::BadPath("path contains a NUL byte"));
    }
    if raw.len() > MAX_PATH {
        return Err(Rejection::BadPath("path longer than PATH_MAX (4095 bytes)"));
    }
    if raw[0] == b'/' {
        return Err(Rejection::Absolute);
    }
    let mut comps = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(Rejection::ParentDir),
            _ => comps.push(comp),
        }
    }
    Ok(comps)
}

/// `shown` is the entry's path, for log lines.
fn read_meta<'e, R: Read>(
    entry: &mut tar::Entry<'_, R>,
    shown: &'e [u8],
) -> Result<Meta<'e>, Fail> {
    let header = entry.header();
    let mode = header_u32(header.mode().map(Some), "mode")?;
    let uid = header.uid().map_err(bad_header("uid"))?;
    let gid = header.gid().map_err(bad_header("gid"))?;
    // u32::MAX is -1, which chown reads as "leave unchanged".
    let id = |v: u64| u32::try_from(v).ok().filter(|&v| v != u32::MAX);
    let (Some(uid32), Some(gid32)) = (id(uid), id(gid)) else {
        return Err(Rejection::BadOwner { uid, gid }.into());
    };
    let mtime = header.mtime().map_err(bad_header("mtime"))?;
    let mut mtime = TimeSpec::new(i64::try_from(mtime).unwrap_or(i64::MAX), 0);

    let mut xattrs = Vec::new();
    if let Some(records) = entry.pax_extensions().map_err(bad_header("PAX records"))? {
        for record in records {
            let record = record.map_err(bad_header("PAX records"))?;
            let key = record.key_bytes();
            if key == b"mtime" {
                // PAX carries sub-second (and out-of-range) mtimes the header cannot.
                if let Some((secs, nanos)) = parse_pax_time(record.value_bytes()) {
                    mtime = TimeSpec::new(secs, nanos);
                }
            } else if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                let entry = String::from_utf8_lossy(shown);
                let xattr = String::from_utf8_lossy(name);
                if name.starts_with(b"trusted.overlay.") {
                    // Overlay metadata (opaque, redirect, metacopy, …) in a lower layer would
                    // change how the stack is read; only whiteout conversion may produce it.
                    tracing::warn!(
                        "layer entry {entry:?}: ignoring xattr {xattr:?} (overlayfs metadata)"
                    );
                    continue;
                }
                match CString::new(name) {
                    Ok(n) => xattrs.push((n, record.value_bytes().to_vec())),
                    Err(_) => tracing::warn!(
                        "layer entry {entry:?}: ignoring xattr {xattr:?} (NUL in its name)"
                    ),
                }
            }
        }
    }
    Ok(Meta {
        entry: shown,
        uid: Uid::from_raw(uid32),
        gid: Gid::from_raw(gid32),
        mode: Mode::from_bits_truncate(mode & 0o7777),
        mtime,
        xattrs,
    })
}

fn bad_header(field: &'static str) -> impl Fn(io::Error) -> Fail {
    move |e| {
        Fail::Reject(Rejection::BadHeader {
            field,
            detail: e.to_string(),
        })
    }
}

/// A numeric header field that may be absent (old headers have no device numbers: 0).
fn header_u32(v: io::Result<Option<u32>>, field: &'static str) -> Result<u32, Fail> {
    Ok(v.map_err(bad_header(field))?.unwrap_or(0))
}

/// Parses a PAX time, `[-]seconds[.fraction]`, into seconds and nanoseconds.
fn parse_pax_time(v: &[u8]) -> Option<(i64, i64)> {
    let s = std::str::from_utf8(v).ok()?;
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = int.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nanos: i64 = 0;
    for i in 0..9 {
        let digit = frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
        nanos = nanos * 10 + digit;
    }
    if int.starts_with('-') && nanos > 0 {
        Some((secs - 1, 1_000_000_000 - nanos))
    } else {
        Some((secs, nanos))
    }
}

fn is_type(st: &FileStat, kind: SFlag) -> bool {
    st.st_mode & SFlag::S_IFMT.bits() == kind.bits()
}

/// Opens the directory `path` below `dir` with every component resolved strictly beneath it
/// and no symlink followed (not even a final one).
fn open_dir_beneath(dir: BorrowedFd<'_>, path: &[u8]) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
    // EAGAIN means a concurrent rename somewhere on the system raced the lookup; retry a few
    // times before giving up.
    let mut tries = 0;
    loop {
        match fcntl::openat2(dir, path, how) {
            Err(Errno::EAGAIN) if tries < 16 => tries += 1,
            result => return result,
        }
    }
}

/// The names in a directory, without `.` and `..`.
fn list_names(dir: BorrowedFd<'_>) -> Result<Vec<Vec<u8>>, Errno> {
    // A fresh descriptor, so the listing starts at the beginning and `dir` is left alone.
    let mut listing = nix::dir::Dir::from_fd(open_dir_beneath(dir, b".")?)?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    Ok(names)
}

/// Removes the directory `name` in `parent` with everything below it, never following a
/// symlink.
fn remove_tree(parent: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    let dir = open_dir_beneath(parent, name)?;
    clear_dir(dir.as_fd())?;
    unistd::unlinkat(parent, name, UnlinkatFlags::RemoveDir)
}

/// Removes everything below `base`, never following a symlink.
///
/// Iterative, and holding one descriptor at a time, so a deep tree neither overflows the stack
/// nor runs out of descriptors: directories are named by their path below `base` (bounded by
/// `MAX_PATH` for anything a layer can build) and reopened from `base` when visited.
fn clear_dir(base: BorrowedFd<'_>) -> Result<(), Errno> {
    let mut pending: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(rel) = pending.last().cloned() {
        let dir = open_dir_beneath(base, if rel.is_empty() { b"." } else { &rel })?;
        let mut nonempty = Vec::new();
        for name in list_names(dir.as_fd())? {
            match unistd::unlinkat(dir.as_fd(), name.as_slice(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) => {}
                Err(Errno::EISDIR) => {
                    match unistd::unlinkat(dir.as_fd(), name.as_slice(), UnlinkatFlags::RemoveDir) {
                        Ok(()) => {}
                        Err(Errno::ENOTEMPTY | Errno::EEXIST) => {
                            let mut sub = rel.clone();
                            if !sub.is_empty() {
                                sub.push(b'/');
                            }
                            sub.extend_from_slice(&name);
                            nonempty.push(sub);
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if nonempty.is_empty() {
            // Now empty: remove it from its parent (the base itself stays).
            pending.pop();
            if let Some(slash) = rel.iter().rposition(|&b| b == b'/') {
                let parent = open_dir_beneath(base, &rel[..slash])?;
                unistd::unlinkat(parent.as_fd(), &rel[slash + 1..], UnlinkatFlags::RemoveDir)?;
            } else if !rel.is_empty() {
                unistd::unlinkat(base, rel.as_slice(), UnlinkatFlags::RemoveDir)?;
            }
        } else {
            pending.extend(nonempty);
        }
    }
    Ok(())
}

fn set_xattrs(target: XattrTarget<'_>, meta: &Meta<'_>) -> Result<(), Fail> {
    for (name, value) in &meta.xattrs {
        let result = match &target {
            XattrTarget::Fd(fd) => fsetxattr(*fd, name, value),
            // Symlinks, devices and fifos cannot be opened safely for fsetxattr. The directory
            // is reached through its descriptor's /proc entry (so no path is re-resolved) and
            // lsetxattr does not follow the final name.
            XattrTarget::At(dir, file) => {
                let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
                path.extend_from_slice(file);
                let path =
                    CString::new(path).map_err(|_| Fail::Io("set xattr", Errno::EINVAL.into()))?;
                // SAFETY: valid NUL-terminated strings and a buffer of the stated length.
                Errno::result(unsafe {
                    libc::lsetxattr(
                        path.as_ptr(),
                        name.as_ptr(),
                        value.as_ptr().cast(),
                        value.len(),
                        0,
                    )
                })
                .map(drop)
            }
        };
        match result {
            Ok(()) => {}
            Err(e @ (Errno::EPERM | Errno::ENOTSUP)) => tracing::warn!(
                "layer entry {:?}: not setting xattr {:?}: {e} (unsupported here or not permitted)",
                String::from_utf8_lossy(meta.entry),
                name.to_string_lossy()
            ),
            Err(e) => return Err(e).or_fail("set xattr"),
        }
    }
    Ok(())
}

fn fsetxattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> Result<(), Errno> {
    // SAFETY: valid descriptor, NUL-terminated name and a buffer of the stated length.
    Errno::result(unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(drop)
}

/// The snapshot root's own owner, mode and xattrs, which a `.` entry or an opaque marker at the
/// top may change; restored when unpacking fails.
struct RootState {
    uid: Uid,
    gid: Gid,
    mode: Mode,
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl RootState {
    fn save(fd: BorrowedFd<'_>) -> Result<RootState, Errno> {
        let st = stat::fstat(fd)?;
        let mut xattrs = Vec::new();
        for name in list_xattrs(fd)? {
            if let Some(value) = get_xattr(fd, &name)? {
                xattrs.push((name, value));
            }
        }
        Ok(RootState {
            uid: Uid::from_raw(st.st_uid),
            gid: Gid::from_raw(st.st_gid),
            mode: Mode::from_bits_truncate(st.st_mode & 0o7777),
            xattrs,
        })
    }

    fn restore(&self, fd: BorrowedFd<'_>) -> Result<(), Errno> {
        unistd::fchown(fd, Some(self.uid), Some(self.gid))?;
        stat::fchmod(fd, self.mode)?;
        for name in list_xattrs(fd)? {
            if !self.xattrs.iter().any(|(n, _)| *n == name) {
                // SAFETY: valid descriptor and NUL-terminated name.
                match Errno::result(unsafe { libc::fremovexattr(fd.as_raw_fd(), name.as_ptr()) }) {
                    Ok(_) | Err(Errno::ENODATA) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        for (name, value) in &self.xattrs {
            fsetxattr(fd, name, value)?;
        }
        Ok(())
    }
}

/// The xattr names of an open file (none where the filesystem has no xattrs).
fn list_xattrs(fd: BorrowedFd<'_>) -> Result<Vec<CString>, Errno> {
    loop {
        // SAFETY: a null buffer of size 0 asks for the needed size.
        let size = match Errno::result(unsafe {
            libc::flistxattr(fd.as_raw_fd(), std::ptr::null_mut(), 0)
        }) {
            Ok(size) => size as usize,
            Err(Errno::ENOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; size];
        // SAFETY: the buffer is `size` bytes long.
        match Errno::result(unsafe {
            libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
        }) {
            Ok(n) => {
                buf.truncate(n as usize);
                return Ok(buf
                    .split(|&b| b == 0)
                    .filter(|n| !n.is_empty())
                    .filter_map(|n| CString::new(n).ok())
                    .collect());
            }
            // The list grew in between: ask again.
            Err(Errno::ERANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// One xattr of an open file; `None` if it vanished in between.
fn get_xattr(fd: BorrowedFd<'_>, name: &CStr) -> Result<Option<Vec<u8>>, Errno> {
    loop {
        // SAFETY: a null buffer of size 0 asks for the needed size.
        let size = match Errno::result(unsafe {
            libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), std::ptr::null_mut(), 0)
        }) {
            Ok(size) => size as usize,
            Err(Errno::ENODATA) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; size];
        // SAFETY: the buffer is `size` bytes long.
        match Errno::result(unsafe {
            libc::fgetxattr(
                fd.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        }) {
            Ok(n) => {
                buf.truncate(n as usize);
                return Ok(Some(buf));
            }
            Err(Errno::ERANGE) => continue,
            Err(Errno::ENODATA) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::fs;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use tar::{EntryType, Header};

    const MTIME: u64 = 1_600_000_000;

    /// Builds tarballs entry by entry, writing names into the header as raw bytes so hostile
    /// names (`..`, absolute) get through the builder unchanged.
    struct Layer {
        builder: tar::Builder<Vec<u8>>,
    }

    impl Layer {
        fn new() -> Layer {
            Layer {
                builder: tar::Builder::new(Vec::new()),
            }
        }

        /// Appends one entry; `edit` may change the header before its checksum is computed.
        fn raw(
            &mut self,
            kind: EntryType,
            path: &str,
            link: &str,
            data: &[u8],
            edit: impl FnOnce(&mut Header),
        ) -> &mut Layer {
            let mut h = Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(if kind == EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(MTIME);
            let old = h.as_old_mut();
            assert!(path.len() <= old.name.len() && link.len() <= old.linkname.len());
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            edit(&mut h);
            h.set_cksum();
            self.builder.append(&h, data).unwrap();
            self
        }

        fn dir(&mut self, path: &str) -> &mut Layer {
            self.raw(EntryType::Directory, path, "", b"", |_| {})
        }
        fn file(&mut self, path: &str, data: &[u8]) -> &mut Layer {
            self.raw(EntryType::Regular, path, "", data, |_| {})
        }
        fn symlink(&mut self, path: &str, target: &str) -> &mut Layer {
            self.raw(EntryType::Symlink, path, target, b"", |h| h.set_mode(0o777))
        }
        fn hardlink(&mut self, path: &str, target: &str) -> &mut Layer {
            self.raw(EntryType::Link, path, target, b"", |_| {})
        }
        fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Layer {
            self.builder
                .append_pax_extensions(records.iter().copied())
                .unwrap();
            self
        }
        fn finish(&mut self) -> Vec<u8> {
            let builder = std::mem::replace(&mut self.builder, tar::Builder::new(Vec::new()));
            builder.into_inner().unwrap()
        }
    }

    /// A temp dir holding the snapshot `dest` and, next to it, `outside/secret`: what a hostile
    /// layer would like to reach.
    struct Fixture {
        tmp: tempfile::TempDir,
        dest: PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            let tmp = tempfile::tempdir().unwrap();
            let dest = tmp.path().join("snapshot");
            fs::create_dir(&dest).unwrap();
            fs::create_dir(tmp.path().join("outside")).unwrap();
            fs::write(tmp.path().join("outside/secret"), b"secret").unwrap();
            Fixture { tmp, dest }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dest.join(rel)
        }

        /// Everything in the temp dir except the snapshot: type, mode, owner, size, link count,
        /// mtime and contents or link target.
        fn outside_listing(&self) -> BTreeMap<PathBuf, String> {
            let mut out = BTreeMap::new();
            let mut todo = vec![self.tmp.path().to_path_buf()];
            while let Some(dir) = todo.pop() {
                for e in fs::read_dir(&dir).unwrap() {
                    let p = e.unwrap().path();
                    if p == self.dest {
                        continue;
                    }
                    let m = fs::symlink_metadata(&p).unwrap();
                    let what = if m.is_dir() {
                        todo.push(p.clone());
                        "dir".to_owned()
                    } else if m.file_type().is_symlink() {
                        format!("-> {:?}", fs::read_link(&p).unwrap())
                    } else {
                        format!("{:?}", fs::read(&p).unwrap())
                    };
                    let desc = format!(
                        "{what} mode={:o} owner={}:{} nlink={} mtime={}",
                        m.mode(),
                        m.uid(),
                        m.gid(),
                        m.nlink(),
                        m.mtime()
                    );
                    out.insert(p, desc);
                }
            }
            out
        }

        fn dest_is_empty(&self) -> bool {
            fs::read_dir(&self.dest).unwrap().next().is_none()
        }

        fn unpack(&self, tar: &[u8]) -> Result<UnpackStats, UnpackError> {
            unpack_layer(tar, Compression::None, &self.dest)
        }

        /// Unpacks a layer that must be refused: the error names `entry`, the snapshot is empty
        /// again and nothing outside it changed.
        fn expect_rejected(&self, tar: &[u8], entry: &str) -> UnpackError {
            let before = self.outside_listing();
            let err = self.unpack(tar).expect_err("hostile layer was accepted");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("layer entry {entry:?}")),
                "error does not name {entry:?}: {msg}"
            );
            assert!(self.dest_is_empty(), "snapshot not emptied after: {msg}");
            assert_eq!(before, self.outside_listing(), "outside changed: {msg}");
            assert_eq!(
                fs::read(self.tmp.path().join("outside/secret")).unwrap(),
                b"secret"
            );
            err
        }
    }

    fn lxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let p = CString::new(path.as_os_str().as_bytes()).unwrap();
        let n = CString::new(name).unwrap();
        let mut buf = vec![0u8; 256];
        // SAFETY: valid strings and a buffer of the stated length.
        let r =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        (r >= 0).then(|| {
            buf.truncate(r as usize);
            buf
        })
    }

    /// A unique name, for paths a hostile layer aims at outside the temp dir.
    fn unique(tag: &str) -> String {
        format!("pouch-unpack-test-{tag}-{}", std::process::id())
    }

    /// A layer using every supported entry type and kind of metadata.
    fn full_layer() -> Vec<u8> {
        let mut l = Layer::new();
        l.raw(EntryType::Directory, "./", "", b"", |h| {
            h.set_mode(0o751);
            h.set_mtime(MTIME + 9);
        })
        .raw(EntryType::Directory, "etc/", "", b"", |h| {
            h.set_mtime(MTIME + 1)
        })
        .pax(&[
            ("SCHILY.xattr.user.pouch", b"hello"),
            ("mtime", b"1600000002.25"),
        ])
        .raw(
            EntryType::Regular,
            "./etc/hosts",
            "",
            b"127.0.0.1 localhost\n",
            |h| {
                h.set_uid(1000);
                h.set_gid(1001);
            },
        )
        .raw(EntryType::Regular, "usr/bin/su", "", b"#!su", |h| {
            h.set_mode(0o4755)
        })
        // Writers repeat the target's metadata in a hardlink's header; it applies to the inode.
        .raw(EntryType::Link, "usr/bin/sudo", "usr/bin/su", b"", |h| {
            h.set_mode(0o4755)
        })
        .raw(EntryType::Directory, "tmp", "", b"", |h| h.set_mode(0o1777))
        .raw(EntryType::Regular, "srv/group", "", b"", |h| {
            h.set_mode(0o2750)
        })
        .raw(
            EntryType::Symlink,
            "etc/localtime",
            "/usr/share/zoneinfo/UTC",
            b"",
            |h| {
                h.set_uid(5);
                h.set_gid(6);
                h.set_mtime(MTIME + 3);
            },
        )
        .raw(EntryType::Fifo, "run/initctl", "", b"", |h| {
            h.set_mode(0o600)
        })
        .raw(EntryType::Char, "dev/null", "", b"", |h| {
            h.set_mode(0o666);
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        })
        .raw(EntryType::Block, "dev/loop0", "", b"", |h| {
            h.set_mode(0o660);
            h.set_device_major(7).unwrap();
            h.set_device_minor(0).unwrap();
        })
        // A child written after its directory's header: the directory keeps its own mtime.
        .file("etc/late", b"late");
        l.finish()
    }

    #[test]
    fn compression_from_media_type_and_magic() {
        use Compression::*;
        for (mt, want) in [
            ("application/vnd.oci.image.layer.v1.tar", Some(None)),
            ("application/vnd.oci.image.layer.v1.tar+gzip", Some(Gzip)),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Some(Zstd)),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Some(Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some(Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Some(Gzip),
            ),
            ("application/vnd.docker.image.rootfs.diff.tar", Some(None)),
            (
                "Application/VND.oci.image.layer.v1.tar+gzip; x=y",
                Some(Gzip),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
                Option::None,
            ),
            ("application/vnd.oci.image.config.v1+json", Option::None),
            ("", Option::None),
        ] {
            assert_eq!(Compression::from_media_type(mt), want, "{mt}");
        }
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8, 0]), Gzip);
        assert_eq!(Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Zstd);
        assert_eq!(Compression::sniff(b"etc/\0\0\0"), None);
        assert_eq!(Compression::sniff(&[0x1f]), None);
        assert_eq!(Compression::sniff(&[]), None);
    }

    #[test]
    fn unpacks_a_normal_layer() {
        let fx = Fixture::new();
        let tar = full_layer();
        let stats = fx.unpack(&tar).unwrap();
        assert_eq!(stats.diff_id, Digest::of(&tar));
        assert_eq!(stats.bytes, tar.len() as u64);
        assert_eq!(stats.entries, 12); // the PAX header is folded into its entry

        let meta = |p: &str| fs::symlink_metadata(fx.path(p)).unwrap();

        // The root entry applies to the snapshot directory itself.
        let root = fs::symlink_metadata(&fx.dest).unwrap();
        assert_eq!(root.mode() & 0o7777, 0o751);
        assert_eq!(root.mtime(), MTIME as i64 + 9);

        let hosts = meta("etc/hosts");
        assert_eq!(
            fs::read(fx.path("etc/hosts")).unwrap(),
            b"127.0.0.1 localhost\n"
        );
        assert_eq!((hosts.uid(), hosts.gid()), (1000, 1001));
        assert_eq!(hosts.mode() & 0o7777, 0o644);
        assert_eq!(
            (hosts.mtime(), hosts.mtime_nsec()),
            (MTIME as i64 + 2, 250_000_000)
        );
        assert_eq!(
            lxattr(&fx.path("etc/hosts"), "user.pouch").as_deref(),
            Some(&b"hello"[..])
        );
        // Applied after etc/hosts and etc/late were created inside it.
        assert_eq!(meta("etc").mtime(), MTIME as i64 + 1);

        let su = meta("usr/bin/su");
        assert_eq!(su.mode() & 0o7777, 0o4755);
        assert_eq!(su.mtime(), MTIME as i64);
        let sudo = meta("usr/bin/sudo");
        assert_eq!((sudo.ino(), su.nlink()), (su.ino(), 2));
        // Missing parents: 0755, root-owned.
        for implicit in ["usr", "usr/bin", "srv", "run", "dev"] {
            let m = meta(implicit);
            assert!(m.is_dir(), "{implicit}");
            assert_eq!(
                (m.mode() & 0o7777, m.uid(), m.gid()),
                (0o755, 0, 0),
                "{implicit}"
            );
        }
        assert_eq!(meta("tmp").mode() & 0o7777, 0o1777);
        assert_eq!(meta("srv/group").mode() & 0o7777, 0o2750);

        let lt = meta("etc/localtime");
        assert!(lt.file_type().is_symlink());
        assert_eq!(
            fs::read_link(fx.path("etc/localtime")).unwrap(),
            Path::new("/usr/share/zoneinfo/UTC")
        );
        assert_eq!((lt.uid(), lt.gid(), lt.mtime()), (5, 6, MTIME as i64 + 3));

        let fifo = meta("run/initctl");
        assert!(fifo.file_type().is_fifo());
        assert_eq!(fifo.mode() & 0o7777, 0o600);
        let null = meta("dev/null");
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), libc::makedev(1, 3));
        assert_eq!(null.mode() & 0o7777, 0o666);
        let lp = meta("dev/loop0");
        assert!(lp.file_type().is_block_device());
        assert_eq!(lp.rdev(), libc::makedev(7, 0));
    }

    #[test]
    fn gzip_zstd_and_plain_give_the_same_tree_and_diff_id() {
        let mut tar = full_layer();
        // Record padding after the end marker (GNU tar pads to 10240 bytes): still part of
        // the stream the diff ID covers.
        tar.resize(tar.len().next_multiple_of(10240) + 10240, 0);
        let diff_id = Digest::of(&tar);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::stream::encode_all(&tar[..], 3).unwrap();

        let mut trees = Vec::new();
        for (blob, compression) in [
            (&tar, Compression::None),
            (&gz, Compression::Gzip),
            (&zst, Compression::Zstd),
        ] {
            assert_eq!(Compression::sniff(blob), compression);
            let fx = Fixture::new();
            let stats = unpack_layer(&blob[..], compression, &fx.dest).unwrap();
            assert_eq!(stats.diff_id, diff_id, "{compression}");
            assert_eq!(stats.bytes, tar.len() as u64, "{compression}");
            assert_eq!(fs::read(fx.path("usr/bin/su")).unwrap(), b"#!su");
            let mut names: Vec<_> = walk(&fx.dest);
            names.sort();
            trees.push(names);
        }
        assert_eq!(trees[0], trees[1]);
        assert_eq!(trees[0], trees[2]);
    }

    fn walk(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            out.push(e.file_name().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                let name = e.file_name().to_string_lossy().into_owned();
                out.extend(walk(&e.path()).into_iter().map(|c| format!("{name}/{c}")));
            }
        }
        out
    }

    #[test]
    fn whiteouts_become_overlay_forms() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .dir("a/")
            .raw(EntryType::Regular, "a/.wh.gone", "", b"", |h| {
                h.set_uid(7);
                h.set_gid(8);
            })
            .file(".wh.top", b"")
            .file("c/.wh..wh..opq", b"") // parent created on the way
            .dir("d/")
            .file("d/keep", b"k")
            .file("d/.wh..wh..opq", b"")
            .file(".wh..wh.plnk", b"") // other markers mean nothing to overlayfs
            .finish();
        fx.unpack(&tar).unwrap();

        for (path, owner) in [("a/gone", (7, 8)), ("top", (0, 0))] {
            let m = fs::symlink_metadata(fx.path(path)).unwrap();
            assert!(m.file_type().is_char_device(), "{path}");
            assert_eq!(m.rdev(), 0, "{path}");
            assert_eq!((m.uid(), m.gid()), owner, "{path}");
        }
        for dir in ["c", "d"] {
            assert_eq!(
                lxattr(&fx.path(dir), "trusted.overlay.opaque").as_deref(),
                Some(&b"y"[..]),
                "{dir}"
            );
        }
        assert_eq!(lxattr(&fx.path("a"), "trusted.overlay.opaque"), None);
        assert_eq!(fs::read(fx.path("d/keep")).unwrap(), b"k");
        // No `.wh.` name survives.
        let names = walk(&fx.dest);
        assert!(!names.iter().any(|n| n.contains(".wh.")), "{names:?}");
        assert_eq!(names.len(), 6, "{names:?}"); // a, a/gone, top, c, d, d/keep
    }

    #[test]
    fn whiteouts_only_hide_lower_layers() {
        // image-spec: a whiteout never hides what its own layer holds, in either order.
        let fx = Fixture::new();
        let tar = Layer::new()
            .file(".wh.x", b"") // lower x deleted, then recreated as a directory here
            .dir("x/")
            .file("x/new", b"n")
            .dir("y/")
            .file("y/kept", b"k")
            .file(".wh.y", b"") // after this layer's y: y stays, lower y's contents hidden
            .file("z", b"z")
            .file(".wh.z", b"")
            .file(".wh.w", b"")
            .file("w", b"w")
            .finish();
        fx.unpack(&tar).unwrap();
        for dir in ["x", "y"] {
            assert!(
                fs::symlink_metadata(fx.path(dir)).unwrap().is_dir(),
                "{dir}"
            );
            assert_eq!(
                lxattr(&fx.path(dir), "trusted.overlay.opaque").as_deref(),
                Some(&b"y"[..]),
                "{dir}"
            );
        }
        assert_eq!(fs::read(fx.path("x/new")).unwrap(), b"n");
        assert_eq!(fs::read(fx.path("y/kept")).unwrap(), b"k");
        assert_eq!(fs::read(fx.path("z")).unwrap(), b"z");
        assert_eq!(fs::read(fx.path("w")).unwrap(), b"w");
    }

    #[test]
    fn overlay_xattrs_from_the_layer_are_ignored() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .pax(&[
                ("SCHILY.xattr.trusted.overlay.redirect", b"/elsewhere"),
                ("SCHILY.xattr.trusted.pouch", b"kept"),
            ])
            .dir("d/")
            .finish();
        fx.unpack(&tar).unwrap();
        assert_eq!(lxattr(&fx.path("d"), "trusted.overlay.redirect"), None);
        assert_eq!(
            lxattr(&fx.path("d"), "trusted.pouch").as_deref(),
            Some(&b"kept"[..])
        );
    }

    #[test]
    fn later_duplicate_entries_win() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .file("f", b"first")
            .file("f", b"second")
            // dir then dir: merged, metadata updated
            .raw(EntryType::Directory, "d/", "", b"", |h| h.set_mode(0o700))
            .file("d/child", b"c")
            .raw(EntryType::Directory, "d", "", b"", |h| {
                h.set_mode(0o750);
                h.set_uid(3);
                h.set_mtime(MTIME + 5);
            })
            // dir (with contents) then file
            .dir("e/")
            .dir("e/sub/")
            .file("e/sub/deep", b"x")
            .file("e", b"now a file")
            // file then dir
            .file("g", b"x")
            .dir("g/")
            // symlink then file: the symlink is replaced, not written through
            .symlink("h", "f")
            .file("h", b"own")
            // file then hardlink
            .file("i", b"x")
            .hardlink("i", "f")
            .finish();
        fx.unpack(&tar).unwrap();

        assert_eq!(fs::read(fx.path("f")).unwrap(), b"second");
        let d = fs::symlink_metadata(fx.path("d")).unwrap();
        assert_eq!(
            (d.mode() & 0o7777, d.uid(), d.mtime()),
            (0o750, 3, MTIME as i64 + 5)
        );
        assert_eq!(fs::read(fx.path("d/child")).unwrap(), b"c");
        assert_eq!(fs::read(fx.path("e")).unwrap(), b"now a file");
        assert!(fs::symlink_metadata(fx.path("g")).unwrap().is_dir());
        assert!(fs::symlink_metadata(fx.path("h")).unwrap().is_file());
        assert_eq!(fs::read(fx.path("h")).unwrap(), b"own");
        assert_eq!(fs::read(fx.path("f")).unwrap(), b"second");
        assert_eq!(
            fs::symlink_metadata(fx.path("i")).unwrap().ino(),
            fs::symlink_metadata(fx.path("f")).unwrap().ino()
        );
    }

    #[test]
    fn symlink_at_the_leaf_is_replaced_not_written_through() {
        let fx = Fixture::new();
        let before = fx.outside_listing();
        let tar = Layer::new()
            .symlink("s", "../outside/secret")
            .file("s", b"pwned")
            .symlink("abs", "/etc/passwd")
            .file("abs", b"pwned")
            .finish();
        fx.unpack(&tar).unwrap();
        assert_eq!(fs::read(fx.path("s")).unwrap(), b"pwned");
        assert!(fs::symlink_metadata(fx.path("abs")).unwrap().is_file());
        assert_eq!(before, fx.outside_listing());
    }

    #[test]
    fn rejects_a_non_empty_destination_without_touching_it() {
        let fx = Fixture::new();
        fs::write(fx.path("precious"), b"mine").unwrap();
        let err = fx
            .unpack(&Layer::new().file("x", b"x").finish())
            .unwrap_err();
        assert!(matches!(err, UnpackError::DestNotEmpty { .. }), "{err}");
        assert_eq!(fs::read(fx.path("precious")).unwrap(), b"mine");
        assert!(!fx.path("x").exists());
    }

    // ---- The hostile corpus. Each layer starts with harmless entries, so the cleanup has
    // ---- something to remove.

    #[test]
    fn rejects_parent_dir_paths() {
        for bad in ["../x", "a/../../x", "ok/../x", ".."] {
            let fx = Fixture::new();
            let tar = Layer::new()
                .dir("ok/")
                .file("ok/f", b"f")
                .file(bad, b"pwned")
                .finish();
            let err = fx.expect_rejected(&tar, bad);
            assert!(
                matches!(
                    &err,
                    UnpackError::Rejected {
                        reason: Rejection::ParentDir,
                        ..
                    }
                ),
                "{err}"
            );
            assert!(err
                .to_string()
                .contains("path leaves the snapshot (\"..\")"));
        }
        let fx = Fixture::new();
        let err = fx.expect_rejected(
            &Layer::new().file("../etc/passwd", b"x").finish(),
            "../etc/passwd",
        );
        assert_eq!(
            err.to_string(),
            r#"layer entry "../etc/passwd": path leaves the snapshot ("..")"#
        );
    }

    #[test]
    fn rejects_absolute_paths() {
        let target = format!("/tmp/{}", unique("abs"));
        let fx = Fixture::new();
        let tar = Layer::new()
            .file("f", b"f")
            .file(&target, b"pwned")
            .finish();
        let err = fx.expect_rejected(&tar, &target);
        assert!(
            matches!(
                &err,
                UnpackError::Rejected {
                    reason: Rejection::Absolute,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!Path::new(&target).exists());
    }

    #[test]
    fn rejects_nul_and_empty_paths() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .file("f", b"f")
            .pax(&[("path", b"a\0b")])
            .file("placeholder", b"x")
            .finish();
        let err = fx.expect_rejected(&tar, "a\0b");
        assert!(err.to_string().contains("NUL"), "{err}");

        let fx = Fixture::new();
        let tar = Layer::new().file("f", b"f").file("", b"x").finish();
        let err = fx.expect_rejected(&tar, "");
        assert!(err.to_string().contains("empty path"), "{err}");
    }

    #[test]
    fn rejects_writing_through_a_symlinked_parent() {
        let escape = unique("root");
        for (link, target, beneath) in [
            ("l", "..", "l/x".to_owned()),
            ("l", "/", format!("l/tmp/{escape}")),
            ("l", "../outside", "l/secret".to_owned()),
            ("l", "/etc", "l/passwd".to_owned()),
            // Even a symlink that stays inside the snapshot is never followed.
            ("l", "real", "l/x".to_owned()),
        ] {
            let fx = Fixture::new();
            let tar = Layer::new()
                .dir("real/")
                .symlink(link, target)
                .file(&beneath, b"pwned")
                .finish();
            let err = fx.expect_rejected(&tar, &beneath);
            assert!(
                matches!(&err, UnpackError::Rejected { reason: Rejection::ThroughSymlink { component }, .. } if component == "l"),
                "{err}"
            );
        }
        assert!(!Path::new("/tmp").join(&escape).exists());
    }

    #[test]
    fn rejects_a_directory_through_a_nested_symlink() {
        // The symlink is deeper in the path, and the entry is a directory, not a file.
        let fx = Fixture::new();
        let tar = Layer::new()
            .dir("a/")
            .symlink("a/b", "../..")
            .dir("a/b/c/d/")
            .finish();
        let err = fx.expect_rejected(&tar, "a/b/c/d/");
        assert!(err.to_string().contains("\"a/b\" is a symlink"), "{err}");
    }

    #[test]
    fn rejects_hardlinks_leaving_the_snapshot() {
        for (target, why) in [
            ("../outside/secret", "path leaves the snapshot"),
            ("/etc/passwd", "absolute path"),
            ("nothing/here", "\"nothing\" does not exist"),
            ("missing", "not created by an earlier entry"),
            ("d", "is a directory"),
            (".", "is a directory"),
        ] {
            let fx = Fixture::new();
            let tar = Layer::new()
                .dir("d/")
                .file("d/f", b"f")
                .hardlink("h", target)
                .finish();
            let err = fx.expect_rejected(&tar, "h");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("hardlink target {target:?}")) && msg.contains(why),
                "{target}: {msg}"
            );
        }
    }

    #[test]
    fn rejects_a_hardlink_through_a_symlinked_parent() {
        for link_to in ["../outside", "/etc", "d"] {
            let fx = Fixture::new();
            let target = if link_to == "/etc" {
                "l/passwd"
            } else {
                "l/secret"
            };
            let tar = Layer::new()
                .dir("d/")
                .file("d/secret", b"inside")
                .symlink("l", link_to)
                .hardlink("h", target)
                .finish();
            let err = fx.expect_rejected(&tar, "h");
            assert!(err.to_string().contains("\"l\" is a symlink"), "{err}");
        }
    }

    #[test]
    fn rejects_whiteouts_of_non_names() {
        for bad in [".wh...", "a/.wh..", "a/.wh."] {
            let fx = Fixture::new();
            let tar = Layer::new()
                .dir("a/")
                .file("a/f", b"f")
                .file(bad, b"")
                .finish();
            let err = fx.expect_rejected(&tar, bad);
            assert!(
                matches!(
                    &err,
                    UnpackError::Rejected {
                        reason: Rejection::BadWhiteout { .. },
                        ..
                    }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn rejects_entries_beneath_a_directory_replaced_by_a_symlink() {
        let fx = Fixture::new();
        let tar = Layer::new()
            .dir("d/")
            .file("d/a", b"a")
            .symlink("d", "../outside")
            .file("d/secret", b"pwned")
            .finish();
        let err = fx.expect_rejected(&tar, "d/secret");
        assert!(err.to_string().contains("\"d\" is a symlink"), "{err}");
    }

    #[test]
    fn rejects_a_non_directory_root_entry() {
        let fx = Fixture::new();
        let tar = Layer::new().file("f", b"f").file("./", b"x").finish();
        // "./" with a type '0' header is a regular file named "." (only type '\0' is promoted).
        let err = fx.expect_rejected(&tar, "./");
        assert!(err.to_string().contains("can only be a directory"), "{err}");
    }

    #[test]
    fn corrupt_or_truncated_streams_leave_the_snapshot_empty() {
        let mut l = Layer::new();
        l.dir("a/").file("a/small", b"small");
        // Incompressible data, so truncating the gzip stream cuts into this file.
        let mut big = vec![0u8; 256 * 1024];
        let mut x: u32 = 1;
        for b in big.iter_mut() {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *b = (x >> 24) as u8;
        }
        let tar = l.file("a/big", &big).file("z", b"z").finish();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();

        let truncated = &gz[..gz.len() / 2];
        let mut flipped = gz.clone();
        let n = flipped.len();
        flipped[n - 6] ^= 0xff; // inside the CRC32 trailer: caught only when read to the end
        let zst = zstd::stream::encode_all(&tar[..], 3).unwrap();
        let zst_truncated = &zst[..zst.len() - 100];

        for (name, blob, compression, entry) in [
            ("truncated gzip", truncated, Compression::Gzip, "a/big"),
            ("bad gzip crc", &flipped[..], Compression::Gzip, "z"),
            ("truncated zstd", zst_truncated, Compression::Zstd, "a/big"),
            (
                "truncated tar",
                &tar[..tar.len() / 2],
                Compression::None,
                "a/big",
            ),
            ("gzip read as zstd", &gz[..], Compression::Zstd, ""),
        ] {
            let fx = Fixture::new();
            let before = fx.outside_listing();
            let err = unpack_layer(blob, compression, &fx.dest).expect_err(name);
            assert!(matches!(err, UnpackError::Stream { .. }), "{name}: {err}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("{entry:?}")) || entry.is_empty(),
                "{name}: {msg}"
            );
            assert!(fx.dest_is_empty(), "{name}: {msg}");
            assert_eq!(before, fx.outside_listing(), "{name}");
        }
    }

    #[test]
    fn a_failed_unpack_restores_the_snapshot_root() {
        let fx = Fixture::new();
        fs::set_permissions(&fx.dest, fs::Permissions::from_mode(0o700)).unwrap();
        let tar = Layer::new()
            .raw(EntryType::Directory, ".", "", b"", |h| {
                h.set_mode(0o777);
                h.set_uid(42);
            })
            .file(".wh..wh..opq", b"")
            .file("../x", b"")
            .finish();
        fx.expect_rejected(&tar, "../x");
        let m = fs::symlink_metadata(&fx.dest).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid()), (0o700, 0));
        assert_eq!(lxattr(&fx.dest, "trusted.overlay.opaque"), None);
    }

    #[test]
    fn a_deep_tree_is_removed_after_a_failure() {
        let fx = Fixture::new();
        let mut l = Layer::new();
        // 2000 nested directories from one entry (a PAX path; header names hold 100 bytes),
        // then a refused entry: the cleanup must walk the whole depth.
        let mut path = String::new();
        for _ in 0..2000 {
            path.push_str("d/");
        }
        l.pax(&[("path", path.as_bytes())]).dir("placeholder/");
        let tar = l.file("../x", b"").finish();
        fx.expect_rejected(&tar, "../x");
    }
}
