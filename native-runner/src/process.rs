//! Creating a container's init process.
//!
//! ```text
//! runtime (create) ──fork──▶ setup process ──fork──▶ init (pid 1 of the container)
//!   writes id maps ◀─MapIds─┤ joins cgroup,         │ mounts, devices, pivot_root,
//!   ─IdsMapped──────────────▶ setns / unshare       │ sysctl, masked/ro paths, rlimits,
//!   ◀──────Pid(init)─────────┘ exits                 │ user, caps, seccomp, cwd
//!   records state ◀───────────────────Ready──────────┤
//!   ─Ack─────────────────────────────────────────────▶ waits on start.sock for `start`,
//!                                                      then execve (or the workload's run)
//! ```
//!
//! The handshake runs over a `SOCK_SEQPACKET` pair ([`crate::sync`]). The wait for `start` is a
//! listening unix socket in the container's state directory: it survives the `create` process
//! exiting, and `start` learns whether `execve` succeeded (the connection closes on exec, or the
//! init writes the error). Nothing here starts a thread; [`spawn_init`] refuses to fork from a
//! multi-threaded process.

use std::ffi::{CString, OsStr};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::socket::{
    accept4, bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Gid, Pid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Spec};

use crate::capabilities::CapabilitySets;
use crate::cgroups::Cgroup;
use crate::console::{setup_terminal, WinSize};
use crate::error::{Error, Result, SysContext};
use crate::hooks::run_hooks;
use crate::namespaces::{id_map_text, NamespacePlan};
use crate::rootfs::{self, CgroupMount, RootfsOptions};
use crate::seccomp::SeccompProgram;
use crate::sync::{Channel, Msg};
use crate::syscall::LinuxSyscall;

/// Name of the start socket inside the container's state directory.
pub const START_SOCKET: &str = "start.sock";

/// The default `PATH` when `process.env` has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the init process knows when it hands over to the workload.
#[derive(Debug)]
pub struct ExecContext {
    /// `process.args`.
    pub args: Vec<CString>,
    /// `process.env`.
    pub env: Vec<CString>,
    /// The resolved executable (set by [`Workload::prepare`] of native workloads).
    pub program: Option<PathBuf>,
}

impl ExecContext {
    /// `process.args` and `process.env` as C strings; errors name the field.
    pub fn from_process(process: &oci_spec::runtime::Process) -> Result<ExecContext> {
        let cstrings = |v: &[String], field: &str| -> Result<Vec<CString>> {
            v.iter()
                .map(|s| {
                    CString::new(s.as_bytes())
                        .map_err(|_| Error::invalid(format!("{field}: {s:?} contains a NUL byte")))
                })
                .collect()
        };
        let ctx = ExecContext {
            args: cstrings(process.args().as_deref().unwrap_or(&[]), "process.args")?,
            env: cstrings(process.env().as_deref().unwrap_or(&[]), "process.env")?,
            program: None,
        };
        if ctx.args.is_empty() {
            return Err(Error::invalid(
                "process.args: must have at least one element",
            ));
        }
        Ok(ctx)
    }
}

/// What runs in the container once it is set up: the executor seam.
///
/// In the init process, in this order: `load` once the rootfs is the container's `/` (still
/// privileged, before capabilities, seccomp and the user switch: compile here, with the
/// runtime's cache); `prepare` after every isolation step, before the init reports ready and
/// waits for `start`; `run` after `start`. An error from `load` or `prepare` fails `create`.
pub trait Workload {
    /// Loads the workload while the init still has the runtime's privileges.
    fn load(&mut self, _ctx: &ExecContext) -> Result<()> {
        Ok(())
    }
    /// Descriptors of the workload's own that the init must keep open until `load`.
    fn keep_fds(&self) -> Vec<i32> {
        Vec::new()
    }
    /// Checks and prepares the workload; an error fails `create`.
    fn prepare(&mut self, ctx: &mut ExecContext) -> Result<()>;
    /// Runs it. A native workload replaces the process (`execve`) and returns only on error;
    /// others call `started` once the program is about to run (so `start` returns; an error
    /// before that is reported by `start`) and return its exit status.
    fn run(&mut self, ctx: &ExecContext, started: &mut dyn FnMut()) -> Result<i32>;
}

