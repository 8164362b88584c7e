//! `runtime run`: create + start. In the foreground it passes stdio through (or relays
//! the terminal), forwards signals, returns the container's exit code and deletes it.

use super::Global;
use crate::lifecycle;
use crate::process::spawn;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub create: super::create::Args,
    /// Return once the container runs, leaving it running
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits (foreground)
    #[arg(long)]
    pub keep: bool,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<i32> {
    let created = lifecycle::create(&g.store, &a.create.opts(g, !a.detach))
        .map_err(|e| e.context("runtime run failed"))?;
    if let Err(e) = lifecycle::start(&created.container) {
        let _ = created.container.destroy();
        return Err(e);
    }
    if a.detach {
        return Ok(0);
    }
    let pid = created.container.state.pid;
    let id = created.container.id().to_string();
    // Unlock while the container runs, so kill/exec/pause work from elsewhere.
    drop(created.container);
    let relay = created
        .pty
        .map(|m| std::thread::spawn(move || crate::tty::relay(&m)));
    crate::debug!("run {id}: started");
    let code = spawn::supervise(pid, &created.pidfd)?;
    crate::debug!("run {id}: exited");
    if let Some(r) = relay {
        let _ = r.join();
    }
    if !a.keep {
        match crate::container::Container::load(&g.store, &id) {
            Ok(c) => c.destroy()?,
            Err(e) if matches!(e.downcast_ref(), Some(crate::error::Error::NotFound(_))) => {}
            Err(e) => return Err(e),
        }
    }
    crate::debug!("run {id}: deleted");
    Ok(code)
}
