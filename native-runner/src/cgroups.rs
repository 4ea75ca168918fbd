//! Control groups: one container's cgroup on cgroup v1, v2 and the hybrid layout.
//!
//! The flow is [`Layout::detect`] (one read of `/proc/self/mountinfo`) → [`Cgroup::new`] (pure:
//! validates `linux.cgroupsPath`, touches nothing) → [`Cgroup::create`] → [`Cgroup::apply`] →
//! [`Cgroup::add_task`], and at the end [`Cgroup::destroy`].
//!
//! A container's cgroup is the same absolute path in every hierarchy the host has:
//!
//! * **v1**: one directory per mounted hierarchy (`cpu`, `memory`, …, and named ones such as
//!   `name=systemd`); each resource is written in the hierarchy of its controller.
//! * **v2**: one directory under the cgroup2 mount; controllers are enabled in every ancestor's
//!   `cgroup.subtree_control`.
//! * **hybrid** (v1 controllers plus a cgroup2 mount, usually `/sys/fs/cgroup/unified`): the
//!   process joins both. Resources go to the v1 hierarchy of their controller; a controller that
//!   only the cgroup2 mount has (often `hugetlb`) is enabled there on demand and used as on v2.
//!
//! Paths are always absolute: a container's cgroup never nests under the caller's own cgroup.
//!
//! Device rules are written to `devices.deny`/`devices.allow` on v1. On v2 (and on a hybrid host
//! without a v1 `devices` hierarchy) they are compiled into a `BPF_PROG_TYPE_CGROUP_DEVICE`
//! program and attached to the cgroup with raw `bpf(2)` calls.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::unistd::Pid;
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimit, LinuxMemory,
    LinuxNetwork, LinuxRdma, LinuxResources,
};

use crate::error::{Error, Result, SysContext};

/// Where the kernel lists this process's mounts.
const MOUNTINFO: &str = "/proc/self/mountinfo";
/// How long [`Cgroup::freeze`] waits for the tasks to stop.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`Cgroup::destroy`] retries `rmdir` while exiting tasks keep a cgroup busy.
const DESTROY_TIMEOUT: Duration = Duration::from_secs(2);
/// The v2 `cpu.max` period when the spec gives a quota but no period (the kernel's default).
const DEFAULT_CPU_PERIOD: u64 = 100_000;

// ---------------------------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------------------------

/// One mounted cgroup v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Where it is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
    /// Its controllers as the mount options name them: `cpu`, `cpuacct`, … and, for named
    /// hierarchies, `name=systemd`. Never empty.
    pub controllers: Vec<String>,
}

impl V1Hierarchy {
    /// Whether this hierarchy carries `controller` (`"memory"`, `"name=systemd"`, …).
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// Which cgroup layout the host has, read from `/proc/self/mountinfo` (never assumed from paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Only cgroup v1 hierarchies are mounted.
    V1 {
        /// Every mounted hierarchy, first mount of each wins.
        hierarchies: Vec<V1Hierarchy>,
    },
    /// Only a cgroup2 filesystem is mounted (the unified hierarchy).
    V2 {
        /// Where cgroup2 is mounted, usually `/sys/fs/cgroup`.
        mount_point: PathBuf,
    },
    /// cgroup v1 hierarchies plus a cgroup2 mount (usually `/sys/fs/cgroup/unified`).
    Hybrid {
        /// Every mounted v1 hierarchy.
        hierarchies: Vec<V1Hierarchy>,
        /// Where cgroup2 is mounted.
        unified: PathBuf,
    },
}

impl Layout {
    /// Reads `/proc/self/mountinfo` once and classifies the cgroup mounts.
    ///
    /// Fails if no cgroup filesystem is mounted at all.
    pub fn detect() -> Result<Layout> {
        let text = fs::read_to_string(MOUNTINFO).ctx(|| format!("read {MOUNTINFO}"))?;
        Layout::from_mountinfo(&text)
    }

    /// Classifies the cgroup mounts of a `mountinfo` text (the format of `/proc/<pid>/mountinfo`).
    ///
    /// For a hierarchy mounted more than once, the first mount wins.
    pub fn from_mountinfo(text: &str) -> Result<Layout> {
        let mut hierarchies: Vec<V1Hierarchy> = Vec::new();
        let mut seen_devs: Vec<&str> = Vec::new();
        let mut unified: Option<PathBuf> = None;
        for line in text.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split(' ').collect();
            let mut post = post.split(' ');
            let (Some(fstype), Some(_source), Some(super_opts)) =
                (post.next(), post.next(), post.next())
            else {
                continue;
            };
            if pre.len() < 5 {
                continue;
            }
            let (dev, mount_point) = (pre[2], unescape_mountinfo(pre[4]));
            match fstype {
                "cgroup2" if unified.is_none() => unified = Some(mount_point),
                "cgroup" => {
                    if seen_devs.contains(&dev) {
                        continue;
                    }
                    let controllers: Vec<String> = super_opts
                        .split(',')
                        .filter(|o| is_v1_controller_option(o))
                        .map(str::to_string)
                        .collect();
                    if controllers.is_empty() {
                        continue;
                    }
                    seen_devs.push(dev);
                    hierarchies.push(V1Hierarchy {
                        mount_point,
                        controllers,
                    });
                }
                _ => {}
            }
        }
        match (hierarchies.is_empty(), unified) {
            (true, Some(mount_point)) => Ok(Layout::V2 { mount_point }),
            (false, Some(unified)) => Ok(Layout::Hybrid {
                hierarchies,
                unified,
            }),
            (false, None) => Ok(Layout::V1 { hierarchies }),
            (true, None) => Err(Error::invalid(format!(
                "no cgroup filesystem is mounted (checked {MOUNTINFO}); \
                 mount one, e.g. `mount -t cgroup2 none /sys/fs/cgroup`"
            ))),
        }
    }

    /// The v1 hierarchies (empty on v2).
    pub fn v1_hierarchies(&self) -> &[V1Hierarchy] {
        match self {
            Layout::V1 { hierarchies } | Layout::Hybrid { hierarchies, .. } => hierarchies,
            Layout::V2 { .. } => &[],
        }
    }

    /// The cgroup2 mount point, if there is one (v2 and hybrid).
    pub fn unified_mount(&self) -> Option<&Path> {
        match self {
            Layout::V1 { .. } => None,
            Layout::V2 { mount_point } => Some(mount_point),
            Layout::Hybrid { unified, .. } => Some(unified),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |h: &[V1Hierarchy]| {
            h.iter()
                .map(|h| h.controllers.join(","))
                .collect::<Vec<_>>()
                .join(" ")
        };
        match self {
            Layout::V1 { hierarchies } => write!(f, "cgroup v1 ({})", list(hierarchies)),
            Layout::V2 { mount_point } => write!(f, "cgroup v2 at {}", mount_point.display()),
            Layout::Hybrid {
                hierarchies,
                unified,
            } => write!(
                f,
                "hybrid cgroups (v1: {}; cgroup2 at {})",
                list(hierarchies),
                unified.display()
            ),
        }
    }
}

