//! The error type of the native executor.

use std::fmt;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while preparing or starting a native container.
///
/// Every variant's message says what was being done (`context`), so that an error read in a
/// runtime log names the thing that failed, e.g. `mount proc on /proc: EPERM`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed.
    #[error("{context}: {errno}")]
    Sys {
        /// What was being done.
        context: String,
        /// The errno.
        errno: nix::Error,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The spec asks for something invalid or unsupported; the message names the field and the fix.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// A failed system call, with what was being done.
    pub fn sys(context: impl fmt::Display, errno: nix::Error) -> Self {
        Error::Sys {
            context: context.to_string(),
            errno,
        }
    }

    /// A failed file operation, with what was being done.
    pub fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            context: context.to_string(),
            source,
        }
    }

    /// An invalid or unsupported spec value.
    pub fn invalid(msg: impl fmt::Display) -> Self {
        Error::Invalid(msg.to_string())
    }
}

/// Adds context to `nix` results: `mount(...).ctx(|| format!("mount {dst}"))?`.
pub trait SysContext<T> {
    /// Wraps the errno with a description of what was being done.
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> SysContext<T> for nix::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::sys(f(), e))
    }
}

impl<T> SysContext<T> for std::io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}
