//! Building the container's root: mount propagation, the rootfs bind, config.json's
//! mounts, /dev, masked and read-only paths, then pivot_root, the read-only root and
//! sysctls. Everything before the pivot is resolved inside the rootfs (see safepath).

use crate::cgroups::CgroupPaths;
use crate::devices;
use crate::mounts::{self, Env};
use crate::safepath::{self, Root};
use crate::sys::{self, OPEN_TREE_CLONE};
use anyhow::{anyhow, bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::Spec;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

pub struct Setup<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub cgroup: &'a CgroupPaths,
    pub userns: bool,
    pub cgroup_ns: bool,
}

/// Makes "/" rslave (or what rootfsPropagation says) so nothing we mount leaks to the
/// host, binds the rootfs onto itself (pivot_root needs a mount point) and opens it.
pub fn enter(s: &Setup) -> Result<Root> {
    let prop = s
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
        .unwrap_or_default();
    let flag = match prop.trim_start_matches('r') {
        "private" => MsFlags::MS_PRIVATE,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        _ => MsFlags::MS_SLAVE, // "", slave, shared (made shared after the pivot)
    };
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        flag | MsFlags::MS_REC,
        None::<&str>,
    )
    .context("cannot set the propagation of /")?;
    let tree = sys::open_tree(
        libc::AT_FDCWD,
        s.rootfs,
        OPEN_TREE_CLONE | libc::AT_RECURSIVE as u32,
    )
    .with_context(|| format!("cannot bind rootfs {}", s.rootfs.display()))?;
    let target = Root::open(s.rootfs)?;
    sys::move_mount_fd(tree.as_fd(), target.fd())
        .with_context(|| format!("cannot bind rootfs {}", s.rootfs.display()))?;
    drop(target);
    Root::open(s.rootfs) // now the new mount
}

/// config.json's mounts, in order, then /dev nodes and links.
pub fn mount_all(s: &Setup, root: &Root) -> Result<()> {
    let env = Env {
        root,
        bundle: s.bundle,
        cgroup: s.cgroup,
        cgroup_ns: s.cgroup_ns,
    };
    let all = s.spec.mounts().clone().unwrap_or_default();
    for m in &all {
        mounts::mount_one(&env, m)?;
    }
    let dev_bound = all.iter().any(|m| {
        safepath::clean(m.destination()) == Path::new("/dev")
            && (m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind"))
    });
    if !dev_bound {
        let mut nodes = devices::defaults();
        let spec_devs = s
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.devices().clone())
            .unwrap_or_default();
        for d in &spec_devs {
            let n = devices::from_spec(d)?;
            nodes.retain(|x| x.path != n.path);
            nodes.push(n);
        }
        for n in &nodes {
            devices::create(root, n, s.userns)?;
        }
        devices::symlinks(root)?;
    }
    Ok(())
}

/// maskedPaths: files get the host's /dev/null (verified to be the real 1:3 node, never
/// the container's), directories an empty read-only tmpfs.
pub fn mask_paths(spec: &Spec, root: &Root) -> Result<()> {
    let paths = spec
        .linux()
        .as_ref()
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default();
    if paths.is_empty() {
        return Ok(());
    }
    let null = host_null()?;
    for p in &paths {
        let Some(target) = root.lookup(Path::new(p))? else {
            continue;
        };
        let st = safepath::stat_fd(target.as_fd())?;
        let mnt = if safepath::is_dir(&st) {
            let o = mounts::Options {
                attr_set: sys::MOUNT_ATTR_RDONLY,
                data: vec![("size".into(), Some("0".into()))],
                ..Default::default()
            };
            mounts::new_fs("tmpfs", Some(Path::new("tmpfs")), &o)?
        } else {
            sys::open_tree(null.as_raw_fd(), Path::new(""), OPEN_TREE_CLONE)?
        };
        sys::move_mount_fd(mnt.as_fd(), target.as_fd())
            .with_context(|| format!("cannot mask {p}"))?;
    }
    Ok(())
}