/// Whether a cgroup v1 super option names a controller (or a named hierarchy) rather than a flag.
fn is_v1_controller_option(opt: &str) -> bool {
    if let Some(name) = opt.strip_prefix("name=") {
        return !name.is_empty();
    }
    !opt.is_empty()
        && !opt.contains('=')
        && !matches!(
            opt,
            "rw" | "ro"
                | "xattr"
                | "noprefix"
                | "clone_children"
                | "cpuset_v2_mode"
                | "favordynmods"
                | "nofavordynmods"
                | "all"
                | "none"
        )
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape_mountinfo(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

// ---------------------------------------------------------------------------------------------
// Cgroup
// ---------------------------------------------------------------------------------------------

/// The container's directory in one v1 hierarchy.
#[derive(Debug, Clone)]
struct V1Dir {
    mount_point: PathBuf,
    controllers: Vec<String>,
    dir: PathBuf,
}

/// The container's directory in the cgroup2 hierarchy.
#[derive(Debug, Clone)]
struct UnifiedDir {
    mount_point: PathBuf,
    dir: PathBuf,
    /// True on a pure v2 host: `create` enables every available controller up front.
    primary: bool,
}

/// One container's cgroup: the same absolute path in every hierarchy of the host.
#[derive(Debug, Clone)]
pub struct Cgroup {
    /// The normalized absolute path, e.g. `/pouch/abc`.
    path: String,
    /// The path's components (`["pouch", "abc"]`).
    components: Vec<String>,
    v1: Vec<V1Dir>,
    unified: Option<UnifiedDir>,
    /// For error messages.
    layout: String,
}

/// Whether a file returned by [`Cgroup::freeze_state_file`] says frozen (`FROZEN` or `1`).
pub fn is_frozen_file(file: &Path) -> bool {
    read_trimmed(file).is_ok_and(|s| s == "FROZEN" || s == "1")
}

/// Resource usage of a cgroup, for `pouch stats` / `events`. A field is `None` when the host
/// does not account it (controller missing) or, for limits, when there is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Memory in use, bytes (`memory.usage_in_bytes` / `memory.current`).
    pub memory_usage: Option<u64>,
    /// Memory limit, bytes (`memory.limit_in_bytes` / `memory.max`); `None` if unlimited.
    pub memory_limit: Option<u64>,
    /// CPU time consumed by all tasks, nanoseconds (`cpuacct.usage` / `cpu.stat usage_usec`).
    pub cpu_usage_ns: Option<u64>,
    /// Number of tasks (`pids.current`).
    pub pids_current: Option<u64>,
    /// Task limit (`pids.max`); `None` if unlimited.
    pub pids_limit: Option<u64>,
}

impl Cgroup {
    /// Plans the cgroup `path` (`linux.cgroupsPath`) in every hierarchy of `layout`.
    ///
    /// `path` must be absolute (`/pouch/<id>`) and must not be the root cgroup; `..` components
    /// are rejected, empty and `.` components are dropped. Touches no file.
    pub fn new(layout: &Layout, path: &str) -> Result<Cgroup> {
        if path.is_empty() {
            return Err(Error::invalid(
                "linux.cgroupsPath is empty; use an absolute path such as \"/pouch/<id>\"",
            ));
        }
        if !path.starts_with('/') {
            return Err(Error::invalid(format!(
                "linux.cgroupsPath {path:?} is relative; use an absolute path such as \
                 \"/pouch/<id>\" (systemd \"slice:prefix:name\" notation is not supported)"
            )));
        }
        if path.contains('\0') {
            return Err(Error::invalid(format!(
                "linux.cgroupsPath {path:?} contains a NUL byte"
            )));
        }
        let mut components = Vec::new();
        for c in path.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    return Err(Error::invalid(format!(
                        "linux.cgroupsPath {path:?} contains \"..\"; use a plain absolute path \
                         such as \"/pouch/<id>\""
                    )))
                }
                c => components.push(c.to_string()),
            }
        }
        if components.is_empty() {
            return Err(Error::invalid(format!(
                "linux.cgroupsPath {path:?} is the root cgroup; use a path below it such as \
                 \"/pouch/<id>\""
            )));
        }
        let rel: PathBuf = components.iter().collect();
        let v1 = layout
            .v1_hierarchies()
            .iter()
            .map(|h| V1Dir {
                mount_point: h.mount_point.clone(),
                controllers: h.controllers.clone(),
                dir: h.mount_point.join(&rel),
            })
            .collect();
        let unified = layout.unified_mount().map(|m| UnifiedDir {
            mount_point: m.to_path_buf(),
            dir: m.join(&rel),
            primary: matches!(layout, Layout::V2 { .. }),
        });
        Ok(Cgroup {
            path: format!("/{}", components.join("/")),
            components,
            v1,
            unified,
            layout: layout.to_string(),
        })
    }

    /// The normalized absolute cgroup path, e.g. `/pouch/abc`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The directories (one per hierarchy; v1 hierarchies first, then cgroup2).
    pub fn paths(&self) -> Vec<PathBuf> {
        self.v1
            .iter()
            .map(|d| d.dir.clone())
            .chain(self.unified.iter().map(|u| u.dir.clone()))
            .collect()
    }

    /// True if the cgroup directory exists in any hierarchy.
    pub fn exists(&self) -> bool {
        self.paths().iter().any(|p| p.is_dir())
    }

    /// The container's directory in the v1 hierarchy of `controller`, if there is one.
    fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|d| d.controllers.iter().any(|c| c == controller))
            .map(|d| d.dir.as_path())
    }

    /// `mkdir -p` in every hierarchy.
    ///
    /// * v1: every mounted hierarchy, named ones included. In `cpuset`, every level whose
    ///   `cpuset.cpus`/`cpuset.mems` is empty gets its parent's value, or tasks could not join.
    /// * v2: the cgroup2 mount; every ancestor enables in `cgroup.subtree_control` all the
    ///   controllers it has (a controller that cannot be enabled is logged, and becomes an error
    ///   only if [`Cgroup::apply`] needs it).
    /// * hybrid: both; on the cgroup2 side controllers are enabled on demand by `apply`.
    ///
    /// Creating an existing cgroup is not an error.
    pub fn create(&self) -> Result<()> {
        for d in &self.v1 {
            mkdir_p(&d.mount_point, &self.components)?;
            if d.controllers.iter().any(|c| c == "cpuset") {
                self.inherit_cpuset(&d.mount_point)?;
            }
        }
        if let Some(u) = &self.unified {
            mkdir_p(&u.mount_point, &self.components)?;
            if u.primary {
                for ancestor in self.unified_ancestors(u) {
                    enable_all_controllers(&ancestor);
                }
            }
        }
        Ok(())
    }

    /// Gives every level of the path in the v1 cpuset hierarchy non-empty cpus and mems.
    fn inherit_cpuset(&self, mount_point: &Path) -> Result<()> {
        let mut parent = mount_point.to_path_buf();
        for c in &self.components {
            let dir = parent.join(c);
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let path = dir.join(file);
                let own = read_trimmed(&path).ctx(|| format!("read {}", path.display()))?;
                if own.is_empty() {
                    let from = parent.join(file);
                    let value = read_trimmed(&from).ctx(|| format!("read {}", from.display()))?;
                    write_file(&path, &value).ctx(|| {
                        format!(
                            "copy {value:?} from {} to {}",
                            from.display(),
                            path.display()
                        )
                    })?;
                }
            }
            parent = dir;
        }
        Ok(())
    }

    /// The cgroup2 directories from the mount point down to the container's parent.
    fn unified_ancestors(&self, u: &UnifiedDir) -> Vec<PathBuf> {
        let mut out = vec![u.mount_point.clone()];
        for c in &self.components[..self.components.len() - 1] {
            let next = out[out.len() - 1].join(c);
            out.push(next);
        }
        out
    }

    /// Writes `linux.resources` to the cgroup (which must exist: see [`Cgroup::create`]).
    ///
    /// Each setting goes to the hierarchy of its controller; a value the kernel rejects is an
    /// error naming the spec field, the value and the file, e.g.
    /// `linux.resources.memory.limit=1000: write /sys/fs/cgroup/memory/pouch/x/memory.limit_in_bytes: EINVAL: Invalid argument`.
    /// A controller the spec uses but the host lacks is an [`Error::Invalid`] naming it.
    /// Settings the kernel no longer implements (`memory.kernel`, `blockIO.leafWeight`, and on
    /// v2 `memory.swappiness` and `memory.disableOOMKiller`) are logged and ignored.
    pub fn apply(&self, resources: &LinuxResources) -> Result<()> {
        let a = Applier::new(self);
        if let Some(m) = resources.memory() {
            a.memory(m)?;
        }
        if let Some(c) = resources.cpu() {
            a.cpu(c)?;
        }
        if let Some(p) = resources.pids() {
            a.pids(p.limit())?;
        }
        if let Some(b) = resources.block_io() {
            a.block_io(b)?;
        }
        if let Some(h) = resources.hugepage_limits() {
            a.hugepages(h)?;
        }
        if let Some(n) = resources.network() {
            a.network(n)?;
        }
        if let Some(r) = resources.rdma() {
            a.rdma(r)?;
        }
        if let Some(d) = resources.devices() {
            a.devices(d)?;
        }
        if let Some(u) = resources.unified() {
            a.unified(u)?;
        }
        Ok(())
    }

    /// Moves `pid` (the whole thread group) into the cgroup in every hierarchy.
    pub fn add_task(&self, pid: Pid) -> Result<()> {
        let value = pid.as_raw().to_string();
        for dir in self.paths() {
            let path = dir.join("cgroup.procs");
            write_file(&path, &value)
                .map_err(|e| io_to_error(format!("add pid {pid} to {}", path.display()), e))?;
        }
        Ok(())
    }

    /// Every process in the cgroup or in any cgroup below it, in every hierarchy (a container's
    /// processes may have moved into child cgroups of their own, in one hierarchy or all),
    /// sorted and without duplicates. Hierarchies where the cgroup does not exist are skipped;
    /// if it exists in none, that is an error.
    pub fn pids(&self) -> Result<Vec<Pid>> {
        let mut pids = Vec::new();
        let mut missing = None;
        let mut found = false;
        for dir in self.paths() {
            match walk_pids(&dir, &mut |p| {
                pids.push(p);
                false
            }) {
                Ok(_) => found = true,
                Err(e) if is_gone(&e) => {
                    missing.get_or_insert((dir, e));
                }
                Err(e) => return Err(io_to_error(format!("read pids of {}", dir.display()), e)),
            }
        }
        if !found {
            if let Some((dir, e)) = missing {
                return Err(io_to_error(format!("read pids of {}", dir.display()), e));
            }
            return Err(Error::invalid("the host has no cgroup hierarchy"));
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Whether any process is in the cgroup or in a cgroup below it, in any hierarchy; `false`
    /// if the cgroup does not exist. A cgroup2 directory answers from `cgroup.events`
    /// (`populated`, which covers the subtree); a v1 one by walking `cgroup.procs` down the tree
    /// until the first process.
    pub fn is_populated(&self) -> Result<bool> {
        for d in &self.v1 {
            match walk_pids(&d.dir, &mut |_| true) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) if is_gone(&e) => {}
                Err(e) => return Err(io_to_error(format!("read pids of {}", d.dir.display()), e)),
            }
        }
        if let Some(u) = &self.unified {
            let events = u.dir.join("cgroup.events");
            match fs::read_to_string(&events) {
                Ok(text) => {
                    if text.lines().any(|l| l.trim() == "populated 1") {
                        return Ok(true);
                    }
                }
                Err(e) if is_gone(&e) => {}
                Err(e) => return Err(io_to_error(format!("read {}", events.display()), e)),
            }
        }
        Ok(false)
    }

    /// Freezes every task of the cgroup and of the cgroups below it, and waits until they are
    /// all frozen (both freezers are hierarchical: a child cgroup is frozen with its parent, and
    /// the parent reads frozen only once its whole subtree is).
    ///
    /// v1: `freezer.state` = `FROZEN`, waiting until it reads `FROZEN` (on timeout the cgroup is
    /// thawed again and an error returned). v2 (or hybrid without a v1 freezer):
    /// `cgroup.freeze` = `1`, waiting for `frozen 1` in `cgroup.events`.
    pub fn freeze(&self) -> Result<()> {
        if let Some(dir) = self.v1_dir("freezer") {
            let state = dir.join("freezer.state");
            let deadline = Instant::now() + FREEZE_TIMEOUT;
            let mut pause = Duration::from_micros(200);
            loop {
                // Writing again nudges tasks that were forking while the first write ran.
                write_file(&state, "FROZEN")
                    .map_err(|e| io_to_error(format!("freeze: write {}", state.display()), e))?;
                let now = read_trimmed(&state).ctx(|| format!("read {}", state.display()))?;
                if now == "FROZEN" {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    let _ = write_file(&state, "THAWED");
                    return Err(Error::sys(
                        format!(
                            "freeze {}: still {now} after {FREEZE_TIMEOUT:?} (thawed again)",
                            self.path
                        ),
                        Errno::EBUSY,
                    ));
                }
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
        }
        self.v2_freeze(true)
    }

    /// The file that says whether the cgroup is frozen (v1 `freezer.state`, else v2
    /// `cgroup.freeze`), for callers that record it once; see [`is_frozen_file`].
    pub fn freeze_state_file(&self) -> Option<PathBuf> {
        if let Some(dir) = self.v1_dir("freezer") {
            return Some(dir.join("freezer.state"));
        }
        self.unified.as_ref().map(|u| u.dir.join("cgroup.freeze"))
    }

    /// Whether the cgroup is frozen now (v1 `freezer.state` = `FROZEN`, else v2
    /// `cgroup.freeze` = `1`); `false` when it does not exist.
    pub fn is_frozen(&self) -> bool {
        if let Some(dir) = self.v1_dir("freezer") {
            return read_trimmed(&dir.join("freezer.state")).is_ok_and(|s| s == "FROZEN");
        }
        self.unified
            .as_ref()
            .is_some_and(|u| read_trimmed(&u.dir.join("cgroup.freeze")).is_ok_and(|s| s == "1"))
    }

    /// Thaws the cgroup (v1 `freezer.state` = `THAWED`; v2 `cgroup.freeze` = `0`).
    pub fn thaw(&self) -> Result<()> {
        if let Some(dir) = self.v1_dir("freezer") {
            let state = dir.join("freezer.state");
            return write_file(&state, "THAWED")
                .map_err(|e| io_to_error(format!("thaw: write {}", state.display()), e));
        }
        self.v2_freeze(false)
    }

    fn v2_freeze(&self, frozen: bool) -> Result<()> {
        let Some(u) = &self.unified else {
            return Err(Error::invalid(format!(
                "cannot {} cgroup {}: this host has no freezer ({})",
                if frozen { "freeze" } else { "thaw" },
                self.path,
                self.layout
            )));
        };
        let file = u.dir.join("cgroup.freeze");
        write_file(&file, if frozen { "1" } else { "0" })
            .map_err(|e| io_to_error(format!("write {}", file.display()), e))?;
        let events = u.dir.join("cgroup.events");
        let want = if frozen { "frozen 1" } else { "frozen 0" };
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        let mut pause = Duration::from_micros(200);
        loop {
            let text = fs::read_to_string(&events).ctx(|| format!("read {}", events.display()))?;
            if text.lines().any(|l| l.trim() == want) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                if frozen {
                    let _ = write_file(&file, "0");
                }
                return Err(Error::sys(
                    format!(
                        "{} {}: {} does not say {want:?} after {FREEZE_TIMEOUT:?}",
                        if frozen { "freeze" } else { "thaw" },
                        self.path,
                        events.display()
                    ),
                    Errno::EBUSY,
                ));
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// Removes the cgroup directory in every hierarchy, child cgroups first, retrying for a
    /// short while when `rmdir` says `EBUSY` (tasks still exiting). Only the container's own
    /// directory and what is below it are removed, never its ancestors. Missing directories are
    /// fine, so `destroy` is idempotent. Every hierarchy is tried; the first failure is returned.
    pub fn destroy(&self) -> Result<()> {
        let deadline = Instant::now() + DESTROY_TIMEOUT;
        let mut first_err = None;
        for dir in self.paths() {
            if let Err(e) = remove_cgroup_tree(&dir, deadline) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// How many processes of this cgroup the OOM killer ended (`oom_kill` of v1's
    /// `memory.oom_control`, or of v2's `memory.events`); 0 when the host does not say.
    pub fn oom_kills(&self) -> u64 {
        let file = match self.v1_dir("memory") {
            Some(dir) => dir.join("memory.oom_control"),
            None => match &self.unified {
                Some(u) => u.dir.join("memory.events"),
                None => return 0,
            },
        };
        fs::read_to_string(file)
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Reads memory usage and limit, CPU time and task count (v1 controllers first, else v2).
    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        let v2 = self.unified.as_ref().map(|u| u.dir.as_path());
        if let Some(dir) = self.v1_dir("memory") {
            s.memory_usage = read_u64(&dir.join("memory.usage_in_bytes"))?;
            // v1 reports "no limit" as a huge page-aligned number close to i64::MAX.
            s.memory_limit = read_u64(&dir.join("memory.limit_in_bytes"))?
                .filter(|&v| v < 0x7fff_ffff_ffff_0000);
        } else if let Some(dir) = v2 {
            s.memory_usage = read_u64(&dir.join("memory.current"))?;
            s.memory_limit = read_u64(&dir.join("memory.max"))?;
        }
        if let Some(dir) = self.v1_dir("cpuacct") {
            s.cpu_usage_ns = read_u64(&dir.join("cpuacct.usage"))?;
        } else if let Some(dir) = v2 {
            let path = dir.join("cpu.stat");
            s.cpu_usage_ns = match fs::read_to_string(&path) {
                Ok(text) => text
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|us| us.saturating_mul(1000)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
            };
        }
        if let Some(dir) = self.v1_dir("pids").or(v2) {
            s.pids_current = read_u64(&dir.join("pids.current"))?;
            s.pids_limit = read_u64(&dir.join("pids.max"))?;
        }
        Ok(s)
    }
}

// ---------------------------------------------------------------------------------------------
// apply
// ---------------------------------------------------------------------------------------------

/// Where one controller's files are.
#[derive(Clone, Copy)]
enum Target<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

/// State of one [`Cgroup::apply`] call: caches the cgroup2 controllers it has looked up.
struct Applier<'a> {
    cg: &'a Cgroup,
    /// Controllers of the cgroup2 mount root (what could be enabled at all).
    v2_root_controllers: OnceCell<Vec<String>>,
}

impl<'a> Applier<'a> {
    fn new(cg: &'a Cgroup) -> Self {
        Applier {
            cg,
            v2_root_controllers: OnceCell::new(),
        }
    }

    /// The hierarchy of `controller`: its v1 hierarchy if mounted, else cgroup2 (enabling it in
    /// the ancestors if needed). `field` names the spec field for the error.
    fn target(&self, controller: &str, field: &str) -> Result<Target<'a>> {
        if let Some(dir) = self.cg.v1_dir(controller) {
            return Ok(Target::V1(dir));
        }
        if let Some(dir) = self.v2_target(controller, field)? {
            return Ok(Target::V2(dir));
        }
        Err(self.missing(controller, field))
    }

    fn missing(&self, controller: &str, field: &str) -> Error {
        Error::invalid(format!(
            "{field} needs the {controller} cgroup controller, which this host does not have \
             ({}); remove {field} from the spec or enable the controller",
            self.cg.layout
        ))
    }

    /// The cgroup2 directory if `controller` can be used there, enabling it in every ancestor's
    /// `cgroup.subtree_control` where it is not yet.
    fn v2_target(&self, controller: &str, field: &str) -> Result<Option<&'a Path>> {
        let Some(u) = &self.cg.unified else {
            return Ok(None);
        };
        let root = match self.v2_root_controllers.get() {
            Some(list) => list,
            None => {
                let path = u.mount_point.join("cgroup.controllers");
                let text = read_trimmed(&path).ctx(|| format!("read {}", path.display()))?;
                let list = text.split_whitespace().map(str::to_string).collect();
                self.v2_root_controllers.get_or_init(|| list)
            }
        };
        if !root.iter().any(|c| c == controller) {
            return Ok(None);
        }
        for ancestor in self.cg.unified_ancestors(u) {
            let file = ancestor.join("cgroup.subtree_control");
            let enabled = read_trimmed(&file).ctx(|| format!("read {}", file.display()))?;
            if enabled.split_whitespace().any(|c| c == controller) {
                continue;
            }
            write_file(&file, &format!("+{controller}")).map_err(|e| {
                let hint = if e.raw_os_error() == Some(libc::EBUSY) {
                    " (that cgroup has processes of its own, and cgroup v2 allows controllers \
                     only above leaves; choose a linux.cgroupsPath whose ancestors hold no \
                     processes)"
                } else {
                    ""
                };
                io_to_error(
                    format!(
                        "{field}: enable the {controller} controller in {}{hint}",
                        file.display()
                    ),
                    e,
                )
            })?;
        }
        Ok(Some(u.dir.as_path()))
    }

    fn memory(&self, m: &LinuxMemory) -> Result<()> {
        #[allow(deprecated)]
        let kernel = m.kernel();
        if kernel.is_some() {
            tracing::warn!(
                "linux.resources.memory.kernel is ignored: kernel memory limits are deprecated \
                 and no longer supported by Linux"
            );
        }
        let any = m.limit().is_some()
            || m.reservation().is_some()
            || m.swap().is_some()
            || m.kernel_tcp().is_some()
            || m.swappiness().is_some()
            || m.disable_oom_killer().is_some();
        if !any {
            return Ok(());
        }
        if let (Some(limit), Some(swap)) = (m.limit(), m.swap()) {
            if limit > 0 && swap > 0 && swap < limit {
                return Err(Error::invalid(format!(
                    "linux.resources.memory.swap={swap} is below linux.resources.memory.limit=\
                     {limit}; swap is the memory+swap total, so it must be >= limit (or -1)"
                )));
            }
        }
        match self.target("memory", "linux.resources.memory")? {
            Target::V1(dir) => memory_v1(dir, m),
            Target::V2(dir) => memory_v2(dir, m),
        }
    }

    fn cpu(&self, c: &LinuxCpu) -> Result<()> {
        let cpus = c.cpus().as_deref().filter(|s| !s.trim().is_empty());
        let mems = c.mems().as_deref().filter(|s| !s.trim().is_empty());
        let any_cpu = c.shares().is_some_and(|s| s != 0)
            || c.quota().is_some_and(|q| q != 0)
            || c.period().is_some_and(|p| p != 0)
            || c.burst().is_some()
            || c.idle().is_some()
            || c.realtime_runtime().is_some_and(|r| r != 0)
            || c.realtime_period().is_some_and(|p| p != 0);
        if any_cpu {
            match self.target("cpu", "linux.resources.cpu")? {
                Target::V1(dir) => cpu_v1(dir, c)?,
                Target::V2(dir) => cpu_v2(dir, c)?,
            }
        }
        if cpus.is_some() || mems.is_some() {
            let field = if cpus.is_some() {
                "linux.resources.cpu.cpus"
            } else {
                "linux.resources.cpu.mems"
            };
            let dir = match self.target("cpuset", field)? {
                Target::V1(d) | Target::V2(d) => d,
            };
            if let Some(cpus) = cpus {
                set(dir, "cpuset.cpus", cpus, "linux.resources.cpu.cpus")?;
            }
            if let Some(mems) = mems {
                set(dir, "cpuset.mems", mems, "linux.resources.cpu.mems")?;
            }
        }
        Ok(())
    }

    fn pids(&self, limit: i64) -> Result<()> {
        if limit == 0 {
            return Ok(());
        }
        let field = "linux.resources.pids.limit";
        let dir = match self.target("pids", field)? {
            Target::V1(d) | Target::V2(d) => d,
        };
        let value = if limit < 0 {
            "max".to_string()
        } else {
            limit.to_string()
        };
        set(dir, "pids.max", &value, field)
    }

    fn block_io(&self, b: &LinuxBlockIo) -> Result<()> {
        let empty = |v: &Option<Vec<_>>| v.as_ref().is_none_or(|v| v.is_empty());
        if b.leaf_weight().is_some()
            || b.weight_device()
                .iter()
                .flatten()
                .any(|d| d.leaf_weight().is_some())
        {
            tracing::warn!(
                "linux.resources.blockIO.leafWeight is ignored: Linux I/O schedulers no longer \
                 support leaf weights"
            );
        }
        let any = b.weight().is_some()
            || b.weight_device()
                .iter()
                .flatten()
                .any(|d| d.weight().is_some())
            || !empty(b.throttle_read_bps_device())
            || !empty(b.throttle_write_bps_device())
            || !empty(b.throttle_read_iops_device())
            || !empty(b.throttle_write_iops_device());
        if !any {
            return Ok(());
        }
        let v1 = self.cg.v1_dir("blkio");
        let target = match v1 {
            Some(d) => Target::V1(d),
            None => match self.v2_target("io", "linux.resources.blockIO")? {
                Some(d) => Target::V2(d),
                None => {
                    return Err(self.missing("blkio (v1) or io (v2)", "linux.resources.blockIO"))
                }
            },
        };
        match target {
            Target::V1(dir) => block_io_v1(dir, b),
            Target::V2(dir) => block_io_v2(dir, b),
        }
    }

    fn hugepages(&self, limits: &[LinuxHugepageLimit]) -> Result<()> {
        if limits.is_empty() {
            return Ok(());
        }
        let target = self.target("hugetlb", "linux.resources.hugepageLimits")?;
        for (i, l) in limits.iter().enumerate() {
            let field = format!("linux.resources.hugepageLimits[{i}]");
            let size = l.page_size();
            if size.is_empty() || !size.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(Error::invalid(format!(
                    "{field}.pageSize {size:?} is not a page size such as \"2MB\" or \"1GB\""
                )));
            }
            let (dir, max, rsvd, value) = match target {
                Target::V1(d) => (
                    d,
                    format!("hugetlb.{size}.limit_in_bytes"),
                    format!("hugetlb.{size}.rsvd.limit_in_bytes"),
                    l.limit().to_string(),
                ),
                Target::V2(d) => (
                    d,
                    format!("hugetlb.{size}.max"),
                    format!("hugetlb.{size}.rsvd.max"),
                    if l.limit() < 0 {
                        "max".to_string()
                    } else {
                        l.limit().to_string()
                    },
                ),
            };
            let field = format!("{field}.limit");
            set(dir, &max, &value, &field)?;
            // Reservations count too (kernel >= 5.7): limit them the same, or a task could
            // reserve past the limit.
            if dir.join(&rsvd).exists() {
                set(dir, &rsvd, &value, &field)?;
            }
        }
        Ok(())
    }

    fn network(&self, n: &LinuxNetwork) -> Result<()> {
        if let Some(id) = n.class_id() {
            let field = "linux.resources.network.classID";
            match self.target("net_cls", field)? {
                Target::V1(dir) => set(dir, "net_cls.classid", &id.to_string(), field)?,
                Target::V2(_) => return Err(self.missing("net_cls", field)),
            }
        }
        if let Some(prios) = n.priorities().as_ref().filter(|p| !p.is_empty()) {
            let field = "linux.resources.network.priorities";
            let dir = match self.target("net_prio", field)? {
                Target::V1(dir) => dir,
                Target::V2(_) => return Err(self.missing("net_prio", field)),
            };
            for (i, p) in prios.iter().enumerate() {
                let value = format!("{} {}", p.name(), p.priority());
                set(dir, "net_prio.ifpriomap", &value, &format!("{field}[{i}]"))?;
            }
        }
        Ok(())
    }

    fn rdma(&self, rdma: &HashMap<String, LinuxRdma>) -> Result<()> {
        if rdma.is_empty() {
            return Ok(());
        }
        let dir = match self.target("rdma", "linux.resources.rdma")? {
            Target::V1(d) | Target::V2(d) => d,
        };
        let mut devices: Vec<_> = rdma.iter().collect();
        devices.sort_by(|a, b| a.0.cmp(b.0));
        for (device, limits) in devices {
            let num = |v: Option<u32>| v.map_or("max".to_string(), |v| v.to_string());
            let value = format!(
                "{device} hca_handle={} hca_object={}",
                num(limits.hca_handles()),
                num(limits.hca_objects())
            );
            set(
                dir,
                "rdma.max",
                &value,
                &format!("linux.resources.rdma[{device:?}]"),
            )?;
        }
        Ok(())
    }

    fn devices(&self, rules: &[LinuxDeviceCgroup]) -> Result<()> {
        let rules = DeviceRule::parse_all(rules)?;
        if let Some(dir) = self.cg.v1_dir("devices") {
            return devices_v1(dir, &rules);
        }
        if let Some(u) = &self.cg.unified {
            return device_bpf::apply(&u.dir, &rules);
        }
        Err(self.missing("devices", "linux.resources.devices"))
    }

    fn unified(&self, map: &HashMap<String, String>) -> Result<()> {
        if map.is_empty() {
            return Ok(());
        }
        let Some(u) = &self.cg.unified else {
            return Err(Error::invalid(format!(
                "linux.resources.unified needs cgroup v2, and this host has {}; remove it or use \
                 the v1 fields of linux.resources",
                self.cg.layout
            )));
        };
        let mut entries: Vec<_> = map.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (key, value) in entries {
            let field = format!("linux.resources.unified[{key:?}]");
            if key.is_empty() || key.contains('/') || key.starts_with('.') {
                return Err(Error::invalid(format!(
                    "{field}: {key:?} is not a cgroup file name such as \"memory.high\""
                )));
            }
            let controller = key.split('.').next().unwrap_or_default();
            if controller != "cgroup" && self.v2_target(controller, &field)?.is_none() {
                return Err(Error::invalid(format!(
                    "{field} needs the {controller} controller in the cgroup2 hierarchy at {}, \
                     which does not have it ({})",
                    u.mount_point.display(),
                    self.cg.layout
                )));
            }
            set(&u.dir, key, value, &field)?;
        }
        Ok(())
    }
}

