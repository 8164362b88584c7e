//! `checkpoint`: freeze the container's cgroup (fast poll), archive its tmpfs mounts, let
//! CRIU dump the frozen tree into a temporary directory beside the target, write the
//! manifest, rename the directory into place, then stop the container (unless
//! --leave-running). Any failure leaves the container running and thawed and no
//! checkpoint under the target name.

use crate::archive;
use crate::cli::{CheckpointArgs, Global};
use crate::container::{Container, Status};
use crate::criu::rpc::{CriuPageServerInfo, ExtMountMap};
use crate::criu::{self, CriuOpts, CriuReq, CriuReqType, Swrk, SwrkOptions};
use crate::criu_plan::{self, External, Source};
use crate::manifest::{self, Manifest, TmpfsArchive};
use crate::namespaces;
use crate::safepath::{self, relative};
use crate::sys::{openat2, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS};
use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::LinuxNamespaceType;
use std::fs::{self, File};
use std::io::BufWriter;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Timings and sizes reported at the end.
#[derive(Debug, Default, serde::Serialize)]
pub struct Summary {
    pub id: String,
    pub image_path: PathBuf,
    pub leave_running: bool,
    pub pre_dump: bool,
    /// When the freeze started, from the start of the checkpoint.
    pub freeze_start_ms: f64,
    /// Time to freeze the cgroup (ours, before CRIU).
    pub freeze_ms: f64,
    /// From the start of our freeze to the end of CRIU's dump: the container's downtime
    /// for a checkpoint that leaves it running; CRIU's own frozen time is `criu_frozen_ms`.
    pub frozen_ms: f64,
    pub criu_frozen_ms: f64,
    pub dump_ms: f64,
    pub total_ms: f64,
    pub pages_written: u64,
    pub image_bytes: u64,
    pub tmpfs_bytes: u64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

/// Removes the temporary image dir and thaws the container if the checkpoint fails.
struct Rollback {
    tmp: Option<PathBuf>,
    thaw: Option<crate::cgroups::CgroupPaths>,
    /// CRIU's network lock in a namespace given by path (netns, dump.log naming the run):
    /// a CRIU that was stopped (lazy migration) cannot lift it itself.
    lock: Option<(PathBuf, PathBuf)>,
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if let Some((ns, log)) = &self.lock {
            let _ = crate::nftables::remove_criu_lock(ns, &criu_plan::criu_run_id(log));
        }
        if let Some(cg) = &self.thaw {
            let _ = cg.thaw();
        }
        if let Some(t) = &self.tmp {
            let _ = fs::remove_dir_all(t);
        }
    }
}

/// Like runc, nothing goes to stdout on success (podman passes it through, and its
/// `--print-stats` JSON would break): the summary is shown on stderr when that is a
/// terminal, logged with --debug, and printed as JSON on stdout with `--json`.
pub fn run(g: &Global, a: &CheckpointArgs) -> Result<i32> {
    let summary =
        checkpoint(g, a).map_err(|e| crate::interrupt::explain(e, "checkpoint", &a.id))?;
    if let Some(sig) = crate::interrupt::received() {
        crate::warn!(
            "{} arrived during the checkpoint of container \"{}\": it was finished first (stopping half way could lose the container); the checkpoint is in {}",
            crate::interrupt::name(sig),
            a.id,
            summary.image_path.display()
        );
        return Ok(128 + sig);
    }
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
        return Ok(0);
    }
    let what = if summary.pre_dump {
        "Pre-dumped"
    } else {
        "Checkpointed"
    };
    let text = format!(
        "{what} container \"{}\" into {}: {} ({} pages), frozen {:.1} ms, dump {:.1} ms, total {:.1} ms{}",
        summary.id,
        summary.image_path.display(),
        human_bytes(summary.image_bytes),
        summary.pages_written,
        summary.frozen_ms,
        summary.dump_ms,
        summary.total_ms,
        if summary.leave_running || summary.pre_dump {
            "; still running"
        } else {
            "; stopped"
        }
    );
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!("{text}");
    } else {
        crate::debug!("{text}");
    }
    Ok(0)
}

