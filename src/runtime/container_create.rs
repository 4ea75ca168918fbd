//! `create`: set the container up and leave its init waiting for `start`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use native_runner::cgroups::{Cgroup, Layout};
use native_runner::hooks::run_hooks;
use native_runner::process::{spawn_init, InitConfig, InitEvents, NativeWorkload, Workload};
use native_runner::rootfs::CgroupMount;
use nix::unistd::Pid;

use super::process_handle::{boot_id, stat_of};
use super::state::{now_rfc3339, ContainerDir, ContainerRecord, ContainerState, Status};
use super::{Error, Runtime};
use crate::dispatch::Executor;
use crate::spec::{load_bundle_spec, rootfs_path};
use crate::wasm::cache::CompileCache;
use crate::wasm::WasmWorkload;

/// The options of `create` (and of `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The bundle directory (holds config.json).
    pub bundle: PathBuf,
    /// Where to write the init's pid.
    pub pid_file: Option<PathBuf>,
    /// The unix socket to send a terminal's master to (`process.terminal`).
    pub console_socket: Option<PathBuf>,
    /// How many descriptors after stdio the container inherits.
    pub preserve_fds: u32,
    /// `chroot` instead of `pivot_root`.
    pub no_pivot: bool,
}

/// The cgroup path a container gets when the spec has none.
pub fn default_cgroup_path(id: &str) -> String {
    format!("/pouch/{id}")
}

/// The hierarchies a `cgroup` mount shows inside the container.
pub fn cgroup_mounts(layout: &Layout, cgroup_path: &str) -> Vec<CgroupMount> {
    let rel = cgroup_path.trim_start_matches('/');
    let name_of = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut v: Vec<CgroupMount> = layout
        .v1_hierarchies()
        .iter()
        .map(|h| CgroupMount {
            name: name_of(&h.mount_point),
            fstype: "cgroup",
            data: h.controllers.join(","),
            host_dir: h.mount_point.join(rel),
        })
        .collect();
    if let Some(u) = layout.unified_mount() {
        v.push(CgroupMount {
            name: if matches!(layout, Layout::V2 { .. }) {
                String::new()
            } else {
                name_of(u)
            },
            fstype: "cgroup2",
            data: String::new(),
            host_dir: u.join(rel),
        });
    }
    v
}

impl Runtime {
    /// Creates container `id` from a bundle: checks the spec, creates the cgroup and the init
    /// process, records the state. On failure nothing is left behind.
    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<ContainerState, Error> {
        let console = match &opts.console_socket {
            Some(p) => Some(OwnedFd::from(UnixStream::connect(p).map_err(|e| {
                Error::io(format!("--console-socket: connect to {}", p.display()), e)
            })?)),
            None => None,
        };
        self.create_with_console(id, opts, console, false)
            .map(|(state, _)| state)
    }

    /// [`Runtime::create`] with an already connected console socket (for `run` in the
    /// foreground, which keeps the other end).
    ///
    /// With `own_terminal`, a container whose spec asks for a terminal gets one whose master
    /// is returned (for a foreground `run` without `--console-socket`).
    pub fn create_with_console(
        &self,
        id: &str,
        opts: &CreateOptions,
        mut console: Option<OwnedFd>,
        own_terminal: bool,
    ) -> Result<(ContainerState, Option<OwnedFd>), Error> {
        super::validate_id(id)?;
        let bundle = std::fs::canonicalize(&opts.bundle)
            .map_err(|e| Error::Spec(format!("bundle {}: {e}", opts.bundle.display())))?;
        let spec = load_bundle_spec(&bundle)?;
        let rootfs = rootfs_path(&bundle, &spec);
        let rootfs = std::fs::canonicalize(&rootfs)
            .ok()
            .filter(|p| p.is_dir())
            .ok_or_else(|| {
                Error::Spec(format!(
                    "root.path: rootfs {} does not exist or is not a directory",
                    rootfs.display()
                ))
            })?;
        let terminal = spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        if console.is_some() && !terminal {
            return Err(Error::Spec(
                "--console-socket is given but process.terminal is false: drop the flag or set terminal to true".into(),
            ));
        }
        let mut our_end = None;
        if console.is_none() && terminal && own_terminal {
            let (a, b) =
                UnixStream::pair().map_err(|e| Error::io("socketpair for the terminal", e))?;
            console = Some(OwnedFd::from(a));
            our_end = Some(b);
        }
        if console.is_none() && terminal {
            return Err(Error::Spec(
                "process.terminal is true: pass --console-socket to receive the terminal (or run in the foreground)".into(),
            ));
        }
        let linux = spec.linux().clone().unwrap_or_default();
        let cgroup_path = linux
            .cgroups_path()
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| default_cgroup_path(id));
        let layout = Layout::detect()?;
        let cgroup = Cgroup::new(&layout, &cgroup_path)?;

