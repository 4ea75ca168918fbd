//! Errors of the runtime's lifecycle operations.

/// What went wrong in a lifecycle operation. Messages name the container and, where one
/// exists, the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No container with this id under the state root.
    #[error("container {0:?} does not exist")]
    NotFound(String),
    /// The id is taken.
    #[error("container with id {0:?} already exists; pick another id or delete it first")]
    AlreadyExists(String),
    /// The id cannot be used.
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId {
        /// The id given.
        id: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The bundle's config.json is unreadable or invalid.
    #[error("{0}")]
    Spec(String),
    /// The operation needs another status.
    #[error("{0}")]
    WrongStatus(String),
    /// The native executor failed.
    #[error(transparent)]
    Native(#[from] native_runner::Error),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Anything else, with its explanation.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// A failed file operation with what was being done.
    pub fn io(context: impl std::fmt::Display, source: std::io::Error) -> Error {
        Error::Io {
            context: context.to_string(),
            source,
        }
    }
}
