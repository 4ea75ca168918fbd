//! The container's root filesystem: propagation, the rootfs bind mount, every mount of the spec,
//! devices, `pivot_root` (or `chroot` with `--no-pivot`), masked and read-only paths and a
//! read-only root.
//!
//! Mount destinations are resolved inside the rootfs with `openat2(RESOLVE_IN_ROOT)`, so a
//! symlink in the image (`/proc -> /`, `/dev -> /etc`, …) can never point a mount at the host.
//! What was resolved is held open (`O_PATH`) and handed to the kernel as `/proc/self/fd/N`:
//! a path component swapped for a symlink between the resolution and the mount (by another
//! container sharing a volume with this rootfs: the CVE-2021-30465 pattern) cannot redirect
//! the mount. Operations on a mount once made (remounts, propagation) resolve its destination
//! again and refuse to go on if it is no longer the same place.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use nix::sys::statvfs::{statvfs, FsFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, Mount, Spec};

use crate::error::{Error, Result, SysContext};
use crate::syscall::Syscall;

/// One cgroup hierarchy to show inside the container for a mount of type `cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// Directory name under the mount destination (`cpu`, `memory`, `unified`, …); empty for
    /// a pure cgroup v2 host, where the hierarchy is mounted at the destination itself.
    pub name: String,
    /// `cgroup` (v1) or `cgroup2`.
    pub fstype: &'static str,
    /// The mount data (`cpu,cpuacct`, `name=systemd`, or empty for v2).
    pub data: String,
    /// The container's cgroup directory in this hierarchy on the host (bound when the container
    /// has no cgroup namespace of its own).
    pub host_dir: PathBuf,
}

/// What the rootfs setup needs besides the spec.
#[derive(Debug, Clone)]
pub struct RootfsOptions<'a> {
    /// The rootfs, absolute, on the host.
    pub rootfs: &'a Path,
    /// The bundle directory: relative bind-mount sources are resolved against it.
    pub bundle: &'a Path,
    /// The container has its own cgroup namespace (mount cgroupfs rather than bind the host's).
    pub cgroup_ns: bool,
    /// The container is in a new user namespace (mknod is not allowed: devices are bound).
    pub user_ns: bool,
    /// The cgroup hierarchies, for mounts of type `cgroup`.
    pub cgroup_mounts: &'a [CgroupMount],
}

/// Parsed `mounts[].options`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags to set.
    pub flags: MsFlags,
    /// Propagation changes applied after the mount, in order.
    pub propagation: Vec<MsFlags>,
    /// Everything else, passed to the filesystem as data.
    pub data: Vec<String>,
    /// `rro`: make the mount and all its submounts read-only.
    pub recursive_ro: bool,
}

/// Parses mount options the way `mount(8)` does; unknown options become filesystem data.
pub fn parse_mount_options(options: &[String]) -> Result<MountOptions> {
    let mut o = MountOptions {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        data: Vec::new(),
        recursive_ro: false,
    };
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                o.propagation
                    .push(propagation_flags(opt).expect("listed above"));
                continue;
            }
            "rro" => {
                o.recursive_ro = true;
                continue;
            }
            // Docker's hint to copy the image's content into a tmpfs; we do not, and the
            // mount is still made.
            "tmpcopyup" => continue,
            "idmap" | "ridmap" => {
                return Err(Error::invalid(format!(
                "mount option {opt:?} (id-mapped mounts) is not supported by pouch yet; remove it"
            )))
            }
            _ => {
                o.data.push(opt.clone());
                continue;
            }
        };
        o.flags.insert(set);
        o.flags.remove(clear);
    }
    Ok(o)
}

/// The flags of a propagation name (`rslave`, `private`, …).
pub fn propagation_flags(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// What to create when a mount destination does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Nothing: a missing destination is an error.
    Nothing,
    /// Directories, like `mkdir -p`.
    Dir,
    /// Parent directories and an empty regular file (bind mounts of files).
    File,
}

fn open_in_root(rootfd: &OwnedFd, rel: &Path) -> nix::Result<OwnedFd> {
    if rel.as_os_str().is_empty() {
        return nix::fcntl::openat(
            rootfd.as_fd(),
            ".",
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
    }
    openat2(
        rootfd.as_fd(),
        rel,
        OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT),
    )
}

