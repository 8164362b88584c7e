//! Restore a checkpointed container with CRIU (issue #4: in progress).

use anyhow::{bail, Result};

pub fn run(_g: &crate::cli::Global, a: &crate::cli::RestoreArgs) -> Result<i32> {
    bail!(
        "restore of container \"{}\" is not available in this build yet",
        a.id
    )
}
