//! `runtime pause` / `runtime resume`: freeze and thaw a container's cgroup.

use super::Global;
use crate::container::{Container, Status};
use crate::error::Error;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container id
    pub id: String,
}

pub fn pause(g: &Global, a: Args) -> anyhow::Result<i32> {
    let c = Container::load(&g.store, &a.id)?;
    match c.status() {
        Status::Running | Status::Created => {}
        Status::Paused => {
            return Err(Error::WrongState {
                id: a.id,
                what: "pause",
                status: "already paused".into(),
            }
            .into())
        }
        Status::Stopped => {
            return Err(Error::NotRunning {
                id: a.id,
                what: "pause",
            }
            .into())
        }
    }
    c.cgroup().freeze()?;
    Ok(0)
}

pub fn resume(g: &Global, a: Args) -> anyhow::Result<i32> {
    let c = Container::load(&g.store, &a.id)?;
    match c.status() {
        Status::Paused => {}
        s => {
            return Err(Error::WrongState {
                id: a.id,
                what: "resume",
                status: format!("{s}, not paused"),
            }
            .into())
        }
    }
    c.cgroup().thaw()?;
    Ok(0)
}