/// Called in lazy mode once the images are in place while CRIU still serves the memory
/// pages (a migration restores on the target here). An error aborts the dump: CRIU is
/// stopped and the container goes on running here.
pub type OnReady<'a> = Box<dyn FnOnce(&Path) -> Result<()> + Send + 'a>;

pub fn checkpoint(g: &Global, a: &CheckpointArgs) -> Result<Summary> {
    checkpoint_with(g, a, None)
}

pub fn checkpoint_with(
    g: &Global,
    a: &CheckpointArgs,
    on_ready: Option<OnReady>,
) -> Result<Summary> {
    let start = Instant::now();
    let c = Container::load(&g.store, &a.id)?;
    let status = c.status();
    if !matches!(status, Status::Running | Status::Paused) {
        bail!("cannot checkpoint container \"{}\": it is {status} (only running or paused containers can be)", a.id);
    }
    let spec = c.spec()?;
    let criu_bin = criu_plan::criu_path(g.criu.as_deref());
    if a.pre_dump || a.parent_path.is_some() {
        let f = criu::check_features(&criu_bin, true, false)?;
        if f.mem_track != Some(true) {
            bail!("--pre-dump and --parent-path need memory change tracking, which this kernel lacks (CONFIG_MEM_SOFT_DIRTY is not set): use a plain checkpoint");
        }
    }
    if a.lazy_pages {
        criu::require_features(&criu_bin, false, true)?;
        check_pipe_max_size()?;
    }
    let cg_mode = criu_plan::cg_mode(a.manage_cgroups_mode.as_deref())?;
    let mut empty_ns = criu_plan::empty_ns(&a.empty_ns)?;

    let image = absolute(
        &a.image_path
            .clone()
            .unwrap_or_else(|| c.state.bundle.join("checkpoint")),
    )?;
    let name = image
        .file_name()
        .ok_or_else(|| anyhow!("invalid --image-path {}", image.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = image.parent().unwrap_or(Path::new("/")).to_path_buf();
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut rollback = Rollback {
        tmp: Some(tmp.clone()),
        thaw: None,
        lock: None,
    };
    let work = match &a.work_path {
        Some(w) => {
            let w = absolute(w)?;
            fs::create_dir_all(&w).with_context(|| format!("cannot create {}", w.display()))?;
            w
        }
        None => {
            // In the container's state dir: kept with the container if the dump fails.
            let w = c.entry.path("criu-work");
            let _ = fs::remove_dir_all(&w);
            fs::create_dir_all(&w)?;
            w
        }
    };

    // From here on a termination signal is noted, not obeyed half way (see `interrupt`).
    let _deferred = crate::interrupt::defer()?;
    // CRIU starts (fork, exec, dynamic linking: a few ms) before the freeze, not during it.
    let mut so = SwrkOptions::new(&criu_bin);
    so.stdin = Some(Stdio::null());
    so.stdout = Some(Stdio::null());
    so.stderr = Some(Stdio::null());
    so.log_path = Some(work.join("dump.log"));
    let swrk = Swrk::spawn(so)?;

    if let Some(sig) = crate::interrupt::received() {
        bail!(
            "{} before the freeze: container \"{}\" was not touched",
            crate::interrupt::name(sig),
            a.id
        );
    }
    let cg = &c.cgroup().clone();
    let freeze_start = Instant::now();
    let freeze_ms = if status == Status::Running {
        rollback.thaw = Some(cg.clone());
        ms(cg.freeze()?)
    } else {
        0.0
    };

    let pid = c.state.pid;
    crate::debug!("checkpoint {}: frozen in {freeze_ms:.2} ms", a.id);
    // With --compress, CRIU and the tmpfs archives write to a local directory and only one
    // archive reaches the image path: far fewer round trips on NFS/FUSE storage.
    let dump_dir = if a.compress {
        let d = c.entry.path("criu-images");
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d)?;
        d
    } else {
        tmp.clone()
    };
    let tmpfs = archive_tmpfs(&spec, pid, &dump_dir)?;
    crate::debug!(
        "checkpoint {}: tmpfs archived at {:.2} ms",
        a.id,
        ms(start.elapsed())
    );
    let tmpfs_bytes = tmpfs.iter().map(|(_, b)| b).sum();
    let masked = criu_plan::masked_mounts(&spec, pid);
    let externals = criu_plan::external_mounts(&spec, &c.state.bundle, cg, &masked)?;

    let private_net = matches!(
        crate::spec::namespace(&spec, LinuxNamespaceType::Network),
        Some(None)
    );
    let bare_netns = private_net && empty_ns.is_none() && !a.pre_dump && criu_plan::bare_netns(pid);
    if bare_netns {
        empty_ns = Some(libc::CLONE_NEWNET as u32);
    }
    let tmp_fd = File::open(&dump_dir)?;
    let work_fd = File::open(&work)?;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let mut opts = CriuOpts {
        images_dir_fd: tmp_fd.as_raw_fd(),
        work_dir_fd: Some(work_fd.as_raw_fd()),
        log_file: Some("dump.log".into()),
        log_level: Some(4),
        root: Some(c.state.rootfs.to_string_lossy().into_owned()),
        pid: Some(pid),
        leave_running: Some(a.leave_running || a.pre_dump),
        // Cgroup properties are dumped only on request: restore applies config.json's
        // resources itself (saves CRIU mounting every hierarchy, ~13 ms).
        manage_cgroups: Some(cg_mode.is_some()),
        manage_cgroups_mode: cg_mode.map(|m| m as i32),
        notify_scripts: Some(true),
        orphan_pts_master: terminal.then_some(true),
        freeze_cgroup: cg.freezer_dir().map(|d| d.to_string_lossy().into_owned()),
        shell_job: Some(a.shell_job),
        ext_unix_sk: Some(a.ext_unix_sk),
        tcp_established: Some(a.tcp_established),
        tcp_skip_in_flight: a.tcp_skip_in_flight.then_some(true),
        file_locks: Some(a.file_locks),
        auto_dedup: Some(a.auto_dedup),
        empty_ns,
        lazy_pages: a.lazy_pages.then_some(true),
        track_mem: a.pre_dump.then_some(true),
        parent_img: a
            .parent_path
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned()),
        network_lock: Some(criu_plan::network_lock(a.tcp_established) as i32),
        config_file: criu_plan::config_file(&spec),
        ..Default::default()
    };
    if let Some(ps) = &a.page_server {
        let (addr, port) = ps
            .rsplit_once(':')
            .ok_or_else(|| anyhow!("--page-server wants ADDRESS:PORT, got {ps:?}"))?;
        opts.ps = Some(CriuPageServerInfo {
            address: Some(addr.to_string()),
            port: Some(
                port.parse()
                    .with_context(|| format!("invalid port in --page-server {ps:?}"))?,
            ),
            ..Default::default()
        });
    }
    if !a.pre_dump {
        for e in &externals {
            let k = e.key.to_string_lossy().into_owned();
            opts.ext_mnt.push(ExtMountMap {
                key: k.clone(),
                val: k,
            });
        }
    }
    let mut ext_ns = std::collections::BTreeMap::new();
    for ns in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
    {
        if let (Some(_), Some(key)) = (ns.path(), criu_plan::external_ns_key(ns.typ())) {
            let ino = fs::metadata(format!(
                "/proc/{pid}/ns/{}",
                namespaces::proc_name(ns.typ())
            ))?
            .ino();
            let name = if ns.typ() == LinuxNamespaceType::Network {
                "net"
            } else {
                "pid"
            };
            if !a.pre_dump {
                opts.external.push(format!("{name}[{ino}]:{key}"));
            }
            ext_ns.insert(name.to_string(), key.to_string());
        }
    }

    let mut m = Manifest {
        version: manifest::MANIFEST_VERSION,
        runtime: format!("runtime {}", env!("CARGO_PKG_VERSION")),
        id: a.id.clone(),
        created: crate::timefmt::rfc3339_nanos(std::time::SystemTime::now()),
        bundle: c.state.bundle.clone(),
        rootfs: c.state.rootfs.clone(),
        config_digest: manifest::config_digest(&spec),
        stdio: c.state.stdio.clone(),
        terminal,
        tmpfs: tmpfs.into_iter().map(|(t, _)| t).collect(),
        external_mounts: externals
            .iter()
            .map(|e| manifest::ExternalMount {
                key: e.key.clone(),
                kind: e.source.kind().to_string(),
            })
            .collect(),
        external_namespaces: ext_ns,
        pre_dump: a.pre_dump,
        bare_netns,
        criu_run_id: String::new(),
        files: Default::default(),
        compressed: None,
        program: manifest::program(&spec, &c.state.rootfs),
    };
    let fin = Finish {
        m: &mut m,
        dump_log: work.join("dump.log"),
        dump_dir: &dump_dir,
        tmp: &tmp,
        image: &image,
        compress: a.compress,
    };
    if let (true, Some(ns)) = (a.tcp_established, criu_plan::netns_path(&spec)) {
        rollback.lock = Some((ns, work.join("dump.log")));
    }
    let dump_start = Instant::now();
    let typ = if a.pre_dump {
        CriuReqType::PreDump
    } else {
        CriuReqType::Dump
    };
    let request = CriuReq::with_opts(typ, opts);
    let what = || {
        format!(
            "cannot checkpoint container \"{}\" (it is still running)",
            a.id
        )
    };
    let image_bytes = if a.lazy_pages {
        // Lazy: the images (all but memory) are installed when CRIU reports the page server
        // ready; the target restores while CRIU serves it the pages.
        let criu_pid = swrk.pid() as i32;
        let stop_on_signal = on_ready.is_none();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let status_fd = a.status_fd;
        let image_ref: &Path = &image;
        std::thread::scope(|scope| -> Result<u64> {
            // Ok(None): CRIU ended before its page server was ready (its error tells why).
            let worker = scope.spawn(move || -> Result<Option<u64>> {
                if rx.recv().is_err() {
                    return Ok(None);
                }
                let r = fin.run().and_then(|bytes| {
                    if let Some(fd) = status_fd {
                        // SAFETY: writing one byte to the fd the caller named.
                        unsafe { libc::write(fd, c"".as_ptr().cast(), 1) };
                    }
                    if let Some(f) = on_ready {
                        f(image_ref)?;
                    }
                    Ok(Some(bytes))
                });
                if r.is_err() {
                    // Stop serving: CRIU lets go of the tasks, which run on here.
                    // SAFETY: signalling our own CRIU child.
                    unsafe { libc::kill(criu_pid, libc::SIGKILL) };
                }
                r
            });
            let mut notify = move |script: &str, _: i32, _: Vec<OwnedFd>| -> Result<()> {
                if script == "status-ready" {
                    // The tree is dumped but for its memory, which CRIU now serves for as
                    // long as it takes: a signal stops serving, and the container runs on.
                    // (Under `migrate` the target may already run on these pages: it decides.)
                    if stop_on_signal {
                        crate::interrupt::stop_on_signal(criu_pid);
                    }
                    let _ = tx.send(());
                }
                Ok(())
            };
            let dumped = swrk.request(request, &mut notify);
            drop(notify);
            let worked = worker
                .join()
                .map_err(|_| anyhow!("lazy checkpoint worker panicked"))?;
            // Without all its pages an installed image is useless: remove it on failure.
            match (dumped, worked) {
                (Ok(_), Ok(Some(bytes))) => Ok(bytes),
                (Ok(_), Ok(None)) => Err(anyhow!("criu never reported its page server ready")),
                (Err(e), Ok(None)) => Err(e.context(what())),
                (Err(e), Ok(Some(_))) => {
                    let _ = fs::remove_dir_all(image_ref);
                    Err(e.context(format!("{} while serving memory pages", what())))
                }
                (_, Err(e)) => {
                    let _ = fs::remove_dir_all(image_ref);
                    Err(e.context(what()))
                }
            }
        })?
    } else {
        let mut notify = |_: &str, _: i32, _: Vec<OwnedFd>| -> Result<()> { Ok(()) };
        swrk.request(request, &mut notify).with_context(what)?;
        fin.run()?
    };
    rollback.tmp = None;
    let dump_ms = ms(dump_start.elapsed());
    let frozen_ms = ms(freeze_start.elapsed());
    drop(tmp_fd);
    drop(work_fd);
    crate::debug!(
        "checkpoint {}: installed at {:.2} ms",
        a.id,
        ms(start.elapsed())
    );
    let stats = criu::read_dump_stats(&work).unwrap_or_default();
    if a.work_path.is_none() {
        // runc leaves dump.log beside the images; so do we.
        for f in ["dump.log", "stats-dump"] {
            let _ = fs::copy(work.join(f), image.join(f));
        }
    }

    // The images are safe: now stop the container, or let it run again.
    rollback.thaw = None;
    rollback.lock = None;
    let leave = a.leave_running || a.pre_dump;
    if leave {
        if status == Status::Running {
            cg.thaw()?;
        }
    } else {
        let run_id = m.criu_run_id.clone();
        c.destroy_with(!a.poststop_done)?;
        // CRIU's network lock stays in a namespace it does not own: remove it, or it
        // drops every packet there (a later restore onto this host would be unreachable).
        if let (true, Some(ns)) = (a.tcp_established, criu_plan::netns_path(&spec)) {
            if let Err(e) = crate::nftables::remove_criu_lock(&ns, &run_id) {
                crate::warn!(
                    "container \"{}\": cannot remove CRIU's network lock in {}: {e:#}",
                    a.id,
                    ns.display()
                );
            }
        }
    }
    Ok(Summary {
        id: a.id.clone(),
        image_path: image,
        leave_running: a.leave_running,
        pre_dump: a.pre_dump,
        freeze_start_ms: ms(freeze_start.duration_since(start)),
        freeze_ms,
        frozen_ms,
        criu_frozen_ms: stats.frozen_time as f64 / 1000.0,
        dump_ms,
        total_ms: ms(start.elapsed()),
        pages_written: stats.pages_written,
        image_bytes,
        tmpfs_bytes,
    })
}

