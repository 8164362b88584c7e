//! Parent side of a new process: clone3 (fork-like, with the namespaces to create and a
//! pidfd), waiting for it, and forwarding signals to it in the foreground.

use anyhow::{anyhow, Result};
use nix::sys::signal::{SigSet, Signal};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

pub enum Forked {
    Child,
    Parent { pid: i32, pidfd: OwnedFd },
}

/// clone3 with `flags` (CLONE_NEW*), like fork: the child continues here on a copy of
/// the stack. The caller must be single-threaded.
pub fn clone3(flags: u64) -> Result<Forked> {
    let mut pidfd: libc::c_int = -1;
    let args = CloneArgs {
        flags: flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    // SAFETY: fork-like clone3 (no CLONE_VM, no stack): the child gets a copy of our
    // memory and returns 0 here.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match rc {
        r if r < 0 => Err(anyhow!(
            "cannot create the container process: {}",
            std::io::Error::last_os_error()
        )),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            pid: pid as i32,
            // SAFETY: CLONE_PIDFD stored a new fd that we now own.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

/// Signals a foreground runtime passes on to the container process.
const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

pub fn forwarded_set() -> SigSet {
    let mut s = SigSet::empty();
    for sig in FORWARDED {
        s.add(*sig);
    }
    s.add(Signal::SIGCHLD);
    s
}

/// Blocks the forwarded signals (call before cloning; the child unblocks them).
pub fn block_signals() -> Result<SigSet> {
    let set = forwarded_set();
    let mut old = SigSet::empty();
    nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&set),
        Some(&mut old),
    )?;
    Ok(old)
}

/// Restores the signal mask in a new child before it execs.
pub fn unblock_signals() {
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_UNBLOCK,
        Some(&forwarded_set()),
        None,
    );
}

/// Waits for `pid` (our child), forwarding signals to it; returns its exit code the way a
/// shell reports it (128+signal when killed).
pub fn supervise(pid: i32, pidfd: &OwnedFd) -> Result<i32> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let set = forwarded_set();
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(anyhow!("waitpid {pid}: {e}")),
        }
        let sig = set.wait()?;
        if sig != Signal::SIGCHLD {
            let _ = crate::sys::pidfd_send_signal(pidfd.as_fd(), sig as i32);
        }
    }
}
