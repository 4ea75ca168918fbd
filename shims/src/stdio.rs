//! A process's stdio: containerd's fifos opened for the runtime to hand to the container, or,
//! with a terminal, a console socket that receives the pty master and copies between it and
//! the fifos.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use containerd_shim::asynchronous::io::{IoTasks, Pty};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::runtime::ProcessStdio;

/// Opens containerd's fifos as the container's stdio (empty path: /dev/null).
///
/// stdin is opened for reading without waiting for a writer; the container sees EOF once
/// containerd's writer (if any) has closed. stdout and stderr are opened read-write, so the
/// open never waits for containerd's reader and a restarted containerd can reopen them.
pub fn open_fifos(stdin: &str, stdout: &str, stderr: &str) -> std::io::Result<ProcessStdio> {
    let open = |path: &str, read_only: bool| -> std::io::Result<Option<File>> {
        if path.is_empty() {
            return Ok(None);
        }
        let mut o = OpenOptions::new();
        if read_only {
            o.read(true).custom_flags(libc::O_NONBLOCK);
        } else {
            o.read(true).write(true);
        }
        let f = o
            .open(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("open fifo {path}: {e}")))?;
        if read_only {
            // The container expects blocking reads.
            let fl = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GETFL)?;
            let fl = nix::fcntl::OFlag::from_bits_retain(fl) & !nix::fcntl::OFlag::O_NONBLOCK;
            nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETFL(fl))?;
        }
        Ok(Some(f))
    };
    Ok(ProcessStdio {
        stdin: open(stdin, true)?,
        stdout: open(stdout, false)?,
        stderr: open(stderr, false)?,
    })
}

/// A listening unix socket for `--console-socket`, in a private temporary directory.
pub struct ConsoleSocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// A fresh socket under the system's temporary directory.
    pub fn new() -> std::io::Result<ConsoleSocket> {
        let dir = tempfile::Builder::new().prefix("pouch-pty").tempdir()?;
        let path = dir.path().join("pty.sock");
        let listener = UnixListener::bind(&path)?;
        listener.set_nonblocking(true)?;
        Ok(ConsoleSocket {
            _dir: dir,
            path,
            listener,
        })
    }

    /// The socket's path, for `--console-socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pty master the runtime sent (call after the runtime returned successfully).
    pub fn receive(&self) -> std::io::Result<File> {
        let (stream, _) = self.listener.accept().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("the runtime sent no terminal to the console socket: {e}"),
            )
        })?;
        stream.set_nonblocking(false)?;
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    for &extra in &fds[1..] {
                        // SAFETY: received descriptors are ours to close.
                        drop(unsafe { OwnedFd::from_raw_fd(extra) });
                    }
                    // SAFETY: a descriptor received with SCM_RIGHTS is owned by us.
                    return Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
                }
            }
        }
        Err(std::io::Error::other(
            "the runtime's console message carried no file descriptor",
        ))
    }
}

/// The copies between a terminal and containerd's fifos.
#[derive(Clone)]
pub struct Terminal {
    /// The pty master.
    pub pty: Pty,
    /// The copy tasks.
    pub io: IoTasks,
}

impl Terminal {
    /// Starts copying `master` to the stdout fifo and the stdin fifo to `master`.
    pub fn start(master: File, stdin: &str, stdout: &str) -> Result<Terminal, String> {
        let pty = Pty::new(master).map_err(|e| format!("terminal: {e}"))?;
        let io = IoTasks::default();
        if !stdout.is_empty() {
            io.copy_to_fifo(pty.clone(), stdout)
                .map_err(|e| format!("terminal output to {stdout}: {e}"))?;
        }
        if !stdin.is_empty() {
            io.copy_from_fifo(stdin, pty.clone())
                .map_err(|e| format!("terminal input from {stdin}: {e}"))?;
        }
        Ok(Terminal { pty, io })
    }

    /// Sets the window size.
    pub fn resize(&self, width: u32, height: u32) -> std::io::Result<()> {
        use std::os::fd::AsFd;
        let ws = libc::winsize {
            ws_row: height as u16,
            ws_col: width as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
        let r = unsafe {
            libc::ioctl(
                self.pty.as_fd().as_raw_fd(),
                libc::TIOCSWINSZ,
                &ws as *const libc::winsize,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}