fn fd_path(fd: &OwnedFd) -> Result<PathBuf> {
    fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .ctx(|| "read the path of a resolved mount destination".into())
}

/// A place in the rootfs resolved by [`open_in_rootfs`], held open.
#[derive(Debug)]
pub struct Resolved {
    fd: OwnedFd,
    host: PathBuf,
}

impl Resolved {
    /// `/proc/self/fd/N`: the kernel follows it to exactly the resolved place, whatever
    /// happened to the path since.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// The host path it had when resolved (for messages, and to compare).
    pub fn host(&self) -> &Path {
        &self.host
    }
}

/// Resolves the destination of a mount just made once more (now reaching the new mount on
/// top) and checks it is still where it was: a swapped path component makes it an error,
/// never a remount of something else.
fn reopen_mounted(
    sys: &dyn Syscall,
    root: &RootDir,
    dest: &Path,
    was: &Resolved,
) -> Result<Resolved> {
    let refuse = |now: String| {
        Error::invalid(format!(
            "the destination changed while it was being mounted (resolved to {}, now {now}): \
             something modified the rootfs meanwhile; refusing to go on",
            was.host.display()
        ))
    };
    let now = match open_in_rootfs(root, dest, Create::Nothing) {
        Ok(now) if now.host == was.host => now,
        Ok(now) => return Err(refuse(now.host.display().to_string())),
        Err(e) => return Err(refuse(format!("unresolvable: {e}"))),
    };
    // The same path, and it must now be the root of another mount than before (the new one):
    // a lookup that did not step onto the new mount would remount what lies beneath it.
    if !sys.mounts_for_real() {
        return Ok(now);
    }
    if let (Some(before), Some(after)) = (mount_of(&was.fd), mount_of(&now.fd)) {
        if before.0 == after.0 || !after.1 {
            return Err(Error::invalid(format!(
                "{}: the new mount cannot be reached through its destination to finish it \
                 (mount id {} before, {} after); refusing to leave it half set up",
                was.host.display(),
                before.0,
                after.0
            )));
        }
    }
    Ok(now)
}

/// The mount id of `fd` and whether it is the root of that mount (`statx`; `None` where the
/// kernel does not say, before Linux 5.8).
fn mount_of(fd: &OwnedFd) -> Option<(u64, bool)> {
    // SAFETY: a zeroed statx is a valid out buffer.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, empty NUL-terminated path, valid buffer.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut st,
        )
    };
    if rc != 0 || st.stx_mask & libc::STATX_MNT_ID == 0 {
        return None;
    }
    let root_known = st.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0;
    let is_root = st.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0;
    Some((st.stx_mnt_id, is_root || !root_known))
}