fn memory_v1(dir: &Path, m: &LinuxMemory) -> Result<()> {
    const LIMIT: &str = "memory.limit_in_bytes";
    const MEMSW: &str = "memory.memsw.limit_in_bytes";
    let mut swap = m.swap();
    if swap.is_some() && !dir.join(MEMSW).exists() {
        tracing::warn!(
            "linux.resources.memory.swap is ignored: swap accounting is off on this host \
             (boot with swapaccount=1 to enable it)"
        );
        swap = None;
    }
    let set_limit = |limit: i64| {
        set(
            dir,
            LIMIT,
            &limit.to_string(),
            "linux.resources.memory.limit",
        )
        .map_err(|e| {
            // The kernel refuses a memory limit above the current memory+swap limit.
            let memsw = read_trimmed(&dir.join(MEMSW)).unwrap_or_default();
            match (&e, memsw.parse::<i64>()) {
                (Error::Sys { errno, .. }, Ok(cur))
                    if *errno == Errno::EINVAL && (limit < 0 || limit > cur) =>
                {
                    Error::invalid(format!(
                        "{e}: the limit is above the current memory+swap limit ({cur}); \
                         set linux.resources.memory.swap too"
                    ))
                }
                _ => e,
            }
        })
    };
    let set_swap = |swap: i64| set(dir, MEMSW, &swap.to_string(), "linux.resources.memory.swap");
    match (m.limit(), swap) {
        (Some(limit), Some(swap)) => {
            // memory <= memory+swap must hold after every single write: raise memsw first when
            // it grows, lower the memory limit first otherwise.
            let cur = read_trimmed(&dir.join(MEMSW))
                .ctx(|| format!("read {}", dir.join(MEMSW).display()))?;
            let cur: u64 = cur.parse().unwrap_or(u64::MAX);
            let new = u64::try_from(swap).unwrap_or(u64::MAX);
            if new > cur {
                set_swap(swap)?;
                set_limit(limit)?;
            } else {
                set_limit(limit)?;
                set_swap(swap)?;
            }
        }
        (Some(limit), None) => set_limit(limit)?,
        (None, Some(swap)) => set_swap(swap)?,
        (None, None) => {}
    }
    if let Some(r) = m.reservation() {
        set(
            dir,
            "memory.soft_limit_in_bytes",
            &r.to_string(),
            "linux.resources.memory.reservation",
        )?;
    }
    if let Some(tcp) = m.kernel_tcp() {
        set(
            dir,
            "memory.kmem.tcp.limit_in_bytes",
            &tcp.to_string(),
            "linux.resources.memory.kernelTCP",
        )?;
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(Error::invalid(format!(
                "linux.resources.memory.swappiness={s} is out of range; use 0 to 100"
            )));
        }
        set(
            dir,
            "memory.swappiness",
            &s.to_string(),
            "linux.resources.memory.swappiness",
        )?;
    }
    if let Some(disable) = m.disable_oom_killer() {
        set(
            dir,
            "memory.oom_control",
            if disable { "1" } else { "0" },
            "linux.resources.memory.disableOOMKiller",
        )?;
    }
    Ok(())
}

