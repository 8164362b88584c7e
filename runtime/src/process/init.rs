//! The container's init, from clone to execve: joins its cgroup and namespaces, builds
//! the root, reports each step to the parent over the sync channel, then waits on
//! exec.fifo for `start` and becomes the user's program. Runs in the cloned child only;
//! it never returns.

use super::finalize;
use super::sync::{recv_msg, send_msg, Msg};
use crate::cgroups::CgroupPaths;
use crate::hooks::{self, Kind};
use crate::namespaces::Plan;
use crate::rootfs::{self, Setup};
use crate::spec::Bundle;
use crate::tty;
use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::LinuxNamespaceType;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

pub struct Args<'a> {
    pub id: &'a str,
    pub bundle: &'a Bundle,
    pub cgroup: &'a CgroupPaths,
    /// The child moves itself into the cgroup (false with a new user namespace: the
    /// parent does it, the child lacks the rights).
    pub join_cgroup: bool,
    pub ns: &'a Plan,
    pub sync: OwnedFd,
    /// Read end of exec.fifo: `start` writes one byte into it.
    pub fifo: Option<OwnedFd>,
    /// Where the pty master goes (a connected console socket).
    pub console: Option<OwnedFd>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
}

/// The init's process name (comm) until it execs the container's program.
pub const INIT_NAME: &std::ffi::CStr = c"runtime-init";

/// Entry point in the child: never returns.
pub fn run(a: Args) -> ! {
    // Keep our own handle on the channel: `setup` consumes (and closes) the rest.
    // SAFETY: dup of an fd we own.
    let sync = unsafe { libc::fcntl(a.sync.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    let err = match setup(a) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    if err.is::<RuntimeGone>() {
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(1) }
    }
    let msg = format!("{err:#}");
    if send_msg(sync, &Msg::Error(msg.clone())).is_err() {
        // The parent is gone (after `create` returned): stderr is all we have.
        eprintln!("runtime: container init: {msg}");
    }
    // SAFETY: leaving the child without running the parent's destructors.
    unsafe { libc::_exit(if msg.contains("exec:") { 127 } else { 1 }) }
}

/// The runtime exited during setup: it reports the failure itself, we leave quietly.
#[derive(Debug)]
struct RuntimeGone;

impl std::fmt::Display for RuntimeGone {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("the runtime went away during setup")
    }
}

impl std::error::Error for RuntimeGone {}

fn expect(sync: &OwnedFd, want: &Msg, step: &str) -> Result<Msg> {
    match recv_msg(sync)? {
        Some(Msg::Go(pid)) if matches!(want, Msg::Go(_)) => Ok(Msg::Go(pid)),
        Some(m) if &m == want => Ok(m),
        Some(Msg::Error(e)) => bail!("{e}"),
        Some(m) => bail!("{step}: unexpected message {m:?}"),
        None => Err(RuntimeGone.into()),
    }
}

