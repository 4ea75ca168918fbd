//! Container state on disk: `<root>/<id>/state.json`, written atomically, guarded by a lock.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use native_runner::cgroups::{Cgroup, Layout};

use super::process_handle::{boot_id, stat_of, ProcessHandle};
use super::{Error, Runtime};
use crate::spec::OCI_VERSION;

/// The status of a container (runtime-spec `status`, plus `paused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` is still setting it up.
    Creating,
    /// Set up and waiting for `start`.
    Created,
    /// The user program runs.
    Running,
    /// Frozen.
    Paused,
    /// The init process has exited (or never finished setting up).
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What the runtime records about a container in `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    /// The id.
    pub id: String,
    /// The bundle directory, absolute.
    pub bundle: PathBuf,
    /// The rootfs, absolute.
    pub rootfs: PathBuf,
    /// The init's pid (0 while creating).
    pub pid: i32,
    /// The init's start time in clock ticks since boot (guards against recycled pids).
    pub pid_start_time: u64,
    /// The boot the container was created in.
    pub boot_id: String,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// The absolute cgroup path.
    pub cgroup_path: String,
    /// The spec's annotations.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The file that tells whether the cgroup is frozen (recorded so that `state` need not
    /// look the cgroup layout up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_file: Option<PathBuf>,
    /// The executor dispatch chose: `native` or `wasm` (empty in state written before it was
    /// recorded: native).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub executor: String,
    /// The spec's hooks (`poststart` and `poststop` run after `create` returned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<oci_spec::runtime::Hooks>,
}

impl ContainerRecord {
    /// The container's cgroup on this host.
    pub fn cgroup(&self) -> Result<Cgroup, Error> {
        Ok(Cgroup::new(&Layout::detect()?, &self.cgroup_path)?)
    }
}

/// The runtime-spec state of a container, in runc's field order (`state`, `list --format json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    /// The runtime-spec version.
    pub oci_version: String,
    /// The id.
    pub id: String,
    /// The init's pid; 0 when stopped.
    pub pid: i32,
    /// `creating`, `created`, `running`, `paused` or `stopped`.
    pub status: Status,
    /// The bundle.
    pub bundle: PathBuf,
    /// The rootfs.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339.
    pub created: String,
    /// The spec's annotations.
    #[serde(skip_serializing_if = "HashMap::is_empty", default)]
    pub annotations: HashMap<String, String>,
    /// The owner (empty: the runtime's user).
    pub owner: String,
}

/// The exclusive lock on one container (POSIX record lock on `<dir>/lock`; such locks are not
/// inherited by forked children, so the container's processes never hold it).
///
/// POSIX locks belong to the process, not to the descriptor: closing *any* descriptor of the
/// lock file releases every lock the process holds on it. So while this process holds a
/// container's lock, nothing else in it may open and close that file (see
/// [`ContainerDir::is_busy`]), and taking the same lock again must not open a second
/// descriptor. Every lock held is therefore recorded in a process-wide registry (`HELD`),
/// keyed by the lock file's device and inode: a nested `take` only counts, and the descriptors
/// are closed when the last `ContainerLock` of the file is dropped. flock(2) and OFD locks
/// would not have this problem but are shared with forked children through the inherited
/// descriptor, which `create` relies on not happening (the init forks while the lock is held).
///
/// The lock excludes other processes only: threads of one process share it (POSIX locks are
/// per process), so a multi-threaded caller must serialize operations on one container itself.
#[derive(Debug)]
pub struct ContainerLock {
    key: LockKey,
}

/// A lock file's device and inode (stable while a descriptor of it is open).
type LockKey = (u64, u64);

/// A lock this process holds: its descriptors (more than one only when two threads took it at
/// once, which POSIX locks allow within one process) and how many `ContainerLock`s share it.
struct Held {
    files: Vec<File>,
    count: usize,
}