/// A Linux program: `process.args[0]` looked up in the container's `PATH` and `execve`d.
#[derive(Debug, Default, Clone, Copy)]
pub struct NativeWorkload {
    /// Stay as PID 1 (a minimal init, like `docker run --init`): fork the program, pass it
    /// every signal, reap every orphan, and exit with the program's status.
    pub init: bool,
}

fn exec_program(ctx: &ExecContext) -> Error {
    let prog = ctx.program.as_ref().expect("prepare sets program");
    let p = CString::new(prog.as_os_str().as_bytes()).unwrap_or_default();
    let e = nix::unistd::execve(&p, &ctx.args, &ctx.env).unwrap_err();
    Error::sys(format!("exec {}", prog.display()), e)
}

impl Workload for NativeWorkload {
    fn prepare(&mut self, ctx: &mut ExecContext) -> Result<()> {
        let arg0 = ctx
            .args
            .first()
            .ok_or_else(|| Error::invalid("process.args: must have at least one element"))?;
        let arg0 = Path::new(OsStr::from_bytes(arg0.as_bytes()));
        ctx.program = Some(find_executable(arg0, &ctx.env)?);
        Ok(())
    }

    fn run(&mut self, ctx: &ExecContext, started: &mut dyn FnMut()) -> Result<i32> {
        if !self.init {
            // execve itself tells `start`: the start connection is close-on-exec.
            return Err(exec_program(ctx));
        }
        run_as_init(ctx, started)
    }
}

/// The `init` mode of [`NativeWorkload`]: we stay PID 1, the program runs as our child.
fn run_as_init(ctx: &ExecContext, started: &mut dyn FnMut()) -> Result<i32> {
    use nix::sys::wait::WaitPidFlag;
    // Every signal waits for us in sigwaitinfo; the child restores the defaults.
    let all = SigSet::all();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None)
        .ctx(|| "init: block signals".into())?;
    // A close-on-exec pipe tells whether execve worked: EOF yes, an error message no.
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "init: pipe".into())?;
    // SAFETY: the child only calls async-signal-safe functions until execve.
    let child = match unsafe { nix::unistd::fork() }.ctx(|| "init: fork".into())? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            reset_signals();
            // A process group of its own, in the foreground of the terminal if there is one.
            let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
            // SAFETY: tcsetpgrp on our stdin; ignoring SIGTTOU while doing so.
            unsafe {
                libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                libc::tcsetpgrp(0, libc::getpid());
                libc::signal(libc::SIGTTOU, libc::SIG_DFL);
            }
            let e = exec_program(ctx).to_string();
            let _ = nix::unistd::write(&w, e.as_bytes());
            // SAFETY: leaving the forked child without running the parent's destructors.
            unsafe { libc::_exit(127) };
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(w);
    let mut msg = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::fs::File::from(r), &mut msg);
    if !msg.is_empty() {
        let _ = nix::sys::wait::waitpid(child, None);
        return Err(Error::invalid(String::from_utf8_lossy(&msg).into_owned()));
    }
    started();
    loop {
        // Reap everything: the program, and orphans reparented to us.
        loop {
            let mut st = 0;
            // SAFETY: waitpid with a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut st, WaitPidFlag::WNOHANG.bits()) };
            if pid <= 0 {
                break;
            }
            if pid == child.as_raw() {
                if libc::WIFEXITED(st) {
                    return Ok(libc::WEXITSTATUS(st));
                }
                if libc::WIFSIGNALED(st) {
                    return Ok(128 + libc::WTERMSIG(st));
                }
            }
        }
        // SAFETY: sigwaitinfo with a valid set and a null info pointer.
        let sig = unsafe { libc::sigwaitinfo(all.as_ref(), std::ptr::null_mut()) };
        if sig > 0 && sig != libc::SIGCHLD {
            // SAFETY: passing a signal on to our child.
            unsafe { libc::kill(child.as_raw(), sig) };
        }
    }
}

