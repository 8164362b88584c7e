//! Process-wide setup done first in `main`: a private mount namespace without the cgroup2 mount
//! at /sys/fs/cgroup/unified (crun 1.8 refuses this hybrid cgroup host otherwise; every runtime
//! runs in it alike), and a Ctrl-C flag so the harness can stop between runs and clean up. Also
//! the mounts the checkpoint/restore rows make in that namespace (a tmpfs for images, a bind).

use anyhow::{bail, Context, Result};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

const UNIFIED: &str = "/sys/fs/cgroup/unified";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Enters a private mount namespace and unmounts the cgroup2 hierarchy of a hybrid host there.
/// Must run before any thread is started (unshare(CLONE_NEWNS) needs a single-threaded process).
/// Returns whether something was unmounted.
pub fn enter_private_mount_ns() -> Result<bool> {
    // SAFETY: plain syscalls with valid, NUL-terminated arguments.
    unsafe {
        if libc::geteuid() != 0 {
            bail!("runtime-bench must run as root (it creates containers)");
        }
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(std::io::Error::last_os_error()).context("unshare(CLONE_NEWNS)");
        }
        let root = CString::new("/")?;
        let flags = libc::MS_REC | libc::MS_PRIVATE;
        let rc = libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        );
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("make / rprivate");
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mounted = mountinfo
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(UNIFIED));
    if mounted {
        let path = CString::new(UNIFIED)?;
        // SAFETY: valid path; the mount namespace is private to this process.
        if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(std::io::Error::last_os_error()).context(format!("umount {UNIFIED}"));
        }
    }
    Ok(mounted)
}

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT/SIGTERM/SIGHUP only set a flag, checked between runs. Runtime commands run in their own
/// process group, so Ctrl-C reaches the harness alone and the command in flight completes.
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn c_path(p: &Path) -> Result<CString> {
    Ok(CString::new(p.as_os_str().as_bytes())?)
}

fn mount(src: &str, dst: &Path, fstype: &str, flags: libc::c_ulong) -> Result<()> {
    std::fs::create_dir_all(dst)?;
    let (src_c, dst_c, fs_c) = (CString::new(src)?, c_path(dst)?, CString::new(fstype)?);
    // SAFETY: valid NUL-terminated strings; the mount namespace is private to this process.
    let rc = unsafe {
        libc::mount(
            src_c.as_ptr(),
            dst_c.as_ptr(),
            fs_c.as_ptr(),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("mount {src} ({fstype}) on {}", dst.display()));
    }
    Ok(())
}

/// Mounts a fresh tmpfs on `dir` (created if needed), in the bench's mount namespace.
pub fn mount_tmpfs(dir: &Path) -> Result<()> {
    mount("tmpfs", dir, "tmpfs", 0)
}

/// Bind-mounts `src` (recursively) on `dst` (created if needed).
pub fn bind(src: &Path, dst: &Path) -> Result<()> {
    let src = src.to_str().context("non-UTF-8 path")?;
    mount(src, dst, "", libc::MS_BIND | libc::MS_REC)
}

/// Detaches whatever is mounted on `dir` and below, if anything (errors ignored).
pub fn unmount(dir: &Path) {
    if let Ok(path) = c_path(dir) {
        // SAFETY: valid path; a failure (nothing mounted) is harmless.
        unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    }
}
