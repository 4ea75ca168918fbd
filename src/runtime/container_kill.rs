//! `kill`: send a signal to a container's init (or, with `--all`, every process in it).

use native_runner::cgroups::Cgroup;

use super::signal::signal_name;
use super::state::{ContainerDir, Status};
use super::{Error, Runtime};

impl Runtime {
    /// Sends signal number `signal` (realtime signals included) to the container's init, or
    /// with `all` to every process of its cgroup.
    ///
    /// The init of a stopped container cannot be signalled (its pid may be another process's
    /// by now), but `all` is allowed as long as the cgroup exists, as in runc: without a pid
    /// namespace the init's children outlive it, and containerd's runc shim sends
    /// `kill --all <id> 9` after the init exited to kill them. An empty cgroup is no error.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), Error> {
        let dir = ContainerDir::open(self, id)?;
        let rec = dir.load()?;
        let status = dir.status(&rec);
        let not_running = || {
            Error::WrongStatus(format!(
                "cannot kill container {id:?}: container not running (it is {status})"
            ))
        };
        if status == Status::Creating {
            return Err(not_running());
        }
        if all {
            let cg = rec.cgroup()?;
            if status == Status::Stopped && !cg.exists() {
                return Err(not_running());
            }
            signal_all(&cg, signal, status == Status::Paused)?;
            return Ok(());
        }
        if status == Status::Stopped {
            return Err(not_running());
        }
        let h = dir.init_handle(&rec).ok_or_else(|| {
            Error::WrongStatus(format!(
                "cannot kill container {id:?}: container not running"
            ))
        })?;
        h.signal(signal).map_err(|e| {
            Error::Other(format!(
                "kill container {id:?} with {}: {e}",
                signal_name(signal)
            ))
        })?;
        if status == Status::Paused && signal == libc::SIGKILL {
            // A frozen process dies only once thawed.
            let cg = rec.cgroup()?;
            let _ = cg.thaw();
        }
        Ok(())
    }
}

/// Signals every process of the cgroup and of the cgroups below it; freezes it first so none
/// can fork away meanwhile.
pub(crate) fn signal_all(cg: &Cgroup, signal: i32, paused: bool) -> Result<(), Error> {
    let froze = !paused && cg.freeze().is_ok();
    let pids = cg.pids();
    if let Ok(pids) = &pids {
        for p in pids {
            // SAFETY: kill(2) with a pid read from the cgroup and a signal number.
            unsafe { libc::kill(p.as_raw(), signal) };
        }
    }
    if froze || (paused && signal == libc::SIGKILL) {
        let _ = cg.thaw();
    }
    pids.map(drop).map_err(Error::from)
}
