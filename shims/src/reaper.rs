//! The shim's child reaper: it is a child subreaper, so the container processes that
//! `pouch-runtime` leaves behind (inits and `exec --detach` processes) become its children, and
//! it reaps every child on SIGCHLD.
//!
//! Two kinds of children exit here:
//! - `pouch-runtime` invocations, started with [`Reaper::spawn`], which registers the pid under
//!   the same lock the reaper takes to hand out exits, so no exit is missed;
//! - container processes, whose pid the shim learns later from a pid file: an exit nobody waits
//!   for yet is kept as *unclaimed* until [`Reaper::watch`] asks for it (a process may exit
//!   before its pid file has even been read). Unclaimed exits older than [`UNCLAIMED_TTL`] are
//!   dropped (grandchildren of the runtime that nobody will ask about).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::oneshot;

/// How long an exit nobody asked for is kept.
pub const UNCLAIMED_TTL: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Inner {
    waiters: HashMap<i32, oneshot::Sender<i32>>,
    unclaimed: HashMap<i32, (i32, Instant)>,
}

/// Hands the exit status of each reaped child to whoever waits for it (see the module docs).
#[derive(Clone, Default)]
pub struct Reaper {
    inner: Arc<Mutex<Inner>>,
}

impl Reaper {
    /// Makes this process a child subreaper and starts reaping on SIGCHLD (call once, inside
    /// the tokio runtime).
    pub fn start() -> std::io::Result<Reaper> {
        nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)?;
        let reaper = Reaper::default();
        let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
        let r = reaper.clone();
        tokio::spawn(async move {
            loop {
                r.reap_all();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(reaper)
    }

    /// Reaps every child that has exited, handing out each status.
    fn reap_all(&self) {
        loop {
            let (pid, code) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid.as_raw(), 128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("waitpid: {e}");
                    return;
                }
            };
            self.exited(pid, code);
        }
    }

    fn exited(&self, pid: i32, code: i32) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(tx) = inner.waiters.remove(&pid) {
            let _ = tx.send(code);
        } else {
            let now = Instant::now();
            inner
                .unclaimed
                .retain(|_, (_, at)| now.duration_since(*at) < UNCLAIMED_TTL);
            inner.unclaimed.insert(pid, (code, now));
        }
    }

    /// Spawns `cmd` and returns its pid and a receiver of its exit status (128 + signal when
    /// killed by a signal).
    pub fn spawn(
        &self,
        cmd: &mut std::process::Command,
    ) -> std::io::Result<(i32, oneshot::Receiver<i32>)> {
        let mut inner = self.inner.lock().unwrap();
        let child = cmd.spawn()?;
        let pid = child.id() as i32;
        // The reaper, not std, waits for it: dropping a Child neither kills nor waits.
        drop(child);
        let (tx, rx) = oneshot::channel();
        inner.waiters.insert(pid, tx);
        Ok((pid, rx))
    }

    /// A receiver of the exit status of `pid`, a child of this process (a container process
    /// reparented to the shim), also when it has exited already.
    pub fn watch(&self, pid: i32) -> oneshot::Receiver<i32> {
        let mut inner = self.inner.lock().unwrap();
        let (tx, rx) = oneshot::channel();
        if let Some((code, _)) = inner.unclaimed.remove(&pid) {
            let _ = tx.send(code);
        } else {
            inner.waiters.insert(pid, tx);
        }
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_before_watch_is_kept_until_claimed() {
        let r = Reaper::default();
        r.exited(42, 3);
        let mut rx = r.watch(42);
        assert_eq!(rx.try_recv().unwrap(), 3);
        let mut rx = r.watch(43);
        assert!(rx.try_recv().is_err());
        r.exited(43, 137);
        assert_eq!(rx.try_recv().unwrap(), 137);
    }
}