/// Refuses a mount destination that resolves to the container's root directory itself (`/`,
/// or a symlink to it in the image): a mount there would become the container's `/`.
fn not_the_root(root: &RootDir, dest: &Path, dst: &Resolved) -> Result<()> {
    if dst.host == root.host {
        return Err(Error::invalid(format!(
            "destination {} is the container's root directory{}: a mount there would replace \
             the whole root filesystem; mount it elsewhere (or use root.path for the root)",
            dest.display(),
            if dest.components().count() > 1 {
                " (through a symlink in the image)"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

/// The environment variable of a test hook (tests/escapes.rs): `<dir>:<destination>` makes the
/// setup stop after resolving that mount destination, create `<dir>/paused` and wait (10 s at
/// most) for `<dir>/go`, so that a test can swap a path for a symlink in that window.
pub const PAUSE_ENV: &str = "POUCH_TEST_PAUSE_MOUNT";

fn pause_for_test(dest: &Path) {
    let Ok(v) = std::env::var(PAUSE_ENV) else {
        return;
    };
    let Some((dir, at)) = v.split_once(':') else {
        return;
    };
    if Path::new(at) != dest {
        return;
    }
    let dir = Path::new(dir);
    let _ = fs::write(dir.join("paused"), b"");
    let t = std::time::Instant::now();
    while !dir.join("go").exists() && t.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// The container's rootfs, opened once (after it was bound onto itself, so that every later
/// mount on it is seen) for resolving paths in it.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    host: PathBuf,
}

impl RootDir {
    /// Opens the rootfs directory.
    pub fn open(root: &Path) -> Result<RootDir> {
        let fd = open(
            root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open rootfs {}", root.display()))?;
        let host = fd_path(&fd)?;
        Ok(RootDir { fd, host })
    }
}

/// Resolves `path` (as seen inside the container) in `root`, following symlinks with `root` as
/// `/`, creates what is missing as asked, and returns the host path of the result (for reading;
/// to mount on it or create in it, use [`open_in_rootfs`]).
pub fn resolve_in_root(root: &RootDir, path: &Path, create: Create) -> Result<PathBuf> {
    open_in_rootfs(root, path, create).map(|r| r.host)
}

/// [`resolve_in_root`], keeping the result open.
pub fn open_in_rootfs(root: &RootDir, path: &Path, create: Create) -> Result<Resolved> {
    let rootfd = &root.fd;
    let done = |fd: OwnedFd| -> Result<Resolved> {
        let host = fd_path(&fd)?;
        Ok(Resolved { fd, host })
    };
    let rel: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .collect();
    match open_in_root(rootfd, &rel) {
        Ok(fd) => return done(fd),
        Err(Errno::ENOENT) if create != Create::Nothing => {}
        Err(e) => {
            return Err(Error::sys(
                format!("resolve {} in the rootfs", path.display()),
                e,
            ))
        }
    }
    let comps: Vec<_> = rel.components().collect();
    let mut prefix = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        let parent = open_in_root(rootfd, &prefix)
            .ctx(|| format!("resolve {} in the rootfs", prefix.display()))?;
        prefix.push(c);
        match open_in_root(rootfd, &prefix) {
            Ok(_) => continue,
            Err(Errno::ENOENT) => {}
            Err(e) => {
                return Err(Error::sys(
                    format!("resolve {} in the rootfs", prefix.display()),
                    e,
                ))
            }
        }
        let name = c.as_os_str();
        let last = i + 1 == comps.len();
        // Created relative to the resolved parent's descriptor, never following a symlink:
        // a dangling symlink in the image stays an error instead of pointing at the host.
        let made = if last && create == Create::File {
            nix::fcntl::openat(
                parent.as_fd(),
                name,
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map(drop)
        } else {
            nix::sys::stat::mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o755))
        };
        match made {
            Ok(()) => {}
            // Something is there that the resolution above could not follow (a dangling
            // symlink): resolve it once more, which fails with a clear error.
            Err(Errno::EEXIST) => {}
            Err(e) => {
                return Err(Error::sys(
                    format!("create mount point {}", path.display()),
                    e,
                ))
            }
        }
    }
    let fd =
        open_in_root(rootfd, &rel).ctx(|| format!("resolve {} in the rootfs", path.display()))?;
    done(fd)
}

/// The flags of an existing mount that an unprivileged remount must keep (they are locked
/// when the mount came from a more privileged mount namespace).
fn locked_flags(path: &Path) -> MsFlags {
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut m = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            m |= ms;
        }
    }
    m
}

/// Remounts a bind mount with `flags`; if the kernel refuses because flags of the source are
/// locked (user namespaces), retries keeping them.
fn remount_bind(sys: &dyn Syscall, target: &Path, flags: MsFlags) -> Result<()> {
    let base = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    match sys.mount(None, target, None, base | flags, None) {
        Err(Error::Sys {
            errno: Errno::EPERM,
            ..
        }) => sys.mount(
            None,
            target,
            None,
            base | flags | locked_flags(target),
            None,
        ),
        r => r,
    }
}

fn mount_setattr_rdonly_recursive(target: &Path) -> Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    let c = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()).unwrap_or_default();
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: valid path string and attr struct of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(rc).map(drop).ctx(|| {
        format!(
            "make {} recursively read-only (rro)",
            crate::syscall::shown(target).display()
        )
    })
}

/// Mounts `mounts[index]` under the rootfs.
pub fn mount_one(
    sys: &dyn Syscall,
    m: &Mount,
    index: usize,
    o: &RootfsOptions,
    root: &RootDir,
) -> Result<()> {
    let field = format!("mounts[{index}] ({})", m.destination().display());
    if !m.destination().is_absolute() {
        return Err(Error::invalid(format!(
            "{field}: destination must be an absolute path"
        )));
    }
    let opts = parse_mount_options(m.options().as_deref().unwrap_or(&[]))
        .map_err(|e| Error::invalid(format!("{field}: {e}")))?;
    let typ = m.typ().as_deref().unwrap_or("");
    let is_bind = opts.flags.contains(MsFlags::MS_BIND) || typ == "bind";
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(sys, m, &opts, o, root).map_err(|e| prefix_err(&field, e));
    }
    let result = (|| {
        if is_bind {
            let src = m
                .source()
                .as_ref()
                .ok_or_else(|| Error::invalid("a bind mount needs a source"))?;
            let src = if src.is_absolute() {
                src.clone()
            } else {
                o.bundle.join(src)
            };
            // Opened once: what is checked (directory or file) is what gets bound.
            let src_fd = open(&src, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                .ctx(|| format!("bind source {}", src.display()))?;
            let meta =
                nix::sys::stat::fstat(&src_fd).ctx(|| format!("bind source {}", src.display()))?;
            let create =
                if SFlag::from_bits_truncate(meta.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
                    Create::Dir
                } else {
                    Create::File
                };
            let dst = open_in_rootfs(root, m.destination(), create)?;
            not_the_root(root, m.destination(), &dst)?;
            pause_for_test(m.destination());
            let rec = opts.flags & MsFlags::MS_REC;
            let src_proc = PathBuf::from(format!("/proc/self/fd/{}", src_fd.as_raw_fd()));
            sys.mount(
                Some(&src_proc),
                &dst.proc_path(),
                None,
                MsFlags::MS_BIND | rec,
                None,
            )?;
            let top = reopen_mounted(sys, root, m.destination(), &dst)?;
            let extra = opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
            if !extra.is_empty() {
                remount_bind(sys, &top.proc_path(), extra)?;
            }
            finish_mount(sys, &top.proc_path(), &opts)
        } else {
            let dst = open_in_rootfs(root, m.destination(), Create::Dir)?;
            not_the_root(root, m.destination(), &dst)?;
            pause_for_test(m.destination());
            let source = m
                .source()
                .clone()
                .unwrap_or_else(|| PathBuf::from(if typ.is_empty() { "none" } else { typ }));
            let data = opts.data.join(",");
            let data = (!data.is_empty()).then_some(data.as_str());
            let fstype = (!typ.is_empty()).then_some(typ);
            match sys.mount(Some(&source), &dst.proc_path(), fstype, opts.flags, data) {
                // sysfs cannot be mounted in a user namespace without its own network
                // namespace; bind the host's, read-only, as other runtimes do.
                Err(Error::Sys {
                    errno: Errno::EPERM,
                    ..
                }) if typ == "sysfs" && o.user_ns => {
                    sys.mount(
                        Some(Path::new("/sys")),
                        &dst.proc_path(),
                        None,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        None,
                    )?;
                    let top = reopen_mounted(sys, root, m.destination(), &dst)?;
                    remount_bind(sys, &top.proc_path(), opts.flags | MsFlags::MS_RDONLY)?;
                }
                r => r?,
            }
            let top = reopen_mounted(sys, root, m.destination(), &dst)?;
            finish_mount(sys, &top.proc_path(), &opts)
        }
    })();
    result.map_err(|e| prefix_err(&field, e))
}

fn prefix_err(field: &str, e: Error) -> Error {
    match e {
        Error::Invalid(s) => Error::Invalid(format!("{field}: {s}")),
        Error::Sys { context, errno } => Error::Sys {
            context: format!("{field}: {context}"),
            errno,
        },
        Error::Io { context, source } => Error::Io {
            context: format!("{field}: {context}"),
            source,
        },
    }
}

fn finish_mount(sys: &dyn Syscall, dst: &Path, opts: &MountOptions) -> Result<()> {
    for p in &opts.propagation {
        sys.mount(None, dst, None, *p, None)?;
    }
    if opts.recursive_ro {
        mount_setattr_rdonly_recursive(dst)?;
    }
    Ok(())
}

fn mount_cgroup(
    sys: &dyn Syscall,
    m: &Mount,
    opts: &MountOptions,
    o: &RootfsOptions,
    root: &RootDir,
) -> Result<()> {
    let dst = open_in_rootfs(root, m.destination(), Create::Dir)?;
    not_the_root(root, m.destination(), &dst)?;
    let ro = opts.flags.contains(MsFlags::MS_RDONLY);
    let base = opts.flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    let pure_v2 = o.cgroup_mounts.len() == 1 && o.cgroup_mounts[0].name.is_empty();
    // The tmpfs holding one directory per hierarchy is ours alone: paths below it are safe.
    let tmpfs = if pure_v2 {
        None
    } else {
        sys.mount(
            Some(Path::new("tmpfs")),
            &dst.proc_path(),
            Some("tmpfs"),
            base,
            Some("mode=755"),
        )?;
        Some(reopen_mounted(sys, root, m.destination(), &dst)?)
    };
    let top_dir = tmpfs.as_ref().unwrap_or(&dst).proc_path();
    for h in o.cgroup_mounts {
        let sub = if h.name.is_empty() {
            top_dir.clone()
        } else {
            let p = top_dir.join(&h.name);
            fs::create_dir_all(&p)
                .ctx(|| format!("create {}", crate::syscall::shown(&p).display()))?;
            p
        };
        if o.cgroup_ns {
            let data = (!h.data.is_empty()).then_some(h.data.as_str());
            sys.mount(Some(Path::new("cgroup")), &sub, Some(h.fstype), base, data)?;
        } else {
            sys.mount(
                Some(&h.host_dir),
                &sub,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
        }
        // The mount just made: below the tmpfs by name, else the destination resolved anew.
        let fresh = if h.name.is_empty() {
            Some(reopen_mounted(sys, root, m.destination(), &dst)?)
        } else {
            None
        };
        let sub = fresh.as_ref().map(|r| r.proc_path()).unwrap_or(sub);
        if !o.cgroup_ns {
            remount_bind(sys, &sub, base)?;
        }
        if ro {
            remount_bind(sys, &sub, base | MsFlags::MS_RDONLY)?;
        }
    }
    // Controllers that share a hierarchy (cpu,cpuacct) get the other names as symlinks.
    for h in o.cgroup_mounts {
        for part in h.data.split(',') {
            if part.is_empty() || part.contains('=') || part == h.name {
                continue;
            }
            let link = top_dir.join(part);
            if !link.exists() {
                sys.symlink(Path::new(&h.name), &link)?;
            }
        }
    }
    if ro && !pure_v2 {
        sys.mount(
            None,
            &top_dir,
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base,
            Some("mode=755"),
        )?;
    }
    Ok(())
}

/// The devices every container gets (runtime-spec "Default Devices").
pub fn default_devices() -> Vec<LinuxDevice> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(p, maj, min)| {
        let mut d = LinuxDevice::default();
        d.set_path(p.into());
        d.set_typ(LinuxDeviceType::C);
        d.set_major(maj);
        d.set_minor(min);
        d.set_file_mode(Some(0o666));
        d.set_uid(Some(0));
        d.set_gid(Some(0));
        d
    })
    .collect()
}

