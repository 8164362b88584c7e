//! `runtime migrate`: move a running container to another host that sees the same bundle.

use super::Global;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone, Default)]
#[command(
    long_about = "Moves a running container to another host that sees the same bundle over shared \
storage (NFS, sshfs, ...): checks that the target can restore it (config, host-local bind-mount sources, \
namespaces, state dir, same CRIU), checkpoints it here with its TCP connections into the image path (on the \
shared storage), and restores it there. If the restore there fails, the container is restored here again \
from the same images. OCI hooks in config.json move the service IP: poststop releases it here, prestart \
claims it there before the processes run (see hooks/service-ip)."
)]
pub struct Args {
    /// Where to restore: ssh://[user@]host[:port], or exec:COMMAND to run the target's commands
    /// through a local prefix (e.g. exec:nsenter -t PID -m -n --)
    #[arg(long, value_name = "TARGET")]
    pub to: String,
    /// The runtime's --root on the target (default: ours)
    #[arg(long, value_name = "DIR")]
    pub target_root: Option<PathBuf>,
    /// The runtime binary on the target (default: this binary's path)
    #[arg(long, value_name = "PATH")]
    pub target_runtime: Option<PathBuf>,
    /// Image directory on storage both hosts see (default: <bundle>/checkpoint)
    #[arg(long, value_name = "DIR")]
    pub image_path: Option<PathBuf>,
    /// Local directory for CRIU's dump log
    #[arg(long, value_name = "DIR")]
    pub work_path: Option<PathBuf>,
    /// Directory on the target for CRIU's restore log
    #[arg(long, value_name = "DIR")]
    pub target_work_path: Option<PathBuf>,
    /// plain (stop and copy), lazy (post-copy: memory follows on demand) or precopy
    /// (iterative pre-dumps; needs soft-dirty tracking)
    #[arg(long, default_value = "plain", value_name = "STRATEGY")]
    pub strategy: String,
    /// For --strategy lazy: ADDR:PORT where the target reaches this host's page server
    #[arg(long, value_name = "ADDR:PORT")]
    pub page_server: Option<String>,
    /// Do not keep established TCP connections (they are reset)
    #[arg(long)]
    pub no_tcp_established: bool,
    /// tcp:HOST:PORT to connect to after the restore: the downtime is measured to its first answer
    #[arg(long, value_name = "tcp:HOST:PORT")]
    pub probe: Option<String>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// Container id
    pub id: String,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<i32> {
    crate::migrate::run(g, &a)
}
