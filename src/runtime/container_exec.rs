//! `exec`: run another process in a running container.

use std::path::PathBuf;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use native_runner::exec::{spawn_exec, ExecConfig};

use super::container_create::write_pid_file;
use super::container_run::wait_forwarding;
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
        let spec = load_bundle_spec(&rec.bundle)?;
        let linux = spec.linux().clone().unwrap_or_default();
        let namespaces = linux
            .namespaces()
            .iter()
            .flatten()
            .map(|n| n.typ())
            .collect();
        let cgroup = rec.cgroup()?;
        if opts.process.terminal().unwrap_or(false) {
            return Err(Error::Other(
                "exec --tty is not supported by pouch-runtime yet; run without a terminal".into(),
            ));
        }
        let cfg = ExecConfig {
            init_pid: Pid::from_raw(rec.pid),
            namespaces,
            process: &opts.process,
            seccomp: linux.seccomp().as_ref(),
            cgroup: Some(&cgroup),
            preserve_fds: opts.preserve_fds as i32,
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
            wait_forwarding(pid, &forwarded)
        })();
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
        result
    }
}
