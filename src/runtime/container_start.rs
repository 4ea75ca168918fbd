//! `start`: tell a created container's init to run the user program.

use std::io::Read;
use std::os::unix::net::UnixStream;

use super::state::{ContainerDir, Status};
use super::{Error, Runtime};

impl Runtime {
    /// Starts a created container. Fails if it is not `created`, or if the program could not
    /// be executed (the init's error is returned).
    pub fn start(&self, id: &str) -> Result<(), Error> {
        let dir = ContainerDir::open(self, id)?;
        let _lock = dir.lock()?;
        let rec = dir.load()?;
        let status = dir.status(&rec);
        if status != Status::Created {
            return Err(Error::WrongStatus(format!(
                "cannot start container {id:?}: it is {status}, not created"
            )));
        }
        // Connect with a relative name: sun_path is limited to 108 bytes.
        let stream = match connect_relative(&dir.path, native_runner::process::START_SOCKET) {
            Ok(s) => s,
            // Nobody listens: an earlier `start` got through and died before removing the
            // socket. The program runs already.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                let _ = std::fs::remove_file(dir.start_socket());
                return Err(Error::WrongStatus(format!(
                    "cannot start container {id:?}: it was started already"
                )));
            }
            Err(e) => return Err(Error::io(format!("connect to the init of {id:?}"), e)),
        };
        super::fault_point("start:connected");
        // Without the socket the container counts as running (no state rewrite needed).
        let _ = std::fs::remove_file(dir.start_socket());
        super::fault_point("start:socket-removed");
        // The init closes the connection when execve succeeds (close-on-exec) or writes the
        // reason it failed.
        let mut msg = String::new();
        let mut s = stream;
        let _ = s.read_to_string(&mut msg);
        if !msg.is_empty() {
            return Err(Error::Other(format!("start container {id:?}: {msg}")));
        }
        if let Some(post) = rec.hooks.as_ref().and_then(|h| h.poststart().clone()) {
            // A failing poststart hook is logged; the container keeps running (runtime-spec).
            let state = serde_json::to_vec(&dir.state(&rec)).unwrap_or_default();
            if let Err(e) = native_runner::hooks::run_hooks(&post, "poststart", &state) {
                tracing::warn!("container {id}: {e}");
            }
        }
        tracing::debug!(id, "started");
        Ok(())
    }
}

fn connect_relative(dir: &std::path::Path, name: &str) -> std::io::Result<UnixStream> {
    use std::os::fd::AsRawFd;
    // /proc/self/fd/N/<name> stays short whatever the length of `dir`.
    let d = std::fs::File::open(dir)?;
    let p = format!("/proc/self/fd/{}/{name}", d.as_raw_fd());
    UnixStream::connect(p)
}
