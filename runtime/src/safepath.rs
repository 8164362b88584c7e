//! Resolving paths inside a container's rootfs without ever leaving it: every lookup is
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from an fd of the rootfs, so a
//! symlink (or `..`) in the rootfs resolves as if the rootfs were `/`, and mounts are
//! attached to the fd that was resolved (no second lookup to race with).

use crate::sys::{openat2, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS};
use anyhow::{anyhow, bail, Context, Result};
use std::ffi::CString;
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

const RESOLVE: u64 = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;

/// An open rootfs (or any directory used as a root for lookups).
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// `/a/b/../c` -> `a/b/../c` (relative; `..` is clamped at the root by the kernel).
pub fn relative(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect()
}

/// Lexically cleaned absolute form of `p`: `.` dropped, `..` pops (never above `/`).
pub fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Is the object behind `fd` on procfs (or sysfs)? Used to refuse mounts that a symlink
/// would redirect onto /proc or /sys files.
pub fn fs_magic(fd: BorrowedFd) -> Result<i64> {
    // SAFETY: fstatfs into a zeroed struct.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::fstatfs(fd.as_raw_fd(), &mut st) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(st.f_type as i64)
    }
}

pub const PROC_SUPER_MAGIC: i64 = 0x9fa0;

impl Root {
    pub fn open(path: &Path) -> Result<Root> {
        let fd = nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Host-side path of `p` for messages only (never used for a lookup).
    pub fn display(&self, p: &Path) -> String {
        self.path.join(relative(p)).display().to_string()
    }

    /// Opens `p` (absolute or relative, as seen from inside the root).
    pub fn open_at(&self, p: &Path, flags: i32) -> std::io::Result<OwnedFd> {
        let rel = relative(p);
        let rel = if rel.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            rel
        };
        openat2(self.fd.as_fd(), &rel, flags, 0, RESOLVE)
    }

    /// O_PATH fd of `p`; `None` if it does not exist.
    pub fn lookup(&self, p: &Path) -> Result<Option<OwnedFd>> {
        match self.open_at(p, libc::O_PATH) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow!("cannot resolve {}: {e}", self.display(p))),
        }
    }

    /// Creates directory `p` and its parents inside the root; returns an O_PATH fd to it.
    /// A dangling symlink on the way is followed (inside the root) and its target made.
    pub fn mkdir_all(&self, p: &Path, mode: u32) -> Result<OwnedFd> {
        let mut todo: Vec<PathBuf> = relative(p)
            .components()
            .rev()
            .map(|c| PathBuf::from(c.as_os_str()))
            .collect();
        let mut cur = self.open_at(Path::new("."), libc::O_PATH | libc::O_DIRECTORY)?;
        let mut prefix = PathBuf::new();
        let mut links = 0;
        while let Some(comp) = todo.pop() {
            let next = prefix.join(&comp);
            match self.open_at(&next, libc::O_PATH | libc::O_DIRECTORY) {
                Ok(fd) => {
                    cur = fd;
                    prefix = next;
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                    bail!("{} is not a directory", self.display(&next))
                }
                Err(e) => bail!("cannot resolve {}: {e}", self.display(&next)),
            }
            let name = CString::new(comp.as_os_str().as_bytes())?;
            // SAFETY: mkdirat relative to an O_PATH directory fd we hold.
            let rc = unsafe { libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), mode) };
            if rc == 0 {
                todo.push(comp); // open it on the next turn
                continue;
            }
            if crate::sys::last_errno() != libc::EEXIST {
                let e = std::io::Error::last_os_error();
                bail!("cannot create directory {}: {e}", self.display(&next));
            }
            // It exists but does not resolve: a dangling symlink. Make its target.
            let target = nix::fcntl::readlinkat(&cur, comp.as_path())
                .map_err(|e| anyhow!("cannot create directory {}: {e}", self.display(&next)))?;
            links += 1;
            if links > 40 {
                bail!("too many symlinks resolving {}", self.display(p));
            }
            let target = PathBuf::from(target);
            let base = if target.is_absolute() {
                PathBuf::new()
            } else {
                prefix.clone()
            };
            let rel = relative(&base.join(target));
            // Restart from the root with the link's target in place of the link.
            for c in rel.components().rev() {
                todo.push(PathBuf::from(c.as_os_str()));
            }
            prefix = PathBuf::new();
            cur = self.open_at(Path::new("."), libc::O_PATH | libc::O_DIRECTORY)?;
        }
        Ok(cur)
    }

    /// Makes sure a regular file (or any non-directory) exists at `p`; returns an O_PATH
    /// fd to it.
    pub fn create_file(&self, p: &Path, mode: u32) -> Result<OwnedFd> {
        if let Some(fd) = self.lookup(p)? {
            return Ok(fd);
        }
        let rel = relative(p);
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            bail!("cannot create {}: no file name", self.display(p));
        };
        let dir = self.mkdir_all(parent, 0o755)?;
        let name_c = CString::new(name.as_bytes())?;
        // O_EXCL|O_NOFOLLOW: never follow a symlink planted at the last component.
        // SAFETY: openat relative to a directory fd we hold.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name_c.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_RDONLY | libc::O_CLOEXEC,
                mode,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            bail!("cannot create {}: {e}", self.display(p));
        }
        // SAFETY: fd is the file we just created.
        unsafe { libc::close(fd) };
        self.lookup(p)?
            .ok_or_else(|| anyhow!("{} vanished after creation", self.display(p)))
    }
}

/// (type, rdev) of an fd, from fstat.
pub fn stat_fd(fd: BorrowedFd) -> Result<libc::stat> {
    // SAFETY: fstat into a zeroed struct.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd.as_raw_fd(), &mut st) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(st)
    }
}

pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn cleaning() {
        assert_eq!(
            clean(Path::new("/tmp/../proc/self")),
            PathBuf::from("/proc/self")
        );
        assert_eq!(clean(Path::new("../../a/./b")), PathBuf::from("/a/b"));
    }

    #[test]
    fn relative_paths() {
        assert_eq!(relative(Path::new("/a/./b")), PathBuf::from("a/b"));
        assert_eq!(relative(Path::new("/")), PathBuf::new());
    }

    #[test]
    fn symlinks_stay_inside() {
        let tmp = std::env::temp_dir().join(format!("safepath-{}", std::process::id()));
        let root = tmp.join("root");
        let outside = tmp.join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        symlink("../../../../outside", root.join("evil")).unwrap();
        symlink(&outside, root.join("abs")).unwrap();
        let r = Root::open(&root).unwrap();
        r.mkdir_all(Path::new("/evil/x"), 0o755).unwrap();
        r.mkdir_all(Path::new("/abs/y"), 0o755).unwrap();
        r.create_file(Path::new("/evil/x/f"), 0o644).unwrap();
        assert!(root.join("outside/x/f").exists(), "created inside the root");
        assert!(!outside.join("x").exists() && !outside.join("y").exists());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
