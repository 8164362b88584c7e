//! The few errors callers must tell apart (missing container, duplicate id, wrong state);
//! everything else is an `anyhow` error with context.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// Engines match on the words "does not exist" (containerd's shim, podman).
    #[error("container does not exist: no container \"{0}\" here")]
    NotFound(String),
    #[error("container with id \"{0}\" already exists")]
    Exists(String),
    /// `what` is the refused operation, `status` the state the container is in.
    #[error("cannot {what} container \"{id}\": container is {status}")]
    WrongState {
        id: String,
        what: &'static str,
        status: String,
    },
    /// Engines match on "container not running" for kill.
    #[error("cannot {what} container \"{id}\": container not running")]
    NotRunning { id: String, what: &'static str },
}
