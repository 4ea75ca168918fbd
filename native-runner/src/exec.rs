//! Running an extra process in an existing container (`exec`): it joins every namespace and the
//! cgroup of the container's init and gets the same isolation as an init would (rlimits,
//! `no_new_privs`, seccomp, capabilities, user), from its own `process` description.
//!
//! ```text
//! runtime (exec) ──fork──▶ joiner: cgroup, setns(user, …, mnt) ──fork──▶ process (in the pid ns)
//!      ◀────────────Pid────────┘ exits                                   │ rlimits, user, caps,
//!      ◀──────────── channel closes on execve, or Error ─────────────────┘ seccomp, execve
//! ```

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::{open, OFlag};
use nix::sched::setns;
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::{LinuxNamespaceType, LinuxSeccomp, Process};

use crate::capabilities::CapabilitySets;
use crate::cgroups::Cgroup;
use crate::console::{setup_terminal, WinSize};
use crate::error::{Error, Result, SysContext};
use crate::namespaces::{clone_flag, spec_name};
use crate::process::{
    close_inherited_fds, ensure_single_threaded, enter_cwd, mark_cloexec_from, reset_signals,
    set_rlimits, switch_user, ExecContext, NativeWorkload, Workload,
};
use crate::seccomp::SeccompProgram;
use crate::sync::{Channel, Msg};
use crate::syscall::LinuxSyscall;

/// What [`spawn_exec`] needs.
pub struct ExecConfig<'a> {
    /// The container's init, whose namespaces are joined.
    pub init_pid: Pid,
    /// The container's namespace types (from its spec).
    pub namespaces: Vec<LinuxNamespaceType>,
    /// The process to run.
    pub process: &'a Process,
    /// The container's seccomp profile.
    pub seccomp: Option<&'a LinuxSeccomp>,
    /// The container's cgroup, joined first.
    pub cgroup: Option<&'a Cgroup>,
    /// Extra descriptors (from 3) the process inherits.
    pub preserve_fds: i32,
    /// For `process.terminal`: a connected unix socket to send the pty master over.
    pub console_socket: Option<OwnedFd>,
}

fn ns_file(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Network => "net",
        other => spec_name(other),
    }
}

/// Starts the process in the container; returns its pid (in the runtime's pid namespace)
/// once it has executed, or the error that prevented it.
pub fn spawn_exec(cfg: ExecConfig<'_>) -> Result<Pid> {
    ensure_single_threaded()?;
    // Open every namespace now (the joiner loses the host's /proc once it enters the mount
    // namespace); skip those we already share, which setns would refuse for a user namespace.
    let mut order = cfg.namespaces.clone();
    order.sort_by_key(|t| match t {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Mount => 2,
        _ => 1,
    });
    let mut joins: Vec<(LinuxNamespaceType, OwnedFd)> = Vec::new();
    for t in order {
        let theirs = format!("/proc/{}/ns/{}", cfg.init_pid, ns_file(t));
        let ours = format!("/proc/self/ns/{}", ns_file(t));
        if std::fs::read_link(&theirs).ok() == std::fs::read_link(&ours).ok() {
            continue;
        }
        let fd = open(
            theirs.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open {theirs} (has the container stopped?)"))?;
        joins.push((t, fd));
    }
    let seccomp = cfg.seccomp.map(SeccompProgram::compile).transpose()?;
    let caps = cfg
        .process
        .capabilities()
        .as_ref()
        .map(CapabilitySets::from_spec)
        .transpose()?;
    let mut ctx = ExecContext::from_process(cfg.process)?;
    let (parent, child) = Channel::pair()?;
    // SAFETY: single-threaded (checked above).
    match unsafe { fork() }.ctx(|| "fork the exec joiner".into())? {
        ForkResult::Child => {
            drop(parent);
            let code = match joiner(
                &cfg,
                &joins,
                seccomp.as_ref(),
                caps.as_ref(),
                &child,
                &mut ctx,
            ) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = child.send(&Msg::Error(e.to_string()));
                    1
                }
            };
            // SAFETY: leave without running destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child: joiner_pid } => {
            drop(child);
            let mut pid = None;
            let result = loop {
                match parent.recv() {
                    Ok(Some(Msg::Pid(p))) => {
                        pid = Some(Pid::from_raw(p));
                        let _ = waitpid(joiner_pid, None);
                    }
                    Ok(Some(Msg::Error(e))) => break Err(Error::Invalid(e)),
                    Ok(Some(other)) => {
                        break Err(Error::invalid(format!(
                            "exec handshake: unexpected {other:?}"
                        )))
                    }
                    // Closed on execve (close-on-exec), or everyone exited.
                    Ok(None) => {
                        break pid.ok_or_else(|| {
                            Error::invalid("the exec process exited before it started")
                        })
                    }
                    Err(e) => break Err(e),
                }
            };
            if pid.is_none() {
                let _ = waitpid(joiner_pid, None);
            }
            result
        }
    }
}

