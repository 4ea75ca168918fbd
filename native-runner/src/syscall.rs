//! The system calls that set up a container's filesystem, behind a small trait.
//!
//! The rootfs logic in [`crate::rootfs`] calls the kernel only through [`Syscall`], so that its
//! decisions (which mounts, in which order, with which flags) can be checked by unit tests with
//! [`RecordingSyscall`], without root and without touching the host.

use std::cell::RefCell;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

use crate::error::{Result, SysContext};

/// The kernel operations used to build a container's root filesystem.
pub trait Syscall {
    /// mount(2).
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()>;
    /// umount2(2).
    fn umount(&self, target: &Path, flags: MntFlags) -> Result<()>;
    /// pivot_root(2).
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<()>;
    /// mknod(2).
    fn mknod(&self, path: &Path, kind: SFlag, mode: Mode, dev: u64) -> Result<()>;
    /// symlink(2).
    fn symlink(&self, target: &Path, link: &Path) -> Result<()>;
    /// chown(2); `None` leaves that id unchanged.
    fn chown(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> Result<()>;
    /// sethostname(2).
    fn sethostname(&self, name: &str) -> Result<()>;
    /// setdomainname(2).
    fn setdomainname(&self, name: &str) -> Result<()>;
    /// Whether mounts really happen (so that their result can be checked); `false` for a
    /// recorder.
    fn mounts_for_real(&self) -> bool {
        true
    }
}

/// The real kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSyscall;

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

/// A path as a person should read it: `/proc/self/fd/N[/rest]` (a place held open, see
/// `rootfs::Resolved`) becomes the path that descriptor has now.
pub fn shown(p: &Path) -> PathBuf {
    let Ok(rest) = p.strip_prefix("/proc/self/fd") else {
        return p.to_path_buf();
    };
    let mut c = rest.components();
    let Some(fd) = c.next() else {
        return p.to_path_buf();
    };
    match std::fs::read_link(Path::new("/proc/self/fd").join(fd)) {
        Ok(target) if target.is_absolute() => target.join(c.as_path()),
        _ => p.to_path_buf(),
    }
}

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()> {
        nix::mount::mount(source, target, fstype, flags, data).ctx(|| {
            format!(
                "mount {} on {} (type {}, flags {:?}, data {:?})",
                source
                    .map(|s| shown(s).display().to_string())
                    .unwrap_or_default(),
                shown(target).display(),
                fstype.unwrap_or(""),
                flags,
                data.unwrap_or("")
            )
        })
    }

    fn umount(&self, target: &Path, flags: MntFlags) -> Result<()> {
        nix::mount::umount2(target, flags).ctx(|| format!("umount {}", target.display()))
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
            .ctx(|| format!("pivot_root {} {}", new_root.display(), put_old.display()))
    }

    fn mknod(&self, path: &Path, kind: SFlag, mode: Mode, dev: u64) -> Result<()> {
        nix::sys::stat::mknod(path, kind, mode, dev)
            .ctx(|| format!("mknod {}", shown(path).display()))
    }

    fn symlink(&self, target: &Path, link: &Path) -> Result<()> {
        let (t, l) = (cstr(target), cstr(link));
        // SAFETY: both are valid NUL-terminated strings.
        let rc = unsafe { libc::symlink(t.as_ptr(), l.as_ptr()) };
        nix::errno::Errno::result(rc)
            .map(drop)
            .ctx(|| format!("symlink {} -> {}", shown(link).display(), target.display()))
    }

    fn chown(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> Result<()> {
        // Never through a symlink: what is changed is the node the runtime made.
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            path,
            uid.map(nix::unistd::Uid::from_raw),
            gid.map(nix::unistd::Gid::from_raw),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .ctx(|| format!("chown {}", shown(path).display()))
    }

    fn sethostname(&self, name: &str) -> Result<()> {
        nix::unistd::sethostname(name).ctx(|| format!("sethostname {name:?}"))
    }

    fn setdomainname(&self, name: &str) -> Result<()> {
        // SAFETY: pointer and length describe `name`.
        let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
        nix::errno::Errno::result(rc)
            .map(drop)
            .ctx(|| format!("setdomainname {name:?}"))
    }
}

/// One call recorded by [`RecordingSyscall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// A mount: source, target, type, flags, data.
    Mount(
        Option<PathBuf>,
        PathBuf,
        Option<String>,
        MsFlags,
        Option<String>,
    ),
    /// An unmount.
    Umount(PathBuf),
    /// pivot_root(new, old).
    PivotRoot(PathBuf, PathBuf),
    /// mknod(path, kind, mode, dev).
    Mknod(PathBuf, SFlag, u32, u64),
    /// symlink(target, link).
    Symlink(PathBuf, PathBuf),
    /// chown(path, uid, gid).
    Chown(PathBuf, Option<u32>, Option<u32>),
    /// sethostname.
    Hostname(String),
    /// setdomainname.
    Domainname(String),
}

/// Records every call instead of making it; for unit tests of the setup logic.
#[derive(Debug, Default)]
pub struct RecordingSyscall {
    /// The calls, in order.
    pub calls: RefCell<Vec<Call>>,
}

impl Syscall for RecordingSyscall {
    fn mounts_for_real(&self) -> bool {
        false
    }
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()> {
        self.calls.borrow_mut().push(Call::Mount(
            source.map(shown),
            shown(target),
            fstype.map(str::to_string),
            flags,
            data.map(str::to_string),
        ));
        Ok(())
    }
    fn umount(&self, target: &Path, _flags: MntFlags) -> Result<()> {
        self.calls
            .borrow_mut()
            .push(Call::Umount(target.to_path_buf()));
        Ok(())
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<()> {
        self.calls.borrow_mut().push(Call::PivotRoot(
            new_root.to_path_buf(),
            put_old.to_path_buf(),
        ));
        Ok(())
    }
    fn mknod(&self, path: &Path, kind: SFlag, mode: Mode, dev: u64) -> Result<()> {
        self.calls
            .borrow_mut()
            .push(Call::Mknod(shown(path), kind, mode.bits(), dev));
        Ok(())
    }
    fn symlink(&self, target: &Path, link: &Path) -> Result<()> {
        self.calls
            .borrow_mut()
            .push(Call::Symlink(target.to_path_buf(), shown(link)));
        Ok(())
    }
    fn chown(&self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> Result<()> {
        self.calls
            .borrow_mut()
            .push(Call::Chown(shown(path), uid, gid));
        Ok(())
    }
    fn sethostname(&self, name: &str) -> Result<()> {
        self.calls
            .borrow_mut()
            .push(Call::Hostname(name.to_string()));
        Ok(())
    }
    fn setdomainname(&self, name: &str) -> Result<()> {
        self.calls
            .borrow_mut()
            .push(Call::Domainname(name.to_string()));
        Ok(())
    }
}