/// Creates one device node in the rootfs (or, in a user namespace, binds the host's node).
pub fn create_device(
    sys: &dyn Syscall,
    d: &LinuxDevice,
    o: &RootfsOptions,
    root: &RootDir,
) -> Result<()> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::invalid(format!(
                "linux.devices ({}): type \"a\" is only valid in linux.resources.devices; use c, b, u or p",
                d.path().display()
            )))
        }
    };
    let parent = d.path().parent().unwrap_or(Path::new("/"));
    let dir = open_in_rootfs(root, parent, Create::Dir)?;
    let name = d
        .path()
        .file_name()
        .ok_or_else(|| Error::invalid(format!("linux.devices: bad path {}", d.path().display())))?;
    // By name in the directory held open: the node is made where the directory was resolved.
    let host = dir.proc_path().join(name);
    if o.user_ns {
        let target = open_in_rootfs(root, d.path(), Create::File)?;
        return sys.mount(
            Some(d.path()),
            &target.proc_path(),
            None,
            MsFlags::MS_BIND,
            None,
        );
    }
    if fs::symlink_metadata(&host).is_ok() {
        fs::remove_file(&host)
            .ctx(|| format!("replace {}", crate::syscall::shown(&host).display()))?;
    }
    let dev = nix::sys::stat::makedev(d.major() as u64, d.minor() as u64);
    let mode = Mode::from_bits_truncate(d.file_mode().unwrap_or(0o666));
    sys.mknod(&host, kind, mode, dev)?;
    if d.uid().is_some() || d.gid().is_some() {
        sys.chown(&host, d.uid(), d.gid())?;
    }
    Ok(())
}

