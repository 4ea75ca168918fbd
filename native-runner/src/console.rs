//! Terminals: a pty made inside the container (on its own devpts), the master sent to the
//! caller over a unix socket with `SCM_RIGHTS` (the `--console-socket` protocol of runc), the
//! slave as the process's stdio and controlling terminal and, for the init, `/dev/console`.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::mount::MsFlags;
use nix::pty::{posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::stat::Mode;

use crate::error::{Error, Result, SysContext};
use crate::syscall::Syscall;

/// A window size (rows, columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WinSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// Sets the window size of a terminal.
pub fn set_winsize(fd: RawFd, size: WinSize) -> Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: valid fd and winsize.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
    nix::errno::Errno::result(rc)
        .map(drop)
        .ctx(|| "set the terminal's window size".into())
}

/// The window size of a terminal, if `fd` is one.
pub fn get_winsize(fd: RawFd) -> Option<WinSize> {
    // SAFETY: a zeroed winsize is valid; ioctl fills it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0).then_some(WinSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Sends `fd` over a connected unix socket with `SCM_RIGHTS`; `name` is the message body.
pub fn send_fd(sock: RawFd, fd: RawFd, name: &str) -> Result<()> {
    let fds = [fd];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(
        sock,
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .ctx(|| "send the terminal master over the console socket".into())?;
    Ok(())
}

/// Receives one descriptor sent with [`send_fd`].
pub fn recv_fd(sock: RawFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .ctx(|| "receive the terminal master from the console socket".into())?;
    for c in msg
        .cmsgs()
        .ctx(|| "read the console socket's message".into())?
    {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel gave us this new descriptor.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(Error::invalid("the console socket sent no descriptor"))
}

/// Makes a pty in the current mount namespace's `/dev/ptmx`, sends its master over `socket`,
/// and makes the slave stdin, stdout, stderr and controlling terminal of this process (which
/// must be a session leader). With `console` the slave is also bound onto `/dev/console`.
pub fn setup_terminal(
    sys: &dyn Syscall,
    socket: &OwnedFd,
    size: Option<WinSize>,
    console: bool,
) -> Result<()> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .ctx(|| "open /dev/ptmx (is devpts mounted on /dev/pts with ptmxmode?)".into())?;
    unlockpt(&master).ctx(|| "unlock the pty".into())?;
    let name = ptsname_r(&master).ctx(|| "name of the pty".into())?;
    let slave = open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        Mode::empty(),
    )
    .ctx(|| format!("open {name}"))?;
    if let Some(s) = size.filter(|s| s.rows > 0 && s.cols > 0) {
        set_winsize(slave.as_raw_fd(), s)?;
    }
    if console {
        let dev_console = Path::new("/dev/console");
        if std::fs::symlink_metadata(dev_console).is_err() {
            std::fs::File::create(dev_console).ctx(|| "create /dev/console".into())?;
        }
        sys.mount(
            Some(Path::new(&name)),
            dev_console,
            None,
            MsFlags::MS_BIND,
            None,
        )?;
    }
    send_fd(socket.as_raw_fd(), master.as_raw_fd(), &name)?;
    drop(master);
    nix::unistd::dup2_stdin(slave.as_fd()).ctx(|| "make the terminal stdin".into())?;
    nix::unistd::dup2_stdout(slave.as_fd()).ctx(|| "make the terminal stdout".into())?;
    nix::unistd::dup2_stderr(slave.as_fd()).ctx(|| "make the terminal stderr".into())?;
    // SAFETY: ioctl on our own fd 0.
    let rc = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    nix::errno::Errno::result(rc).ctx(|| "make the terminal the controlling terminal".into())?;
    Ok(())
}