fn joiner(
    cfg: &ExecConfig<'_>,
    joins: &[(LinuxNamespaceType, OwnedFd)],
    seccomp: Option<&SeccompProgram>,
    caps: Option<&CapabilitySets>,
    chan: &Channel,
    ctx: &mut ExecContext,
) -> Result<()> {
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if let Some(cg) = cfg.cgroup {
        cg.add_task(nix::unistd::getpid())?;
    }
    for (t, fd) in joins {
        setns(fd.as_fd(), clone_flag(*t))
            .ctx(|| format!("join the container's {} namespace", spec_name(*t)))?;
    }
    // SAFETY: single-threaded.
    match unsafe { fork() }.ctx(|| "fork the exec process".into())? {
        ForkResult::Child => {
            let r = run_process(cfg, seccomp, caps, ctx, chan.as_raw_fd());
            let msg = match r {
                Ok(()) => "exec returned".to_string(),
                Err(e) => e.to_string(),
            };
            let _ = chan.send(&Msg::Error(msg));
            // SAFETY: leave without running destructors.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => chan.send(&Msg::Pid(child.as_raw())),
    }
}

fn run_process(
    cfg: &ExecConfig<'_>,
    seccomp: Option<&SeccompProgram>,
    caps: Option<&CapabilitySets>,
    ctx: &mut ExecContext,
    chan_fd: i32,
) -> Result<()> {
    let process = cfg.process;
    let mut keep = vec![chan_fd];
    keep.extend(cfg.console_socket.as_ref().map(|c| c.as_raw_fd()));
    close_inherited_fds(3 + cfg.preserve_fds.max(0), &keep)?;
    if process.terminal().unwrap_or(false) {
        let sock = cfg.console_socket.as_ref().ok_or_else(|| {
            Error::invalid(
                "process.terminal is true but there is no console socket; pass --console-socket",
            )
        })?;
        nix::unistd::setsid().ctx(|| "setsid".into())?;
        let size = process.console_size().map(|b| WinSize {
            rows: b.height() as u16,
            cols: b.width() as u16,
        });
        setup_terminal(&LinuxSyscall, sock, size, false)?;
    }
    set_rlimits(process)?;
    let nnp = process.no_new_privileges().unwrap_or(false);
    if nnp {
        // SAFETY: prctl with constant arguments.
        let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        nix::errno::Errno::result(rc).ctx(|| "process.noNewPrivileges: prctl".into())?;
    } else if let Some(s) = seccomp {
        s.load()?;
    }
    switch_user(process, caps)?;
    enter_cwd(process.cwd())?;
    let mut w = NativeWorkload::default();
    w.prepare(ctx)?;
    reset_signals();
    mark_cloexec_from(3 + cfg.preserve_fds);
    if nnp {
        if let Some(s) = seccomp {
            s.load()?;
        }
    }
    w.run(ctx, &mut || {}).map(drop)
}