/// The container locks this process holds.
static HELD: std::sync::Mutex<BTreeMap<LockKey, Held>> = std::sync::Mutex::new(BTreeMap::new());

fn held() -> std::sync::MutexGuard<'static, BTreeMap<LockKey, Held>> {
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// The registry key of `<dir>/lock`, by `stat` (which opens no descriptor); `None` if missing.
fn lock_key(dir: &Path) -> Option<LockKey> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir.join("lock"))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl ContainerLock {
    /// Takes the exclusive lock of the container in `dir`, waiting for other processes.
    fn take(dir: &Path) -> std::io::Result<ContainerLock> {
        // Already ours: count it, open nothing.
        if let Some(key) = lock_key(dir) {
            if let Some(h) = held().get_mut(&key) {
                h.count += 1;
                return Ok(ContainerLock { key });
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(dir.join("lock"))?;
        fcntl_lock(&file, libc::F_SETLKW, libc::F_WRLCK)?;
        let key = {
            use std::os::unix::fs::MetadataExt;
            let m = file.metadata()?;
            (m.dev(), m.ino())
        };
        // While we waited, the container may have been deleted and another created under the
        // same id: our lock is then on the old, unlinked file, and guards nothing.
        if lock_key(dir) != Some(key) {
            return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        }
        let mut reg = held();
        let h = reg.entry(key).or_insert_with(|| Held {
            files: Vec::new(),
            count: 0,
        });
        // Kept open even if another thread registered the same lock meanwhile: closing this
        // descriptor would release the lock for both.
        h.files.push(file);
        h.count += 1;
        Ok(ContainerLock { key })
    }

    /// Whether this process holds the lock of the container in `dir`.
    fn held_here(dir: &Path) -> bool {
        lock_key(dir).is_some_and(|key| held().contains_key(&key))
    }

    /// Whether another process holds the lock of the container in `dir` (`F_GETLK`, which
    /// takes nothing). Opens and closes the lock file: only for a lock this process does not
    /// hold.
    fn held_elsewhere(dir: &Path) -> bool {
        let Ok(file) = File::open(dir.join("lock")) else {
            return false;
        };
        // SAFETY: a zeroed flock is a valid starting value.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_RDLCK as i16;
        fl.l_whence = libc::SEEK_SET as i16;
        // SAFETY: valid fd and flock.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut fl) };
        rc == 0 && fl.l_type != libc::F_UNLCK as i16
    }
}

/// `fcntl(cmd)` of a whole-file POSIX lock of type `typ`, retried on `EINTR`.
fn fcntl_lock(file: &File, cmd: libc::c_int, typ: libc::c_int) -> std::io::Result<()> {
    // SAFETY: a zeroed flock is a valid starting value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = typ as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    loop {
        // SAFETY: valid fd and flock.
        if unsafe { libc::fcntl(file.as_raw_fd(), cmd, &fl) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl Drop for ContainerLock {
    fn drop(&mut self) {
        let mut map = held();
        let last = map.get_mut(&self.key).is_some_and(|h| {
            h.count -= 1;
            h.count == 0
        });
        if last {
            // Closing the descriptors releases the lock.
            map.remove(&self.key);
        }
    }
}

/// One container's directory under the state root.
#[derive(Debug)]
pub struct ContainerDir {
    /// The id.
    pub id: String,
    /// `<root>/<id>`.
    pub path: PathBuf,
}

impl ContainerDir {
    /// Creates `<root>/<id>` (the root too, mode 0700) holding `rec` as its first state and
    /// locked by us; fails if the id is taken.
    ///
    /// The directory is made under a temporary name, locked and given its record there, then
    /// renamed into place (`RENAME_NOREPLACE`): whoever sees `<root>/<id>` sees a record, so a
    /// runtime killed at any moment never leaves an id that is taken yet unknown to `state`.
    pub fn create(
        rt: &Runtime,
        id: &str,
        rec: &ContainerRecord,
    ) -> Result<(ContainerDir, ContainerLock), Error> {
        let path = rt.container_dir(id)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(rt.root())
            .map_err(|e| Error::io(format!("create state root {}", rt.root().display()), e))?;
        if path.symlink_metadata().is_ok() {
            return Err(Error::AlreadyExists(id.to_string()));
        }
        remove_stale_reservations(rt.root());
        let tmp = make_reservation(rt.root())?;
        let staged = ContainerDir {
            id: id.to_string(),
            path: tmp,
        };
        let fail = |staged: &ContainerDir, e: Error| {
            let _ = staged.remove();
            e
        };
        let lock = ContainerLock::take(&staged.path).map_err(|e| {
            fail(
                &staged,
                Error::io(format!("lock {}", staged.path.display()), e),
            )
        })?;
        if let Err(e) = staged.save(rec) {
            drop(lock);
            return Err(fail(&staged, e));
        }
        if let Err(e) = rename_noreplace(&staged.path, &path) {
            drop(lock);
            let _ = staged.remove();
            return Err(if e.raw_os_error() == Some(libc::EEXIST) {
                Error::AlreadyExists(id.to_string())
            } else {
                Error::io(format!("create {}", path.display()), e)
            });
        }
        Ok((
            ContainerDir {
                id: id.to_string(),
                path,
            },
            lock,
        ))
    }

    /// Opens an existing container's directory.
    pub fn open(rt: &Runtime, id: &str) -> Result<ContainerDir, Error> {
        let path = rt.container_dir(id)?;
        if !path.is_dir() {
            return Err(Error::NotFound(id.to_string()));
        }
        Ok(ContainerDir {
            id: id.to_string(),
            path,
        })
    }

    /// Takes the container's exclusive lock, waiting for other operations on it.
    pub fn lock(&self) -> Result<ContainerLock, Error> {
        let l = ContainerLock::take(&self.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(self.id.clone()),
            _ => Error::io(format!("lock {}", self.path.display()), e),
        })?;
        // It may have been deleted while we waited.
        if !self.path.join("state.json").exists() && !self.path.is_dir() {
            return Err(Error::NotFound(self.id.clone()));
        }
        Ok(l)
    }

    /// Whether some other operation (a `create` in progress) holds the lock now.
    ///
    /// `false` when this process holds it: an operation is never busy for itself, and probing
    /// would open and close the lock file, which releases this process's lock (POSIX locks).
    pub fn is_busy(&self) -> bool {
        if ContainerLock::held_here(&self.path) {
            return false;
        }
        // We hold no lock on this file, so closing the probe's descriptor releases nothing.
        ContainerLock::held_elsewhere(&self.path)
    }

    /// Reads `state.json`.
    pub fn load(&self) -> Result<ContainerRecord, Error> {
        let p = self.path.join("state.json");
        let bytes = std::fs::read(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(self.id.clone()),
            _ => Error::io(format!("read {}", p.display()), e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::Other(format!(
                "{} is corrupt ({e}); `delete --force` removes the container",
                p.display()
            ))
        })
    }

    /// Writes `state.json` atomically (temporary file + rename).
    pub fn save(&self, rec: &ContainerRecord) -> Result<(), Error> {
        let tmp = self.path.join(".state.json.tmp");
        let fin = self.path.join("state.json");
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&serde_json::to_vec(rec).map_err(std::io::Error::other)?)?;
            std::fs::rename(&tmp, &fin)
        };
        write().map_err(|e| Error::io(format!("write {}", fin.display()), e))
    }

    /// The start socket the init waits on.
    pub fn start_socket(&self) -> PathBuf {
        self.path.join(native_runner::process::START_SOCKET)
    }

    /// The status now, derived from the record and the live process.
    pub fn status(&self, rec: &ContainerRecord) -> Status {
        if rec.pid == 0 {
            return if self.is_busy() {
                Status::Creating
            } else {
                Status::Stopped
            };
        }
        if rec.boot_id != boot_id() {
            return Status::Stopped;
        }
        match stat_of(rec.pid) {
            Some((st, false)) if st == rec.pid_start_time => {}
            _ => return Status::Stopped,
        }
        if self.start_socket().exists() {
            return Status::Created;
        }
        if is_frozen(rec) {
            return Status::Paused;
        }
        Status::Running
    }

    /// A verified handle on the init, if it still runs.
    pub fn init_handle(&self, rec: &ContainerRecord) -> Option<ProcessHandle> {
        if rec.boot_id != boot_id() {
            return None;
        }
        ProcessHandle::open(rec.pid, rec.pid_start_time)
    }

    /// The runtime-spec state.
    pub fn state(&self, rec: &ContainerRecord) -> ContainerState {
        let status = self.status(rec);
        ContainerState {
            oci_version: OCI_VERSION.to_string(),
            id: rec.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                rec.pid
            },
            status,
            bundle: rec.bundle.clone(),
            rootfs: rec.rootfs.clone(),
            created: rec.created.clone(),
            annotations: rec.annotations.clone(),
            owner: String::new(),
        }
    }

    /// Removes the directory and everything in it.
    pub fn remove(&self) -> Result<(), Error> {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove {}", self.path.display()), e)),
        }
    }
}

