//! The messages the runtime and the container's setup processes exchange while a container is
//! being created, over a `SOCK_SEQPACKET` socket pair (one message per packet, close-on-exec).

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

use crate::error::{Error, Result, SysContext};

/// One message of the create handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// The setup process has entered a new user namespace: write its uid/gid maps.
    MapIds,
    /// The maps are written.
    IdsMapped,
    /// The pid (in the runtime's pid namespace) of the container's init process.
    Pid(i32),
    /// The init process has finished setting up and waits for `start`.
    Ready,
    /// The runtime recorded the container; the init may go on waiting for `start`.
    Ack,
    /// Setup failed; the text says what and why.
    Error(String),
    /// The init's mounts are done: run the `createRuntime` hooks (then send `HookState`).
    RunHooks,
    /// The hooks ran; the container state JSON for the init's own hooks.
    HookState(String),
}

impl Msg {
    fn encode(&self) -> Vec<u8> {
        match self {
            Msg::MapIds => vec![1],
            Msg::IdsMapped => vec![2],
            Msg::Pid(p) => {
                let mut v = vec![3];
                v.extend_from_slice(&p.to_le_bytes());
                v
            }
            Msg::Ready => vec![4],
            Msg::Ack => vec![5],
            Msg::Error(s) => {
                let mut v = vec![6];
                v.extend_from_slice(s.as_bytes());
                v
            }
            Msg::RunHooks => vec![7],
            Msg::HookState(s) => {
                let mut v = vec![8];
                v.extend_from_slice(s.as_bytes());
                v
            }
        }
    }

    fn decode(b: &[u8]) -> Option<Msg> {
        Some(match *b.first()? {
            1 => Msg::MapIds,
            2 => Msg::IdsMapped,
            3 => Msg::Pid(i32::from_le_bytes(b.get(1..5)?.try_into().ok()?)),
            4 => Msg::Ready,
            5 => Msg::Ack,
            6 => Msg::Error(String::from_utf8_lossy(&b[1..]).into_owned()),
            7 => Msg::RunHooks,
            8 => Msg::HookState(String::from_utf8_lossy(&b[1..]).into_owned()),
            _ => return None,
        })
    }
}

/// One end of the handshake channel.
#[derive(Debug)]
pub struct Channel(OwnedFd);

impl Channel {
    /// A connected pair (both ends close-on-exec).
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .ctx(|| "socketpair for the create handshake".into())?;
        Ok((Channel(a), Channel(b)))
    }

    /// Sends one message.
    pub fn send(&self, msg: &Msg) -> Result<()> {
        nix::sys::socket::send(self.0.as_raw_fd(), &msg.encode(), MsgFlags::MSG_NOSIGNAL)
            .ctx(|| format!("send {msg:?} on the create handshake"))?;
        Ok(())
    }

    /// Receives one message, whatever its size; `None` when the other side closed its end.
    pub fn recv(&self) -> Result<Option<Msg>> {
        // The size of the next packet first, so that a large one (a state JSON with big
        // annotations) is never cut.
        let size = loop {
            match nix::sys::socket::recv(
                self.0.as_raw_fd(),
                &mut [],
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
            ) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("receive on the create handshake", e)),
            }
        };
        let mut buf = vec![0u8; size.max(1)];
        loop {
            match nix::sys::socket::recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    return Msg::decode(&buf[..n])
                        .map(Some)
                        .ok_or_else(|| Error::invalid("garbled message on the create handshake"))
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("receive on the create handshake", e)),
            }
        }
    }

    /// The descriptor (to keep it open while closing inherited ones).
    pub fn as_raw_fd(&self) -> i32 {
        self.0.as_raw_fd()
    }

    /// Receives one message and fails unless it is `want`; an `Error` message becomes the error.
    pub fn expect(&self, want: &Msg) -> Result<()> {
        match self.recv()? {
            Some(m) if &m == want => Ok(()),
            Some(Msg::Error(e)) => Err(Error::invalid(e)),
            Some(other) => Err(Error::invalid(format!(
                "create handshake: expected {want:?}, got {other:?}"
            ))),
            None => Err(Error::invalid(format!(
                "create handshake: the other side exited while we waited for {want:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let (a, b) = Channel::pair().unwrap();
        for m in [
            Msg::MapIds,
            Msg::IdsMapped,
            Msg::Pid(4242),
            Msg::Ready,
            Msg::Ack,
            Msg::Error("mount /proc: EPERM".into()),
            Msg::RunHooks,
            Msg::HookState("{\"id\":\"x\"}".into()),
            Msg::HookState("x".repeat(100_000)),
        ] {
            a.send(&m).unwrap();
            assert_eq!(b.recv().unwrap(), Some(m));
        }
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }
}
