//! `exec`: a new process inside a running container. The runtime joins the container's
//! pid namespace for its children, clones, and the child joins the cgroup and the other
//! namespaces, sets up its terminal and privileges and execs. The setup channel closing
//! on exec (close-on-exec) tells the runtime the program started.

use super::finalize;
use super::spawn::{self, Forked};
use super::sync::{self, recv_msg, send_msg, Msg};
use crate::container::{Container, Status};
use crate::error::Error;
use crate::namespaces;
use crate::safepath::Root;
use crate::tty;
use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub struct Opts {
    pub process: Process,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
}

/// What `exec` reports: the process's exit code, or 255 if it could not start.
pub enum Outcome {
    Started(i32),
    Failed(String),
}

/// Open fds of the container's namespaces that differ from ours, in join order.
fn container_namespaces(c: &Container, spec: &Spec) -> Result<Vec<(LinuxNamespaceType, OwnedFd)>> {
    let mut out = Vec::new();
    let types = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in types {
        let name = namespaces::proc_name(ns.typ());
        let theirs = format!("/proc/{}/ns/{name}", c.state.pid);
        let f = File::open(&theirs).with_context(|| format!("cannot open {theirs}"))?;
        let same = std::fs::metadata(format!("/proc/self/ns/{name}"))
            .map(|m| {
                f.metadata()
                    .map(|t| t.ino() == m.ino() && t.dev() == m.dev())
                    .unwrap_or(false)
            })
            .unwrap_or(false);
        if !same {
            out.push((ns.typ(), f.into()));
        }
    }
    // Others first, then mount (resets root and cwd), then user (drops host rights).
    out.sort_by_key(|(t, _)| match t {
        LinuxNamespaceType::User => 2,
        LinuxNamespaceType::Mount => 1,
        _ => 0,
    });
    Ok(out)
}

/// Takes the container by value: its lock is released once the process exists, so other
/// commands can act on the container while the process runs in the foreground.
pub fn exec(c: Container, spec: &Spec, o: Opts) -> Result<Outcome> {
    match c.status() {
        Status::Running | Status::Created => {}
        Status::Paused => bail!("cannot exec in a paused container \"{}\"", c.id()),
        Status::Stopped => {
            return Err(Error::NotRunning {
                id: c.id().to_string(),
                what: "exec in",
            }
            .into())
        }
    }
    let terminal = o.process.terminal().unwrap_or(false);
    if terminal && o.detach && o.console_socket.is_none() {
        bail!("cannot allocate a tty when detached without --console-socket");
    }
    let mut nss = container_namespaces(&c, spec)?;
    // Joining the pid (and time) namespace applies to children: do it here.
    for (t, fd) in nss
        .iter()
        .filter(|(t, _)| matches!(t, LinuxNamespaceType::Pid | LinuxNamespaceType::Time))
    {
        nix::sched::setns(fd.as_fd(), namespaces::flag(*t))
            .with_context(|| format!("cannot join the container's {t} namespace"))?;
    }
    nss.retain(|(t, _)| !matches!(t, LinuxNamespaceType::Pid | LinuxNamespaceType::Time));
    let (console, pty_rx) = tty::pty_channel(o.console_socket.as_deref(), terminal)?;
    let (parent_sync, child_sync) = sync::pair()?;
    if !o.detach {
        spawn::block_signals()?;
    }
    let (pid, pidfd) = match spawn::clone3(0)? {
        Forked::Child => {
            drop(parent_sync);
            drop(pty_rx);
            // SAFETY: closing our copy of the state lock fd (flock is per description).
            unsafe { libc::close(c.entry.lock_fd()) };
            let r = child(&c, spec, &o, &nss, console.as_ref());
            let msg = match r {
                Ok(never) => match never {},
                Err(e) => format!("{e:#}"),
            };
            let _ = send_msg(child_sync.as_raw_fd(), &Msg::Error(msg));
            // SAFETY: leave the child without running the parent's destructors.
            unsafe { libc::_exit(255) }
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(child_sync);
    drop(console);
    drop(c);
    // No pty means the child failed before making it: its message follows.
    let pty = pty_rx
        .as_ref()
        .and_then(|rx| tty::recv_fd(rx.as_raw_fd()).ok());
    if let Some(Msg::Error(e)) = recv_msg(&parent_sync)? {
        // SAFETY: reaping our failed child.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        return Ok(Outcome::Failed(e));
    }
    if let Some(p) = &o.pid_file {
        crate::lifecycle::write_pid_file(p, pid)?;
    }
    if o.detach {
        return Ok(Outcome::Started(0));
    }
    let relay = pty.map(|m| std::thread::spawn(move || tty::relay(&m)));
    let code = spawn::supervise(pid, &pidfd)?;
    if let Some(r) = relay {
        let _ = r.join();
    }
    Ok(Outcome::Started(code))
}

fn child(
    c: &Container,
    spec: &Spec,
    o: &Opts,
    nss: &[(LinuxNamespaceType, OwnedFd)],
    console: Option<&OwnedFd>,
) -> Result<std::convert::Infallible> {
    let p = &o.process;
    c.cgroup().join_self()?;
    for (t, fd) in nss {
        nix::sched::setns(fd.as_fd(), namespaces::flag(*t))
            .with_context(|| format!("cannot join the container's {t} namespace"))?;
    }
    nix::unistd::chdir(p.cwd())
        .with_context(|| format!("cannot chdir to {}", p.cwd().display()))?;
    if let Some(sock) = console {
        nix::unistd::setsid().context("setsid")?;
        let root = Root::open(Path::new("/"))?;
        let ptmx = root
            .open_at(Path::new("/dev/ptmx"), libc::O_RDWR | libc::O_NOCTTY)
            .map_err(|e| anyhow!("cannot open the container's /dev/ptmx: {e}"))?;
        let (master, slave) = tty::open_pty(ptmx)?;
        if p.user().uid() != 0 {
            let _ = nix::unistd::fchown(&slave, Some(p.user().uid().into()), None);
        }
        tty::send_fd(sock.as_raw_fd(), master.as_raw_fd(), "/dev/ptmx")?;
        drop(master);
        tty::make_controlling(&slave)?;
    }
    let program = finalize::find_program(p)?;
    finalize::set_rlimits(p)?;
    spawn::unblock_signals();
    finalize::drop_privileges(spec, p)?;
    let home = finalize::home_of(p.user().uid());
    finalize::exec(p, &program, o.preserve_fds, &home)
}
