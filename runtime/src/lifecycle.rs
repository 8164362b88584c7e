//! Create and start, shared by `create`, `run` and `restore`: the parent side of making a
//! container (state dir, cgroup, exec.fifo, the init's setup protocol, hooks, state.json)
//! and the start handshake. Any failure before the state is complete undoes everything.

use crate::cgroups::CgroupPaths;
use crate::container::{start_time, Container, Status};
use crate::error::Error;
use crate::hooks::{self, Kind};
use crate::namespaces::{self, Plan};
use crate::process::init;
use crate::process::spawn::{self, Forked};
use crate::process::sync::{self, recv_msg, send_msg, Msg};
use crate::spec::Bundle;
use crate::state::{self, Entry, State, Store, CONFIG_FILE, EXEC_FIFO, STATE_VERSION};
use crate::timefmt::rfc3339_nanos;
use crate::tty;
use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::LinuxNamespaceType;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::SystemTime;

#[derive(Debug, Default, Clone)]
pub struct CreateOpts {
    pub id: String,
    pub bundle: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    pub systemd_cgroup: bool,
    /// `run` in the foreground: the runtime stays the init's parent and may relay a tty.
    pub foreground: bool,
}

/// A container that exists (state written) whose init waits for `start`.
pub struct Created {
    pub container: Container,
    pub pidfd: OwnedFd,
    /// The pty master when a foreground run relays the terminal itself.
    pub pty: Option<OwnedFd>,
}

/// Undoes a half-made container when dropped without `disarm`.
struct Undo {
    entry: Option<Entry>,
    cgroup: Option<CgroupPaths>,
    child: Option<i32>,
}

impl Undo {
    fn disarm(&mut self) -> Entry {
        self.cgroup = None;
        self.child = None;
        self.entry.take().expect("entry present until disarmed")
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(pid) = self.child {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.destroy();
        }
        if let Some(e) = &self.entry {
            let _ = e.remove();
        }
    }
}

/// Claims `id` in the store, records the container's config.json there and
/// creates its cgroup with the spec's resources: the first steps of both
/// create and restore. On error nothing of it is left behind.
pub(crate) fn claim(
    store: &Store,
    id: &str,
    spec: &oci_spec::runtime::Spec,
    systemd_cgroup: bool,
) -> Result<(Entry, CgroupPaths)> {
    let entry = store.create(id)?;
    let cgroup = CgroupPaths::from_spec(spec, id, systemd_cgroup);
    let done = cgroup.and_then(|cg| {
        state::write_atomic(&entry.path(CONFIG_FILE), &serde_json::to_vec(spec)?)?;
        if let Err(e) = cg.create_with(spec) {
            let _ = cg.destroy();
            return Err(e);
        }
        Ok(cg)
    });
    match done {
        Ok(cg) => Ok((entry, cg)),
        Err(e) => {
            let _ = entry.remove();
            Err(e)
        }
    }
}

