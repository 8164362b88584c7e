//! Thin safe wrappers for the Linux calls that libc and nix do not wrap: openat2, the new
//! mount API (fsopen/fsconfig/fsmount, open_tree, move_mount, mount_setattr), pidfds and
//! close_range. Each returns `std::io::Result` with the raw errno.

use std::ffi::{CStr, CString};
use std::io::{Error, Result};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub const OPEN_TREE_CLONE: u32 = 1;
pub const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
pub const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
const FSOPEN_CLOEXEC: u32 = 1;
const FSMOUNT_CLOEXEC: u32 = 1;
const FSCONFIG_SET_FLAG: u32 = 0;
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_SET_FD: u32 = 5;
const FSCONFIG_CMD_CREATE: u32 = 6;

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR_ATIME: u64 = 0x70;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x200000;

pub const RESOLVE_NO_XDEV: u64 = 0x01;
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

#[repr(C)]
#[derive(Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::from_raw_os_error(libc::EINVAL))
}

fn fd_result(rc: libc::c_long) -> Result<OwnedFd> {
    if rc < 0 {
        Err(Error::last_os_error())
    } else {
        // SAFETY: the kernel returned a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
    }
}

fn unit_result(rc: libc::c_long) -> Result<()> {
    if rc < 0 {
        Err(Error::last_os_error())
    } else {
        Ok(())
    }
}

/// openat2(2): `flags` are O_* flags (O_CLOEXEC is always added), `resolve` RESOLVE_*.
pub fn openat2(
    dir: BorrowedFd,
    path: &Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> Result<OwnedFd> {
    let c = cstr(path)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
            mode as u64
        } else {
            0
        },
        resolve,
    };
    loop {
        // SAFETY: valid fd, NUL-terminated path, properly sized open_how.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        match fd_result(rc) {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue, // rename race
            r => return r,
        }
    }
}

/// open_tree(2) of `path` relative to `dir` (empty path: `dir` itself).
pub fn open_tree(dir: RawFd, path: &Path, flags: u32) -> Result<OwnedFd> {
    let c = cstr(path)?;
    let mut flags = flags | libc::O_CLOEXEC as u32;
    if path.as_os_str().is_empty() {
        flags |= libc::AT_EMPTY_PATH as u32;
    }
    // SAFETY: plain syscall with valid arguments.
    fd_result(unsafe { libc::syscall(libc::SYS_open_tree, dir, c.as_ptr(), flags) })
}

/// Attaches the detached mount `from` on top of the object `to` refers to.
pub fn move_mount_fd(from: BorrowedFd, to: BorrowedFd) -> Result<()> {
    // SAFETY: plain syscall with valid fds and empty paths.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
}

/// mount_setattr(2) on the mount `fd` refers to (and below it with `recursive`).
pub fn mount_setattr(
    fd: BorrowedFd,
    recursive: bool,
    set: u64,
    clr: u64,
    propagation: u64,
) -> Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    // SAFETY: valid fd, empty path, properly sized mount_attr.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
}

/// A filesystem context from fsopen(2), configured then turned into a detached mount.
pub struct FsContext {
    fd: OwnedFd,
    fstype: String,
}

impl FsContext {
    pub fn open(fstype: &str) -> Result<Self> {
        let c = CString::new(fstype).map_err(|_| Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: plain syscall with a valid NUL-terminated string.
        let fd = fd_result(unsafe { libc::syscall(libc::SYS_fsopen, c.as_ptr(), FSOPEN_CLOEXEC) })?;
        Ok(FsContext {
            fd,
            fstype: fstype.to_string(),
        })
    }

    fn config(&self, cmd: u32, key: Option<&CStr>, value: Option<&CStr>) -> Result<()> {
        // SAFETY: valid fd; key/value NUL-terminated or null.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.fd.as_raw_fd(),
                cmd,
                key.map_or(std::ptr::null(), CStr::as_ptr),
                value.map_or(std::ptr::null(), CStr::as_ptr),
                0,
            )
        };
        unit_result(rc).map_err(|e| self.explain(e))
    }

    /// Sets `key` (a flag) or `key=value`.
    pub fn set(&self, key: &str, value: Option<&str>) -> Result<()> {
        let bad = || Error::from_raw_os_error(libc::EINVAL);
        let k = CString::new(key).map_err(|_| bad())?;
        match value {
            None => self.config(FSCONFIG_SET_FLAG, Some(&k), None),
            Some(v) => {
                let v = CString::new(v).map_err(|_| bad())?;
                self.config(FSCONFIG_SET_STRING, Some(&k), Some(&v))
            }
        }
    }

    /// Sets `key` to a file descriptor (e.g. an overlay layer given as a mount fd).
    pub fn set_fd(&self, key: &str, fd: BorrowedFd) -> Result<()> {
        let k = CString::new(key).map_err(|_| Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: valid fds and a NUL-terminated key.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.fd.as_raw_fd(),
                FSCONFIG_SET_FD,
                k.as_ptr(),
                std::ptr::null::<u8>(),
                fd.as_raw_fd(),
            )
        };
        unit_result(rc).map_err(|e| self.explain(e))
    }

    /// Creates the superblock and returns a detached mount with mount attributes `attrs`.
    pub fn mount(self, attrs: u64) -> Result<OwnedFd> {
        self.config(FSCONFIG_CMD_CREATE, None, None)?;
        // SAFETY: valid fd.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                self.fd.as_raw_fd(),
                FSMOUNT_CLOEXEC,
                attrs,
            )
        };
        fd_result(rc).map_err(|e| self.explain(e))
    }

    /// Adds the kernel's own message (read from the context fd) to an error.
    fn explain(&self, e: Error) -> Error {
        let mut buf = [0u8; 512];
        // SAFETY: reading into a local buffer from a valid fd.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 2 {
            let msg = String::from_utf8_lossy(&buf[2..n as usize])
                .trim()
                .to_string();
            return Error::new(e.kind(), format!("{} ({}: {msg})", e, self.fstype));
        }
        e
    }
}

/// pidfd_open(2).
pub fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: plain syscall.
    fd_result(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })
}

/// pidfd_send_signal(2): signals exactly the process the pidfd names (no pid reuse race).
pub fn pidfd_send_signal(pidfd: BorrowedFd, sig: i32) -> Result<()> {
    // SAFETY: plain syscall with a valid fd.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
}

/// Marks every fd >= `from` close-on-exec.
pub fn cloexec_from(from: u32) -> Result<()> {
    // SAFETY: plain syscall.
    unit_result(unsafe {
        libc::syscall(
            libc::SYS_close_range,
            from,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    })
}

pub fn last_errno() -> i32 {
    Error::last_os_error().raw_os_error().unwrap_or(0)
}