fn setup(a: Args) -> Result<std::convert::Infallible> {
    let spec = &a.bundle.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| anyhow!("process is missing"))?;
    // Our name until execve replaces it: `start` watches it to know the program runs.
    // SAFETY: prctl with a NUL-terminated name.
    unsafe { libc::prctl(libc::PR_SET_NAME, INIT_NAME.as_ptr(), 0, 0, 0) };
    // Die with the runtime while it still supervises the setup.
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if a.join_cgroup {
        a.cgroup.join_self()?;
    }
    let Msg::Go(host_pid) = expect(&a.sync, &Msg::Go(0), "waiting for the runtime")? else {
        unreachable!()
    };
    for j in &a.ns.join {
        nix::sched::setns(j.fd.as_fd(), crate::namespaces::flag(j.typ))
            .with_context(|| format!("cannot join {} namespace {}", j.typ, j.path.display()))?;
    }
    let userns = a.ns.creates(LinuxNamespaceType::User);
    if userns {
        // The parent wrote our id maps: become root of the new user namespace.
        nix::unistd::setresgid(0.into(), 0.into(), 0.into())
            .context("setresgid(0) in the user namespace")?;
        nix::unistd::setresuid(0.into(), 0.into(), 0.into())
            .context("setresuid(0) in the user namespace")?;
    }
    if !a.no_new_keyring {
        join_session_keyring(a.id);
    }
    nix::unistd::setsid().context("setsid")?;
    if a.ns.creates(LinuxNamespaceType::Network) {
        crate::namespaces::loopback_up()?;
    }
    if let Some(h) = spec.hostname().as_ref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).context("sethostname")?;
    }
    if let Some(d) = spec.domainname().as_ref().filter(|h| !h.is_empty()) {
        let c = std::ffi::CString::new(d.as_str())?;
        // SAFETY: setdomainname with a valid buffer.
        if unsafe { libc::setdomainname(c.as_ptr(), d.len()) } != 0 {
            bail!("setdomainname: {}", std::io::Error::last_os_error());
        }
    }

    let setup = Setup {
        spec,
        rootfs: &a.bundle.rootfs,
        bundle: &a.bundle.dir,
        cgroup: a.cgroup,
        userns,
        cgroup_ns: a.ns.creates(LinuxNamespaceType::Cgroup)
            || a.ns.joins(LinuxNamespaceType::Cgroup),
    };
    let root = rootfs::enter(&setup)?;
    rootfs::mount_all(&setup, &root)?;
    let terminal = process.terminal().unwrap_or(false);
    let mut pty_slave = None;
    if terminal {
        let ptmx = root
            .open_at(Path::new("/dev/pts/ptmx"), libc::O_RDWR | libc::O_NOCTTY)
            .context("cannot open the container's /dev/pts/ptmx (is devpts mounted?)")?;
        let (master, slave) = tty::open_pty(ptmx)?;
        bind_console(&root, &slave)?;
        let uid = process.user().uid();
        if uid != 0 {
            let _ = nix::unistd::fchown(&slave, Some(uid.into()), None);
        }
        match &a.console {
            Some(sock) => tty::send_fd(sock.as_raw_fd(), master.as_raw_fd(), "/dev/ptmx")?,
            None => bail!("a terminal needs --console-socket"),
        }
        pty_slave = Some(slave);
    }
    rootfs::write_sysctls(spec, &root)?;
    rootfs::mask_paths(spec, &root)?;
    rootfs::readonly_paths(spec, &root)?;
    if hooks::has(spec, Kind::Prestart) || hooks::has(spec, Kind::CreateRuntime) {
        send_msg(a.sync.as_raw_fd(), &Msg::RunHooks)?;
        expect(&a.sync, &Msg::HooksDone, "waiting for prestart hooks")?;
    }
    let state = hooks::state_json(spec, a.id, "creating", host_pid, &a.bundle.dir);
    hooks::run(spec, Kind::CreateContainer, &state)?;
    rootfs::pivot(&root, a.no_pivot)?;
    drop(root);
    rootfs::finish(spec)?;

    let cwd = process.cwd();
    if nix::unistd::chdir(cwd).is_err() {
        std::fs::create_dir_all(cwd)
            .with_context(|| format!("cannot create cwd {}", cwd.display()))?;
        nix::unistd::chdir(cwd).with_context(|| format!("cannot chdir to {}", cwd.display()))?;
    }
    if let Some(slave) = &pty_slave {
        tty::make_controlling(slave)?;
    } else {
        reopen_dev_null()?;
    }
    let program = finalize::find_program(process)?;
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .context("cannot set oom_score_adj")?;
    }
    finalize::set_rlimits(process)?;
    let home = finalize::home_of(process.user().uid());
    // From here on the container outlives the runtime (which exits right after Proceed);
    // if the runtime dies before Proceed, the channel's EOF makes us exit instead.
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    send_msg(a.sync.as_raw_fd(), &Msg::Ready)?;
    expect(
        &a.sync,
        &Msg::Proceed,
        "waiting for the runtime to record the container",
    )?;
    if let Some(fifo) = &a.fifo {
        wait_for_start(fifo)?;
    }
    hooks::run(
        spec,
        Kind::StartContainer,
        &hooks::state_json(spec, a.id, "created", host_pid, &a.bundle.dir),
    )?;
    super::spawn::unblock_signals();
    finalize::drop_privileges(spec, process)?;
    drop(a.fifo);
    drop(a.console);
    finalize::exec(process, &program, a.preserve_fds, &home)
}

/// Blocks until `start` writes its byte into exec.fifo (POLLIN), then reads it.
fn wait_for_start(fifo: &OwnedFd) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        let mut p = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match poll(&mut p, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("waiting for start: {e}"),
            Ok(_) => {}
        }
        let mut b = [0u8; 1];
        match nix::unistd::read(fifo, &mut b) {
            Ok(1) => return Ok(()),
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
            Err(e) => bail!("waiting for start: {e}"),
        }
    }
}

/// Binds the pty slave over /dev/console (a regular file we create; refuse anything else).
fn bind_console(root: &crate::safepath::Root, slave: &OwnedFd) -> Result<()> {
    let target = root.create_file(Path::new("/dev/console"), 0o600)?;
    let st = crate::safepath::stat_fd(target.as_fd())?;
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFREG && kind != libc::S_IFCHR {
        bail!("/dev/console in the rootfs is neither a file nor a device: refused");
    }
    let tree = crate::sys::open_tree(
        slave.as_raw_fd(),
        Path::new(""),
        crate::sys::OPEN_TREE_CLONE,
    )
    .context("cannot bind the pty to /dev/console")?;
    crate::sys::move_mount_fd(tree.as_fd(), target.as_fd())
        .context("cannot bind the pty to /dev/console")
}

/// A fresh session keyring per container, so containers do not share the host's keys.
fn join_session_keyring(id: &str) {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    if let Ok(name) = std::ffi::CString::new(format!("_ses.{id}")) {
        // SAFETY: keyctl with a valid string; failure only costs isolation, like runc in
        // user namespaces.
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    }
}

/// stdio on the caller's /dev/null is reopened as the container's own /dev/null (as runc
/// does): a host device file is on a mount CRIU cannot see, and would block a checkpoint.
fn reopen_dev_null() -> Result<()> {
    let mut null: Option<std::fs::File> = None;
    for fd in 0..3 {
        // SAFETY: fstat of a stdio fd into a zeroed struct.
        let st = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut st) != 0 {
                continue;
            }
            st
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
            continue;
        }
        if null.is_none() {
            null = Some(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                    .context("cannot open the container's /dev/null")?,
            );
        }
        if let Some(n) = &null {
            // SAFETY: dup2 of an fd we own onto a stdio number.
            if unsafe { libc::dup2(n.as_raw_fd(), fd) } < 0 {
                bail!("cannot reopen stdio: {}", std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}
