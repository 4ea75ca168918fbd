//! `run`: create + start, and in the foreground wait for the program and return its status.

use std::os::fd::AsFd;

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{CreateOptions, Error, Runtime};

/// The options of `run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// As for `create`.
    pub create: CreateOptions,
    /// Return once started instead of waiting.
    pub detach: bool,
    /// Keep the stopped container instead of deleting it after a foreground run.
    pub keep: bool,
}

/// The exit status of a wait status as a shell reports it (128 + signal when killed).
pub fn exit_code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

impl Runtime {
    /// Runs container `id`. In the foreground, returns the program's exit status after
    /// forwarding every signal the runtime receives to it; detached, returns 0 once started.
    pub fn run(&self, id: &str, opts: &RunOptions) -> Result<i32, Error> {
        if opts.detach {
            self.create(id, &opts.create)?;
            if let Err(e) = self.start(id) {
                let _ = self.delete(id, true);
                return Err(e);
            }
            return Ok(0);
        }
        // The init is our grandchild: become its reaper so its exit status reaches us.
        // SAFETY: prctl with constant arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let mut forwarded = SigSet::all();
        for s in [Signal::SIGKILL, Signal::SIGSTOP] {
            forwarded.remove(s);
        }
        let mut old = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), Some(&mut old))
            .map_err(|e| Error::Other(format!("block signals: {e}")))?;
        let result = (|| {
            let state = self.create(id, &opts.create)?;
            if let Err(e) = self.start(id) {
                let _ = self.delete(id, true);
                return Err(e);
            }
            let code = wait_forwarding(Pid::from_raw(state.pid), &forwarded)?;
            if !opts.keep {
                self.delete(id, true)?;
            }
            Ok(code)
        })();
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
        result
    }
}

pub(crate) fn wait_forwarding(init: Pid, set: &SigSet) -> Result<i32, Error> {
    let sfd = SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::Other(format!("signalfd: {e}")))?;
    loop {
        // Reap everything that has exited (orphans reparented to us too).
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(ws) if ws.pid() == Some(init) => {
                    if let Some(c) = exit_code(ws) {
                        return Ok(c);
                    }
                }
                Ok(_) => {}
            }
        }
        let mut pfd = [nix::poll::PollFd::new(
            sfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut pfd, nix::poll::PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::Other(format!("poll signalfd: {e}"))),
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            let sig = info.ssi_signo as i32;
            if sig == libc::SIGCHLD {
                continue;
            }
            if let Ok(s) = Signal::try_from(sig) {
                let _ = kill(init, s);
            }
        }
    }
}