/// Finds `arg0` as `execvp` would, with the container's `PATH`; the error says what was tried.
pub fn find_executable(arg0: &Path, env: &[CString]) -> Result<PathBuf> {
    let is_exec = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if arg0.as_os_str().as_bytes().contains(&b'/') {
        return if is_exec(arg0) {
            Ok(arg0.to_path_buf())
        } else if arg0.exists() {
            Err(Error::invalid(format!(
                "exec: {}: permission denied (not an executable file)",
                arg0.display()
            )))
        } else {
            Err(Error::invalid(format!(
                "exec: {}: no such file or directory in the container",
                arg0.display()
            )))
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.to_bytes().strip_prefix(b"PATH="))
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_else(|| DEFAULT_PATH.to_string());
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(arg0);
        if is_exec(&cand) {
            return Ok(cand);
        }
    }
    Err(Error::invalid(format!(
        "exec: {:?}: executable file not found in $PATH ({path})",
        arg0.display().to_string()
    )))
}

/// Everything [`spawn_init`] needs.
pub struct InitConfig<'a> {
    /// The container's spec.
    pub spec: &'a Spec,
    /// The bundle directory (relative mount sources are resolved against it).
    pub bundle: &'a Path,
    /// The rootfs, absolute.
    pub rootfs: &'a Path,
    /// The container's state directory; the start socket is created in it.
    pub state_dir: &'a Path,
    /// The container's cgroup, already created and configured; the setup process joins it.
    pub cgroup: Option<&'a Cgroup>,
    /// The cgroup hierarchies to show for `cgroup` mounts.
    pub cgroup_mounts: Vec<CgroupMount>,
    /// `chroot` instead of `pivot_root`.
    pub no_pivot: bool,
    /// Extra descriptors (from 3) the workload inherits.
    pub preserve_fds: i32,
    /// What runs once started.
    pub workload: &'a mut dyn Workload,
    /// For `process.terminal`: a connected unix socket to send the pty master over.
    pub console_socket: Option<OwnedFd>,
}

/// Fails if the calling process has more than one thread: forking then is unsafe.
pub fn ensure_single_threaded() -> Result<()> {
    let n = std::fs::read_dir("/proc/self/task")
        .ctx(|| "read /proc/self/task".into())?
        .count();
    if n > 1 {
        return Err(Error::invalid(format!(
            "refusing to create a container from a process with {n} threads: fork is only safe single-threaded; execute pouch-runtime instead"
        )));
    }
    Ok(())
}

/// What the runtime does at the two points of `create` where the init waits for it.
pub trait InitEvents {
    /// The init has its namespaces, cgroup and mounts but has not pivoted yet: run the
    /// `prestart` and `createRuntime` hooks here. Returns the state JSON the init gives to its
    /// own hooks (`createContainer`, `startContainer`). Only called when the spec has hooks.
    fn create_runtime(&mut self, init: Pid) -> Result<Vec<u8>>;
    /// The init is fully set up and waits for `start`: record the container. The init goes
    /// on only if this returns `Ok`.
    fn ready(&mut self, init: Pid) -> Result<()>;
}

/// Whether the spec has any hook that runs during `create` or `start`.
fn has_init_hooks(spec: &Spec) -> bool {
    #[allow(deprecated)]
    spec.hooks().as_ref().is_some_and(|h| {
        [
            h.prestart(),
            h.create_runtime(),
            h.create_container(),
            h.start_container(),
        ]
        .iter()
        .any(|v| v.as_ref().is_some_and(|v| !v.is_empty()))
    })
}

