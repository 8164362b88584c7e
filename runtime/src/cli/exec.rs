//! `runtime exec`: run a new process inside a running container. The process comes from
//! `--process process.json` or from the container's own process with the command and
//! flags given here. Exits with the process's exit code, or 255 if it could not start.

use super::Global;
use crate::container::Container;
use crate::process::exec::{self, Opts, Outcome};
use anyhow::{bail, Context, Result};
use oci_spec::runtime::Process;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// OCI process JSON describing the process (instead of COMMAND and the flags)
    #[arg(short, long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Return once the process runs
    #[arg(short, long)]
    pub detach: bool,
    /// Add or override an environment variable (KEY=VALUE)
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// User as UID[:GID]
    #[arg(short, long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Additional group ids
    #[arg(short = 'g', long, value_name = "GID")]
    pub additional_gids: Vec<u32>,
    /// Write the process's host pid to FILE
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master (with --tty)
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Add a capability to the process's sets (e.g. CAP_NET_ADMIN)
    #[arg(short, long, value_name = "CAP")]
    pub cap: Vec<String>,
    /// Set no_new_privs for the process
    #[arg(long)]
    pub no_new_privs: bool,
    /// Pass N more fds (from 3 on) to the process
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// AppArmor profile for the process
    #[arg(long, value_name = "PROFILE")]
    pub apparmor: Option<String>,
    /// SELinux label for the process
    #[arg(long, value_name = "LABEL")]
    pub process_label: Option<String>,
    /// Container id
    pub id: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn build(a: &Args, base: Option<Process>) -> Result<Process> {
    if let Some(path) = &a.process {
        let data =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut p: Process = serde_json::from_slice(&data)
            .with_context(|| format!("invalid process JSON {}", path.display()))?;
        if a.tty {
            p.set_terminal(Some(true));
        }
        return Ok(p);
    }
    if a.command.is_empty() {
        bail!("exec: give a command, or --process FILE");
    }
    let mut p = base.unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    let mut env = p.env().clone().unwrap_or_default();
    for e in &a.env {
        let key = e.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    let mut user = p.user().clone();
    if let Some(u) = &a.user {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        user.set_uid(
            uid.parse()
                .with_context(|| format!("invalid uid in --user {u:?}"))?,
        );
        user.set_gid(
            gid.parse()
                .with_context(|| format!("invalid gid in --user {u:?}"))?,
        );
    }
    if !a.additional_gids.is_empty() {
        user.set_additional_gids(Some(a.additional_gids.clone()));
    }
    p.set_user(user);
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(x) = &a.apparmor {
        p.set_apparmor_profile(Some(x.clone()));
    }
    if let Some(x) = &a.process_label {
        p.set_selinux_label(Some(x.clone()));
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &a.cap {
            let cap: oci_spec::runtime::Capability = name
                .parse()
                .with_context(|| format!("unknown capability {name}"))?;
            let add = |s: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = s.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

/// runc exits 255 whenever exec cannot start the process, whatever the reason.
pub fn run(g: &Global, a: Args) -> Result<i32> {
    match run_inner(g, a) {
        Ok(code) => Ok(code),
        Err(e) => {
            crate::logging::error(&format!("exec failed: {e:#}"));
            Ok(255)
        }
    }
}

fn run_inner(g: &Global, a: Args) -> Result<i32> {
    let c = Container::load(&g.store, &a.id)?;
    let spec = c.spec()?;
    let process = build(&a, spec.process().clone())?;
    let opts = Opts {
        process,
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
    };
    let outcome = exec::exec(c, &spec, opts);
    match outcome? {
        Outcome::Started(code) => Ok(code),
        Outcome::Failed(msg) => {
            crate::logging::error(&format!(
                "exec failed: unable to start container process: {msg}"
            ));
            Ok(255)
        }
    }
}
