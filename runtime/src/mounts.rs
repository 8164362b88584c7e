//! The container's mounts from config.json: option parsing, and attaching each mount to
//! the destination resolved inside the rootfs (new mount API: the mount is built
//! detached, with its attributes, then moved onto the fd of the destination).

use crate::safepath::{is_dir, stat_fd, Root};
use crate::sys::{self, FsContext, OPEN_TREE_CLONE};
use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::Mount;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A mount's options, split into what the kernel takes where.
#[derive(Debug, Default, PartialEq)]
pub struct Options {
    pub bind: bool,
    pub recursive: bool,
    /// MOUNT_ATTR_* to set / clear on the mount.
    pub attr_set: u64,
    pub attr_clr: u64,
    /// Apply `attr_set` to every submount of a recursive bind (`rro` and friends).
    pub attr_recursive: bool,
    /// MS_PRIVATE/MS_SHARED/... (0 = leave as is).
    pub propagation: u64,
    pub propagation_recursive: bool,
    /// Filesystem options (`size=64m`, `mode=755`, `newinstance`...).
    pub data: Vec<(String, Option<String>)>,
}

/// Parses `options` of a mount (runc's vocabulary).
pub fn parse_options(opts: &[String]) -> Options {
    use sys::*;
    let mut o = Options::default();
    for opt in opts {
        let (set, clr): (u64, u64) = match opt.as_str() {
            "bind" => {
                o.bind = true;
                continue;
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                continue;
            }
            "ro" => (MOUNT_ATTR_RDONLY, 0),
            "rw" => (0, MOUNT_ATTR_RDONLY),
            "nosuid" => (MOUNT_ATTR_NOSUID, 0),
            "suid" => (0, MOUNT_ATTR_NOSUID),
            "nodev" => (MOUNT_ATTR_NODEV, 0),
            "dev" => (0, MOUNT_ATTR_NODEV),
            "noexec" => (MOUNT_ATTR_NOEXEC, 0),
            "exec" => (0, MOUNT_ATTR_NOEXEC),
            "noatime" => (MOUNT_ATTR_NOATIME, MOUNT_ATTR_ATIME),
            "strictatime" => (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR_ATIME),
            "relatime" => (0, MOUNT_ATTR_ATIME),
            "nodiratime" => (MOUNT_ATTR_NODIRATIME, 0),
            "diratime" => (0, MOUNT_ATTR_NODIRATIME),
            "nosymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, 0),
            "atime" | "norelatime" | "async" | "defaults" | "loud" | "nostrictatime" => (0, 0),
            "rro" | "rrw" | "rnosuid" | "rsuid" | "rnodev" | "rdev" | "rnoexec" | "rexec" => {
                o.attr_recursive = true;
                let p = parse_options(&[opt[1..].to_string()]);
                (p.attr_set, p.attr_clr)
            }
            p @ ("private" | "shared" | "slave" | "unbindable" | "rprivate" | "rshared"
            | "rslave" | "runbindable") => {
                let rec = p.starts_with('r') && p != "rw";
                o.propagation = propagation_flag(p.trim_start_matches('r'));
                o.propagation_recursive = rec;
                continue;
            }
            other => {
                match other.split_once('=') {
                    Some((k, v)) => o.data.push((k.to_string(), Some(v.to_string()))),
                    None => o.data.push((other.to_string(), None)),
                }
                continue;
            }
        };
        o.attr_set = (o.attr_set & !clr) | set;
        o.attr_clr = (o.attr_clr & !set) | clr;
        if clr & MOUNT_ATTR_ATIME != 0 {
            o.attr_set &= !MOUNT_ATTR_ATIME | set;
        }
    }
    o
}

/// MS_* propagation flag for "private", "shared", "slave", "unbindable".
pub fn propagation_flag(name: &str) -> u64 {
    match name {
        "private" => libc::MS_PRIVATE,
        "shared" => libc::MS_SHARED,
        "slave" => libc::MS_SLAVE,
        "unbindable" => libc::MS_UNBINDABLE,
        _ => 0,
    }
}

/// /proc destinations a bind may cover (as runc allows: lxcfs-style overrides).
const PROC_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// Everything a mount needs from the rest of the setup.
pub struct Env<'a> {
    pub root: &'a Root,
    pub bundle: &'a Path,
    /// The container's cgroup directories (for `cgroup` mounts without a cgroup ns).
    pub cgroup: &'a crate::cgroups::CgroupPaths,
    pub cgroup_ns: bool,
}

/// Mounts one config.json entry inside the root.
pub fn mount_one(env: &Env, m: &Mount) -> Result<()> {
    let dest = m.destination();
    let typ = m.typ().as_deref().unwrap_or("");
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    check_proc_dest(dest, typ)?;
    let what = format!("mount {} on {}", typ_or_bind(typ, &opts), dest.display());
    let r = if opts.bind || typ == "bind" {
        bind(env, m, &opts)
    } else if typ == "cgroup" || typ == "cgroup2" {
        cgroup(env, dest, &opts)
    } else {
        fs(env, m, typ, &opts)
    };
    r.with_context(|| what)
}