/// Creates the container's init process and leaves it waiting for `start`.
///
/// `events` is told when hooks must run and when the init is ready (see [`InitEvents`]). On any
/// error the init process is killed and reaped where possible; the caller removes the cgroup.
pub fn spawn_init(cfg: InitConfig<'_>, events: &mut dyn InitEvents) -> Result<Pid> {
    ensure_single_threaded()?;
    let linux = cfg.spec.linux().clone().unwrap_or_default();
    let plan = NamespacePlan::from_spec(&linux)?;
    if !plan.creates(LinuxNamespaceType::Mount) {
        return Err(Error::invalid(
            "linux.namespaces: pouch needs a new mount namespace ({\"type\": \"mount\"}) to set up the rootfs; add it",
        ));
    }
    validate_names(cfg.spec, &plan)?;
    validate_sysctl(&linux, &plan)?;
    let seccomp = match linux.seccomp() {
        Some(s) => Some(SeccompProgram::compile(s)?),
        None => None,
    };
    let process =
        cfg.spec.process().as_ref().ok_or_else(|| {
            Error::invalid("process: missing; a container needs a process to run")
        })?;
    if process.terminal().unwrap_or(false) && cfg.console_socket.is_none() {
        return Err(Error::invalid(
            "process.terminal is true but there is no console socket to send the terminal to; pass --console-socket",
        ));
    }
    let caps = match process.capabilities() {
        Some(c) => Some(CapabilitySets::from_spec(c)?),
        None => None,
    };
    let mut ctx = ExecContext::from_process(process)?;

    // Bound here, in the runtime's own namespaces and with its privileges: the init may not be
    // able to reach the state directory once it is in a user namespace.
    let listener = listen_for_start(cfg.state_dir)?;
    let (parent, child) = Channel::pair()?;
    // SAFETY: single-threaded (checked above); the child only runs our setup code and exits.
    match unsafe { fork() }.ctx(|| "fork the setup process".into())? {
        ForkResult::Child => {
            drop(parent);
            let setup = Setup {
                cfg,
                plan: &plan,
                seccomp: seccomp.as_ref(),
                caps: caps.as_ref(),
                chan: &child,
                listener: Some(listener),
            };
            let code = match setup.run_setup_process(&mut ctx) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = child.send(&Msg::Error(e.to_string()));
                    1
                }
            };
            // SAFETY: leave without running the parent's atexit handlers or destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child: setup_pid } => {
            drop(child);
            drop(listener);
            drive_handshake(&parent, setup_pid, &linux, events)
        }
    }
}

fn drive_handshake(
    chan: &Channel,
    setup_pid: Pid,
    linux: &oci_spec::runtime::Linux,
    events: &mut dyn InitEvents,
) -> Result<Pid> {
    let mut init: Option<Pid> = None;
    let mut ready = false;
    let mut hooks_pending = false;
    let mut setup_reaped = false;
    let result = (|| loop {
        match chan.recv()? {
            Some(Msg::MapIds) => {
                write_id_maps(setup_pid, linux)?;
                chan.send(&Msg::IdsMapped)?;
            }
            Some(Msg::Pid(p)) => {
                init = Some(Pid::from_raw(p));
                let _ = waitpid(setup_pid, None);
                setup_reaped = true;
            }
            Some(Msg::Ready) => ready = true,
            Some(Msg::RunHooks) => hooks_pending = true,
            Some(Msg::Error(e)) => return Err(Error::Invalid(e)),
            Some(other) => {
                return Err(Error::invalid(format!(
                    "create handshake: unexpected {other:?}"
                )))
            }
            None => {
                return Err(Error::invalid(
                    "the container's init process exited during setup without saying why",
                ))
            }
        }
        // The init's messages may overtake the setup process's Pid: act once both are in.
        if let (true, Some(pid)) = (hooks_pending, init) {
            hooks_pending = false;
            let state = events.create_runtime(pid)?;
            chan.send(&Msg::HookState(
                String::from_utf8_lossy(&state).into_owned(),
            ))?;
        }
        if let (true, Some(pid)) = (ready, init) {
            events.ready(pid)?;
            chan.send(&Msg::Ack)?;
            return Ok(pid);
        }
    })();
    if result.is_err() {
        if let Some(pid) = init {
            let _ = kill(pid, Signal::SIGKILL);
            // The init is our grandchild: it is reaped by our subreaper, or by init.
            let _ = waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        }
        let _ = kill(setup_pid, Signal::SIGKILL);
    }
    if !setup_reaped {
        let _ = waitpid(setup_pid, None);
    }
    result
}

