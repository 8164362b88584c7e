//! Termination signals (INT, TERM, HUP) during checkpoint and restore: noted, not obeyed
//! at once. Dying half way would leave a container frozen, or dumped and killed with its
//! images never installed, or restored but unregistered. The work finishes (or, in a lazy
//! checkpoint serving memory pages, CRIU is stopped and the container runs on here) and the
//! command then reports the signal.

use anyhow::{bail, Result};
use std::sync::atomic::{AtomicI32, Ordering::SeqCst};

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

static RECEIVED: AtomicI32 = AtomicI32::new(0);
static STOP_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn note(sig: libc::c_int) {
    RECEIVED.store(sig, SeqCst);
    let pid = STOP_PID.load(SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; `pid` is our CRIU child (see stop_on_signal).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// While alive, termination signals are noted (see [`received`]); dropping it restores
/// the previous dispositions.
pub struct Deferred {
    old: Vec<(libc::c_int, libc::sigaction)>,
}

/// Starts noting termination signals instead of dying of them.
pub fn defer() -> Result<Deferred> {
    let mut old = Vec::with_capacity(SIGNALS.len());
    for sig in SIGNALS {
        // SAFETY: a zeroed sigaction with a plain handler, installed with sigaction(2).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = note as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            let mut prev: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, &sa, &mut prev) != 0 {
                bail!(
                    "cannot handle signal {sig}: {}",
                    std::io::Error::last_os_error()
                );
            }
            old.push((sig, prev));
        }
    }
    Ok(Deferred { old })
}

impl Drop for Deferred {
    fn drop(&mut self) {
        STOP_PID.store(0, SeqCst);
        for (sig, prev) in &self.old {
            // SAFETY: restoring the disposition saved by `defer`.
            unsafe { libc::sigaction(*sig, prev, std::ptr::null_mut()) };
        }
    }
}

/// From now on a termination signal kills `pid` (CRIU serving a lazy checkpoint's pages:
/// stopping it lets the container run on). One already received kills it at once.
pub fn stop_on_signal(pid: i32) {
    STOP_PID.store(pid, SeqCst);
    if RECEIVED.load(SeqCst) != 0 {
        // SAFETY: signalling our own CRIU child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// The termination signal received since `defer`, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// "SIGTERM" for 15.
pub fn name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// `e`, saying that `what` of container `id` was interrupted when a signal was noted.
pub fn explain(e: anyhow::Error, what: &str, id: &str) -> anyhow::Error {
    match received() {
        Some(sig) => e.context(format!(
            "{what} of container \"{id}\" interrupted by {}",
            name(sig)
        )),
        None => e,
    }
}