fn typ_or_bind<'a>(typ: &'a str, o: &Options) -> &'a str {
    if o.bind {
        "bind"
    } else {
        typ
    }
}

fn check_proc_dest(dest: &Path, typ: &str) -> Result<()> {
    let clean = crate::safepath::clean(dest);
    if clean == Path::new("/proc") {
        if typ != "proc" {
            bail!("/proc must be a proc mount, not {typ:?}");
        }
        return Ok(());
    }
    if clean.starts_with("/proc") && !PROC_ALLOWED.iter().any(|p| clean == Path::new(p)) {
        bail!("mounting over {} is not allowed", clean.display());
    }
    Ok(())
}

/// Host source path of a bind mount (relative sources are relative to the bundle).
pub fn bind_source(bundle: &Path, m: &Mount) -> Result<PathBuf> {
    let src = m
        .source()
        .as_ref()
        .ok_or_else(|| anyhow!("bind mount without a source"))?;
    Ok(if src.is_absolute() {
        src.clone()
    } else {
        bundle.join(src)
    })
}

fn bind(env: &Env, m: &Mount, o: &Options) -> Result<()> {
    let src = bind_source(env.bundle, m)?;
    let flags = OPEN_TREE_CLONE
        | if o.recursive {
            libc::AT_RECURSIVE as u32
        } else {
            0
        };
    let tree = sys::open_tree(libc::AT_FDCWD, &src, flags)
        .with_context(|| format!("cannot open bind source {}", src.display()))?;
    let target = ensure_target(env.root, m.destination(), is_dir(&stat_fd(tree.as_fd())?))?;
    set_attrs(&tree, o)?;
    sys::move_mount_fd(tree.as_fd(), target.as_fd()).context("cannot attach mount")?;
    propagate(env.root, m.destination(), o)
}

/// Applies mount attributes to a detached mount.
fn set_attrs(tree: &OwnedFd, o: &Options) -> Result<()> {
    if o.attr_set != 0 || o.attr_clr != 0 {
        let recursive = o.attr_recursive;
        sys::mount_setattr(tree.as_fd(), recursive, o.attr_set, o.attr_clr, 0)
            .context("cannot set mount attributes")?;
    }
    Ok(())
}

/// Sets propagation on the (attached) mount at `dest`.
fn propagate(root: &Root, dest: &Path, o: &Options) -> Result<()> {
    if o.propagation == 0 {
        return Ok(());
    }
    let fd = root
        .lookup(dest)?
        .ok_or_else(|| anyhow!("{} vanished", root.display(dest)))?;
    sys::mount_setattr(fd.as_fd(), o.propagation_recursive, 0, 0, o.propagation)
        .context("cannot set mount propagation")
}

/// Makes sure the destination exists (a directory, or a file for a file source) and
/// returns an O_PATH fd to it.
/// A target that resolves onto procfs (through a symlink, say) is refused unless the
/// destination itself is allowed there.
pub fn ensure_target(root: &Root, dest: &Path, dir: bool) -> Result<OwnedFd> {
    let fd = if dir {
        root.mkdir_all(dest, 0o755)?
    } else {
        root.create_file(dest, 0o644)?
    };
    let clean = crate::safepath::clean(dest);
    if crate::safepath::fs_magic(fd.as_fd())? == crate::safepath::PROC_SUPER_MAGIC
        && !PROC_ALLOWED.iter().any(|p| clean == Path::new(p))
    {
        bail!("{} resolves into procfs: refused", dest.display());
    }
    Ok(fd)
}

fn fs(env: &Env, m: &Mount, typ: &str, o: &Options) -> Result<()> {
    let target = ensure_target(env.root, m.destination(), true)?;
    let mnt = match new_fs(typ, m.source().as_deref(), o) {
        Ok(mnt) => mnt,
        // Without its own network namespace a container may not mount sysfs: runc
        // binds the host's /sys instead. Same for mqueue without an ipc namespace.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && matches!(typ, "sysfs" | "mqueue") => {
            let src = if typ == "sysfs" {
                "/sys"
            } else {
                "/dev/mqueue"
            };
            let tree = sys::open_tree(
                libc::AT_FDCWD,
                Path::new(src),
                OPEN_TREE_CLONE | libc::AT_RECURSIVE as u32,
            )?;
            set_attrs(
                &tree,
                &Options {
                    attr_recursive: true,
                    ..copy_attrs(o)
                },
            )?;
            tree
        }
        Err(e) => return Err(e.into()),
    };
    sys::move_mount_fd(mnt.as_fd(), target.as_fd()).context("cannot attach mount")?;
    propagate(env.root, m.destination(), o)
}

