//! `delete`: remove a stopped (or, with `--force`, any) container and everything it holds.

use std::time::Duration;

use super::container_kill::signal_all;
use super::state::{ContainerDir, Status};
use super::{Error, Runtime};

impl Runtime {
    /// Deletes a container: its processes (created containers' init, or anything with
    /// `force`), its cgroup and its state directory.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), Error> {
        let dir = match ContainerDir::open(self, id) {
            Ok(d) => d,
            // As runc: `delete --force` of a container that is already gone succeeds (the
            // containerd shim and podman call it after every exit and failed create).
            Err(Error::NotFound(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        let _lock = dir.lock()?;
        super::fault_point("delete:locked");
        let rec = match dir.load() {
            Ok(r) => r,
            // A create that died before writing any state: nothing else can exist.
            Err(Error::NotFound(_)) => return dir.remove(),
            Err(e) if force => {
                tracing::warn!("delete --force {id}: {e}");
                return dir.remove();
            }
            Err(e) => return Err(e),
        };
        let status = dir.status(&rec);
        match status {
            Status::Running | Status::Paused if !force => {
                return Err(Error::WrongStatus(format!(
                    "cannot delete container {id:?} that is not stopped: {status} (stop it with `kill`, or use `delete --force`)"
                )))
            }
            _ => {}
        }
        let cg = rec.cgroup()?;
        if status != Status::Stopped {
            if let Some(h) = dir.init_handle(&rec) {
                let _ = h.signal(libc::SIGKILL);
                if status == Status::Paused {
                    let _ = cg.thaw();
                }
                if !h.wait_exit(Duration::from_secs(10)) {
                    return Err(Error::Other(format!(
                        "delete {id:?}: the init process {} did not exit 10 s after SIGKILL",
                        h.pid()
                    )));
                }
            }
        }
        super::fault_point("delete:killed");
        // Without a pid namespace, the init's children may outlive it.
        if cg.exists() {
            let pids = cg.pids().unwrap_or_default();
            if !pids.is_empty() {
                signal_all(&cg, libc::SIGKILL, false)?;
            }
            cg.destroy()?;
        }
        super::fault_point("delete:cgroup-removed");
        dir.remove()?;
        if let Some(post) = rec.hooks.as_ref().and_then(|h| h.poststop().clone()) {
            // After the container is gone; a failure is logged (runtime-spec).
            let mut state = dir.state(&rec);
            state.status = Status::Stopped;
            state.pid = 0;
            let state = serde_json::to_vec(&state).unwrap_or_default();
            if let Err(e) = native_runner::hooks::run_hooks(&post, "poststop", &state) {
                tracing::warn!("container {id}: {e}");
            }
        }
        tracing::debug!(id, "deleted");
        Ok(())
    }
}