fn write_id_maps(pid: Pid, linux: &oci_spec::runtime::Linux) -> Result<()> {
    for (file, maps) in [
        ("uid_map", linux.uid_mappings()),
        ("gid_map", linux.gid_mappings()),
    ] {
        let text = id_map_text(maps.as_deref().unwrap_or(&[]));
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, &text).ctx(|| {
            format!(
                "linux.{}: write {path} ({:?})",
                if file == "uid_map" {
                    "uidMappings"
                } else {
                    "gidMappings"
                },
                text.trim()
            )
        })?;
    }
    Ok(())
}

fn validate_names(spec: &Spec, plan: &NamespacePlan) -> Result<()> {
    let wants = spec.hostname().as_deref().is_some_and(|h| !h.is_empty())
        || spec.domainname().as_deref().is_some_and(|h| !h.is_empty());
    if wants && !plan.creates(LinuxNamespaceType::Uts) {
        return Err(Error::invalid(
            "hostname/domainname: setting them needs a new UTS namespace ({\"type\": \"uts\"} in linux.namespaces)",
        ));
    }
    Ok(())
}

/// Checks that every sysctl is namespaced and its namespace is the container's own.
pub fn validate_sysctl(linux: &oci_spec::runtime::Linux, plan: &NamespacePlan) -> Result<()> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    for key in linux.sysctl().iter().flat_map(|m| m.keys()) {
        let (ns, name) = if IPC.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
            (LinuxNamespaceType::Ipc, "ipc")
        } else if key.starts_with("net.") {
            (LinuxNamespaceType::Network, "network")
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            (LinuxNamespaceType::Uts, "uts")
        } else {
            return Err(Error::invalid(format!(
                "linux.sysctl: {key:?} is not namespaced, so setting it would change the host; remove it"
            )));
        };
        if !plan.is_private(ns) {
            return Err(Error::invalid(format!(
                "linux.sysctl: {key:?} needs the container to have its own {name} namespace (not the host's); add it to linux.namespaces"
            )));
        }
    }
    Ok(())
}

struct Setup<'a, 'b> {
    cfg: InitConfig<'b>,
    plan: &'a NamespacePlan,
    seccomp: Option<&'a SeccompProgram>,
    caps: Option<&'a CapabilitySets>,
    chan: &'a Channel,
    /// The start socket, until `start` connects: then closed, so that a workload which runs
    /// in the init itself (wasm) does not keep a listener a later `start` would hang on.
    listener: Option<OwnedFd>,
}

