//! `restore`: bring a checkpoint back on the bundle's (restore-time) config.json: check the
//! manifest and image sizes, register the container, create its cgroup, bind the rootfs as
//! CRIU's root, refill its tmpfs mounts, map external mounts and namespaces to this host,
//! reconnect stdio, and let CRIU restore the processes into the cgroup. The checkpoint is
//! only read; any failure removes everything the restore made.

use crate::archive;
use crate::cgroups::CgroupPaths;
use crate::cli::{Global, RestoreArgs};
use crate::container::{start_time, Container};
use crate::criu::rpc::{CgroupRoot, ExtMountMap, InheritFd, JoinNamespace};
use crate::criu::{CriuOpts, CriuReq, CriuReqType, Swrk, SwrkOptions};
use crate::criu_plan::{self, Source};
use crate::hooks::{self, Kind};
use crate::manifest::{self, Manifest};
use crate::mounts::{self, Options};
use crate::namespaces;
use crate::safepath::{self, Root};
use crate::spec::Bundle;
use crate::state::{Entry, State, STATE_VERSION};
use crate::sys::{self, OPEN_TREE_CLONE};
use crate::timefmt::rfc3339_nanos;
use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::fs::{self, File};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

/// Everything a failed restore must take back, in reverse order of making.
struct Undo {
    entry: Option<Entry>,
    cgroup: Option<CgroupPaths>,
    mounts: Vec<PathBuf>,
    pid: Option<i32>,
    /// Set once prestart/createRuntime hooks ran: poststop undoes what they did (e.g. a
    /// service IP claimed on this host), as runc's destroy does.
    poststop: Option<(Spec, String, PathBuf)>,
    /// CRIU's network lock to remove from a namespace given by path (run id, netns).
    lock: Option<(String, PathBuf)>,
}

