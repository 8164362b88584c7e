//! `runtime create`: set a container up and leave its process waiting for `start`.

use super::Global;
use crate::lifecycle::{self, CreateOpts};
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
#[group(skip)]
pub struct Args {
    /// Bundle directory (holding config.json); default: the current directory
    #[arg(short, long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Unix socket that receives the pty master (SCM_RIGHTS) when process.terminal is true
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Write the container's init pid (decimal, no newline) to FILE
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot_root (for ramdisk roots): move the rootfs over / and chroot
    #[arg(long)]
    pub no_pivot: bool,
    /// Keep the caller's session keyring instead of a new one per container
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass N more fds (from 3 on) into the container
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// Container id (letters, digits, '_', '+', '-', '.')
    pub id: String,
}

impl Args {
    pub fn opts(&self, g: &Global, foreground: bool) -> CreateOpts {
        CreateOpts {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            preserve_fds: self.preserve_fds,
            systemd_cgroup: g.systemd_cgroup,
            foreground,
        }
    }
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<i32> {
    // runc's wording, which engines show and match on.
    lifecycle::create(&g.store, &a.opts(g, false))
        .map_err(|e| e.context("runtime create failed"))?;
    Ok(0)
}