impl Setup<'_, '_> {
    /// The setup process: cgroup, namespaces, then fork the init.
    fn run_setup_process(mut self, ctx: &mut ExecContext) -> Result<()> {
        // If the runtime dies now, so do we.
        // SAFETY: prctl with constant arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        if let Some(cg) = self.cfg.cgroup {
            cg.add_task(nix::unistd::getpid())?;
        }
        self.plan.join_all()?;
        if self.plan.new_user {
            self.plan.unshare_user()?;
            self.chan.send(&Msg::MapIds)?;
            self.chan.expect(&Msg::IdsMapped)?;
            nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
                .ctx(|| "setgid 0 in the new user namespace (is container gid 0 mapped in linux.gidMappings?)".into())?;
            nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
                .ctx(|| "setuid 0 in the new user namespace (is container uid 0 mapped in linux.uidMappings?)".into())?;
        }
        self.plan.unshare_others()?;
        write_time_offsets(self.cfg.spec)?;
        // SAFETY: single-threaded.
        match unsafe { fork() }.ctx(|| "fork the container's init".into())? {
            ForkResult::Child => {
                let r = self.run_init(ctx);
                // Only errors come back: success ends in exec or in the workload's exit.
                let code = match r {
                    Ok(code) => code,
                    Err(e) => {
                        let _ = self.chan.send(&Msg::Error(e.to_string()));
                        1
                    }
                };
                // SAFETY: see above.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                self.chan.send(&Msg::Pid(child.as_raw()))?;
                Ok(())
            }
        }
    }

    /// The container's init: everything up to the wait for `start`, then the workload.
    fn run_init(&mut self, ctx: &mut ExecContext) -> Result<i32> {
        let spec = self.cfg.spec;
        let process = spec.process().as_ref().expect("checked");
        let sys = LinuxSyscall;
        let mut keep = vec![self.chan.as_raw_fd()];
        keep.extend(self.listener.as_ref().map(|l| l.as_raw_fd()));
        keep.extend(self.cfg.console_socket.as_ref().map(|c| c.as_raw_fd()));
        keep.extend(self.cfg.workload.keep_fds());
        close_inherited_fds(3 + self.cfg.preserve_fds.max(0), &keep)?;
        // Default dispositions now, before the workload loads: a wasm runtime installs the
        // signal handlers its traps need, which must stay.
        reset_signals();
        nix::unistd::setsid().ctx(|| "setsid".into())?;
        if let Some(adj) = process.oom_score_adj() {
            std::fs::write("/proc/self/oom_score_adj", adj.to_string())
                .ctx(|| format!("process.oomScoreAdj: write {adj}"))?;
        }
        set_rlimits(process)?;
        let opts = RootfsOptions {
            rootfs: self.cfg.rootfs,
            bundle: self.cfg.bundle,
            cgroup_ns: self.plan.creates(LinuxNamespaceType::Cgroup),
            user_ns: self.plan.has(LinuxNamespaceType::User),
            cgroup_mounts: &self.cfg.cgroup_mounts,
        };
        rootfs::prepare(&sys, spec, &opts)?;
        let hook_state = if has_init_hooks(spec) {
            self.chan.send(&Msg::RunHooks)?;
            let state = match self.chan.recv()? {
                Some(Msg::HookState(s)) => s.into_bytes(),
                Some(Msg::Error(e)) => return Err(Error::Invalid(e)),
                other => {
                    return Err(Error::invalid(format!(
                        "create handshake: expected the hook state, got {other:?}"
                    )))
                }
            };
            let hooks = spec.hooks().as_ref().expect("has hooks");
            run_hooks(
                hooks.create_container().as_deref().unwrap_or(&[]),
                "createContainer",
                &state,
            )?;
            Some(state)
        } else {
            None
        };
        rootfs::enter_root(&sys, self.cfg.rootfs, self.cfg.no_pivot)?;
        if let (true, Some(sock)) = (
            process.terminal().unwrap_or(false),
            &self.cfg.console_socket,
        ) {
            let size = process.console_size().map(|b| WinSize {
                rows: b.height() as u16,
                cols: b.width() as u16,
            });
            setup_terminal(&sys, sock, size, true)?;
        }
        self.cfg.console_socket = None;
        write_sysctls(spec)?;
        rootfs::finalize(&sys, spec)?;
        if self.plan.creates(LinuxNamespaceType::Uts) {
            rootfs::set_names(&sys, spec)?;
        }
        self.cfg.workload.load(ctx)?;
        let nnp = process.no_new_privileges().unwrap_or(false);
        if nnp {
            // SAFETY: prctl with constant arguments.
            let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            nix::errno::Errno::result(rc).ctx(|| "process.noNewPrivileges: prctl".into())?;
        } else if let Some(s) = self.seccomp {
            // Without no_new_privs the filter must be loaded while CAP_SYS_ADMIN is held.
            s.load()?;
        }
        switch_user(process, self.caps)?;
        enter_cwd(process.cwd())?;
        self.cfg.workload.prepare(ctx)?;
        if self.cfg.preserve_fds >= 0 {
            mark_cloexec_from(3 + self.cfg.preserve_fds);
        }
        self.chan.send(&Msg::Ready)?;
        self.chan.expect(&Msg::Ack)?;
        let listener = self
            .listener
            .take()
            .ok_or_else(|| Error::invalid("the start socket is gone"))?;
        let conn = loop {
            match accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
                Ok(fd) => break unsafe { OwnedFd::from_raw_fd(fd) },
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("wait for start (accept)", e)),
            }
        };
        drop(listener);
        let mut conn = std::fs::File::from(conn);
        if let (Some(state), Some(hooks)) = (&hook_state, spec.hooks()) {
            let start_hooks = hooks.start_container().as_deref().unwrap_or(&[]);
            if let Err(e) = run_hooks(start_hooks, "startContainer", state) {
                let _ = conn.write_all(e.to_string().as_bytes());
                return Ok(1);
            }
        }
        if nnp {
            if let Some(s) = self.seccomp {
                s.load()?;
            }
        }
        let mut conn = Some(conn);
        let r = self.cfg.workload.run(ctx, &mut || drop(conn.take()));
        match (r, conn) {
            (Ok(code), _) => Ok(code),
            (Err(e), Some(mut conn)) => {
                let _ = conn.write_all(e.to_string().as_bytes());
                Ok(127)
            }
            (Err(e), None) => {
                eprintln!("pouch: {e}");
                Ok(127)
            }
        }
    }
}

