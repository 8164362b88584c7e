//! `runtime restore`: bring a checkpointed container back.

use super::Global;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct Args {
    /// Return once the container runs
    #[arg(short, long)]
    pub detach: bool,
    /// Bundle directory (holding config.json); default: the current directory
    #[arg(short, long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Directory holding the images (default: <bundle>/checkpoint)
    #[arg(long, value_name = "DIR")]
    pub image_path: Option<PathBuf>,
    /// Directory for CRIU's logs and stats (default: a directory under --root)
    #[arg(long, value_name = "DIR")]
    pub work_path: Option<PathBuf>,
    /// Write the restored init's pid (decimal, no newline) to FILE
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the new pty master of a terminal container
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Restore established TCP connections
    #[arg(long)]
    pub tcp_established: bool,
    /// Allow external unix sockets
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Restore a shell job
    #[arg(long)]
    pub shell_job: bool,
    /// Restore file locks
    #[arg(long)]
    pub file_locks: bool,
    /// Cgroup handling: soft, full, strict or ignore
    #[arg(long, value_name = "MODE")]
    pub manage_cgroups_mode: Option<String>,
    /// Restore memory lazily: pages come on demand from the checkpoint's page server
    #[arg(long)]
    pub lazy_pages: bool,
    /// With --lazy-pages: ADDRESS:PORT of the page server of `checkpoint --lazy-pages`; the
    /// runtime starts CRIU's lazy-pages daemon for it (without this flag, start one yourself
    /// with the same --work-path, as with runc)
    #[arg(long, value_name = "ADDR:PORT")]
    pub page_server: Option<String>,
    /// Do not use pivot_root for the restored container's root
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not become a subreaper for the restored processes
    #[arg(long)]
    pub no_subreaper: bool,
    /// Namespace(s) restored empty (e.g. network)
    #[arg(long, value_name = "NS")]
    pub empty_ns: Vec<String>,
    /// Deduplicate memory while restoring
    #[arg(long)]
    pub auto_dedup: bool,
    /// LSM profile for the restored processes (apparmor:NAME or selinux:LABEL)
    #[arg(long, value_name = "PROFILE")]
    pub lsm_profile: Option<String>,
    /// LSM mount context for the restored mounts
    #[arg(long, value_name = "CONTEXT")]
    pub lsm_mount_context: Option<String>,
    /// Only check that this host can restore ID from the bundle (config, bind-mount sources,
    /// namespace paths, a free id and a writable --root, CRIU) and print the findings as JSON
    #[arg(long)]
    pub check: bool,
    /// Container id
    pub id: String,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<i32> {
    crate::restore::run(g, &a)
}