/// The device cgroup rules a container gets: the spec's `linux.resources.devices`, then what
/// the runtime itself creates must stay usable (mknod of any node, the default devices, the
/// pty devices and every `linux.devices` entry), as other runtimes do. Without rules in the
/// spec, the list starts with "deny all": a container never inherits "allow all".
pub fn device_cgroup_rules(spec: &Spec) -> Vec<LinuxDeviceCgroup> {
    let linux = spec.linux().clone().unwrap_or_default();
    let mut rules = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| {
            let mut deny = LinuxDeviceCgroup::default();
            deny.set_allow(false);
            deny.set_access(Some("rwm".to_string()));
            vec![deny]
        });
    let rule = |t: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(t));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    rules.push(rule(LinuxDeviceType::C, None, None, "m"));
    rules.push(rule(LinuxDeviceType::B, None, None, "m"));
    for d in default_devices() {
        rules.push(rule(
            LinuxDeviceType::C,
            Some(d.major()),
            Some(d.minor()),
            "rwm",
        ));
    }
    rules.push(rule(LinuxDeviceType::C, Some(5), Some(2), "rwm")); // /dev/pts/ptmx
    rules.push(rule(LinuxDeviceType::C, Some(136), None, "rwm")); // /dev/pts/*
    rules.push(rule(LinuxDeviceType::C, Some(5), Some(1), "rwm")); // /dev/console
    for d in linux.devices().iter().flatten() {
        let t = match d.typ() {
            LinuxDeviceType::U => LinuxDeviceType::C,
            t => t,
        };
        rules.push(rule(t, Some(d.major()), Some(d.minor()), "rwm"));
    }
    rules
}

