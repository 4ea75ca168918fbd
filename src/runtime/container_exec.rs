//! `exec`: run another process in a running container.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use native_runner::exec::{spawn_exec, ExecConfig};

use super::container_create::write_pid_file;
use super::container_run::{proxy_terminal, wait_forwarding};
use super::state::{ContainerDir, Status};
use super::{Error, Runtime};
use crate::spec::load_bundle_spec;

/// The options of `exec`.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The process to run (from `--process`, or the container's process with the arguments
    /// and overrides of the command line).
    pub process: Process,
    /// Return once the process runs instead of waiting for it.
    pub detach: bool,
    /// Where to write its pid.
    pub pid_file: Option<PathBuf>,
    /// Extra descriptors (from 3) it inherits.
    pub preserve_fds: u32,
    /// Where to send the terminal's master (with `process.terminal`); without it, a foreground
    /// `exec` with a terminal relays the terminal itself.
    pub console_socket: Option<PathBuf>,
}

impl Runtime {
    /// The container's own `process`, the base of `exec` without `--process`.
    pub fn container_process(&self, id: &str) -> Result<Process, Error> {
        let dir = ContainerDir::open(self, id)?;
        let rec = dir.load()?;
        let spec = load_bundle_spec(&rec.bundle)?;
        Ok(spec.process().clone().unwrap_or_default())
    }

    /// Runs a process in container `id`; in the foreground returns its exit status (signals
    /// the runtime gets are forwarded), detached returns 0 once it runs.
    pub fn exec(&self, id: &str, opts: &ExecOptions) -> Result<i32, Error> {
        let dir = ContainerDir::open(self, id)?;
        let rec = dir.load()?;
        let status = dir.status(&rec);
        if !matches!(status, Status::Running | Status::Created) {
            return Err(Error::WrongStatus(format!(
                "cannot exec in container {id:?}: it is {status}"
            )));
        }
        if rec.executor == "wasm" {
            return Err(Error::Spec(format!(
                "container {id:?} runs a wasm module in wasmtime: exec of a process into a wasm \
                 container is not implemented (there is no Linux process to join; run another \
                 container instead)"
            )));
        }
        let spec = load_bundle_spec(&rec.bundle)?;
        let linux = spec.linux().clone().unwrap_or_default();
        let namespaces = linux
            .namespaces()
            .iter()
            .flatten()
            .map(|n| n.typ())
            .collect();
        let cgroup = rec.cgroup()?;
        let terminal = opts.process.terminal().unwrap_or(false);
        let mut our_end = None;
        let console_socket = match (&opts.console_socket, terminal) {
            (Some(p), true) => Some(OwnedFd::from(UnixStream::connect(p).map_err(|e| {
                Error::io(format!("--console-socket: connect to {}", p.display()), e)
            })?)),
            (None, true) if !opts.detach => {
                let (a, b) =
                    UnixStream::pair().map_err(|e| Error::io("socketpair for the terminal", e))?;
                our_end = Some(b);
                Some(OwnedFd::from(a))
            }
            (None, true) => {
                return Err(Error::Other(
                    "exec --detach --tty needs --console-socket to send the terminal to".into(),
                ))
            }
            (Some(_), false) => {
                return Err(Error::Other("--console-socket needs --tty".into()));
            }
            (None, false) => None,
        };
        let cfg = ExecConfig {
            init_pid: Pid::from_raw(rec.pid),
            namespaces,
            process: &opts.process,
            seccomp: linux.seccomp().as_ref(),
            cgroup: Some(&cgroup),
            preserve_fds: opts.preserve_fds as i32,
            console_socket,
        };
        if opts.detach {
            let pid = spawn_exec(cfg)?;
            if let Some(pf) = &opts.pid_file {
                write_pid_file(pf, pid.as_raw())?;
            }
            return Ok(0);
        }
        // SAFETY: prctl with constant arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let mut forwarded = SigSet::all();
        forwarded.remove(Signal::SIGKILL);
        forwarded.remove(Signal::SIGSTOP);
        let mut old = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), Some(&mut old))
            .map_err(|e| Error::Other(format!("block signals: {e}")))?;
        let result = (|| {
            let pid = spawn_exec(cfg)?;
            if let Some(pf) = &opts.pid_file {
                write_pid_file(pf, pid.as_raw())?;
            }
            match our_end {
                Some(s) => {
                    let master = native_runner::console::recv_fd(s.as_raw_fd())?;
                    proxy_terminal(master, pid, &forwarded)
                }
                None => wait_forwarding(pid, &forwarded),
            }
        })();
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
        result
    }
}