fn memory_v2(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let max = |v: i64| {
        if v < 0 {
            "max".to_string()
        } else {
            v.to_string()
        }
    };
    if let Some(limit) = m.limit() {
        set(
            dir,
            "memory.max",
            &max(limit),
            "linux.resources.memory.limit",
        )?;
    }
    if let Some(r) = m.reservation() {
        set(
            dir,
            "memory.low",
            &max(r),
            "linux.resources.memory.reservation",
        )?;
    }
    if let Some(swap) = m.swap() {
        // OCI swap is memory+swap; v2 limits swap alone.
        let value = match (swap, m.limit()) {
            (s, _) if s < 0 => "max".to_string(),
            (s, Some(l)) if l > 0 => (s - l).to_string(),
            (s, _) => {
                return Err(Error::invalid(format!(
                    "linux.resources.memory.swap={s} needs a positive linux.resources.memory.limit \
                     on cgroup v2 (swap is the memory+swap total); set the limit or use swap=-1"
                )))
            }
        };
        if dir.join("memory.swap.max").exists() {
            set(
                dir,
                "memory.swap.max",
                &value,
                "linux.resources.memory.swap",
            )?;
        } else {
            tracing::warn!(
                "linux.resources.memory.swap is ignored: swap accounting is off on this host"
            );
        }
    }
    if m.kernel_tcp().is_some() {
        tracing::warn!("linux.resources.memory.kernelTCP is ignored: cgroup v2 has no such limit");
    }
    if m.swappiness().is_some() {
        tracing::warn!("linux.resources.memory.swappiness is ignored: cgroup v2 has no such knob");
    }
    if m.disable_oom_killer().is_some() {
        tracing::warn!(
            "linux.resources.memory.disableOOMKiller is ignored: cgroup v2 cannot disable the \
             OOM killer"
        );
    }
    Ok(())
}

fn cpu_v1(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(shares) = c.shares().filter(|&s| s != 0) {
        set(
            dir,
            "cpu.shares",
            &shares.to_string(),
            "linux.resources.cpu.shares",
        )?;
    }
    if let Some(period) = c.period().filter(|&p| p != 0) {
        set(
            dir,
            "cpu.cfs_period_us",
            &period.to_string(),
            "linux.resources.cpu.period",
        )?;
    }
    if let Some(quota) = c.quota().filter(|&q| q != 0) {
        set(
            dir,
            "cpu.cfs_quota_us",
            &quota.to_string(),
            "linux.resources.cpu.quota",
        )?;
    }
    if let Some(burst) = c.burst() {
        set(
            dir,
            "cpu.cfs_burst_us",
            &burst.to_string(),
            "linux.resources.cpu.burst",
        )?;
    }
    if let Some(idle) = c.idle() {
        set(
            dir,
            "cpu.idle",
            &idle.to_string(),
            "linux.resources.cpu.idle",
        )?;
    }
    let period = c.realtime_period().filter(|&p| p != 0);
    let runtime = c.realtime_runtime().filter(|&r| r != 0);
    let set_period = |p: u64| {
        set(
            dir,
            "cpu.rt_period_us",
            &p.to_string(),
            "linux.resources.cpu.realtimePeriod",
        )
    };
    let set_runtime = |r: i64| {
        set(
            dir,
            "cpu.rt_runtime_us",
            &r.to_string(),
            "linux.resources.cpu.realtimeRuntime",
        )
    };
    match (period, runtime) {
        (Some(p), Some(r)) => {
            // A period shorter than the current runtime is refused: then shrink runtime first.
            if set_period(p).is_err() {
                set_runtime(r)?;
                set_period(p)?;
            } else {
                set_runtime(r)?;
            }
        }
        (Some(p), None) => set_period(p)?,
        (None, Some(r)) => set_runtime(r)?,
        (None, None) => {}
    }
    Ok(())
}

/// Maps v1 `cpu.shares` (2..=262144, default 1024) onto v2 `cpu.weight` (1..=10000, default 100)
/// linearly, so that both ends and the defaults roughly line up.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + (shares - 2) * 9_999 / 262_142
}

/// Maps v1 `blkio.weight` (10..=1000) onto v2 `io.weight` (1..=10000) linearly.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9_999 / 990
}

