//! `runtime checkpoint`: save a running container with CRIU.

use super::Global;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct Args {
    /// Directory for the images (default: <bundle>/checkpoint)
    #[arg(long, value_name = "DIR")]
    pub image_path: Option<PathBuf>,
    /// Directory for CRIU's logs and stats (default: the image directory)
    #[arg(long, value_name = "DIR")]
    pub work_path: Option<PathBuf>,
    /// Images of a previous pre-dump, relative to the image directory
    #[arg(long, value_name = "DIR")]
    pub parent_path: Option<PathBuf>,
    /// Leave the container running after the checkpoint
    #[arg(long)]
    pub leave_running: bool,
    /// Allow established TCP connections
    #[arg(long)]
    pub tcp_established: bool,
    /// Skip TCP connections still in the handshake (not yet accepted): a busy service
    /// dumps reliably; those clients retry
    #[arg(long)]
    pub tcp_skip_in_flight: bool,
    /// Allow external unix sockets
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Allow a shell job (a session leader outside the container)
    #[arg(long)]
    pub shell_job: bool,
    /// Use userfaultfd to restore memory lazily (with --page-server or --status-fd)
    #[arg(long)]
    pub lazy_pages: bool,
    /// Fd to write a byte to when lazy pages are being served
    #[arg(long, value_name = "FD")]
    pub status_fd: Option<i32>,
    /// ADDRESS:PORT of a page server to send memory to
    #[arg(long, value_name = "ADDR:PORT")]
    pub page_server: Option<String>,
    /// Allow file locks
    #[arg(long)]
    pub file_locks: bool,
    /// Dump memory only, leave the container running (for an iterative migration)
    #[arg(long)]
    pub pre_dump: bool,
    /// Cgroup handling: soft, full, strict or ignore
    #[arg(long, value_name = "MODE")]
    pub manage_cgroups_mode: Option<String>,
    /// Namespace(s) to checkpoint without content (e.g. network)
    #[arg(long, value_name = "NS")]
    pub empty_ns: Vec<String>,
    /// Deduplicate memory against the parent images
    #[arg(long)]
    pub auto_dedup: bool,
    /// Compress the image directory with zstd after the dump
    #[arg(long)]
    pub compress: bool,
    /// Print a machine-readable summary (JSON) instead of text
    #[arg(long)]
    pub json: bool,
    /// Set by migrate when it already ran the poststop hooks (lazy: before the target restores)
    #[arg(skip)]
    pub poststop_done: bool,
    /// Container id
    pub id: String,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<i32> {
    crate::checkpoint::run(g, &a)
}