/// CRIU's lazy page server sizes its pipes to ~3.2 MiB; without CAP_SYS_RESOURCE that
/// needs fs.pipe-max-size at least that large, or every page request fails (EBADF).
fn check_pipe_max_size() -> Result<()> {
    const NEEDED: u64 = 4 << 20;
    let have_cap = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false);
    let max: u64 = fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if !have_cap && max < NEEDED {
        bail!("--lazy-pages: CRIU's page server needs fs.pipe-max-size >= {NEEDED} here (it is {max} and CAP_SYS_RESOURCE is missing): run `sysctl -w fs.pipe-max-size={NEEDED}`");
    }
    Ok(())
}

/// Everything after CRIU wrote its images: descriptors, manifest (with every file's size),
/// optional compression, and the rename into place. Returns the image size.
struct Finish<'a> {
    m: &'a mut Manifest,
    dump_log: PathBuf,
    dump_dir: &'a Path,
    tmp: &'a Path,
    image: &'a Path,
    compress: bool,
}

impl Finish<'_> {
    fn run(self) -> Result<u64> {
        fs::write(
            self.tmp.join(manifest::DESCRIPTORS),
            serde_json::to_vec(&self.m.stdio)?,
        )?;
        self.m.criu_run_id = criu_plan::criu_run_id(&self.dump_log);
        if self.compress {
            compress(self.dump_dir, self.tmp, self.m)?;
            let _ = fs::remove_dir_all(self.dump_dir);
        }
        self.m.record_files(self.tmp)?;
        self.m.save(self.tmp)?;
        install(self.tmp, self.image)?;
        Ok(self.m.files.values().sum())
    }
}