fn cpu_v2(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if c.realtime_runtime().is_some_and(|r| r != 0) || c.realtime_period().is_some_and(|p| p != 0) {
        return Err(Error::invalid(
            "linux.resources.cpu.realtimeRuntime/realtimePeriod are not supported on cgroup v2; \
             remove them from the spec",
        ));
    }
    if let Some(shares) = c.shares().filter(|&s| s != 0) {
        set(
            dir,
            "cpu.weight",
            &shares_to_weight(shares).to_string(),
            "linux.resources.cpu.shares",
        )?;
    }
    let quota = c.quota().filter(|&q| q != 0);
    let period = c.period().filter(|&p| p != 0);
    if quota.is_some() || period.is_some() {
        let quota = match quota {
            Some(q) if q > 0 => q.to_string(),
            Some(_) => "max".to_string(),
            // Only the period changes: keep the current quota.
            None => read_trimmed(&dir.join("cpu.max"))
                .ok()
                .and_then(|s| s.split_whitespace().next().map(str::to_string))
                .unwrap_or_else(|| "max".to_string()),
        };
        let value = format!("{quota} {}", period.unwrap_or(DEFAULT_CPU_PERIOD));
        let field = if c.quota().is_some() {
            "linux.resources.cpu.quota"
        } else {
            "linux.resources.cpu.period"
        };
        set(dir, "cpu.max", &value, field)?;
    }
    if let Some(burst) = c.burst() {
        set(
            dir,
            "cpu.max.burst",
            &burst.to_string(),
            "linux.resources.cpu.burst",
        )?;
    }
    if let Some(idle) = c.idle() {
        set(
            dir,
            "cpu.idle",
            &idle.to_string(),
            "linux.resources.cpu.idle",
        )?;
    }
    Ok(())
}

/// The four throttle lists of `blockIO`, with their spec names and their v1 files / v2 keys.
fn throttles(
    b: &LinuxBlockIo,
) -> [(
    &'static str,
    &'static str,
    &'static str,
    &Option<Vec<oci_spec::runtime::LinuxThrottleDevice>>,
); 4] {
    [
        (
            "throttleReadBpsDevice",
            "blkio.throttle.read_bps_device",
            "rbps",
            b.throttle_read_bps_device(),
        ),
        (
            "throttleWriteBpsDevice",
            "blkio.throttle.write_bps_device",
            "wbps",
            b.throttle_write_bps_device(),
        ),
        (
            "throttleReadIOPSDevice",
            "blkio.throttle.read_iops_device",
            "riops",
            b.throttle_read_iops_device(),
        ),
        (
            "throttleWriteIOPSDevice",
            "blkio.throttle.write_iops_device",
            "wiops",
            b.throttle_write_iops_device(),
        ),
    ]
}

fn block_io_v1(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    // CFQ (blkio.weight) left Linux in 5.0; BFQ has its own files.
    let (weight_file, weight_device_file) = if dir.join("blkio.weight").exists() {
        ("blkio.weight", "blkio.weight_device")
    } else {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    };
    if let Some(w) = b.weight() {
        set(
            dir,
            weight_file,
            &w.to_string(),
            "linux.resources.blockIO.weight",
        )?;
    }
    for (i, d) in b.weight_device().iter().flatten().enumerate() {
        if let Some(w) = d.weight() {
            let value = format!("{}:{} {w}", d.major(), d.minor());
            let field = format!("linux.resources.blockIO.weightDevice[{i}]");
            set(dir, weight_device_file, &value, &field)?;
        }
    }
    for (name, file, _, list) in throttles(b) {
        for (i, d) in list.iter().flatten().enumerate() {
            let value = format!("{}:{} {}", d.major(), d.minor(), d.rate());
            set(
                dir,
                file,
                &value,
                &format!("linux.resources.blockIO.{name}[{i}]"),
            )?;
        }
    }
    Ok(())
}

fn block_io_v2(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    // BFQ takes the v1 scale (1..1000) as is; io.weight (iocost) has its own scale.
    let bfq = dir.join("io.bfq.weight").exists();
    let (file, scale): (&str, fn(u16) -> u64) = if bfq {
        ("io.bfq.weight", u64::from)
    } else {
        ("io.weight", blkio_weight_to_io_weight)
    };
    if let Some(w) = b.weight() {
        set(
            dir,
            file,
            &scale(w).to_string(),
            "linux.resources.blockIO.weight",
        )?;
    }
    for (i, d) in b.weight_device().iter().flatten().enumerate() {
        if let Some(w) = d.weight() {
            let value = format!("{}:{} {}", d.major(), d.minor(), scale(w));
            let field = format!("linux.resources.blockIO.weightDevice[{i}]");
            set(dir, file, &value, &field)?;
        }
    }
    for (name, _, key, list) in throttles(b) {
        for (i, d) in list.iter().flatten().enumerate() {
            let value = format!("{}:{} {key}={}", d.major(), d.minor(), d.rate());
            set(
                dir,
                "io.max",
                &value,
                &format!("linux.resources.blockIO.{name}[{i}]"),
            )?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Device rules
// ---------------------------------------------------------------------------------------------

/// Device kinds a rule can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DevKind {
    All,
    Char,
    Block,
}

/// Access bits of a device rule (the kernel's `BPF_DEVCG_ACC_*` values).
const ACC_MKNOD: u8 = 1;
const ACC_READ: u8 = 2;
const ACC_WRITE: u8 = 4;
const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// One `linux.resources.devices` entry, validated. Rules are evaluated in order and the last
/// one that matches a request decides; nothing matching means denied.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DeviceRule {
    allow: bool,
    kind: DevKind,
    major: Option<u32>,
    minor: Option<u32>,
    access: u8,
}

impl DeviceRule {
    fn parse_all(rules: &[LinuxDeviceCgroup]) -> Result<Vec<DeviceRule>> {
        let mut out = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            let field = format!("linux.resources.devices[{i}]");
            let kind = match r.typ().unwrap_or(LinuxDeviceType::A) {
                LinuxDeviceType::A => DevKind::All,
                LinuxDeviceType::C | LinuxDeviceType::U => DevKind::Char,
                LinuxDeviceType::B => DevKind::Block,
                LinuxDeviceType::P => {
                    tracing::debug!("{field}: FIFO rules are not device-cgroup rules; skipped");
                    continue;
                }
            };
            let number = |v: Option<i64>, what: &str| -> Result<Option<u32>> {
                match v {
                    None => Ok(None),
                    Some(n) if n < 0 => Ok(None),
                    Some(n) => u32::try_from(n).map(Some).map_err(|_| {
                        Error::invalid(format!("{field}.{what}={n} is not a device number"))
                    }),
                }
            };
            let mut access = 0;
            for ch in r.access().as_deref().unwrap_or("").chars() {
                access |= match ch {
                    'r' => ACC_READ,
                    'w' => ACC_WRITE,
                    'm' => ACC_MKNOD,
                    other => {
                        return Err(Error::invalid(format!(
                            "{field}.access {:?} has {other:?}; use a combination of r, w and m",
                            r.access().as_deref().unwrap_or("")
                        )))
                    }
                };
            }
            out.push(DeviceRule {
                allow: r.allow(),
                kind,
                major: number(r.major(), "major")?,
                minor: number(r.minor(), "minor")?,
                access: if access == 0 { ACC_ALL } else { access },
            });
        }
        Ok(out)
    }

    /// True if the rule covers every device of every kind with every access.
    fn is_everything(&self) -> bool {
        self.kind == DevKind::All
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == ACC_ALL
    }

    /// The rule in `devices.allow`/`devices.deny` syntax; a rule of kind "all" that names a
    /// device or a subset of access becomes one line per kind (the kernel's `a` ignores both).
    fn v1_lines(&self) -> Vec<String> {
        if self.is_everything() {
            return vec!["a".to_string()];
        }
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let mut access = String::new();
        for (bit, ch) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(ch);
            }
        }
        let kinds: &[char] = match self.kind {
            DevKind::All => &['c', 'b'],
            DevKind::Char => &['c'],
            DevKind::Block => &['b'],
        };
        kinds
            .iter()
            .map(|k| format!("{k} {}:{} {access}", num(self.major), num(self.minor)))
            .collect()
    }
}

/// v1: reset to "deny everything", then replay the rules in order into `devices.allow` and
/// `devices.deny`.
fn devices_v1(dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    set(
        dir,
        "devices.deny",
        "a",
        "linux.resources.devices (deny all first)",
    )?;
    for (i, r) in rules.iter().enumerate() {
        let file = if r.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        for line in r.v1_lines() {
            set(dir, file, &line, &format!("linux.resources.devices[{i}]"))?;
        }
    }
    Ok(())
}

/// cgroup v2 device control: a `BPF_PROG_TYPE_CGROUP_DEVICE` program built from the rules,
/// loaded and attached with raw `bpf(2)` calls.
mod device_bpf {
    use super::{DevKind, DeviceRule, ACC_MKNOD, ACC_READ, ACC_WRITE};
    use crate::error::{Error, Result, SysContext};
    use nix::errno::Errno;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::path::Path;

    // bpf(2) commands, program/attach types and flags (include/uapi/linux/bpf.h).
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_ATTACH: libc::c_long = 8;
    const BPF_PROG_DETACH: libc::c_long = 9;
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    const BPF_PROG_QUERY: libc::c_long = 16;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    const BPF_CGROUP_DEVICE: u32 = 6;
    const BPF_F_ALLOW_MULTI: u32 = 2;
    /// `bpf_cgroup_dev_ctx.access_type` low half: the device kind.
    const DEV_BLOCK: i32 = 1;
    const DEV_CHAR: i32 = 2;

    /// One eBPF instruction (`struct bpf_insn`).
    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Insn {
        code: u8,
        regs: u8,
        off: i16,
        imm: i32,
    }

    // Opcodes: class | op | source.
    const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
    const ALU64_MOV_K: u8 = 0xb7;
    const ALU64_MOV_X: u8 = 0xbf;
    const ALU64_AND_K: u8 = 0x57;
    const ALU64_RSH_K: u8 = 0x77;
    const JMP_JA: u8 = 0x05;
    const JMP_JNE_K: u8 = 0x55;
    const JMP_JSET_K: u8 = 0x45;
    const JMP_EXIT: u8 = 0x95;

    // Registers used: r1 = ctx, r2 = access_type, r3 = kind, r4 = access, r5 = major, r6 = minor.
    const R0: u8 = 0;
    const R1: u8 = 1;
    const R2: u8 = 2;
    const R3: u8 = 3;
    const R4: u8 = 4;
    const R5: u8 = 5;
    const R6: u8 = 6;

    fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        #[cfg(target_endian = "little")]
        let regs = dst | (src << 4);
        #[cfg(target_endian = "big")]
        let regs = (dst << 4) | src;
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }

    /// Compiles the rules. For each access bit the request carries (mknod, read, write), the
    /// rules are tried from the last to the first; the first that matches (kind, major, minor,
    /// and has that bit) allows or denies that bit. A bit no rule matches is denied. The request
    /// is allowed only if every requested bit is.
    pub(super) fn compile(rules: &[DeviceRule]) -> Vec<Insn> {
        let mut p = vec![
            insn(LDX_MEM_W, R2, R1, 0, 0), // access_type
            insn(ALU64_MOV_X, R3, R2, 0, 0),
            insn(ALU64_AND_K, R3, 0, 0, 0xffff), // kind
            insn(ALU64_MOV_X, R4, R2, 0, 0),
            insn(ALU64_RSH_K, R4, 0, 0, 16), // access bits
            insn(LDX_MEM_W, R5, R1, 4, 0),   // major
            insn(LDX_MEM_W, R6, R1, 8, 0),   // minor
        ];
        for bit in [ACC_MKNOD, ACC_READ, ACC_WRITE] {
            // Jumps to "this bit is granted", patched once the section's end is known.
            let mut to_end = Vec::new();
            // Bit not requested: skip the section.
            p.push(insn(JMP_JSET_K, R4, 0, 1, i32::from(bit)));
            to_end.push(p.len());
            p.push(insn(JMP_JA, 0, 0, 0, 0));
            let mut decided = false;
            for r in rules.iter().rev().filter(|r| r.access & bit != 0) {
                let mut checks = Vec::new();
                match r.kind {
                    DevKind::All => {}
                    DevKind::Char => checks.push((R3, DEV_CHAR)),
                    DevKind::Block => checks.push((R3, DEV_BLOCK)),
                }
                if let Some(m) = r.major {
                    checks.push((R5, m as i32));
                }
                if let Some(m) = r.minor {
                    checks.push((R6, m as i32));
                }
                let action_len = if r.allow { 1 } else { 2 };
                let n = checks.len();
                for (k, (reg, value)) in checks.iter().enumerate() {
                    // On mismatch skip the remaining checks and the action.
                    let skip = (n - k - 1 + action_len) as i16;
                    p.push(insn(JMP_JNE_K, *reg, 0, skip, *value));
                }
                if r.allow {
                    to_end.push(p.len());
                    p.push(insn(JMP_JA, 0, 0, 0, 0));
                } else {
                    p.push(insn(ALU64_MOV_K, R0, 0, 0, 0));
                    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
                }
                if n == 0 {
                    // Matches every request: later rules would be unreachable (the verifier
                    // refuses dead code).
                    decided = true;
                    break;
                }
            }
            if !decided {
                p.push(insn(ALU64_MOV_K, R0, 0, 0, 0));
                p.push(insn(JMP_EXIT, 0, 0, 0, 0));
            }
            let end = p.len();
            for at in to_end {
                p[at].off = (end - at - 1) as i16;
            }
        }
        p.push(insn(ALU64_MOV_K, R0, 0, 0, 1));
        p.push(insn(JMP_EXIT, 0, 0, 0, 0));
        p
    }

    #[repr(C)]
    #[derive(Default)]
    struct ProgLoadAttr {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }

    #[repr(C)]
    #[derive(Default)]
    struct AttachAttr {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
        replace_bpf_fd: u32,
    }

    #[repr(C)]
    #[derive(Default)]
    struct QueryAttr {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
        _pad: u32,
    }

    #[repr(C)]
    #[derive(Default)]
    struct GetFdAttr {
        prog_id: u32,
        next_id: u32,
        open_flags: u32,
    }

    fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> nix::Result<libc::c_long> {
        // SAFETY: `attr` is a live, fully initialized #[repr(C)] bpf_attr prefix of the given size.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                attr as *mut T as *mut libc::c_void,
                std::mem::size_of::<T>() as libc::c_uint,
            )
        };
        Errno::result(r)
    }

    fn load(prog: &[Insn], with_log: bool) -> (nix::Result<OwnedFd>, String) {
        let license = c"Apache-2.0";
        let mut log = vec![0u8; if with_log { 1 << 16 } else { 0 }];
        let mut name = [0u8; 16];
        name[..12].copy_from_slice(b"pouch_device");
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: prog.len() as u32,
            insns: prog.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name,
            ..Default::default()
        };
        if with_log {
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
        }
        let fd = bpf(BPF_PROG_LOAD, &mut attr).map(|fd| {
            // SAFETY: BPF_PROG_LOAD returned a new file descriptor that nothing else owns.
            unsafe { OwnedFd::from_raw_fd(fd as i32) }
        });
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        (fd, String::from_utf8_lossy(&log[..end]).trim().to_string())
    }

    /// Replaces the device program(s) attached to the cgroup `dir` with one built from `rules`.
    pub(super) fn apply(dir: &Path, rules: &[DeviceRule]) -> Result<()> {
        let prog = compile(rules);
        let prog_fd = match load(&prog, false) {
            (Ok(fd), _) => fd,
            (Err(errno), _) => {
                let (_, log) = load(&prog, true);
                let hint = if errno == Errno::EPERM {
                    " (needs CAP_SYS_ADMIN or CAP_BPF)"
                } else {
                    ""
                };
                return Err(Error::sys(
                    format!(
                        "linux.resources.devices: load the cgroup v2 device filter ({} \
                         instructions){hint}; verifier says: {log}",
                        prog.len()
                    ),
                    errno,
                ));
            }
        };
        let cg = std::fs::File::open(dir).ctx(|| format!("open {}", dir.display()))?;
        let old = query(&cg).unwrap_or_default();
        let mut attach = AttachAttr {
            target_fd: cg.as_raw_fd() as u32,
            attach_bpf_fd: prog_fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: BPF_F_ALLOW_MULTI,
            ..Default::default()
        };
        bpf(BPF_PROG_ATTACH, &mut attach).ctx(|| {
            format!(
                "linux.resources.devices: attach the device filter to {}",
                dir.display()
            )
        })?;
        // The new filter is in place: drop the ones an earlier apply attached.
        for id in old {
            let mut get = GetFdAttr {
                prog_id: id,
                ..Default::default()
            };
            let old_fd = match bpf(BPF_PROG_GET_FD_BY_ID, &mut get) {
                // SAFETY: a new file descriptor that nothing else owns.
                Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd as i32) },
                Err(e) => {
                    tracing::warn!("device filter {id} on {}: {e}", dir.display());
                    continue;
                }
            };
            let mut detach = AttachAttr {
                target_fd: cg.as_raw_fd() as u32,
                attach_bpf_fd: old_fd.as_raw_fd() as u32,
                attach_type: BPF_CGROUP_DEVICE,
                ..Default::default()
            };
            if let Err(e) = bpf(BPF_PROG_DETACH, &mut detach) {
                tracing::warn!("detach device filter {id} from {}: {e}", dir.display());
            }
        }
        Ok(())
    }

    /// Ids of the device programs attached directly to the cgroup.
    pub(super) fn query(cg: &std::fs::File) -> nix::Result<Vec<u32>> {
        let mut ids = vec![0u32; 64];
        let mut attr = QueryAttr {
            target_fd: cg.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..Default::default()
        };
        bpf(BPF_PROG_QUERY, &mut attr)?;
        ids.truncate(attr.prog_cnt as usize);
        Ok(ids)
    }
}

// ---------------------------------------------------------------------------------------------
// File helpers
// ---------------------------------------------------------------------------------------------

/// Writes `value` to an existing cgroup file with one `write(2)` (never creates or truncates).
fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    let n = f.write(value.as_bytes())?;
    if n != value.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
    }
    Ok(())
}

fn read_trimmed(path: &Path) -> io::Result<String> {
    Ok(fs::read_to_string(path)?.trim().to_string())
}