/// Drops to `process.user` with `caps`: bounding set, groups, gid, uid (keeping capabilities
/// across the switch), then the other capability sets and the umask.
pub(crate) fn switch_user(
    process: &oci_spec::runtime::Process,
    caps: Option<&CapabilitySets>,
) -> Result<()> {
    let user = process.user();
    if let Some(c) = caps {
        c.apply_bounding()?;
    }
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let gids: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    let in_userns_without_setgroups = std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() == "deny")
        .unwrap_or(false);
    if !in_userns_without_setgroups {
        nix::unistd::setgroups(&gids).ctx(|| "process.user.additionalGids: setgroups".into())?;
    }
    let (uid, gid) = (Uid::from_raw(user.uid()), Gid::from_raw(user.gid()));
    nix::unistd::setresgid(gid, gid, gid)
        .ctx(|| format!("process.user.gid: setgid {gid} (is it mapped in the user namespace?)"))?;
    nix::unistd::setresuid(uid, uid, uid)
        .ctx(|| format!("process.user.uid: setuid {uid} (is it mapped in the user namespace?)"))?;
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    if let Some(c) = caps {
        c.apply()?;
    }
    nix::sys::stat::umask(Mode::from_bits_truncate(user.umask().unwrap_or(0o022)));
    Ok(())
}

/// Creates the listening start socket in the container's state directory.
fn listen_for_start(state_dir: &Path) -> Result<OwnedFd> {
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ctx(|| "create the start socket".into())?;
    // A path through the directory's descriptor keeps long state paths within sun_path's
    // 108 bytes.
    let dir = std::fs::File::open(state_dir).ctx(|| format!("open {}", state_dir.display()))?;
    let name = format!("/proc/self/fd/{}/{START_SOCKET}", dir.as_raw_fd());
    let _ = std::fs::remove_file(&name);
    let addr = UnixAddr::new(name.as_str()).ctx(|| "start socket address".into())?;
    bind(sock.as_raw_fd(), &addr).ctx(|| format!("bind {}/{START_SOCKET}", state_dir.display()))?;
    listen(&sock, Backlog::new(4).expect("valid backlog"))
        .ctx(|| "listen on the start socket".into())?;
    Ok(sock)
}

fn write_time_offsets(spec: &Spec) -> Result<()> {
    let Some(offsets) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref())
    else {
        return Ok(());
    };
    let mut text = String::new();
    for (clock, off) in offsets {
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    std::fs::write("/proc/self/timens_offsets", text).ctx(|| {
        "linux.timeOffsets: write /proc/self/timens_offsets (needs a new time namespace)".into()
    })
}

fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

pub(crate) fn set_rlimits(process: &oci_spec::runtime::Process) -> Result<()> {
    let limits = process.rlimits().as_ref();
    for (i, r) in limits.into_iter().flatten().enumerate() {
        if r.soft() > r.hard() {
            return Err(Error::invalid(format!(
                "process.rlimits[{i}] ({}): soft limit {} is above the hard limit {}",
                r.typ(),
                r.soft(),
                r.hard()
            )));
        }
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: valid resource and struct.
        let rc = unsafe { libc::setrlimit(rlimit_resource(r.typ()), &lim) };
        nix::errno::Errno::result(rc).ctx(|| {
            format!(
                "process.rlimits[{i}] ({} soft {} hard {}): setrlimit",
                r.typ(),
                r.soft(),
                r.hard()
            )
        })?;
    }
    Ok(())
}

