//! CVE-2019-5736: a container must never get a writable handle on the runtime binary
//! (e.g. by exec'ing `/proc/self/exe` of a runtime process inside it). Commands that put
//! processes into containers first re-exec the runtime from a sealed memfd copy, so
//! /proc/<pid>/exe of every runtime process near a container is an immutable copy.

use anyhow::{Context, Result};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// True when we already run from a sealed memfd.
fn sealed() -> bool {
    let Ok(f) = File::open("/proc/self/exe") else {
        return false;
    };
    // SAFETY: fcntl on an fd we own.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & SEALS == SEALS
}

/// Re-executes the current binary from a sealed memfd copy, unless already there.
pub fn ensure_sealed() -> Result<()> {
    if sealed() {
        return Ok(());
    }
    let mut src = File::open("/proc/self/exe").context("cannot open /proc/self/exe")?;
    let name = CString::new("runtime")?;
    // SAFETY: memfd_create with a valid name; the fd is ours.
    let fd = unsafe {
        libc::memfd_create(
            name.as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING | libc::MFD_EXEC,
        )
    };
    let fd = if fd < 0 {
        // Kernels before 6.3 do not know MFD_EXEC.
        // SAFETY: as above.
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) }
    } else {
        fd
    };
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
    let e = nix::unistd::fexecve(&mem, &args, &env).unwrap_err();
    Err(anyhow::anyhow!("cannot re-exec from the sealed copy: {e}"))
}
