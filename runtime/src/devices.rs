//! Device nodes in the container's /dev: the default set every container gets, the ones
//! listed in linux.devices, and the standard /dev symlinks. Nodes are made with mknod, or
//! bound from the host's node when inside a user namespace (mknod is not allowed there).

use crate::safepath::Root;
use crate::sys::{self, OPEN_TREE_CLONE};
use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A device node to create.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub path: PathBuf,
    /// S_IFCHR / S_IFBLK / S_IFIFO.
    pub kind: u32,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// null, zero, full, random, urandom, tty: every container has them.
pub fn defaults() -> Vec<Node> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .iter()
    .map(|(n, ma, mi)| Node {
        path: Path::new("/dev").join(n),
        kind: libc::S_IFCHR,
        major: *ma,
        minor: *mi,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

pub fn from_spec(d: &LinuxDevice) -> Result<Node> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        LinuxDeviceType::A => bail!("device {}: type \"a\" is not a node", d.path().display()),
    };
    if !crate::safepath::clean(d.path()).starts_with("/dev") {
        bail!("device {} must be under /dev", d.path().display());
    }
    Ok(Node {
        path: d.path().clone(),
        kind,
        major: d.major() as u64,
        minor: d.minor() as u64,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

/// Creates `node` inside `root`; `bind` uses a bind of the host node instead of mknod.
pub fn create(root: &Root, node: &Node, bind: bool) -> Result<()> {
    let ctx = || format!("cannot create device {}", root.display(&node.path));
    let (Some(parent), Some(name)) = (node.path.parent(), node.path.file_name()) else {
        bail!("invalid device path {}", node.path.display());
    };
    let dir = root.mkdir_all(parent, 0o755).with_context(ctx)?;
    let cname = CString::new(name.as_bytes())?;
    if bind {
        let target = root.create_file(&node.path, 0o644).with_context(ctx)?;
        let tree = sys::open_tree(libc::AT_FDCWD, &node.path, OPEN_TREE_CLONE)
            .with_context(|| format!("cannot bind host device {}", node.path.display()))?;
        sys::move_mount_fd(tree.as_fd(), target.as_fd()).with_context(ctx)?;
        return Ok(());
    }
    let dev = libc::makedev(node.major as u32, node.minor as u32);
    // SAFETY: *at calls relative to a directory fd we hold; cname is NUL-terminated.
    unsafe {
        libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), 0);
        if libc::mknodat(dir.as_raw_fd(), cname.as_ptr(), node.kind | node.mode, dev) != 0 {
            return Err(std::io::Error::last_os_error()).with_context(ctx);
        }
        // mknod applies the umask: set the mode exactly.
        libc::fchmodat(dir.as_raw_fd(), cname.as_ptr(), node.mode, 0);
        if libc::fchownat(
            dir.as_raw_fd(),
            cname.as_ptr(),
            node.uid,
            node.gid,
            libc::AT_SYMLINK_NOFOLLOW,
        ) != 0
        {
            return Err(std::io::Error::last_os_error()).with_context(ctx);
        }
    }
    Ok(())
}

/// /dev/fd, /dev/std{in,out,err}, /dev/ptmx (to the devpts instance), /dev/core.
pub fn symlinks(root: &Root) -> Result<()> {
    let dev = root.mkdir_all(Path::new("/dev"), 0o755)?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        let (t, n) = (CString::new(target)?, CString::new(name)?);
        // SAFETY: *at calls relative to a directory fd we hold.
        unsafe {
            if name == "ptmx" {
                libc::unlinkat(dev.as_raw_fd(), n.as_ptr(), 0);
            }
            if libc::symlinkat(t.as_ptr(), dev.as_raw_fd(), n.as_ptr()) != 0
                && sys::last_errno() != libc::EEXIST
            {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("cannot create /dev/{name}"));
            }
        }
    }
    Ok(())
}