/// The name prefix of a container directory being set up (`~` is not allowed in ids).
const RESERVATION_PREFIX: &str = "~new-";

/// Makes a fresh temporary container directory in `root` (a name left by a dead process with
/// the same pid, or used in another pid namespace sharing the root, is skipped).
fn make_reservation(root: &Path) -> Result<PathBuf, Error> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut tries = 0;
    loop {
        let tmp = root.join(format!(
            "{RESERVATION_PREFIX}{}-{nanos}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&tmp) {
            Ok(()) => return Ok(tmp),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 100 => tries += 1,
            Err(e) => return Err(Error::io(format!("create {}", tmp.display()), e)),
        }
    }
}

/// Removes the temporary directories of creates that died before renaming them into place
/// (older than a minute: a live create renames its own within microseconds).
fn remove_stale_reservations(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .starts_with(RESERVATION_PREFIX)
        {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(60));
        if old && !ContainerLock::held_elsewhere(&e.path()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// `renameat2(from, to, RENAME_NOREPLACE)`: fails with `EEXIST` if `to` exists. Where the
/// filesystem (NFS, 9p, some FUSE) or the kernel lacks it, a plain `rename`, which cannot
/// replace a container directory either (never empty: it holds `lock` and `state.json`).
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: valid NUL-terminated paths.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => match std::fs::rename(from, to) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
                Err(std::io::Error::from_raw_os_error(libc::EEXIST))
            }
            r => r,
        },
        _ => Err(e),
    }
}

