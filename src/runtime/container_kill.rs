//! `kill`: send a signal to a container's init (or, with `--all`, every process in it).

use nix::sys::signal::Signal;

use native_runner::cgroups::Cgroup;

use super::state::{ContainerDir, Status};
use super::{Error, Runtime};

impl Runtime {
    /// Signals the container. A stopped container is an error; a created one may be signalled.
    pub fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<(), Error> {
        let dir = ContainerDir::open(self, id)?;
        let rec = dir.load()?;
        let status = dir.status(&rec);
        if matches!(status, Status::Stopped | Status::Creating) {
            return Err(Error::WrongStatus(format!(
                "cannot kill container {id:?}: container not running (it is {status})"
            )));
        }
        if all {
            let cg = rec.cgroup()?;
            signal_all(&cg, signal, status == Status::Paused)?;
            return Ok(());
        }
        let h = dir.init_handle(&rec).ok_or_else(|| {
            Error::WrongStatus(format!(
                "cannot kill container {id:?}: container not running"
            ))
        })?;
        h.signal(signal)
            .map_err(|e| Error::Other(format!("kill container {id:?} with {signal}: {e}")))?;
        if status == Status::Paused && signal == Signal::SIGKILL {
            // A frozen process dies only once thawed.
            let cg = rec.cgroup()?;
            let _ = cg.thaw();
        }
        Ok(())
    }
}

/// Signals every process of the cgroup; freezes it first so none can fork away meanwhile.
pub(crate) fn signal_all(cg: &Cgroup, signal: Signal, paused: bool) -> Result<(), Error> {
    let froze = !paused && cg.freeze().is_ok();
    for p in cg.pids()? {
        let _ = nix::sys::signal::kill(p, signal);
    }
    if froze || (paused && signal == Signal::SIGKILL) {
        let _ = cg.thaw();
    }
    Ok(())
}
