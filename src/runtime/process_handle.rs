//! A handle on a container process that can never hit a recycled pid: the pid is opened as a
//! pidfd and accepted only if its start time matches the one recorded at create.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::unistd::Pid;

/// The start time of a process (field 22 of `/proc/<pid>/stat`, clock ticks since boot) and
/// whether it is a zombie; `None` if there is no such process.
pub fn stat_of(pid: i32) -> Option<(u64, bool)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = *fields.first()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// An open, verified handle on a live process.
#[derive(Debug)]
pub struct ProcessHandle {
    pid: Pid,
    fd: OwnedFd,
}

impl ProcessHandle {
    /// Opens `pid` if it is alive (not a zombie) and started at `start_time`.
    pub fn open(pid: i32, start_time: u64) -> Option<ProcessHandle> {
        if pid <= 0 {
            return None;
        }
        // SAFETY: pidfd_open returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // Checked after opening: if the start time matches now, the pidfd is that process.
        match stat_of(pid) {
            Some((st, false)) if st == start_time => Some(ProcessHandle {
                pid: Pid::from_raw(pid),
                fd,
            }),
            _ => None,
        }
    }

    /// The pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Sends signal number `sig` (realtime signals included) through the pidfd.
    pub fn signal(&self, sig: i32) -> nix::Result<()> {
        // SAFETY: valid pidfd, signal number, null siginfo.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        nix::errno::Errno::result(rc).map(drop)
    }

    /// Waits until the process has exited (zombie or gone); `false` on timeout.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        loop {
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 && nix::errno::Errno::last() == nix::errno::Errno::EINTR {
                continue;
            }
            return rc > 0;
        }
    }
}
