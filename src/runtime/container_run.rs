//! `run`: create + start, and in the foreground wait for the program and return its status.

use std::os::fd::AsFd;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
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

/// The exit status of a raw wait status as a shell reports it (128 + signal when killed).
pub fn exit_code(status: i32) -> Option<i32> {
    if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Some(128 + libc::WTERMSIG(status))
    } else {
        None
    }
}

/// Reaps one child that has exited, without waiting: its pid and raw wait status. Raw because
/// nix's `waitpid` cannot represent a death by a realtime signal (it fails after reaping, and
/// the exit status would be lost).
fn reap_one() -> Option<(Pid, i32)> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            return Some((Pid::from_raw(pid), status));
        }
        if pid < 0 && nix::errno::Errno::last() == nix::errno::Errno::EINTR {
            continue;
        }
        return None;
    }
}

/// Passes signal number `sig` on to `pid` (realtime signals too, which nix's `Signal` lacks).
fn forward(pid: Pid, sig: i32) {
    // SAFETY: kill(2) with a signal number the kernel delivered to us.
    unsafe { libc::kill(pid.as_raw(), sig) };
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
            let (state, master) = self.create_with_console(id, &opts.create, None, true)?;
            if let Err(e) = self.start(id) {
                let _ = self.delete(id, true);
                return Err(e);
            }
            let init = Pid::from_raw(state.pid);
            let code = match master {
                Some(m) => proxy_terminal(m, init, &forwarded)?,
                None => wait_forwarding(init, &forwarded)?,
            };
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
        while let Some((pid, status)) = reap_one() {
            if pid == init {
                if let Some(c) = exit_code(status) {
                    return Ok(c);
                }
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
            if sig != libc::SIGCHLD {
                forward(init, sig);
            }
        }
    }
}

/// Restores a terminal's settings when dropped.
struct RawMode {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawMode {
    fn enable() -> RawMode {
        let stdin = std::io::stdin();
        let saved = nix::sys::termios::tcgetattr(&stdin).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            nix::sys::termios::cfmakeraw(&mut raw);
            let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &raw);
        }
        RawMode { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

fn write_all_fd(fd: std::os::fd::BorrowedFd<'_>, mut buf: &[u8]) {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => continue,
            Err(_) => return,
        }
    }
}

/// Foreground `run` with a terminal: our stdin to the pty master, the master to our stdout,
/// window size changes and other signals passed on, until the program exits and its output is
/// drained. Our terminal (if stdin is one) is in raw mode meanwhile.
pub(crate) fn proxy_terminal(
    master: std::os::fd::OwnedFd,
    init: Pid,
    set: &SigSet,
) -> Result<i32, Error> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::{AsFd, AsRawFd};
    let _raw = RawMode::enable();
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let resize = || {
        if let Some(ws) = native_runner::console::get_winsize(stdin.as_raw_fd())
            .or_else(|| native_runner::console::get_winsize(stdout.as_raw_fd()))
        {
            let _ = native_runner::console::set_winsize(master.as_raw_fd(), ws);
        }
    };
    resize();
    let sfd = SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::Other(format!("signalfd: {e}")))?;
    let stdin_is_tty = nix::unistd::isatty(&stdin).unwrap_or(false);
    let (mut stdin_open, mut master_open) = (true, true);
    let mut code: Option<i32> = None;
    let mut buf = [0u8; 8192];
    loop {
        while let Some((pid, status)) = reap_one() {
            if pid == init {
                code = exit_code(status).or(code);
            }
        }
        if code.is_some() && !master_open {
            return Ok(code.unwrap_or(0));
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if master_open {
            fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open && code.is_none() {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        // Once the program is gone, drain what is left without waiting for more.
        let timeout = if code.is_some() {
            PollTimeout::ZERO
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(0) if code.is_some() => return Ok(code.unwrap_or(0)),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::Other(format!("poll: {e}"))),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (sig_ready, master_ready) = (ready(0), master_open && ready(1));
        let stdin_ready = stdin_open && code.is_none() && ready(if master_open { 2 } else { 1 });
        drop(fds);
        if sig_ready {
            while let Ok(Some(info)) = sfd.read_signal() {
                match info.ssi_signo as i32 {
                    libc::SIGCHLD => {}
                    libc::SIGWINCH => resize(),
                    s => forward(init, s),
                }
            }
        }
        if master_ready {
            match nix::unistd::read(&master, &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EIO) => master_open = false,
                Ok(n) => write_all_fd(stdout.as_fd(), &buf[..n]),
                Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(_) => master_open = false,
            }
        }
        if stdin_ready {
            match nix::unistd::read(&stdin, &mut buf) {
                Ok(0) => {
                    stdin_open = false;
                    if !stdin_is_tty {
                        // End of piped input: end of file for the program too (VEOF).
                        write_all_fd(master.as_fd(), &[4]);
                    }
                }
                Ok(n) => write_all_fd(master.as_fd(), &buf[..n]),
                Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(_) => stdin_open = false,
            }
        }
    }
}