fn write_sysctls(spec: &Spec) -> Result<()> {
    let Some(map) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (k, v) in map {
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        std::fs::write(&path, v).ctx(|| format!("linux.sysctl: {k}={v}: write {path}"))?;
    }
    Ok(())
}

/// Default dispositions and an empty mask, as a freshly started program expects (the Rust
/// runtime ignores SIGPIPE, and an ignored signal stays ignored across execve).
pub(crate) fn reset_signals() {
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: resetting to SIG_DFL installs no handler.
            let _ = unsafe { nix::sys::signal::signal(sig, SigHandler::SigDfl) };
        }
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Closes every descriptor from `first` on except `keep`: what the caller of the runtime left
/// open must not reach the container (a descriptor of a host directory is a way out, e.g. as
/// the working directory through `/proc/self/fd/N`). Done before `chdir` and before seccomp.
pub(crate) fn close_inherited_fds(first: i32, keep: &[i32]) -> Result<()> {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .ctx(|| "list /proc/self/fd to close inherited descriptors".into())?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    for fd in fds {
        if fd >= first && !keep.contains(&fd) {
            // SAFETY: closing a descriptor we do not use (the directory listing's own
            // descriptor is closed already, a failed close is harmless).
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// Changes to the process's working directory and checks that it lies inside the
/// container's root (a path through `/proc/self/fd` could lead outside).
pub(crate) fn enter_cwd(cwd: &Path) -> Result<()> {
    let cwd = if cwd.as_os_str().is_empty() {
        Path::new("/")
    } else {
        cwd
    };
    nix::unistd::chdir(cwd).ctx(|| format!("process.cwd: chdir {}", cwd.display()))?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(Error::invalid(format!(
            "process.cwd: {} is outside the container's root",
            cwd.display()
        ))),
    }
}

pub(crate) fn mark_cloexec_from(first: i32) {
    // SAFETY: close_range with the CLOEXEC flag only changes descriptor flags.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_are_found_in_the_container_path() {
        let env = vec![CString::new("PATH=/nonexistent:/bin:/usr/bin").unwrap()];
        assert!(find_executable(Path::new("sh"), &env)
            .unwrap()
            .ends_with("sh"));
        let e = find_executable(Path::new("no-such-prog"), &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("executable file not found") && e.contains("no-such-prog"),
            "{e}"
        );
        let d = tempfile::tempdir().unwrap();
        let plain = d.path().join("plain");
        std::fs::write(&plain, "not a program").unwrap();
        let e = find_executable(&plain, &env).unwrap_err().to_string();
        assert!(e.contains("permission denied"), "{e}");
    }

    #[test]
    fn host_sysctls_are_refused() {
        let linux: oci_spec::runtime::Linux = serde_json::from_str(
            r#"{"namespaces":[{"type":"mount"},{"type":"network"}],"sysctl":{"vm.swappiness":"10"}}"#,
        )
        .unwrap();
        let plan = NamespacePlan::from_spec(&linux).unwrap();
        let e = validate_sysctl(&linux, &plan).unwrap_err().to_string();
        assert!(
            e.contains("vm.swappiness") && e.contains("not namespaced"),
            "{e}"
        );
        let linux: oci_spec::runtime::Linux = serde_json::from_str(
            r#"{"namespaces":[{"type":"mount"}],"sysctl":{"kernel.shmmax":"10"}}"#,
        )
        .unwrap();
        let plan = NamespacePlan::from_spec(&linux).unwrap();
        let e = validate_sysctl(&linux, &plan).unwrap_err().to_string();
        assert!(e.contains("ipc namespace"), "{e}");
        // Joining the runtime's own network namespace is the host's: refused.
        let linux: oci_spec::runtime::Linux = serde_json::from_str(
            r#"{"namespaces":[{"type":"mount"},{"type":"network","path":"/proc/self/ns/net"}],"sysctl":{"net.ipv4.ip_forward":"1"}}"#,
        )
        .unwrap();
        let plan = NamespacePlan::from_spec(&linux).unwrap();
        let e = validate_sysctl(&linux, &plan).unwrap_err().to_string();
        assert!(e.contains("not the host's"), "{e}");
    }
}
