//! `runtime start`: let a created container's process run its program.

use super::Global;
use crate::container::Container;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container id
    pub id: String,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<i32> {
    let c = Container::load(&g.store, &a.id)?;
    crate::lifecycle::start(&c)?;
    Ok(0)
}