/// Archives every tmpfs mount of config.json from the frozen container's mount namespace
/// (seen through /proc/<pid>/root, resolved inside it). Returns each archive's record and
/// its content size.
fn archive_tmpfs(
    spec: &oci_spec::runtime::Spec,
    pid: i32,
    dir: &Path,
) -> Result<Vec<(TmpfsArchive, u64)>> {
    let mut out = Vec::new();
    let tmpfs: Vec<_> = spec
        .mounts()
        .iter()
        .flatten()
        .filter(|m| m.typ().as_deref() == Some("tmpfs"))
        .collect();
    if tmpfs.is_empty() {
        return Ok(out);
    }
    let root: OwnedFd = File::open(format!("/proc/{pid}/root"))
        .context("cannot open the container's root")?
        .into();
    for (i, m) in tmpfs.iter().enumerate() {
        let dest = safepath::clean(m.destination());
        let rel = relative(&dest);
        let rel = if rel.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            rel
        };
        let mnt = openat2(
            root.as_fd(),
            &rel,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        )
        .with_context(|| format!("cannot open tmpfs {} of the container", dest.display()))?;
        let name = archive::archive_name(i, &dest);
        let file = File::create(dir.join(&name))?;
        let bytes = archive::save(&mnt, BufWriter::new(file))
            .with_context(|| format!("cannot archive tmpfs {}", dest.display()))?;
        out.push((
            TmpfsArchive {
                destination: dest,
                archive: name,
                options: m.options().clone().unwrap_or_default(),
            },
            bytes,
        ));
    }
    Ok(out)
}

