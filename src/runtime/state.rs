//! Container state on disk: `<root>/<id>/state.json`, written atomically, guarded by a lock.

use std::collections::HashMap;
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

/// An exclusive or shared lock on one container (POSIX record lock on `<dir>/lock`; such locks
/// are not inherited by forked children, so the container's processes never hold it).
#[derive(Debug)]
pub struct ContainerLock {
    _file: File,
}

impl ContainerLock {
    fn take(dir: &Path, exclusive: bool, wait: bool) -> std::io::Result<ContainerLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(dir.join("lock"))?;
        // SAFETY: a zeroed flock is a valid starting value.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = if exclusive {
            libc::F_WRLCK
        } else {
            libc::F_RDLCK
        } as i16;
        fl.l_whence = libc::SEEK_SET as i16;
        let cmd = if wait { libc::F_SETLKW } else { libc::F_SETLK };
        loop {
            // SAFETY: valid fd and flock.
            if unsafe { libc::fcntl(file.as_raw_fd(), cmd, &fl) } == 0 {
                return Ok(ContainerLock { _file: file });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
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
    /// Creates `<root>/<id>` (the root too, mode 0700); fails if the id is taken.
    pub fn create(rt: &Runtime, id: &str) -> Result<(ContainerDir, ContainerLock), Error> {
        let path = rt.container_dir(id)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(rt.root())
            .map_err(|e| Error::io(format!("create state root {}", rt.root().display()), e))?;
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(id.to_string()))
            }
            Err(e) => return Err(Error::io(format!("create {}", path.display()), e)),
        }
        let lock = ContainerLock::take(&path, true, true)
            .map_err(|e| Error::io(format!("lock {}", path.display()), e))?;
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
        let l = ContainerLock::take(&self.path, true, true).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(self.id.clone()),
            _ => Error::io(format!("lock {}", self.path.display()), e),
        })?;
        // It may have been deleted while we waited.
        if !self.path.join("state.json").exists() && !self.path.is_dir() {
            return Err(Error::NotFound(self.id.clone()));
        }
        Ok(l)
    }

    /// Whether some operation (a `create` in progress) holds the lock now.
    pub fn is_busy(&self) -> bool {
        ContainerLock::take(&self.path, false, false).is_err()
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