/// Whether the spec mounts a fresh tmpfs on `/dev` (then the runtime populates it; a bind
/// mount of some directory on `/dev` is left as it is).
pub fn spec_mounts_dev(spec: &Spec) -> bool {
    spec.mounts().iter().flatten().any(|m| {
        m.destination() == Path::new("/dev")
            && m.typ().as_deref() == Some("tmpfs")
            && !m
                .options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind")
    })
}

/// Sets propagation of `/`, binds the rootfs onto itself and mounts everything in the spec,
/// then the devices. Runs in the container's new mount namespace, before `pivot_root`.
pub fn prepare(sys: &dyn Syscall, spec: &Spec, o: &RootfsOptions) -> Result<()> {
    let linux = spec.linux().as_ref();
    let prop = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        None | Some("") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some(p) => propagation_flags(p).ok_or_else(|| {
            Error::invalid(format!(
                "linux.rootfsPropagation: unknown value {p:?}; use private, rprivate, shared, rshared, slave, rslave, unbindable or runbindable"
            ))
        })?,
    };
    sys.mount(None, Path::new("/"), None, prop, None)?;
    if prop.contains(MsFlags::MS_SHARED) {
        // Before the rootfs is bound: nothing mounted on it may propagate to the caller's
        // namespace, and pivot_root refuses a new root whose parent mount is shared.
        if let Some(parent) = o.rootfs.parent() {
            let mp = mount_point_of(parent)?;
            sys.mount(None, &mp, None, MsFlags::MS_PRIVATE, None)?;
        }
    }
    sys.mount(
        Some(o.rootfs),
        o.rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    // Opened after the bind above: resolving through it sees every mount made on the rootfs.
    let root = RootDir::open(o.rootfs)?;
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        mount_one(sys, m, i, o, &root)?;
    }
    let old_umask = nix::sys::stat::umask(Mode::empty());
    let devices = (|| {
        if spec_mounts_dev(spec) {
            for d in default_devices() {
                create_device(sys, &d, o, &root)?;
            }
            for (link, target) in [
                ("/dev/fd", "/proc/self/fd"),
                ("/dev/stdin", "/proc/self/fd/0"),
                ("/dev/stdout", "/proc/self/fd/1"),
                ("/dev/stderr", "/proc/self/fd/2"),
                ("/dev/ptmx", "pts/ptmx"),
            ] {
                let dir = open_in_rootfs(&root, Path::new("/dev"), Create::Dir)?;
                let l = dir
                    .proc_path()
                    .join(Path::new(link).file_name().unwrap_or_default());
                if fs::symlink_metadata(&l).is_err() {
                    sys.symlink(Path::new(target), &l)?;
                }
            }
        }
        for d in linux
            .and_then(|l| l.devices().as_ref())
            .into_iter()
            .flatten()
        {
            create_device(sys, d, o, &root)?;
        }
        Ok(())
    })();
    nix::sys::stat::umask(old_umask);
    devices
}