fn copy_attrs(o: &Options) -> Options {
    Options {
        attr_set: o.attr_set,
        attr_clr: o.attr_clr,
        ..Options::default()
    }
}

/// A new detached filesystem mount of type `typ`.
pub fn new_fs(typ: &str, source: Option<&Path>, o: &Options) -> std::io::Result<OwnedFd> {
    let ctx = FsContext::open(typ)?;
    if let Some(src) = source.and_then(|s| s.to_str()).filter(|s| !s.is_empty()) {
        ctx.set("source", Some(src))?;
    }
    for (k, v) in &o.data {
        ctx.set(k, v.as_deref())?;
    }
    ctx.mount(o.attr_set)
}

/// `cgroup` mounts: with a cgroup namespace, a real cgroup2/cgroup fs; without one (v1),
/// a tmpfs holding read-only binds of the container's own cgroup directories.
fn cgroup(env: &Env, dest: &Path, o: &Options) -> Result<()> {
    let target = ensure_target(env.root, dest, true)?;
    let ro = o.attr_set & sys::MOUNT_ATTR_RDONLY;
    let base = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOEXEC;
    if env.cgroup.v2 {
        let mnt = if env.cgroup_ns {
            new_fs(
                "cgroup2",
                None,
                &Options {
                    attr_set: base | ro,
                    ..Options::default()
                },
            )?
        } else {
            let dir = env
                .cgroup
                .dirs
                .values()
                .next()
                .ok_or_else(|| anyhow!("no cgroup"))?;
            let t = sys::open_tree(libc::AT_FDCWD, dir, OPEN_TREE_CLONE)?;
            sys::mount_setattr(t.as_fd(), false, base | ro, 0, 0)?;
            t
        };
        sys::move_mount_fd(mnt.as_fd(), target.as_fd())?;
        return Ok(());
    }
    let tmp = new_fs(
        "tmpfs",
        Some(Path::new("tmpfs")),
        &Options {
            attr_set: base,
            data: vec![("mode".into(), Some("755".into()))],
            ..Options::default()
        },
    )?;
    sys::move_mount_fd(tmp.as_fd(), target.as_fd())?;
    for (name, dir) in &env.cgroup.dirs {
        let sub = name.strip_prefix("name=").unwrap_or(name);
        let d = dest.join(sub);
        let t = env.root.mkdir_all(&d, 0o755)?;
        let tree = sys::open_tree(libc::AT_FDCWD, dir, OPEN_TREE_CLONE)
            .with_context(|| format!("cannot bind {}", dir.display()))?;
        sys::mount_setattr(tree.as_fd(), false, base | ro, 0, 0)?;
        sys::move_mount_fd(tree.as_fd(), t.as_fd())?;
    }
    if ro != 0 {
        let fd = env
            .root
            .lookup(dest)?
            .ok_or_else(|| anyhow!("{} vanished", dest.display()))?;
        sys::mount_setattr(fd.as_fd(), false, sys::MOUNT_ATTR_RDONLY, 0, 0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::*;

    fn p(v: &[&str]) -> Options {
        parse_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn options() {
        let o = p(&[
            "rbind",
            "ro",
            "nosuid",
            "rprivate",
            "size=64m",
            "newinstance",
        ]);
        assert!(o.bind && o.recursive);
        assert_eq!(o.attr_set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID);
        assert_eq!(o.propagation, libc::MS_PRIVATE);
        assert!(o.propagation_recursive);
        assert_eq!(
            o.data,
            vec![
                ("size".into(), Some("64m".into())),
                ("newinstance".into(), None)
            ]
        );
        let o = p(&["ro", "rw"]);
        assert_eq!((o.attr_set, o.attr_clr), (0, MOUNT_ATTR_RDONLY));
        let o = p(&["rro"]);
        assert!(o.attr_recursive && o.attr_set == MOUNT_ATTR_RDONLY);
        let o = p(&["noatime"]);
        assert_eq!(o.attr_set, MOUNT_ATTR_NOATIME);
    }

    #[test]
    fn proc_destinations() {
        assert!(check_proc_dest(Path::new("/proc"), "proc").is_ok());
        assert!(check_proc_dest(Path::new("/proc"), "tmpfs").is_err());
        assert!(check_proc_dest(Path::new("/proc/self/attr"), "bind").is_err());
        assert!(check_proc_dest(Path::new("/proc/../proc/sys/x"), "bind").is_err());
        assert!(check_proc_dest(Path::new("/proc/uptime"), "bind").is_ok());
        assert!(check_proc_dest(Path::new("/tmp"), "tmpfs").is_ok());
        assert!(check_proc_dest(Path::new("/tmp/../proc/self"), "bind").is_err());
    }
}
