//! tmpfs contents as tar archives: `save` walks one mount of a (frozen) container without
//! following symlinks or crossing into submounts; `load` unpacks into a fresh tmpfs with
//! every path resolved inside it, so a tampered archive cannot write outside.

use crate::safepath::{relative, Root};
use anyhow::{anyhow, bail, Context, Result};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode};
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use tar::{EntryType, Header};

fn kind(st: &FileStat) -> u32 {
    st.st_mode & libc::S_IFMT
}

fn header_for(st: &FileStat, typ: EntryType) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(typ);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid as u64);
    h.set_gid(st.st_gid as u64);
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

fn open_at(dir: BorrowedFd, name: &OsStr, flags: OFlag) -> Result<OwnedFd> {
    Ok(nix::fcntl::openat(
        dir,
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// Writes the tree under `dir` (an fd of the mount's root) as a tar stream. Returns the
/// number of file bytes archived.
pub fn save(dir: &OwnedFd, out: impl Write) -> Result<u64> {
    let root_st = nix::sys::stat::fstat(dir)?;
    let mut b = tar::Builder::new(out);
    let mut h = header_for(&root_st, EntryType::Directory);
    b.append_data(&mut h, "./", std::io::empty())?;
    let mut seen = HashMap::new();
    let mut bytes = 0;
    walk(
        &mut b,
        dir,
        Path::new("."),
        root_st.st_dev,
        &mut seen,
        &mut bytes,
    )?;
    b.into_inner()?.flush()?;
    Ok(bytes)
}

fn walk<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &OwnedFd,
    prefix: &Path,
    dev: u64,
    seen: &mut HashMap<(u64, u64), PathBuf>,
    bytes: &mut u64,
) -> Result<()> {
    let readable = open_at(
        dir.as_fd(),
        OsStr::new("."),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
    )?;
    let mut listing = nix::dir::Dir::from_fd(readable)?;
    let mut names: Vec<Vec<u8>> = listing
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    names.sort();
    for raw in names {
        let name = OsStr::from_bytes(&raw);
        let path = prefix.join(name);
        let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let k = kind(&st);
        if k != libc::S_IFDIR && st.st_nlink > 1 {
            if let Some(first) = seen.get(&(st.st_dev, st.st_ino)) {
                let mut h = header_for(&st, EntryType::Link);
                b.append_link(&mut h, &path, first)?;
                continue;
            }
            seen.insert((st.st_dev, st.st_ino), path.clone());
        }
        match k {
            libc::S_IFDIR => {
                let mut h = header_for(&st, EntryType::Directory);
                b.append_data(&mut h, &path, std::io::empty())?;
                // A submount's mount point is kept, its content is not ours.
                if st.st_dev == dev {
                    let child = open_at(dir.as_fd(), name, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
                    walk(b, &child, &path, dev, seen, bytes)?;
                }
            }
            libc::S_IFREG => {
                let fd = open_at(dir.as_fd(), name, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
                let mut h = header_for(&st, EntryType::Regular);
                h.set_size(st.st_size as u64);
                b.append_data(&mut h, &path, File::from(fd).take(st.st_size as u64))?;
                *bytes += st.st_size as u64;
            }
            libc::S_IFLNK => {
                let target = nix::fcntl::readlinkat(dir, name)?;
                let mut h = header_for(&st, EntryType::Symlink);
                b.append_link(&mut h, &path, &target)?;
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                let typ = match k {
                    libc::S_IFCHR => EntryType::Char,
                    libc::S_IFBLK => EntryType::Block,
                    _ => EntryType::Fifo,
                };
                let mut h = header_for(&st, typ);
                h.set_device_major(libc::major(st.st_rdev))?;
                h.set_device_minor(libc::minor(st.st_rdev))?;
                b.append_data(&mut h, &path, std::io::empty())?;
            }
            // Sockets cannot be archived; CRIU re-creates bound sockets itself.
            _ => {}
        }
    }
    Ok(())
}

/// A path from the archive, checked: relative, no `..`, not empty.
fn entry_path(p: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => bail!(
                "archive entry {} leaves the archive's root: refused",
                p.display()
            ),
        }
    }
    Ok(out)
}

fn cstr(s: &OsStr) -> Result<CString> {
    Ok(CString::new(s.as_bytes())?)
}

/// Unpacks a tar stream made by `save` into `root`.
pub fn load(root: &Root, input: impl Read) -> Result<()> {
    let mut a = tar::Archive::new(input);
    let mut dirs: Vec<(PathBuf, u32, u64)> = Vec::new();
    for entry in a.entries()? {
        let mut e = entry?;
        let path = entry_path(&e.path()?)?;
        let h = e.header().clone();
        let mode = h.mode()? & 0o7777;
        let (uid, gid, mtime) = (h.uid()? as u32, h.gid()? as u32, h.mtime()?);
        let typ = h.entry_type();
        if path.as_os_str().is_empty() {
            if typ.is_dir() {
                dirs.push((path, mode, mtime));
                set_owner(root.fd(), None, uid, gid)?;
            }
            continue;
        }
        let what = || format!("cannot unpack {}", root.display(&path));
        let parent = root
            .mkdir_all(path.parent().unwrap_or(Path::new("")), 0o755)
            .with_context(what)?;
        let name = cstr(path.file_name().ok_or_else(|| anyhow!("empty name"))?)?;
        let pfd = parent.as_raw_fd();
        // SAFETY (all blocks below): *at calls relative to a directory fd we hold, with
        // NUL-terminated names; nothing follows a symlink at the last component.
        match typ {
            EntryType::Directory => {
                let _ = root.mkdir_all(&path, 0o700).with_context(what)?;
                dirs.push((path.clone(), mode, mtime));
            }
            EntryType::Regular | EntryType::Continuous => {
                let fd = unsafe {
                    libc::openat(
                        pfd,
                        name.as_ptr(),
                        libc::O_CREAT
                            | libc::O_EXCL
                            | libc::O_WRONLY
                            | libc::O_NOFOLLOW
                            | libc::O_CLOEXEC,
                        0o600,
                    )
                };
                if fd < 0 {
                    return Err(std::io::Error::last_os_error()).with_context(what);
                }
                let mut f = unsafe { File::from_raw_fd(fd) };
                std::io::copy(&mut e, &mut f).with_context(what)?;
            }
            EntryType::Symlink => {
                let target = e
                    .link_name()?
                    .ok_or_else(|| anyhow!("symlink without a target"))?;
                let t = cstr(target.as_os_str())?;
                if unsafe { libc::symlinkat(t.as_ptr(), pfd, name.as_ptr()) } != 0 {
                    return Err(std::io::Error::last_os_error()).with_context(what);
                }
            }
            EntryType::Link => {
                let target = entry_path(
                    &e.link_name()?
                        .ok_or_else(|| anyhow!("link without a target"))?,
                )?;
                let src = root
                    .open_at(&target, libc::O_PATH | libc::O_NOFOLLOW)
                    .with_context(what)?;
                let rc = unsafe {
                    libc::linkat(
                        src.as_raw_fd(),
                        c"".as_ptr(),
                        pfd,
                        name.as_ptr(),
                        libc::AT_EMPTY_PATH,
                    )
                };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error()).with_context(what);
                }
                continue; // shares the first entry's owner and mode
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let k = match typ {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let dev = libc::makedev(
                    h.device_major()?.unwrap_or(0),
                    h.device_minor()?.unwrap_or(0),
                );
                if unsafe { libc::mknodat(pfd, name.as_ptr(), k | mode, dev) } != 0 {
                    return Err(std::io::Error::last_os_error()).with_context(what);
                }
            }
            other => bail!(
                "archive entry {} has unsupported type {other:?}",
                path.display()
            ),
        }
        let own =
            unsafe { libc::fchownat(pfd, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) };
        if own != 0 {
            return Err(std::io::Error::last_os_error()).with_context(what);
        }
        if typ != EntryType::Symlink && typ != EntryType::Directory {
            unsafe { libc::fchmodat(pfd, name.as_ptr(), mode, 0) };
        }
        if typ != EntryType::Directory {
            set_mtime(pfd, &name, mtime);
        }
    }
    // Directories last: their mode may forbid writing into them, and filling them
    // changed their mtime.
    for (path, mode, mtime) in dirs.iter().rev() {
        let fd = root.open_at(path, libc::O_PATH | libc::O_DIRECTORY)?;
        let p = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        // SAFETY: chmod of the directory we hold through its magic link.
        unsafe { libc::chmod(p.as_ptr(), *mode) };
        set_mtime(libc::AT_FDCWD, &p, *mtime);
    }
    Ok(())
}

fn set_owner(fd: BorrowedFd, name: Option<&CString>, uid: u32, gid: u32) -> Result<()> {
    let (n, flags) = match name {
        Some(n) => (n.as_ptr(), libc::AT_SYMLINK_NOFOLLOW),
        None => (c"".as_ptr(), libc::AT_EMPTY_PATH),
    };
    // SAFETY: fchownat on an fd we hold.
    if unsafe { libc::fchownat(fd.as_raw_fd(), n, uid, gid, flags) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

fn set_mtime(dir: i32, name: &CString, mtime: u64) {
    let t = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: utimensat with a valid times array; failures only lose a timestamp.
    unsafe {
        libc::utimensat(
            dir,
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
}

/// Relative form of a mount destination for messages and archive names.
pub fn archive_name(index: usize, dest: &Path) -> String {
    let flat: String = relative(dest)
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("tmpfs-{index}-{flat}.tar")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    #[test]
    fn round_trip_keeps_content_links_and_modes() {
        let tmp = std::env::temp_dir().join(format!("archive-{}", std::process::id()));
        let (src, dst) = (tmp.join("src"), tmp.join("dst"));
        std::fs::create_dir_all(src.join("a/b")).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::write(src.join("a/b/file"), b"hello").unwrap();
        std::fs::set_permissions(src.join("a/b/file"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        std::fs::hard_link(src.join("a/b/file"), src.join("a/hard")).unwrap();
        symlink("/etc/passwd", src.join("abs-link")).unwrap();
        nix::unistd::mkfifo(&src.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        let mut buf = Vec::new();
        let fd: OwnedFd = File::open(&src).unwrap().into();
        assert_eq!(save(&fd, &mut buf).unwrap(), 5);
        load(&Root::open(&dst).unwrap(), &buf[..]).unwrap();
        assert_eq!(std::fs::read(dst.join("a/b/file")).unwrap(), b"hello");
        let md = std::fs::metadata(dst.join("a/b/file")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o640);
        assert_eq!(
            md.ino(),
            std::fs::metadata(dst.join("a/hard")).unwrap().ino()
        );
        assert_eq!(
            std::fs::read_link(dst.join("abs-link")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert!(std::fs::symlink_metadata(dst.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo_like());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    trait FifoLike {
        fn is_fifo_like(&self) -> bool;
    }
    impl FifoLike for std::fs::FileType {
        fn is_fifo_like(&self) -> bool {
            use std::os::unix::fs::FileTypeExt;
            self.is_fifo()
        }
    }

    #[test]
    fn escaping_entries_are_refused() {
        let tmp = std::env::temp_dir().join(format!("archive-esc-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("dst")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_size(1);
        h.set_mode(0o644);
        // tar::Builder refuses "..": write the name bytes directly.
        h.as_gnu_mut().unwrap().name[..7].copy_from_slice(b"../evil");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let err = load(&Root::open(&tmp.join("dst")).unwrap(), &data[..]).unwrap_err();
        assert!(
            format!("{err:#}").contains("leaves the archive's root"),
            "{err:#}"
        );
        assert!(!tmp.join("evil").exists());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