pub fn create(store: &Store, o: &CreateOpts) -> Result<Created> {
    let t0 = std::time::Instant::now();
    let t = |what: &str| {
        crate::debug!(
            "create {}: {what} at {:.2} ms",
            o.id,
            t0.elapsed().as_secs_f64() * 1000.0
        )
    };
    let dir = crate::spec::bundle_dir(o.bundle.as_deref())?;
    let bundle = Bundle::load(&dir)?;
    let spec = &bundle.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| anyhow!("process is missing"))?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && o.console_socket.is_none() && !o.foreground {
        bail!("cannot allocate a tty when detached without --console-socket");
    }
    if !terminal && o.console_socket.is_some() {
        bail!("--console-socket given but process.terminal is false in config.json");
    }
    let mut ns = Plan::from_spec(spec)?;
    let for_children = ns.take_for_children();
    if !ns.creates(LinuxNamespaceType::Mount) && !ns.joins(LinuxNamespaceType::Mount) {
        bail!("config.json: a mount namespace is required");
    }
    let (entry, cgroup) = claim(store, &o.id, spec, o.systemd_cgroup)?;
    let mut undo = Undo {
        entry: Some(entry),
        cgroup: Some(cgroup.clone()),
        child: None,
    };
    let entry = undo.entry.as_ref().expect("just set");

    t("cgroup ready");
    let fifo_path = entry.path(EXEC_FIFO);
    nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .with_context(|| format!("cannot create {}", fifo_path.display()))?;
    let fifo: OwnedFd = nix::fcntl::open(
        &fifo_path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("cannot open {}", fifo_path.display()))?;

    let (console, pty_rx) = tty::pty_channel(o.console_socket.as_deref(), terminal)?;

    let userns = ns.creates(LinuxNamespaceType::User);
    let (parent_sync, child_sync) = sync::pair()?;
    if o.foreground {
        spawn::block_signals()?;
    }
    // Namespaces that apply to children only are entered (and left) by us around the clone.
    let mut back = Vec::new();
    back.extend(namespaces::enter_for_children(&for_children)?);
    let time = namespaces::flag(LinuxNamespaceType::Time);
    if ns.create.contains(time) {
        ns.create.remove(time);
        back.push(namespaces::new_time_ns_for_children(spec)?);
    }
    let (pid, pidfd) = match spawn::clone3(ns.create.bits() as u64)? {
        Forked::Child => {
            drop(parent_sync);
            drop(pty_rx);
            // The init waits for `start` for a long time: it must not keep the lock.
            // SAFETY: closing our copy of the lock fd; `undo` is forgotten, never used.
            unsafe { libc::close(entry.lock_fd()) };
            std::mem::forget(undo);
            init::run(init::Args {
                id: &o.id,
                bundle: &bundle,
                cgroup: &cgroup,
                join_cgroup: !userns,
                ns: &ns,
                sync: child_sync,
                fifo: Some(fifo),
                console,
                no_pivot: o.no_pivot,
                no_new_keyring: o.no_new_keyring,
                preserve_fds: o.preserve_fds,
            })
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    undo.child = Some(pid);
    t("cloned");
    for b in back {
        b()?;
    }
    drop(child_sync);
    drop(console);
    let fail = |step: &str, e: anyhow::Error| e.context(format!("container \"{}\": {step}", o.id));
    if userns {
        namespaces::write_id_maps(pid, spec).map_err(|e| fail("user namespace", e))?;
        cgroup.add_pid(pid)?;
    }
    send_msg(parent_sync.as_raw_fd(), &Msg::Go(pid))?;
    let mut pty = None;
    loop {
        match recv_msg(&parent_sync)? {
            Some(Msg::RunHooks) => {
                let st = hooks::state_json(spec, &o.id, "creating", pid, &bundle.dir);
                hooks::run(spec, Kind::Prestart, &st)?;
                hooks::run(spec, Kind::CreateRuntime, &st)?;
                send_msg(parent_sync.as_raw_fd(), &Msg::HooksDone)?;
            }
            Some(Msg::Ready) => {
                t("init ready");
                break;
            }
            Some(Msg::Error(e)) => return Err(anyhow!("unable to start container process: {e}")),
            Some(m) => bail!("unexpected message from the container init: {m:?}"),
            None => bail!("the container init exited during setup"),
        }
    }
    if let Some(rx) = &pty_rx {
        pty = Some(tty::recv_fd(rx.as_raw_fd())?);
    }
    let state = State {
        version: STATE_VERSION,
        id: o.id.clone(),
        pid,
        start_time: start_time(pid)
            .ok_or_else(|| anyhow!("the container init died during setup"))?,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: rfc3339_nanos(SystemTime::now()),
        owner: String::new(),
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        cgroup: cgroup.clone(),
        systemd_cgroup: o.systemd_cgroup,
        stdio: (0..3)
            .map(|fd| {
                std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect(),
        restored: false,
    };
    entry.save(&state)?;
    send_msg(parent_sync.as_raw_fd(), &Msg::Proceed)?;
    if let Some(p) = &o.pid_file {
        write_pid_file(p, pid)?;
    }
    t("recorded");
    let entry = undo.disarm();
    Ok(Created {
        container: Container { entry, state },
        pidfd,
        pty,
    })
}

/// The pid file engines read: decimal, no newline, written atomically.
pub fn write_pid_file(path: &std::path::Path, pid: i32) -> Result<()> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    state::write_atomic(&path, pid.to_string().as_bytes())
}

/// `start`: lets the init of a created container run its program.
pub fn start(c: &Container) -> Result<()> {
    match c.status() {
        Status::Created => {}
        Status::Stopped => bail!(
            "cannot start container \"{}\": the init process exited (container stopped)",
            c.id()
        ),
        s => {
            return Err(Error::WrongState {
                id: c.id().to_string(),
                what: "start",
                status: s.to_string(),
            }
            .into())
        }
    }
    let path = c.entry.path(EXEC_FIFO);
    // Non-blocking write open: ENXIO means no reader, i.e. the init is gone.
    let fifo = nix::fcntl::open(
        &path,
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| {
        anyhow!(
            "cannot start container \"{}\": the init is not waiting ({e})",
            c.id()
        )
    })?;
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    nix::unistd::write(&fifo, b"0")
        .with_context(|| format!("cannot start container \"{}\"", c.id()))?;
    drop(fifo);
    let spec = c.spec()?;
    if hooks::has(&spec, Kind::Poststart) {
        wait_for_exec(c.state.pid);
        let st = hooks::state_json(&spec, c.id(), "running", c.state.pid, &c.state.bundle);
        if let Err(e) = hooks::run(&spec, Kind::Poststart, &st) {
            crate::warn!("container \"{}\": {e:#}", c.id());
        }
    }
    Ok(())
}

/// Poststart hooks run once the program runs: wait (bounded) until the init has exec'd
/// (its name is no longer the init's, see init::INIT_NAME), or is gone.
fn wait_for_exec(pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let ours = init::INIT_NAME.to_string_lossy();
    while std::time::Instant::now() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            Ok(c) if c.trim_end() == ours => {}
            _ => return,
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
}