fn is_frozen(rec: &ContainerRecord) -> bool {
    match &rec.freeze_file {
        Some(f) => native_runner::cgroups::is_frozen_file(f),
        None => rec.cgroup().is_ok_and(|cg| cg.is_frozen()),
    }
}

/// Now as RFC 3339 UTC with nanoseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::fd::OwnedFd;
    use std::os::unix::ffi::OsStrExt;

    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, pipe, ForkResult};

    /// A child process that takes the exclusive lock of `lock` (waiting for it if `wait`),
    /// reports whether it got it on `ready` and then holds it until `release` is closed.
    fn child_locking(lock: &Path, wait: bool) -> (nix::unistd::Pid, OwnedFd, OwnedFd) {
        let path = CString::new(lock.as_os_str().as_bytes()).unwrap();
        let (ready_r, ready_w) = pipe().unwrap();
        let (release_r, release_w) = pipe().unwrap();
        // SAFETY: the child calls only async-signal-safe functions, then _exit.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => unsafe {
                drop(release_w);
                let fd = libc::open(path.as_ptr(), libc::O_RDWR);
                let mut fl: libc::flock = std::mem::zeroed();
                fl.l_type = libc::F_WRLCK as i16;
                fl.l_whence = libc::SEEK_SET as i16;
                let cmd = if wait { libc::F_SETLKW } else { libc::F_SETLK };
                let got = fd >= 0 && libc::fcntl(fd, cmd, &fl) == 0;
                let b = [u8::from(got)];
                libc::write(ready_w.as_raw_fd(), b.as_ptr().cast(), 1);
                let mut x = 0u8;
                libc::read(release_r.as_raw_fd(), (&mut x as *mut u8).cast(), 1);
                libc::_exit(0);
            },
            ForkResult::Parent { child } => (child, ready_r, release_w),
        }
    }

    /// Whether another process can take the lock now.
    fn free_for_others(lock: &Path) -> bool {
        let (child, ready, release) = child_locking(lock, false);
        let mut b = [0u8];
        nix::unistd::read(&ready, &mut b).unwrap();
        drop(release);
        assert!(matches!(waitpid(child, None), Ok(WaitStatus::Exited(_, 0))));
        b[0] == 1
    }

    fn record(id: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.to_string(),
            bundle: PathBuf::from("/nonexistent"),
            rootfs: PathBuf::from("/nonexistent/rootfs"),
            pid: 0,
            pid_start_time: 0,
            boot_id: boot_id(),
            created: now_rfc3339(),
            cgroup_path: format!("/pouch-test/{id}"),
            annotations: HashMap::new(),
            freeze_file: None,
            executor: String::new(),
            hooks: None,
        }
    }

    /// `delete` and `start` hold the lock while they derive the status of a record with pid 0
    /// (a create that died early): that must not release the lock (closing any descriptor of
    /// the lock file drops the process's POSIX locks).
    #[test]
    fn status_of_a_pidless_record_keeps_our_lock() {
        let root = tempfile::tempdir().unwrap();
        let rt = Runtime::new(root.path());
        let rec = record("c");
        let (dir, lock) = ContainerDir::create(&rt, "c", &rec).unwrap();
        let lock_file = dir.path.join("lock");
        assert!(!free_for_others(&lock_file));

        // Not busy for ourselves: the status is stopped, and the lock still held.
        assert!(!dir.is_busy());
        assert_eq!(dir.status(&rec), Status::Stopped);
        assert_eq!(dir.state(&rec).status, Status::Stopped);
        assert!(!free_for_others(&lock_file), "lock lost by status()");

        // Taking it again in this process and dropping that keeps it too.
        let again = dir.lock().unwrap();
        assert!(!dir.is_busy());
        drop(again);
        assert!(!free_for_others(&lock_file), "lock lost by a nested take");

        drop(lock);
        assert!(free_for_others(&lock_file), "lock kept after drop");

        // Another process holding it (a create in progress): busy, status creating.
        let (child, ready, release) = child_locking(&lock_file, true);
        let mut b = [0u8];
        nix::unistd::read(&ready, &mut b).unwrap();
        assert_eq!(b[0], 1);
        assert!(dir.is_busy());
        assert_eq!(dir.status(&rec), Status::Creating);
        drop(release);
        assert!(matches!(waitpid(child, None), Ok(WaitStatus::Exited(_, 0))));
        assert!(!dir.is_busy());
        assert_eq!(dir.status(&rec), Status::Stopped);

        // The same with `lock()` on a directory opened anew, as `delete` does.
        let dir2 = ContainerDir::open(&rt, "c").unwrap();
        let l2 = dir2.lock().unwrap();
        assert_eq!(dir2.status(&dir2.load().unwrap()), Status::Stopped);
        assert!(!free_for_others(&lock_file), "lock lost by status()");
        drop(l2);
        dir2.remove().unwrap();
    }
}