/// The mount point that contains `path` (longest matching entry of /proc/self/mountinfo).
fn mount_point_of(path: &Path) -> Result<PathBuf> {
    let info =
        fs::read_to_string("/proc/self/mountinfo").ctx(|| "read /proc/self/mountinfo".into())?;
    let mut best = PathBuf::from("/");
    for line in info.lines() {
        if let Some(mp) = line.split(' ').nth(4) {
            let mp = PathBuf::from(mp);
            if path.starts_with(&mp) && mp.as_os_str().len() > best.as_os_str().len() {
                best = mp;
            }
        }
    }
    Ok(best)
}

/// Makes the rootfs the container's `/`: `pivot_root` and detach the old root, or with
/// `no_pivot` move the rootfs onto `/` and `chroot` (for ramdisk-rooted hosts).
pub fn enter_root(sys: &dyn Syscall, rootfs: &Path, no_pivot: bool) -> Result<()> {
    if no_pivot {
        nix::unistd::chdir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
        sys.mount(Some(rootfs), Path::new("/"), None, MsFlags::MS_MOVE, None)?;
        nix::unistd::chroot(".").ctx(|| "chroot .".into())?;
        return nix::unistd::chdir("/").ctx(|| "chdir /".into());
    }
    let old = open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "open /".into())?;
    let new = open(
        rootfs,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("open rootfs {}", rootfs.display()))?;
    nix::unistd::fchdir(new.as_fd()).ctx(|| "fchdir rootfs".into())?;
    sys.pivot_root(Path::new("."), Path::new("."))?;
    nix::unistd::fchdir(old.as_fd()).ctx(|| "fchdir old root".into())?;
    // Make sure the unmount below cannot propagate to the host.
    sys.mount(
        None,
        Path::new("."),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
    )?;
    sys.umount(Path::new("."), MntFlags::MNT_DETACH)?;
    nix::unistd::chdir("/").ctx(|| "chdir /".into())
}

/// After `pivot_root`: masked paths, read-only paths, read-only root.
pub fn finalize(sys: &dyn Syscall, spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        let path = Path::new(p);
        if fs::symlink_metadata(path).is_err() {
            continue;
        }
        sys.mount(
            Some(path),
            path,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .map_err(|e| prefix_err(&format!("linux.readonlyPaths ({p})"), e))?;
        remount_bind(
            sys,
            path,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        )
        .map_err(|e| prefix_err(&format!("linux.readonlyPaths ({p})"), e))?;
    }
    for p in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        let path = Path::new(p);
        let r = match fs::metadata(path) {
            Err(_) => continue,
            Ok(m) if m.is_dir() => sys.mount(
                Some(Path::new("tmpfs")),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None,
            ),
            Ok(_) => sys.mount(
                Some(Path::new("/dev/null")),
                path,
                None,
                MsFlags::MS_BIND,
                None,
            ),
        };
        r.map_err(|e| prefix_err(&format!("linux.maskedPaths ({p})"), e))?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        remount_bind(sys, Path::new("/"), MsFlags::MS_RDONLY)
            .map_err(|e| prefix_err("root.readonly", e))?;
    }
    Ok(())
}