impl Undo {
    fn unmount_all(&mut self) {
        for m in self.mounts.drain(..).rev() {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
            let _ = fs::remove_dir(&m);
        }
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            // SAFETY: killing and reaping the tree we restored (it is our child).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
        self.unmount_all();
        if let Some(cg) = &self.cgroup {
            if let Ok(pids) = cg.pids() {
                for p in pids {
                    // SAFETY: processes of the cgroup this restore created.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            }
            let _ = cg.destroy();
        }
        if let Some((spec, id, bundle)) = &self.poststop {
            let st = hooks::state_json(spec, id, "stopped", 0, bundle);
            if let Err(e) = hooks::run(spec, Kind::Poststop, &st) {
                crate::warn!("container \"{id}\": {e:#}");
            }
        }
        if let Some((run_id, ns)) = &self.lock {
            let _ = crate::nftables::remove_criu_lock(ns, run_id);
        }
        if let Some(e) = &self.entry {
            let _ = e.remove();
        }
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

/// `restore --check`: can this host restore `a.id` from its bundle? Prints
/// `{"ok":..,"criu":"x.y.z","problems":[..]}`; exit 1 when not.
fn check(g: &Global, a: &RestoreArgs) -> Result<i32> {
    let mut problems = Vec::new();
    let dir = crate::spec::bundle_dir(a.bundle.as_deref())?;
    match Bundle::load(&dir) {
        Err(e) => problems.push(format!("{e:#}")),
        Ok(b) => {
            for m in b.spec.mounts().iter().flatten() {
                let bind = m.typ().as_deref() == Some("bind")
                    || m.options()
                        .iter()
                        .flatten()
                        .any(|o| o == "bind" || o == "rbind");
                if bind {
                    let src = mounts::bind_source(&b.dir, m)?;
                    if !src.exists() {
                        problems.push(format!(
                            "bind mount source {} (for {}) does not exist on this host",
                            src.display(),
                            m.destination().display()
                        ));
                    }
                }
            }
            for ns in b
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.namespaces().clone())
                .unwrap_or_default()
            {
                if let Some(p) = ns.path().as_ref().filter(|p| !p.exists()) {
                    problems.push(format!(
                        "{} namespace {} does not exist on this host",
                        ns.typ(),
                        p.display()
                    ));
                }
            }
        }
    }
    if g.store.dir(&a.id).exists() {
        problems.push(format!(
            "a container \"{}\" already exists under {}",
            a.id,
            g.store.root().display()
        ));
    }
    let probe = g
        .store
        .root()
        .join(format!(".check-{}", std::process::id()));
    match fs::create_dir_all(&probe) {
        Ok(()) => {
            let _ = fs::remove_dir(&probe);
        }
        Err(e) => problems.push(format!(
            "state directory {} is not writable: {e}",
            g.store.root().display()
        )),
    }
    let criu = match crate::criu::version(&criu_plan::criu_path(g.criu.as_deref())) {
        Ok((a, b, c)) => format!("{a}.{b}.{c}"),
        Err(e) => {
            problems.push(format!("criu: {e:#}"));
            String::new()
        }
    };
    let ok = problems.is_empty();
    println!(
        "{}",
        serde_json::json!({ "ok": ok, "criu": criu, "problems": problems })
    );
    Ok(if ok { 0 } else { 1 })
}

pub fn run(g: &Global, a: &RestoreArgs) -> Result<i32> {
    if a.check {
        return check(g, a);
    }
    // A termination signal is noted, not obeyed half way (see `interrupt`): the restore
    // finishes, or fails and undoes itself, then reports it.
    let deferred = crate::interrupt::defer()?;
    restore(g, a, deferred).map_err(|e| crate::interrupt::explain(e, "restore", &a.id))
}

fn restore(g: &Global, a: &RestoreArgs, deferred: crate::interrupt::Deferred) -> Result<i32> {
    let start = Instant::now();
    let dir = crate::spec::bundle_dir(a.bundle.as_deref())?;
    let bundle = Bundle::load(&dir)?;
    let spec = &bundle.spec;
    let image = absolute(
        &a.image_path
            .clone()
            .unwrap_or_else(|| dir.join("checkpoint")),
    )?;
    if !image.is_dir() {
        bail!(
            "cannot restore container \"{}\": checkpoint directory {} does not exist",
            a.id,
            image.display()
        );
    }
    let m = Manifest::load(&image)?;
    if m.pre_dump {
        bail!("{} holds a pre-dump (memory only): restore the checkpoint made with --parent-path on it", image.display());
    }
    m.verify_files(&image)?;
    check_same_container(&m, &bundle)?;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if terminal && a.console_socket.is_none() && a.detach {
        bail!("cannot restore a terminal container detached without --console-socket");
    }

    let t = |what: &str| {
        crate::debug!(
            "restore {}: {what} at {:.2} ms",
            a.id,
            start.elapsed().as_secs_f64() * 1000.0
        )
    };
    t("checked the checkpoint");
    let (entry, cgroup) = crate::lifecycle::claim(&g.store, &a.id, spec, g.systemd_cgroup)?;
    let mut undo = Undo {
        entry: Some(entry),
        cgroup: Some(cgroup.clone()),
        mounts: Vec::new(),
        pid: None,
        poststop: None,
        lock: None,
    };
    let entry = undo.entry.as_ref().expect("just set");

    t("cgroup ready");
    // CRIU's root: the rootfs bound (privately) under our state dir.
    let criu_root = entry.path("criu-root");
    make_mountpoints(spec, &bundle)?;
    bind_private(&bundle.rootfs, &criu_root, true)?;
    undo.mounts.push(criu_root.clone());

    // CRIU's images and the tmpfs archives: the image dir, or a local unpacked copy.
    let images = images_dir(&m, &image, entry)?;
    // External mounts, as this host provides them.
    let mut ext_mnt = Vec::new();
    let restore_ext = criu_plan::external_mounts(spec, &bundle.dir, &cgroup, &Default::default())?;
    let provided = |key: &Path| restore_ext.iter().find(|e| e.key == key).map(|e| &e.source);
    let missing = |key: &Path, what: &str| {
        anyhow!(
            "cannot restore container \"{}\": the checkpoint has {what} at {} that {}/config.json does not provide",
            a.id,
            key.display(),
            bundle.dir.display()
        )
    };
    for (i, e) in m.external_mounts.iter().enumerate() {
        let key = &e.key;
        let val = match (e.kind.as_str(), provided(key)) {
            ("bind", Some(Source::Bind(src))) => src.clone(),
            ("cgroup-dir", Some(Source::CgroupDir(d))) => d.clone(),
            ("tmpfs", Some(Source::Tmpfs(_))) => {
                let staging = entry.path(&format!("tmpfs-{i}"));
                fill_tmpfs(spec, &m, key, &images, &staging)?;
                undo.mounts.push(staging.clone());
                staging
            }
            ("cgroup-root", Some(Source::CgroupRoot(subs))) => {
                let dir = entry.path("cgroup-root");
                for s in subs {
                    fs::create_dir_all(dir.join(s))?;
                }
                dir
            }
            ("dev-null", _) => PathBuf::from("/dev/null"),
            ("empty-dir", _) => {
                let dir = entry.path("empty");
                fs::create_dir_all(&dir)?;
                dir
            }
            (kind, _) => return Err(missing(key, &format!("a {kind} mount"))),
        };
        ext_mnt.push(ExtMountMap {
            key: key.to_string_lossy().into_owned(),
            val: val.to_string_lossy().into_owned(),
        });
    }

    t("mounts ready");
    // Namespaces given by path: external ones are handed to CRIU as fds, others joined.
    let mut extra_fds: Vec<(RawFd, OwnedFd)> = Vec::new();
    let mut inherit = Vec::new();
    let mut join_ns = Vec::new();
    for ns in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
    {
        let Some(path) = ns.path() else { continue };
        match criu_plan::external_ns_key(ns.typ()) {
            Some(key) => {
                let name = if ns.typ() == LinuxNamespaceType::Network {
                    "net"
                } else {
                    "pid"
                };
                if m.external_namespaces.get(name).map(String::as_str) != Some(key) {
                    bail!("config.json joins the {name} namespace {} but the checkpoint has a private one", path.display());
                }
                let f: OwnedFd = File::open(path)
                    .with_context(|| {
                        format!("cannot open {} namespace {}", ns.typ(), path.display())
                    })?
                    .into();
                let fd = 4 + extra_fds.len() as RawFd;
                extra_fds.push((fd, f));
                inherit.push(InheritFd {
                    key: key.to_string(),
                    fd,
                });
            }
            None if ns.typ() == LinuxNamespaceType::Cgroup => {
                bail!("restoring into a cgroup namespace given by path is not supported")
            }
            None => join_ns.push(JoinNamespace {
                ns: namespaces::proc_name(ns.typ()).to_string(),
                ns_file: path.to_string_lossy().into_owned(),
                extra_opt: None,
            }),
        }
    }
    for name in m.external_namespaces.keys() {
        let t = if name == "net" {
            LinuxNamespaceType::Network
        } else {
            LinuxNamespaceType::Pid
        };
        if crate::spec::namespace(spec, t).flatten().is_none() {
            bail!("the checkpoint joined an external {name} namespace: give its path in {}/config.json", bundle.dir.display());
        }
    }
    // The engine's pipes reconnect to the init's stdio (CRIU's own 0-2 are ours).
    for (i, target) in m.stdio.iter().enumerate() {
        if target.starts_with("pipe:") {
            inherit.push(InheritFd {
                key: target.clone(),
                fd: i as i32,
            });
        }
    }

    let cg_mode = criu_plan::cg_mode(a.manage_cgroups_mode.as_deref())?;
    let work = match &a.work_path {
        Some(w) => absolute(w)?,
        None => entry.path("criu-work"),
    };
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let images_fd =
        File::open(&images).with_context(|| format!("cannot open {}", images.display()))?;
    let work_fd = File::open(&work)?;
    let opts = CriuOpts {
        images_dir_fd: images_fd.as_raw_fd(),
        work_dir_fd: Some(work_fd.as_raw_fd()),
        log_file: Some("restore.log".into()),
        log_level: Some(4),
        root: Some(criu_root.to_string_lossy().into_owned()),
        rst_sibling: Some(true),
        // Without a mode, CRIU leaves cgroups alone: it runs inside the container's new
        // cgroup, so the restored tasks are born there.
        manage_cgroups: Some(cg_mode.is_some()),
        manage_cgroups_mode: cg_mode.map(|m| m as i32),
        cg_root: if cg_mode.is_some() {
            cgroup
                .dirs
                .keys()
                .map(|name| CgroupRoot {
                    ctrl: Some(name.clone()),
                    path: cgroup.path_of(name).to_string(),
                })
                .collect()
        } else {
            Vec::new()
        },
        notify_scripts: Some(true),
        evasive_devices: Some(true),
        orphan_pts_master: terminal.then_some(true),
        shell_job: Some(a.shell_job),
        ext_unix_sk: Some(a.ext_unix_sk),
        tcp_established: Some(a.tcp_established),
        file_locks: Some(a.file_locks),
        auto_dedup: Some(a.auto_dedup),
        empty_ns: if m.bare_netns {
            Some(libc::CLONE_NEWNET as u32)
        } else {
            criu_plan::empty_ns(&a.empty_ns)?
        },
        lazy_pages: a.lazy_pages.then_some(true),
        lsm_profile: a.lsm_profile.clone(),
        lsm_mount_context: a.lsm_mount_context.clone(),
        network_lock: Some(criu_plan::network_lock(a.tcp_established) as i32),
        config_file: criu_plan::config_file(spec),
        ext_mnt,
        inherit_fd: inherit,
        join_ns,
        ..Default::default()
    };

    let _lazy_daemon = match (&a.page_server, a.lazy_pages) {
        (Some(ps), true) => Some(start_lazy_pages(g, ps, &images, &work)?),
        (Some(_), false) => bail!("--page-server is for --lazy-pages restores"),
        _ => None,
    };
    if !a.no_subreaper {
        // SAFETY: prctl with constant arguments: orphans of the restored tree come to us.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    let console = match &a.console_socket {
        Some(p) => Some(crate::tty::connect(p)?),
        None => None,
    };
    let mut so = SwrkOptions::new(criu_plan::criu_path(g.criu.as_deref()));
    so.extra_fds = extra_fds;
    so.log_path = Some(work.join("restore.log"));
    so.join_cgroup = cgroup.join_files();
    so.own_process_group = !a.shell_job;
    t("spawning criu");
    let swrk = Swrk::spawn(so)?;
    t("criu started in the cgroup");
    if let (true, Some(ns)) = (a.tcp_established, criu_plan::netns_path(spec)) {
        undo.lock = Some((m.criu_run_id.clone(), ns));
    }
    let mut restored_pid = None;
    let mut hooks_ran = false;
    let mut pty_master: Option<OwnedFd> = None;
    let (id, bundle_dir) = (a.id.clone(), bundle.dir.clone());
    let mut notify = |script: &str, pid: i32, mut fds: Vec<OwnedFd>| -> Result<()> {
        match script {
            "setup-namespaces" => {
                if m.bare_netns {
                    criu_plan::loopback_up_in(pid)?;
                }
                let st = hooks::state_json(spec, &id, "creating", pid, &bundle_dir);
                hooks_ran = true;
                hooks::run(spec, Kind::Prestart, &st)?;
                hooks::run(spec, Kind::CreateRuntime, &st)?;
            }
            "post-restore" => restored_pid = Some(pid),
            "orphan-pts-master" => {
                let master = fds
                    .pop()
                    .ok_or_else(|| anyhow!("criu sent no pty master"))?;
                match &console {
                    Some(sock) => {
                        crate::tty::send_fd(sock.as_raw_fd(), master.as_raw_fd(), "/dev/ptmx")?
                    }
                    None => pty_master = Some(master),
                }
            }
            _ => {}
        }
        Ok(())
    };
    let resp = swrk
        .request(CriuReq::with_opts(CriuReqType::Restore, opts), &mut notify)
        .with_context(|| {
            format!(
                "cannot restore container \"{}\" from {}",
                a.id,
                image.display()
            )
        });
    t("criu answered");
    if hooks_ran {
        undo.poststop = Some((spec.clone(), a.id.clone(), bundle.dir.clone()));
    }
    let pid = match resp {
        Ok(r) => r.restore.map(|r| r.pid).or(restored_pid),
        Err(e) => {
            undo.pid = restored_pid;
            return Err(e);
        }
    };
    let pid =
        pid.ok_or_else(|| anyhow!("criu restored container \"{}\" but reported no pid", a.id))?;
    undo.pid = Some(pid);
    drop(images_fd);
    drop(work_fd);

    let state = State {
        version: STATE_VERSION,
        id: a.id.clone(),
        pid,
        start_time: start_time(pid)
            .ok_or_else(|| anyhow!("the restored init of \"{}\" died at once", a.id))?,
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
        systemd_cgroup: g.systemd_cgroup,
        stdio: (0..3)
            .map(|fd| {
                fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect(),
        restored: true,
    };
    entry.save(&state)?;
    t("state saved");
    if let Some(p) = &a.pid_file {
        crate::lifecycle::write_pid_file(p, pid)?;
    }
    undo.unmount_all();
    t("unmounted");
    // A lazy restore's daemon still reads the images; they go with the state dir.
    if images != image && !a.lazy_pages {
        let _ = fs::remove_dir_all(&images);
    }
    crate::debug!(
        "restored container \"{}\" in {:.1} ms",
        a.id,
        start.elapsed().as_secs_f64() * 1000.0
    );
    let entry = undo.entry.take().expect("entry present");
    undo.cgroup = None;
    undo.pid = None;
    undo.poststop = None;
    undo.lock = None;
    drop(deferred);
    if let Some(sig) = crate::interrupt::received() {
        crate::warn!(
            "{} arrived during the restore of container \"{}\": it was finished first; the container runs",
            crate::interrupt::name(sig),
            a.id
        );
        return Ok(128 + sig);
    }
    if a.detach {
        return Ok(0);
    }
    // Foreground: wait for the restored init (our child), then remove the container.
    let c = Container { entry, state };
    let pidfd = sys::pidfd_open(pid)?;
    drop(c);
    let relay = pty_master.map(|m| std::thread::spawn(move || crate::tty::relay(&m)));
    let code = crate::process::spawn::supervise(pid, &pidfd)?;
    if let Some(r) = relay {
        let _ = r.join();
    }
    if let Ok(c) = Container::load(&g.store, &a.id) {
        c.destroy()?;
    }
    Ok(code)
}

/// The checkpoint must come from a container with this config (same program, mounts,
/// namespaces) and, when the bundle moved, the same kind of root filesystem.
fn check_same_container(m: &Manifest, b: &Bundle) -> Result<()> {
    if m.config_digest != manifest::config_digest(&b.spec) {
        bail!(
            "the checkpoint was made from bundle {} with a different config.json than {}/config.json (program, mounts or namespaces differ): restore it with its own bundle",
            m.bundle.display(),
            b.dir.display()
        );
    }
    let here = manifest::program(&b.spec, &b.rootfs);
    if m.program.is_some() && here != m.program {
        let what = match (&m.program, &here) {
            (Some(p), None) => format!("{} is missing there", p.path.display()),
            (Some(p), Some(h)) => format!(
                "{} has {} bytes there, {} in the checkpoint",
                p.path.display(),
                h.size,
                p.size
            ),
            _ => String::new(),
        };
        bail!(
            "the checkpoint was made from bundle {} (rootfs {}); the rootfs {} of bundle {} holds another program: {what}",
            m.bundle.display(),
            m.rootfs.display(),
            b.rootfs.display(),
            b.dir.display()
        );
    }
    Ok(())
}

/// Creates the mountpoints CRIU will mount on (as `create` would), inside the rootfs or,
/// for one nested in a bind mount, inside that bind's source. Not below tmpfs (their
/// archives hold them) nor under cgroup mounts.
fn make_mountpoints(spec: &Spec, b: &Bundle) -> Result<()> {
    let root = Root::open(&b.rootfs)?;
    let mut binds: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut tmpfs: Vec<PathBuf> = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let dest = safepath::clean(m.destination());
        if tmpfs.iter().any(|t| dest.starts_with(t) && &dest != t) {
            continue;
        }
        let typ = m.typ().as_deref().unwrap_or("");
        let bind = typ == "bind"
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind");
        let is_dir = if bind {
            let src = mounts::bind_source(&b.dir, m)?;
            fs::metadata(&src)
                .with_context(|| format!("bind mount source {} is missing", src.display()))?
                .is_dir()
        } else {
            true
        };
        // Inside the deepest bind that holds it, if any.
        let holder = binds
            .iter()
            .filter(|(d, _)| dest.starts_with(d) && &dest != d)
            .max_by_key(|(d, _)| d.as_os_str().len());
        let (r, rel) = match holder {
            Some((d, src)) => (
                Root::open(src)?,
                dest.strip_prefix(d).unwrap_or(&dest).to_path_buf(),
            ),
            None => (Root::open(root.path())?, dest.clone()),
        };
        if !typ.starts_with("cgroup") || holder.is_none() {
            mounts::ensure_target(&r, &rel, is_dir)?;
        }
        if bind {
            binds.push((dest.clone(), mounts::bind_source(&b.dir, m)?));
        } else if typ == "tmpfs" {
            tmpfs.push(dest);
        }
    }
    Ok(())
}

/// Binds `src` onto a new directory `dst` (recursively), private: nothing propagates.
fn bind_private(src: &Path, dst: &Path, recursive: bool) -> Result<()> {
    fs::create_dir_all(dst).with_context(|| format!("cannot create {}", dst.display()))?;
    let flags = OPEN_TREE_CLONE
        | if recursive {
            libc::AT_RECURSIVE as u32
        } else {
            0
        };
    let tree = sys::open_tree(libc::AT_FDCWD, src, flags)
        .with_context(|| format!("cannot bind {}", src.display()))?;
    sys::mount_setattr(tree.as_fd(), recursive, 0, 0, libc::MS_PRIVATE)?;
    let target = Root::open(dst)?;
    sys::move_mount_fd(tree.as_fd(), target.fd())
        .with_context(|| format!("cannot bind {} on {}", src.display(), dst.display()))?;
    Ok(())
}

/// A fresh tmpfs (options from the restore-time config) at `staging`, filled from the
/// checkpoint's archive of the mount at `key`.
fn fill_tmpfs(spec: &Spec, m: &Manifest, key: &Path, image: &Path, staging: &Path) -> Result<()> {
    let mount = spec
        .mounts()
        .iter()
        .flatten()
        .find(|x| safepath::clean(x.destination()) == key)
        .ok_or_else(|| anyhow!("no tmpfs at {} in config.json", key.display()))?;
    let mut o = mounts::parse_options(mount.options().as_deref().unwrap_or(&[]));
    o.attr_set &= !sys::MOUNT_ATTR_RDONLY; // filled first, read-only comes with CRIU's bind
    let mnt = mounts::new_fs(
        "tmpfs",
        Some(Path::new("tmpfs")),
        &Options {
            data: o.data.clone(),
            ..Default::default()
        },
    )
    .with_context(|| format!("cannot make a tmpfs for {}", key.display()))?;
    sys::mount_setattr(mnt.as_fd(), false, 0, 0, libc::MS_PRIVATE)?;
    fs::create_dir_all(staging)?;
    let target = Root::open(staging)?;
    sys::move_mount_fd(mnt.as_fd(), target.fd())?;
    let root = Root::open(staging)?;
    match m.tmpfs.iter().find(|t| t.destination == key) {
        Some(t) => {
            let f = File::open(image.join(&t.archive))
                .with_context(|| format!("cannot open {}", t.archive))?;
            archive::load(&root, std::io::BufReader::new(f)).with_context(|| {
                format!("cannot refill tmpfs {} from {}", key.display(), t.archive)
            })?;
        }
        None => crate::warn!(
            "checkpoint has no archive for tmpfs {}: it comes back empty",
            key.display()
        ),
    }
    Ok(())
}

/// CRIU's images: the image dir itself, or a local copy unpacked from `--compress`.
fn images_dir(m: &Manifest, image: &Path, entry: &Entry) -> Result<PathBuf> {
    let Some(name) = &m.compressed else {
        return Ok(image.to_path_buf());
    };
    let out = entry.path("images");
    fs::create_dir_all(&out)?;
    let f = File::open(image.join(name)).with_context(|| format!("cannot open {name}"))?;
    let mut a = tar::Archive::new(zstd::Decoder::new(f)?);
    for e in a.entries()? {
        let mut e = e?;
        let p = e.path()?.into_owned();
        let n = p
            .file_name()
            .filter(|_| p.components().count() == 1)
            .ok_or_else(|| anyhow!("bad entry {} in {name}", p.display()))?;
        let mut out_f = File::create(out.join(n))?;
        std::io::copy(&mut e, &mut out_f)?;
    }
    Ok(out)
}

/// Starts CRIU's lazy-pages daemon for a lazy restore: it fetches pages from the
/// checkpoint's page server at `ps` (ADDR:PORT) and serves the restored tasks' page
/// faults. CRIU has no RPC for it, so it is CRIU's command line. Waits for its socket.
fn start_lazy_pages(
    g: &Global,
    ps: &str,
    images: &Path,
    work: &Path,
) -> Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let (addr, port) = ps
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("--page-server wants ADDRESS:PORT, got {ps:?}"))?;
    let socket = work.join("lazy-pages.socket");
    let _ = fs::remove_file(&socket);
    let mut cmd = std::process::Command::new(criu_plan::criu_path(g.criu.as_deref()));
    cmd.args([
        "lazy-pages",
        "--page-server",
        "--address",
        addr,
        "--port",
        port,
    ])
    .arg("--images-dir")
    .arg(images)
    .arg("--work-dir")
    .arg(work)
    .args(["--log-file", "lazy-pages.log", "-v4"])
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .process_group(0);
    let mut child = cmd.spawn().context("cannot start criu lazy-pages")?;
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while !socket.exists() {
        if let Some(status) = child.try_wait()? {
            let log = crate::criu::log::explain(&work.join("lazy-pages.log"))
                .ok()
                .flatten()
                .unwrap_or_default();
            bail!("criu lazy-pages exited ({status}) before it was ready: {log}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "criu lazy-pages did not get ready within 5 s (log: {})",
                work.join("lazy-pages.log").display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Ok(child)
}