/// A number file; `Ok(None)` if it does not exist or says `max`.
fn read_u64(path: &Path) -> Result<Option<u64>> {
    match fs::read_to_string(path) {
        Ok(s) if s.trim() == "max" => Ok(None),
        Ok(s) => s.trim().parse().map(Some).map_err(|_| {
            Error::io(
                format!("read {}", path.display()),
                io::Error::new(io::ErrorKind::InvalidData, format!("not a number: {s:?}")),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}

/// Calls `each` for every pid of `dir/cgroup.procs` and of every cgroup below `dir` (depth
/// first) until it returns `true`; `Ok(true)` if it did. Child cgroups removed meanwhile are
/// skipped; `dir` itself missing is an error ([`is_gone`]).
fn walk_pids(dir: &Path, each: &mut dyn FnMut(Pid) -> bool) -> io::Result<bool> {
    let text = fs::read_to_string(dir.join("cgroup.procs"))?;
    for p in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        if each(Pid::from_raw(p)) {
            return Ok(true);
        }
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match walk_pids(&entry.path(), each) {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(e) if is_gone(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// A cgroup directory that does not exist (or was removed while being read: `ENODEV`).
fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
}

fn read_pids(path: &Path) -> Result<Vec<Pid>> {
    let text = fs::read_to_string(path).ctx(|| format!("read {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .map(Pid::from_raw)
        .collect())
}

/// An errno-carrying I/O error becomes [`Error::Sys`] (so it prints as `EINVAL: …`).
fn io_to_error(context: String, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(code) => Error::sys(context, Errno::from_raw(code)),
        None => Error::io(context, e),
    }
}

/// Writes one setting: `field` is the spec field it comes from, for the error message.
fn set(dir: &Path, file: &str, value: &str, field: &str) -> Result<()> {
    let path = dir.join(file);
    write_file(&path, value).map_err(|e| {
        let shown = if value.contains(char::is_whitespace) {
            format!("{value:?}")
        } else {
            value.to_string()
        };
        if e.kind() == io::ErrorKind::NotFound {
            if !dir.is_dir() {
                return Error::io(
                    format!(
                        "{field}={shown}: cgroup {} does not exist (create it first)",
                        dir.display()
                    ),
                    e,
                );
            }
            return Error::invalid(format!(
                "{field}={shown}: this host's kernel does not support it ({} does not exist)",
                path.display()
            ));
        }
        io_to_error(format!("{field}={shown}: write {}", path.display()), e)
    })
}

/// `mkdir -p base/components…`. If another process removes an empty ancestor while we create
/// the path (it cleans up the same parent), start over a few times.
fn mkdir_p(base: &Path, components: &[String]) -> Result<()> {
    let mut attempts = 0;
    'again: loop {
        let mut dir = base.to_path_buf();
        for c in components {
            dir.push(c);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 5 => {
                    attempts += 1;
                    continue 'again;
                }
                Err(e) => return Err(io_to_error(format!("create cgroup {}", dir.display()), e)),
            }
        }
        return Ok(());
    }
}

/// Enables in `dir/cgroup.subtree_control` every controller of `dir/cgroup.controllers` not yet
/// enabled. Failures are logged: they matter only if a resource needs that controller, and then
/// `apply` reports them.
fn enable_all_controllers(dir: &Path) {
    let available = read_trimmed(&dir.join("cgroup.controllers")).unwrap_or_default();
    let file = dir.join("cgroup.subtree_control");
    let enabled = read_trimmed(&file).unwrap_or_default();
    let missing: Vec<&str> = available
        .split_whitespace()
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .collect();
    if missing.is_empty() {
        return;
    }
    let all = missing
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    if write_file(&file, &all).is_ok() {
        return;
    }
    for c in missing {
        if let Err(e) = write_file(&file, &format!("+{c}")) {
            tracing::debug!("enable {c} in {}: {e}", file.display());
        }
    }
}

/// Removes a cgroup directory and its child cgroups (depth first). Retries `EBUSY` until
/// `deadline`; a missing directory is fine.
fn remove_cgroup_tree(dir: &Path, deadline: Instant) -> Result<()> {
    // The common case, a leaf that is already empty, needs no directory listing.
    match fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("read {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.ctx(|| format!("read {}", dir.display()))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&entry.path(), deadline)?;
        }
    }
    let mut pause = Duration::from_millis(1);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => {
                let pids = read_pids(&dir.join("cgroup.procs")).unwrap_or_default();
                let still = if pids.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (processes still in it: {})",
                        pids.iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                };
                return Err(io_to_error(
                    format!("remove cgroup {}{still}", dir.display()),
                    e,
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::waitpid;
    use nix::unistd::{fork, pipe, ForkResult};
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxNetworkBuilder,
        LinuxPidsBuilder, LinuxResourcesBuilder,
    };
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    /// Every test cgroup lives below this parent, removed by the last live test.
    const TEST_PARENT: &str = "pouch-test";
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    /// Number of live test cgroups; the parent is removed only when it drops to 0.
    static LIVE: Mutex<u32> = Mutex::new(0);

    const HYBRID_MOUNTINFO: &str = "\
23 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:9 - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 60 0:32 / /mnt/memory\\040again rw - cgroup cgroup rw,memory
";

    fn can_run() -> bool {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return false;
        }
        true
    }

    /// A uniquely named cgroup below `/pouch-test`, destroyed on drop (and the parent with the
    /// last one).
    struct TestCgroup {
        cg: Cgroup,
        layout: Layout,
    }

    impl TestCgroup {
        fn new(layout: Layout, name: &str) -> TestCgroup {
            *LIVE.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            let path = format!(
                "/{TEST_PARENT}/{}-{}-{name}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::SeqCst)
            );
            let cg = Cgroup::new(&layout, &path).unwrap();
            TestCgroup { cg, layout }
        }

        fn host(name: &str) -> TestCgroup {
            TestCgroup::new(Layout::detect().unwrap(), name)
        }
    }

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            let _ = self.cg.destroy();
            let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
            *live -= 1;
            if *live == 0 {
                let mounts = self
                    .layout
                    .v1_hierarchies()
                    .iter()
                    .map(|h| h.mount_point.clone())
                    .chain(self.layout.unified_mount().map(Path::to_path_buf));
                for m in mounts {
                    // Busy or not empty: someone else (another process) still uses it.
                    let _ = fs::remove_dir(m.join(TEST_PARENT));
                }
            }
        }
    }

    /// A forked child that blocks reading a pipe; killed by pid in `Drop`.
    struct Sleeper {
        pid: Pid,
        _wake: OwnedFd,
    }

    impl Sleeper {
        fn spawn() -> Sleeper {
            let (r, w) = pipe().unwrap();
            // SAFETY: the child only calls async-signal-safe functions, then _exit.
            match unsafe { fork() }.unwrap() {
                ForkResult::Child => unsafe {
                    let mut b = 0u8;
                    libc::read(r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
                    libc::_exit(0);
                },
                ForkResult::Parent { child } => Sleeper {
                    pid: child,
                    _wake: w,
                },
            }
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }

    fn read(dir: &Path, file: &str) -> String {
        read_trimmed(&dir.join(file)).unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
    }

    #[test]
    fn mountinfo_hybrid_is_classified_with_mount_points() {
        let layout = Layout::from_mountinfo(HYBRID_MOUNTINFO).unwrap();
        let Layout::Hybrid {
            hierarchies,
            unified,
        } = &layout
        else {
            panic!("not hybrid: {layout:?}");
        };
        assert_eq!(unified, Path::new("/sys/fs/cgroup/unified"));
        let names: Vec<_> = hierarchies
            .iter()
            .map(|h| h.controllers.join(","))
            .collect();
        // The second mount of the memory hierarchy (same device) is ignored.
        assert_eq!(names, ["cpu", "cpuacct", "memory", "name=systemd"]);
        assert_eq!(
            hierarchies[2].mount_point,
            Path::new("/sys/fs/cgroup/memory")
        );
    }

    #[test]
    fn mountinfo_v1_v2_and_none() {
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            Layout::from_mountinfo(v2).unwrap(),
            Layout::V2 {
                mount_point: "/sys/fs/cgroup".into()
            }
        );
        let v1 = "32 31 0:29 / /cg/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct,clone_children\n";
        assert_eq!(
            Layout::from_mountinfo(v1).unwrap(),
            Layout::V1 {
                hierarchies: vec![V1Hierarchy {
                    mount_point: "/cg/cpu,cpuacct".into(),
                    controllers: vec!["cpu".into(), "cpuacct".into()],
                }]
            }
        );
        let none = "23 1 0:21 / /sys rw,nosuid - sysfs sysfs rw\n";
        assert!(matches!(
            Layout::from_mountinfo(none),
            Err(Error::Invalid(_))
        ));
        assert_eq!(unescape_mountinfo("/a\\040b\\134c"), Path::new("/a b\\c"));
    }

    #[test]
    fn detect_finds_this_hosts_layout() {
        let layout = Layout::detect().unwrap();
        let unified = Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists();
        let v1_memory = Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
        if unified && v1_memory {
            let Layout::Hybrid {
                hierarchies,
                unified,
            } = &layout
            else {
                panic!("expected hybrid: {layout:?}");
            };
            assert_eq!(unified, Path::new("/sys/fs/cgroup/unified"));
            assert!(hierarchies.iter().any(|h| h.has("memory")));
            assert!(hierarchies.iter().any(|h| h.has("name=systemd")));
        }
    }

    #[test]
    fn paths_must_be_absolute_and_plain() {
        let layout = Layout::from_mountinfo(HYBRID_MOUNTINFO).unwrap();
        for bad in [
            "pouch/x",
            "",
            "system.slice:pouch:x",
            "/a/../b",
            "/",
            "//./",
        ] {
            let err = Cgroup::new(&layout, bad).unwrap_err().to_string();
            assert!(err.contains("linux.cgroupsPath"), "{bad:?}: {err}");
            assert!(matches!(Cgroup::new(&layout, bad), Err(Error::Invalid(_))));
        }
        let err = Cgroup::new(&layout, "pouch/x").unwrap_err().to_string();
        assert!(err.contains("absolute"), "{err}");
        let cg = Cgroup::new(&layout, "//pouch//x/./").unwrap();
        assert_eq!(cg.path(), "/pouch/x");
        assert_eq!(
            cg.paths(),
            [
                "/sys/fs/cgroup/cpu/pouch/x",
                "/sys/fs/cgroup/cpuacct/pouch/x",
                "/sys/fs/cgroup/memory/pouch/x",
                "/sys/fs/cgroup/systemd/pouch/x",
                "/sys/fs/cgroup/unified/pouch/x",
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn weight_conversions() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
    }

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: i64,
        minor: i64,
        access: &str,
    ) -> LinuxDeviceCgroup {
        LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .major(major)
            .minor(minor)
            .access(access)
            .build()
            .unwrap()
    }

    fn deny_all() -> LinuxDeviceCgroup {
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap()
    }

    #[test]
    fn device_rules_to_v1_lines() {
        let rules = DeviceRule::parse_all(&[
            deny_all(),
            rule(true, LinuxDeviceType::C, 1, 3, "rw"),
            rule(true, LinuxDeviceType::C, -1, -1, "m"),
            rule(false, LinuxDeviceType::A, 10, -1, "mwr"),
        ])
        .unwrap();
        let lines: Vec<_> = rules.iter().map(DeviceRule::v1_lines).collect();
        assert_eq!(
            lines,
            [
                vec!["a".to_string()],
                vec!["c 1:3 rw".to_string()],
                vec!["c *:* m".to_string()],
                vec!["c 10:* rwm".to_string(), "b 10:* rwm".to_string()],
            ]
        );
        let err = DeviceRule::parse_all(&[rule(true, LinuxDeviceType::C, 1, 3, "rx")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("linux.resources.devices[0].access"), "{err}");
    }

    #[test]
    fn bpf_program_jumps_stay_inside() {
        let rules = DeviceRule::parse_all(&[
            deny_all(),
            rule(true, LinuxDeviceType::C, 1, 3, "rwm"),
            rule(false, LinuxDeviceType::C, 1, 3, "w"),
            rule(true, LinuxDeviceType::A, -1, -1, "rwm"),
            rule(false, LinuxDeviceType::B, 8, -1, "r"),
        ])
        .unwrap();
        let prog = device_bpf::compile(&rules);
        let dbg = format!("{prog:?}");
        assert!(!prog.is_empty() && dbg.contains("code: 149")); // ends in exit
    }

    fn memory_limit_file(cg: &Cgroup) -> (PathBuf, &'static str) {
        match cg.v1_dir("memory") {
            Some(d) => (d.to_path_buf(), "memory.limit_in_bytes"),
            None => (cg.unified.as_ref().unwrap().dir.clone(), "memory.max"),
        }
    }

    #[test]
    fn create_apply_and_read_back() {
        if !can_run() {
            return;
        }
        let t = TestCgroup::host("apply");
        let cg = &t.cg;
        cg.create().unwrap();
        assert!(cg.exists());
        for p in cg.paths() {
            assert!(p.is_dir(), "{} missing", p.display());
        }
        if let Some(dir) = cg.v1_dir("cpuset") {
            assert!(
                !read(dir, "cpuset.cpus").is_empty(),
                "cpuset.cpus not inherited"
            );
            assert!(
                !read(dir, "cpuset.mems").is_empty(),
                "cpuset.mems not inherited"
            );
        }
        let resources = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64i64 << 20)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50_000i64)
                    .period(100_000u64)
                    .cpus("0")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        cg.apply(&resources).unwrap();

        let (dir, file) = memory_limit_file(cg);
        assert_eq!(read(&dir, file), (64u64 << 20).to_string());
        let pids_dir = cg
            .v1_dir("pids")
            .unwrap_or(&cg.unified.as_ref().unwrap().dir);
        assert_eq!(read(pids_dir, "pids.max"), "10");
        match cg.v1_dir("cpu") {
            Some(dir) => {
                assert_eq!(read(dir, "cpu.shares"), "512");
                assert_eq!(read(dir, "cpu.cfs_quota_us"), "50000");
                assert_eq!(read(dir, "cpu.cfs_period_us"), "100000");
            }
            None => {
                let dir = &cg.unified.as_ref().unwrap().dir;
                assert_eq!(read(dir, "cpu.weight"), shares_to_weight(512).to_string());
                assert_eq!(read(dir, "cpu.max"), "50000 100000");
            }
        }
        let cpuset = cg
            .v1_dir("cpuset")
            .unwrap_or(&cg.unified.as_ref().unwrap().dir);
        assert_eq!(read(cpuset, "cpuset.cpus"), "0");
        assert_eq!(read(cpuset, "cpuset.mems"), "0");

        let stats = cg.stats().unwrap();
        assert_eq!(stats.memory_limit, Some(64 << 20));
        assert_eq!(stats.pids_limit, Some(10));
        assert_eq!(stats.pids_current, Some(0));

        cg.destroy().unwrap();
        assert!(!cg.exists());
    }

    #[test]
    fn v1_memory_swap_order_when_raising_and_lowering() {
        if !can_run() {
            return;
        }
        let t = TestCgroup::host("swap");
        let cg = &t.cg;
        let Some(dir) = cg.v1_dir("memory").map(Path::to_path_buf) else {
            return;
        };
        if !Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() {
            return;
        }
        cg.create().unwrap();
        let mem = |limit: i64, swap: i64| {
            LinuxResourcesBuilder::default()
                .memory(
                    LinuxMemoryBuilder::default()
                        .limit(limit)
                        .swap(swap)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap()
        };
        for (limit, swap) in [
            (64i64 << 20, 128i64 << 20),
            (16 << 20, 32 << 20),   // lowering both: limit first
            (256 << 20, 512 << 20), // raising both: swap first
            (32 << 20, 1024 << 20),
        ] {
            cg.apply(&mem(limit, swap))
                .unwrap_or_else(|e| panic!("limit {limit} swap {swap}: {e}"));
            assert_eq!(read(&dir, "memory.limit_in_bytes"), limit.to_string());
            assert_eq!(read(&dir, "memory.memsw.limit_in_bytes"), swap.to_string());
        }
        // Raising only the limit above memory+swap says what to do.
        let only_limit = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(2048i64 << 20)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let err = cg.apply(&only_limit).unwrap_err().to_string();
        assert!(err.contains("linux.resources.memory.swap"), "{err}");
        let err = cg.apply(&mem(64 << 20, 32 << 20)).unwrap_err().to_string();
        assert!(err.contains("must be >= limit"), "{err}");
    }

    #[test]
    fn rejected_values_name_the_field() {
        if !can_run() {
            return;
        }
        let t = TestCgroup::host("reject");
        let cg = &t.cg;
        cg.create().unwrap();
        let bad = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().quota(1i64).build().unwrap())
            .build()
            .unwrap();
        let err = cg.apply(&bad).unwrap_err().to_string();
        assert!(
            err.starts_with("linux.resources.cpu.quota=1: write "),
            "{err}"
        );
        assert!(err.contains("EINVAL"), "{err}");

        // A controller this host lacks is named (net_cls is rarely mounted; skip if it is).
        if cg.v1_dir("net_cls").is_none() {
            let net = LinuxResourcesBuilder::default()
                .network(
                    LinuxNetworkBuilder::default()
                        .class_id(7u32)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap();
            let err = cg.apply(&net).unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{err}");
            assert!(err.to_string().contains("net_cls"), "{err}");
        }
    }

    #[test]
    fn unified_needs_v2() {
        let layout = Layout::V1 {
            hierarchies: vec![V1Hierarchy {
                mount_point: "/nonexistent/memory".into(),
                controllers: vec!["memory".into()],
            }],
        };
        let cg = Cgroup::new(&layout, "/pouch/x").unwrap();
        let mut map = HashMap::new();
        map.insert("memory.high".to_string(), "1000000".to_string());
        let r = LinuxResourcesBuilder::default()
            .unified(map)
            .build()
            .unwrap();
        let err = cg.apply(&r).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)));
        assert!(err.to_string().contains("linux.resources.unified"), "{err}");
    }

    #[test]
    fn tasks_freeze_thaw_and_destroy() {
        if !can_run() {
            return;
        }
        let t = TestCgroup::host("tasks");
        let cg = &t.cg;
        cg.create().unwrap();
        let child = Sleeper::spawn();
        cg.add_task(child.pid).unwrap();
        assert_eq!(cg.pids().unwrap(), [child.pid]);
        for dir in cg.paths() {
            let pids = read_pids(&dir.join("cgroup.procs")).unwrap();
            assert_eq!(pids, [child.pid], "{}", dir.display());
        }

        cg.freeze().unwrap();
        match cg.v1_dir("freezer") {
            Some(dir) => assert_eq!(read(dir, "freezer.state"), "FROZEN"),
            None => assert!(
                read(&cg.unified.as_ref().unwrap().dir, "cgroup.events").contains("frozen 1")
            ),
        }
        cg.thaw().unwrap();
        if let Some(dir) = cg.v1_dir("freezer") {
            assert_eq!(read(dir, "freezer.state"), "THAWED");
        }

        // While the child lives the cgroup is busy; once it is reaped, destroy succeeds.
        drop(child);
        cg.destroy().unwrap();
        assert!(!cg.exists());
        for p in cg.paths() {
            assert!(!p.exists(), "{} left behind", p.display());
        }
        cg.destroy().unwrap(); // idempotent
    }

    #[test]
    fn destroy_removes_child_cgroups() {
        if !can_run() {
            return;
        }
        let t = TestCgroup::host("children");
        let cg = &t.cg;
        cg.create().unwrap();
        for p in cg.paths() {
            fs::create_dir_all(p.join("sub/deeper")).unwrap();
        }
        cg.destroy().unwrap();
        assert!(!cg.exists());
    }

    /// `mkdir` of a child cgroup that tasks can join (in cpuset, with its parent's cpus and mems).
    fn mk_child(dir: &Path) {
        fs::create_dir(dir).unwrap();
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if read_trimmed(&dir.join(file)).is_ok_and(|v| v.is_empty()) {
                let parent = read(dir.parent().unwrap(), file);
                write_file(&dir.join(file), &parent).unwrap();
            }
        }
    }

    #[test]
    fn pids_populated_and_freeze_cover_child_cgroups() {
        if !can_run() {
            return;
        }
        let t = TestCgroup::host("subtree");
        let cg = &t.cg;
        assert!(
            !cg.is_populated().unwrap(),
            "a missing cgroup is not populated"
        );
        assert!(cg.pids().is_err(), "pids of a missing cgroup");
        cg.create().unwrap();
        assert!(!cg.is_populated().unwrap());
        assert_eq!(cg.pids().unwrap(), []);

        // A process that moved into a child cgroup of its own, in every hierarchy.
        let a = Sleeper::spawn();
        for dir in cg.paths() {
            mk_child(&dir.join("sub"));
            write_file(&dir.join("sub/cgroup.procs"), &a.pid.to_string()).unwrap();
        }
        assert!(cg.is_populated().unwrap());
        assert_eq!(cg.pids().unwrap(), [a.pid]);

        // Freezing the container's cgroup freezes the child cgroup too.
        cg.freeze().unwrap();
        match cg.v1_dir("freezer") {
            Some(dir) => assert_eq!(read(&dir.join("sub"), "freezer.state"), "FROZEN"),
            None => assert!(read(
                &cg.unified.as_ref().unwrap().dir.join("sub"),
                "cgroup.events"
            )
            .contains("frozen 1")),
        }
        cg.thaw().unwrap();

        // A process below the cgroup in one hierarchy only (the last: cgroup2 on a hybrid
        // host) is found too, and is enough to make another cgroup populated.
        let b = Sleeper::spawn();
        let last = cg.paths().pop().unwrap();
        mk_child(&last.join("sub/deeper"));
        write_file(&last.join("sub/deeper/cgroup.procs"), &b.pid.to_string()).unwrap();
        let mut want = vec![a.pid, b.pid];
        want.sort_unstable();
        assert_eq!(cg.pids().unwrap(), want);

        let t2 = TestCgroup::host("subtree-one");
        let cg2 = &t2.cg;
        cg2.create().unwrap();
        let last2 = cg2.paths().pop().unwrap();
        mk_child(&last2.join("sub"));
        let c = Sleeper::spawn();
        write_file(&last2.join("sub/cgroup.procs"), &c.pid.to_string()).unwrap();
        assert!(cg2.is_populated().unwrap());
        assert_eq!(cg2.pids().unwrap(), [c.pid]);
        drop((a, b, c));
        assert!(!cg.is_populated().unwrap());
        assert!(!cg2.is_populated().unwrap());
    }

    #[test]
    fn v1_device_rules() {
        if !can_run() {
            return;
        }
        let t = TestCgroup::host("devices");
        let cg = &t.cg;
        let Some(dir) = cg.v1_dir("devices").map(Path::to_path_buf) else {
            return;
        };
        cg.create().unwrap();
        let r = LinuxResourcesBuilder::default()
            .devices(vec![
                deny_all(),
                rule(true, LinuxDeviceType::C, 1, 3, "rwm"),
                rule(true, LinuxDeviceType::C, 1, 5, "r"),
                rule(false, LinuxDeviceType::C, 1, 3, "m"),
            ])
            .build()
            .unwrap();
        cg.apply(&r).unwrap();
        let list = read(&dir, "devices.list");
        let lines: Vec<&str> = list.lines().collect();
        assert!(lines.contains(&"c 1:3 rw"), "{list}");
        assert!(lines.contains(&"c 1:5 r"), "{list}");
        assert!(!lines.contains(&"a *:* rwm"), "{list}");
    }

    /// The cgroup2 side alone (device filter, freeze), on any host with a cgroup2 mount:
    /// without v1 hierarchies the devices go through eBPF and freeze through cgroup.freeze.
    #[test]
    fn cgroup2_device_filter_and_freeze() {
        if !can_run() {
            return;
        }
        let Some(unified) = Layout::detect()
            .unwrap()
            .unified_mount()
            .map(Path::to_path_buf)
        else {
            return;
        };
        let t = TestCgroup::new(
            Layout::Hybrid {
                hierarchies: vec![],
                unified,
            },
            "bpf",
        );
        let cg = &t.cg;
        cg.create().unwrap();

        // The child waits for a byte, tries three opens, reports one byte per open, repeats.
        let (go_r, go_w) = pipe().unwrap();
        let (res_r, res_w) = pipe().unwrap();
        // SAFETY: the child only calls async-signal-safe functions, then _exit.
        let pid = match unsafe { fork() }.unwrap() {
            ForkResult::Child => unsafe {
                let mut b = 0u8;
                while libc::read(go_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1) == 1 {
                    let mut out = [0u8; 3];
                    let tries = [
                        (c"/dev/null", libc::O_RDONLY),
                        (c"/dev/null", libc::O_WRONLY),
                        (c"/dev/zero", libc::O_RDONLY),
                    ];
                    for (i, (path, flags)) in tries.iter().enumerate() {
                        let fd = libc::open(path.as_ptr(), flags | libc::O_CLOEXEC);
                        out[i] = if fd >= 0 {
                            libc::close(fd);
                            b'y'
                        } else {
                            b'n'
                        };
                    }
                    libc::write(res_w.as_raw_fd(), out.as_ptr().cast(), 3);
                }
                libc::_exit(0);
            },
            ForkResult::Parent { child } => child,
        };
        let child = Sleeper {
            pid,
            _wake: go_w.try_clone().unwrap(),
        };
        let probe = || -> String {
            nix::unistd::write(&go_w, b"x").unwrap();
            let mut out = [0u8; 3];
            let mut got = 0;
            while got < 3 {
                got += nix::unistd::read(&res_r, &mut out[got..]).unwrap();
            }
            String::from_utf8_lossy(&out).into_owned()
        };
        cg.add_task(child.pid).unwrap();
        assert_eq!(probe(), "yyy");

        let devices = |rules: Vec<LinuxDeviceCgroup>| {
            LinuxResourcesBuilder::default()
                .devices(rules)
                .build()
                .unwrap()
        };
        // /dev/null readable only (a later deny takes w back), /dev/zero not at all.
        cg.apply(&devices(vec![
            deny_all(),
            rule(true, LinuxDeviceType::C, 1, 3, "rwm"),
            rule(false, LinuxDeviceType::C, 1, 3, "w"),
        ]))
        .unwrap();
        assert_eq!(probe(), "ynn");
        // Applying again replaces the filter instead of stacking another one.
        cg.apply(&devices(vec![
            deny_all(),
            rule(true, LinuxDeviceType::C, 1, -1, "rw"),
        ]))
        .unwrap();
        assert_eq!(probe(), "yyy");
        let dir = fs::File::open(&cg.unified.as_ref().unwrap().dir).unwrap();
        assert_eq!(device_bpf::query(&dir).unwrap().len(), 1);
        cg.apply(&devices(vec![rule(
            true,
            LinuxDeviceType::A,
            -1,
            -1,
            "rwm",
        )]))
        .unwrap();
        assert_eq!(probe(), "yyy");
        cg.apply(&devices(vec![])).unwrap();
        assert_eq!(probe(), "nnn");

        cg.freeze().unwrap();
        assert!(read(&cg.unified.as_ref().unwrap().dir, "cgroup.events").contains("frozen 1"));
        cg.thaw().unwrap();
        assert!(read(&cg.unified.as_ref().unwrap().dir, "cgroup.events").contains("frozen 0"));
        assert_eq!(cg.pids().unwrap(), [child.pid]);

        drop(child);
        cg.destroy().unwrap();
        assert!(!cg.exists());
    }
}
