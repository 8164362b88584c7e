//! CVE-2019-5736: a container must never get a writable handle on the runtime binary
//! (e.g. by exec'ing `/proc/self/exe` of a runtime process inside it). Commands whose own
//! clones enter containers first re-exec the runtime from a read-only view of itself:
//! a detached, upper-less overlayfs over the binary's directory (no copy, as runc 1.2
//! does), or, where overlayfs is unavailable, a sealed memfd copy.

use crate::sys::FsContext;
use anyhow::{anyhow, Context, Result};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// True when /proc/self/exe cannot be written: a read-only overlay or a sealed memfd.
fn sealed() -> bool {
    let Ok(f) = File::open("/proc/self/exe") else {
        return false;
    };
    let overlay = crate::safepath::fs_magic(f.as_fd()).ok() == Some(OVERLAYFS_SUPER_MAGIC);
    let read_only = nix::sys::statvfs::fstatvfs(&f)
        .map(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        .unwrap_or(false);
    if overlay && read_only {
        return true;
    }
    // SAFETY: fcntl on an fd we own.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & SEALS == SEALS
}

/// Re-executes the current binary from a read-only view of itself, unless already there.
pub fn ensure_sealed() -> Result<()> {
    if sealed() {
        return Ok(());
    }
    let exe = std::fs::read_link("/proc/self/exe").context("cannot read /proc/self/exe")?;
    let fd = match overlay_view(&exe) {
        Ok(fd) => fd,
        Err(e) => {
            crate::debug!(
                "read-only overlay of {} failed ({e:#}): copying into a sealed memfd",
                exe.display()
            );
            memfd_copy()?
        }
    };
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.into_encoded_bytes()))
        .collect::<Result<_, _>>()?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut b = k.into_encoded_bytes();
            b.push(b'=');
            b.extend(v.into_encoded_bytes());
            CString::new(b)
        })
        .collect::<Result<_, _>>()?;
    let e = nix::unistd::fexecve(&fd, &args, &env).unwrap_err();
    Err(anyhow!("cannot re-exec from the read-only copy: {e}"))
}

/// The binary, opened through a detached overlayfs (lower layer only, hence read-only)
/// of its directory: never attached anywhere, gone with the process.
fn overlay_view(exe: &Path) -> Result<OwnedFd> {
    let dir = exe
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let name = exe.file_name().ok_or_else(|| anyhow!("no file name"))?;
    let dir_s = dir.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    let ctx = FsContext::open("overlay")?;
    // "lowerdir+" (Linux 6.8) takes a path as is; older kernels need the escaped list form.
    // Without an upper layer overlayfs wants two lower ones: the binary's directory over
    // an empty, detached tmpfs (layers as fds: Linux 6.13).
    let empty = FsContext::open("tmpfs")?.mount(crate::sys::MOUNT_ATTR_RDONLY)?;
    ctx.set("lowerdir+", Some(dir_s))?;
    ctx.set_fd("lowerdir+", empty.as_fd())?;
    let mnt = ctx.mount(crate::sys::MOUNT_ATTR_RDONLY | crate::sys::MOUNT_ATTR_NODEV)?;
    let file = nix::fcntl::openat(
        mnt.as_fd(),
        name,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    Ok(file)
}

/// A sealed memfd holding a copy of the binary.
fn memfd_copy() -> Result<OwnedFd> {
    let mut src = File::open("/proc/self/exe").context("cannot open /proc/self/exe")?;
    let name = CString::new("runtime")?;
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: memfd_create with a valid name; MFD_EXEC is unknown before Linux 6.3.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), flags | libc::MFD_EXEC) };
    if fd < 0 {
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    }
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("memfd_create");
    }
    // SAFETY: fd is a new memfd we own.
    let mut mem = unsafe { File::from(OwnedFd::from_raw_fd(fd)) };
    std::io::copy(&mut src, &mut mem).context("cannot copy the runtime binary")?;
    // SAFETY: fcntl on our memfd.
    if unsafe { libc::fcntl(mem.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot seal the runtime copy");
    }
    Ok(mem.into())
}
