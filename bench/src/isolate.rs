//! Process-wide setup done first in `main`: a private mount namespace without the cgroup2 mount
//! at /sys/fs/cgroup/unified (crun 1.8 refuses this hybrid cgroup host otherwise; every runtime
//! runs in it alike), and a Ctrl-C flag so the harness can stop between runs and clean up.

use anyhow::{bail, Context, Result};
use std::ffi::CString;
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