/// `--compress`: CRIU's images and the tmpfs archives of `from` as one zstd-compressed
/// tar in `to`.
fn compress(from: &Path, to: &Path, m: &mut Manifest) -> Result<()> {
    let name = "images.tar.zst".to_string();
    let out = File::create(to.join(&name))?;
    let mut b = tar::Builder::new(zstd::Encoder::new(out, 3)?);
    for e in fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() {
            b.append_path_with_name(e.path(), e.file_name())?;
        }
    }
    b.into_inner()?.finish()?.sync_all()?;
    m.compressed = Some(name);
    Ok(())
}

/// Moves the finished checkpoint to its name: over an empty directory, or replacing an
/// old checkpoint only once the new one is complete.
fn install(tmp: &Path, image: &Path) -> Result<()> {
    match fs::rename(tmp, image) {
        Ok(()) => return Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot move the checkpoint to {}", image.display()))
        }
    }
    let old = image.with_file_name(format!(
        ".{}.old-{}",
        image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    fs::rename(image, &old).with_context(|| format!("cannot replace {}", image.display()))?;
    fs::rename(tmp, image)
        .with_context(|| format!("cannot move the checkpoint to {}", image.display()))?;
    let _ = fs::remove_dir_all(&old);
    Ok(())
}

/// Used by restore to find which tmpfs archive backs an external mount.
pub fn tmpfs_for(m: &Manifest, e: &External) -> Option<TmpfsArchive> {
    match e.source {
        Source::Tmpfs(i) => m.tmpfs.get(i).cloned(),
        _ => None,
    }
}

/// A size for people: "512 B", "14.2 KiB", "256.0 MiB", "1.00 GiB".
pub fn human_bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if f < K {
        format!("{n} B")
    } else if f < K * K {
        format!("{:.1} KiB", f / K)
    } else if f < K * K * K {
        format!("{:.1} MiB", f / (K * K))
    } else {
        format!("{:.2} GiB", f / (K * K * K))
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(14_533), "14.2 KiB");
        assert_eq!(human_bytes(256 << 20), "256.0 MiB");
        assert_eq!(human_bytes(1 << 30), "1.00 GiB");
    }
}