        let mut rec = ContainerRecord {
            id: id.to_string(),
            bundle: bundle.clone(),
            rootfs: rootfs.clone(),
            pid: 0,
            pid_start_time: 0,
            boot_id: boot_id(),
            created: now_rfc3339(),
            cgroup_path: cgroup_path.clone(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            freeze_file: cgroup.freeze_state_file(),
            executor: String::new(),
            hooks: spec.hooks().clone(),
        };
        // A duplicate id is reported as such, before the cgroup is looked at.
        if self.container_dir(id)?.symlink_metadata().is_ok() {
            return Err(Error::AlreadyExists(id.to_string()));
        }
        // A cgroup that already has processes is someone else's (or another container's):
        // refused, as runc does, or a failed create, `kill --all` and `delete` would kill those
        // processes and remove the cgroup. An existing empty one is fine. Checked before the
        // first record names the cgroup: a `delete` after a crash acts on that record.
        check_cgroup_unused(&cgroup, &cgroup_path)?;
        let (dir, _lock) = super::state::ContainerDir::create(self, id, &rec)?;
        super::fault_point("create:state-dir");
        let result = (|| -> Result<(), Error> {
            cgroup.create()?;
            // Always applied: the device rules at least (deny all but the defaults).
            let mut res = linux.resources().clone().unwrap_or_default();
            res.set_devices(Some(native_runner::rootfs::device_cgroup_rules(&spec)));
            cgroup.apply(&res)?;
            super::fault_point("create:cgroup");
            let decision = crate::dispatch::decide(&spec, &rootfs, None)
                .map_err(|e| Error::Spec(e.to_string()))?;
            tracing::debug!(id, rule = ?decision.rule, "dispatch: {:?}: {}", decision.executor, decision.why);
            rec.executor = match decision.executor {
                Executor::Native => "native".into(),
                Executor::Wasm { .. } => "wasm".into(),
            };
            dir.save(&rec)?;
            let mut native = NativeWorkload {
                init: spec
                    .annotations()
                    .as_ref()
                    .and_then(|a| a.get(super::INIT_ANNOTATION))
                    .is_some_and(|v| v == "true"),
            };
            let mut wasm;
            let workload: &mut dyn Workload = match decision.executor {
                Executor::Native => &mut native,
                Executor::Wasm { kind, path } => {
                    let cache = match CompileCache::open(self.wasm_cache()) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            tracing::warn!(
                                "wasm cache {}: {e}; compiling without it",
                                self.wasm_cache().display()
                            );
                            None
                        }
                    };
                    let readonly = spec
                        .root()
                        .as_ref()
                        .and_then(|r| r.readonly())
                        .unwrap_or(false);
                    let mem = linux
                        .resources()
                        .as_ref()
                        .and_then(|r| r.memory().as_ref())
                        .and_then(|m| m.limit());
                    let timeout =
                        crate::wasm::timeout_from_annotations(&spec).map_err(Error::Spec)?;
                    wasm = WasmWorkload::new(
                        kind,
                        path,
                        readonly,
                        crate::wasm::writable_mounts(&spec),
                        mem,
                        cache,
                    )
                    .with_timeout(timeout);
                    &mut wasm
                }
            };
            let cfg = InitConfig {
                spec: &spec,
                bundle: &bundle,
                rootfs: &rootfs,
                state_dir: &dir.path,
                cgroup: Some(&cgroup),
                cgroup_mounts: cgroup_mounts(&layout, &cgroup_path),
                no_pivot: opts.no_pivot,
                preserve_fds: opts.preserve_fds as i32,
                workload,
                console_socket: console,
            };
            let mut events = CreateEvents {
                dir: &dir,
                rec: &mut rec,
                pid_file: opts.pid_file.as_deref(),
            };
            spawn_init(cfg, &mut events)?;
            Ok(())
        })();
        if let Err(e) = result {
            cleanup_failed_create(&dir, &cgroup);
            return Err(e);
        }
        super::fault_point("create:done");
        tracing::debug!(id, pid = rec.pid, cgroup = %cgroup_path, "created");
        let master = match our_end {
            Some(s) => match native_runner::console::recv_fd(s.as_raw_fd()) {
                Ok(m) => Some(m),
                Err(e) => {
                    drop(_lock);
                    let _ = self.delete(id, true);
                    return Err(e.into());
                }
            },
            None => None,
        };
        Ok((dir.state(&rec), master))
    }
}