fn host_null() -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NOFOLLOW,
        nix::sys::stat::Mode::empty(),
    )
    .context("cannot open the host's /dev/null")?;
    let st = safepath::stat_fd(fd.as_fd())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
        bail!("the host's /dev/null is not the null device");
    }
    Ok(fd)
}

/// readonlyPaths: each bound onto itself read-only (recursively).
pub fn readonly_paths(spec: &Spec, root: &Root) -> Result<()> {
    for p in spec
        .linux()
        .as_ref()
        .and_then(|l| l.readonly_paths().clone())
        .unwrap_or_default()
    {
        let Some(target) = root.lookup(Path::new(&p))? else {
            continue;
        };
        let tree = sys::open_tree(
            target.as_raw_fd(),
            Path::new(""),
            OPEN_TREE_CLONE | libc::AT_RECURSIVE as u32,
        )
        .with_context(|| format!("cannot make {p} read-only"))?;
        sys::mount_setattr(tree.as_fd(), true, sys::MOUNT_ATTR_RDONLY, 0, 0)
            .with_context(|| format!("cannot make {p} read-only"))?;
        sys::move_mount_fd(tree.as_fd(), target.as_fd())
            .with_context(|| format!("cannot make {p} read-only"))?;
    }
    Ok(())
}

/// pivot_root into the root (or, with `no_pivot`, move it over / and chroot).
pub fn pivot(root: &Root, no_pivot: bool) -> Result<()> {
    nix::unistd::fchdir(root.fd()).context("cannot enter the rootfs")?;
    if no_pivot {
        mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .context("cannot move the rootfs to /")?;
        nix::unistd::chroot(".").context("chroot")?;
    } else {
        nix::unistd::pivot_root(".", ".").context("pivot_root")?;
        // The old root is now stacked under "."; keep its unmount from propagating.
        mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .context("cannot make the old root a slave")?;
        umount2(".", MntFlags::MNT_DETACH).context("cannot detach the old root")?;
    }
    nix::unistd::chdir("/").context("chdir /")?;
    Ok(())
}

/// After the pivot: read-only root, shared root propagation, sysctls.
pub fn finish(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let root = Root::open(Path::new("/"))?;
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        sys::mount_setattr(root.fd(), false, sys::MOUNT_ATTR_RDONLY, 0, 0)
            .context("cannot make the root read-only")?;
    }
    let prop = linux
        .and_then(|l| l.rootfs_propagation().clone())
        .unwrap_or_default();
    if prop.trim_start_matches('r') == "shared" {
        let rec = prop.starts_with('r');
        sys::mount_setattr(root.fd(), rec, 0, 0, libc::MS_SHARED)
            .context("cannot make the root shared")?;
    }
    Ok(())
}

/// linux.sysctl, written into the container's own /proc/sys (under the root, before
/// readonlyPaths make it read-only), refusing anything that is not procfs.
pub fn write_sysctls(spec: &Spec, root: &Root) -> Result<()> {
    let Some(sysctl) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .filter(|s| !s.is_empty())
    else {
        return Ok(());
    };
    let dir = root
        .open_at(Path::new("/proc/sys"), libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| {
            anyhow!("sysctl: cannot open the container's /proc/sys (is /proc mounted?): {e}")
        })?;
    if safepath::fs_magic(dir.as_fd())? != safepath::PROC_SUPER_MAGIC {
        bail!("sysctl: the container's /proc/sys is not procfs");
    }
    let resolve = sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_NO_XDEV;
    for (k, v) in sysctl {
        let rel = k.replace('.', "/");
        let fd = sys::openat2(
            dir.as_fd(),
            Path::new(&rel),
            libc::O_WRONLY | libc::O_TRUNC,
            0,
            resolve,
        )
        .map_err(|e| anyhow!("sysctl {k}: {e}"))?;
        nix::unistd::write(&fd, v.as_bytes()).map_err(|e| anyhow!("sysctl {k}={v}: {e}"))?;
    }
    Ok(())
}