/// Sets hostname and domainname (the caller checked there is a private UTS namespace).
pub fn set_names(sys: &dyn Syscall, spec: &Spec) -> Result<()> {
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        sys.sethostname(h)?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        sys.setdomainname(d)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, RecordingSyscall};

    fn opts(v: &[&str]) -> MountOptions {
        parse_mount_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn options_parse_like_mount8() {
        let o = opts(&[
            "nosuid",
            "noexec",
            "nodev",
            "mode=755",
            "size=65536k",
            "rslave",
            "ro",
        ]);
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV | MsFlags::MS_RDONLY
        );
        assert_eq!(o.data, vec!["mode=755", "size=65536k"]);
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert_eq!(opts(&["ro", "rw"]).flags, MsFlags::empty());
        assert_eq!(opts(&["rbind"]).flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert!(parse_mount_options(&["idmap".into()]).is_err());
    }

    #[test]
    fn symlinks_cannot_lead_a_mount_out_of_the_rootfs() {
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/", root.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.path().join("up")).unwrap();
        std::os::unix::fs::symlink("/missing-dir", root.path().join("dangling")).unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        let canon = root.path().canonicalize().unwrap();
        let rd = RootDir::open(root.path()).unwrap();
        let p = resolve_in_root(&rd, Path::new("/escape/proc"), Create::Dir).unwrap();
        assert_eq!(p, canon.join("proc"));
        let p = resolve_in_root(&rd, Path::new("/up/x"), Create::Dir).unwrap();
        assert_eq!(p, canon.join("etc/x"));
        let p = resolve_in_root(&rd, Path::new("/a/b/file"), Create::File).unwrap();
        assert!(p.is_file() && p.starts_with(&canon));
        assert!(resolve_in_root(&rd, Path::new("/missing"), Create::Nothing).is_err());
        // Through a dangling symlink: an error, never a directory outside.
        assert!(resolve_in_root(&rd, Path::new("/dangling/x"), Create::Dir).is_err());
        assert!(!Path::new("/missing-dir").exists());
    }

    #[test]
    fn prepare_mounts_in_spec_order_with_flags() {
        let root = tempfile::tempdir().unwrap();
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
               "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
                         {"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]},
                         {"destination":"/data","type":"bind","source":"/tmp","options":["rbind","ro"]}],
               "linux":{"rootfsPropagation":"rprivate"}}"#,
        )
        .unwrap();
        let sys = RecordingSyscall::default();
        let o = RootfsOptions {
            rootfs: root.path(),
            bundle: Path::new("/"),
            cgroup_ns: true,
            user_ns: false,
            cgroup_mounts: &[],
        };
        prepare(&sys, &spec, &o).unwrap();
        let calls = sys.calls.borrow();
        let canon = root.path().canonicalize().unwrap();
        assert_eq!(
            calls[0],
            Call::Mount(
                None,
                "/".into(),
                None,
                MsFlags::MS_PRIVATE | MsFlags::MS_REC,
                None
            )
        );
        assert!(
            matches!(&calls[2], Call::Mount(_, t, Some(ty), _, _) if t == &canon.join("proc") && ty == "proc")
        );
        assert!(matches!(&calls[3], Call::Mount(_, t, Some(ty), f, Some(d))
            if t == &canon.join("dev") && ty == "tmpfs" && f.contains(MsFlags::MS_STRICTATIME) && d == "mode=755,size=65536k"));
        assert!(matches!(&calls[4], Call::Mount(Some(s), t, None, f, None)
            if s == Path::new("/tmp") && t == &canon.join("data") && *f == MsFlags::MS_BIND | MsFlags::MS_REC));
        assert!(matches!(&calls[5], Call::Mount(None, _, None, f, None)
            if f.contains(MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT | MsFlags::MS_BIND)));
        // /dev is a fresh tmpfs: the default devices and links follow.
        let nodes: Vec<_> = calls
            .iter()
            .filter_map(|c| match c {
                Call::Mknod(p, _, _, _) => {
                    Some(p.file_name().unwrap().to_string_lossy().into_owned())
                }
                _ => None,
            })
            .collect();
        assert_eq!(nodes, ["null", "zero", "full", "random", "urandom", "tty"]);
        assert!(calls.iter().any(|c| matches!(c, Call::Symlink(t, l) if t == Path::new("pts/ptmx") && l.ends_with("dev/ptmx"))));
    }
}
