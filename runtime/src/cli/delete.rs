//! `runtime delete`: remove a stopped (or created) container; `--force` kills a running one
//! first. Deleting a missing container with --force succeeds (engines rely on it).

use super::Global;
use crate::container::{Container, Status};
use crate::error::Error;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kill the container first if it is running or paused
    #[arg(short, long)]
    pub force: bool,
    /// Container id
    pub id: String,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<i32> {
    let c = match Container::load(&g.store, &a.id) {
        Ok(c) => c,
        Err(e) if a.force && matches!(e.downcast_ref::<Error>(), Some(Error::NotFound(_))) => {
            return Ok(0)
        }
        Err(e) if a.force && g.store.dir(&a.id).exists() => {
            // Unreadable state: with --force, clear it away rather than leave it stuck.
            crate::warn!(
                "removing container \"{}\" with unreadable state: {e:#}",
                a.id
            );
            std::fs::remove_dir_all(g.store.dir(&a.id))?;
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    let status = c.status();
    if !a.force && matches!(status, Status::Running | Status::Paused) {
        return Err(Error::WrongState {
            id: a.id,
            what: "delete",
            status: format!("{status} (stop it first or use --force)"),
        }
        .into());
    }
    c.destroy()?;
    Ok(0)
}
