//! Terminals for tests: a pty pair, a child on its slave, and a conversation over the master.

use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Writes `input` to the terminal master, then collects what comes back until the terminal
/// closes (EIO) or `limit` passes.
pub fn converse(master: &OwnedFd, input: &[&str], limit: Duration) -> String {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut pending: Vec<&str> = input.to_vec();
    pending.reverse();
    let mut next_write = Instant::now() + Duration::from_millis(300);
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        // Type only once the other side has shown something (a banner or a prompt): input sent
        // before the shell runs can be lost under load. Give up waiting after 5 s.
        let ready = !out.is_empty() || start.elapsed() > Duration::from_secs(5);
        if ready && Instant::now() >= next_write {
            if let Some(line) = pending.pop() {
                nix::unistd::write(master.as_fd(), line.as_bytes()).unwrap();
                next_write = Instant::now() + Duration::from_millis(300);
            }
        }
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(50u16)).unwrap_or(0) == 0 {
            continue;
        }
        match nix::unistd::read(master, &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EIO) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A pty pair whose slave has the given size.
pub fn pty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    let ws = nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let p = nix::pty::openpty(Some(&ws), None).unwrap();
    (p.master, p.slave)
}

pub fn spawn_on_pty(cmd: &mut std::process::Command, slave: &OwnedFd) -> Child {
    let f = std::fs::File::from(slave.try_clone().unwrap());
    cmd.stdin(Stdio::from(f.try_clone().unwrap()))
        .stdout(Stdio::from(f.try_clone().unwrap()))
        .stderr(Stdio::from(f))
        .spawn()
        .unwrap()
}