/// The runtime's side of the create handshake: hooks in the runtime's namespaces, and the
/// record of the container once its init is ready.
struct CreateEvents<'a> {
    dir: &'a ContainerDir,
    rec: &'a mut ContainerRecord,
    pid_file: Option<&'a Path>,
}

impl InitEvents for CreateEvents<'_> {
    fn create_runtime(&mut self, init: Pid) -> native_runner::Result<Vec<u8>> {
        self.rec.pid = init.as_raw();
        let mut state = self.dir.state(self.rec);
        state.status = Status::Creating;
        state.pid = init.as_raw();
        let json = serde_json::to_vec(&state).unwrap_or_default();
        if let Some(h) = &self.rec.hooks {
            #[allow(deprecated)]
            let prestart = h.prestart().as_deref().unwrap_or(&[]);
            run_hooks(prestart, "prestart", &json)?;
            run_hooks(
                h.create_runtime().as_deref().unwrap_or(&[]),
                "createRuntime",
                &json,
            )?;
        }
        Ok(json)
    }

    fn ready(&mut self, init: Pid) -> native_runner::Result<()> {
        super::fault_point("create:init-ready");
        let rec = &mut *self.rec;
        rec.pid = init.as_raw();
        rec.pid_start_time = stat_of(rec.pid).map(|s| s.0).unwrap_or(0);
        self.dir
            .save(rec)
            .map_err(|e| native_runner::Error::invalid(e.to_string()))?;
        super::fault_point("create:init-recorded");
        if let Some(pf) = self.pid_file {
            write_pid_file(pf, rec.pid)
                .map_err(|e| native_runner::Error::invalid(e.to_string()))?;
        }
        Ok(())
    }
}

/// Fails if the cgroup exists with processes in it (or below it, in any hierarchy).
fn check_cgroup_unused(cgroup: &Cgroup, cgroup_path: &str) -> Result<(), Error> {
    if !cgroup.is_populated()? {
        return Ok(());
    }
    let n = cgroup.pids().map(|p| p.len()).unwrap_or(0);
    Err(Error::Other(format!(
        "linux.cgroupsPath {cgroup_path:?}: cgroup {} is not empty: {n} process(es) in it or \
         below it; give the container a cgroup of its own",
        cgroup.path()
    )))
}

/// Undoes a create that failed after the state directory was made. The cgroup was empty (or
/// missing) before ([`check_cgroup_unused`]), so whatever is in it now is this container's.
fn cleanup_failed_create(dir: &ContainerDir, cgroup: &Cgroup) {
    if let Ok(pids) = cgroup.pids() {
        for p in pids {
            let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
        }
    }
    if let Err(e) = cgroup.destroy() {
        tracing::warn!("cleanup after failed create: {e}");
    }
    if let Err(e) = dir.remove() {
        tracing::warn!("cleanup after failed create: {e}");
    }
}

/// Writes a pid file atomically, as runc does (callers poll for it).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<(), Error> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, pid.to_string())
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| Error::io(format!("--pid-file: write {}", path.display()), e))
}
