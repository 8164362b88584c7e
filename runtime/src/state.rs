//! The state store under `--root`: one directory per container holding `state.json`
//! (versioned, written atomically by write + rename), the config the container was created
//! with, and `exec.fifo` while it is created. Commands on one container are serialised by
//! an exclusive `flock` on its directory.

use crate::cgroups::CgroupPaths;
use crate::error::Error;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Version of `state.json`. Bump when a field changes meaning; older files are read with
/// serde defaults for new fields, newer ones are refused with a clear error.
pub const STATE_VERSION: u32 = 1;
pub const STATE_FILE: &str = "state.json";
pub const CONFIG_FILE: &str = "config.json";
pub const EXEC_FIFO: &str = "exec.fifo";

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct State {
    pub version: u32,
    pub id: String,
    /// Host pid of the container's init.
    pub pid: i32,
    /// Start time of the init (field 22 of /proc/<pid>/stat): tells a reused pid apart.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339, nanoseconds.
    pub created: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub cgroup: CgroupPaths,
    #[serde(default)]
    pub systemd_cgroup: bool,
    /// What the init's fds 0-2 pointed to at create (e.g. `pipe:[123]`): checkpoint
    /// records them so restore can reconnect an engine's pipes.
    #[serde(default)]
    pub stdio: Vec<String>,
    /// Set when the container came back from a checkpoint.
    #[serde(default)]
    pub restored: bool,
}

/// Container ids as runc accepts them: letters, digits, `_`, `+`, `-`, `.`; not `.`/`..`.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if !ok {
        bail!("invalid container id {id:?}: use letters, digits, '_', '+', '-' and '.'");
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An open, locked container directory. The lock is released on drop.
#[derive(Debug)]
pub struct Entry {
    pub id: String,
    pub dir: PathBuf,
    lock: File,
}

impl Store {
    pub fn new(root: &Path) -> Self {
        Store {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Creates and locks the directory of a new container; fails if the id is taken.
    pub fn create(&self, id: &str) -> Result<Entry> {
        validate_id(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.root)
            .with_context(|| format!("cannot create state root {}", self.root.display()))?;
        let dir = self.dir(id);
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.to_string()).into())
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create state dir {}", dir.display()))
            }
        }
        let lock = lock_dir(&dir)?;
        Ok(Entry {
            id: id.to_string(),
            dir,
            lock,
        })
    }

    /// Locks an existing container's directory; `NotFound` if there is none (or it was
    /// removed while we waited for the lock).
    pub fn open(&self, id: &str) -> Result<Entry> {
        validate_id(id)?;
        let dir = self.dir(id);
        let lock = match lock_dir(&dir) {
            Ok(f) => f,
            Err(e) if is_not_found(&e) => return Err(Error::NotFound(id.to_string()).into()),
            Err(e) => return Err(e),
        };
        // A concurrent delete may have removed the directory before we got the lock.
        let alive = lock.metadata().map(|m| nlink(&m) > 0).unwrap_or(false);
        if !alive || !dir.join(STATE_FILE).exists() {
            return Err(Error::NotFound(id.to_string()).into());
        }
        Ok(Entry {
            id: id.to_string(),
            dir,
            lock,
        })
    }

    /// Ids of all containers, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let rd = match fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(ids),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", self.root.display()))
            }
        };
        for ent in rd.flatten() {
            if let Some(name) = ent.file_name().to_str() {
                if ent.path().join(STATE_FILE).exists() {
                    ids.push(name.to_string());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }
}

fn nlink(m: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    m.nlink()
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .map(|e| e.kind() == ErrorKind::NotFound)
        .unwrap_or(false)
}

fn lock_dir(dir: &Path) -> Result<File> {
    let f = File::open(dir)?; // O_RDONLY|O_CLOEXEC; a directory can be flock'ed.
                              // SAFETY: flock on a valid fd we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot lock {}", dir.display()));
    }
    Ok(f)
}

impl Entry {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn load(&self) -> Result<State> {
        let p = self.path(STATE_FILE);
        let data = fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        let state: State = serde_json::from_slice(&data)
            .with_context(|| format!("container \"{}\": corrupt {}", self.id, p.display()))?;
        if state.version > STATE_VERSION {
            bail!(
                "container \"{}\": {} has version {}, this runtime reads up to {}: use the newer runtime",
                self.id,
                p.display(),
                state.version,
                STATE_VERSION
            );
        }
        Ok(state)
    }

    pub fn save(&self, state: &State) -> Result<()> {
        let data = serde_json::to_vec(state)?;
        write_atomic(&self.path(STATE_FILE), &data)
    }

    /// Removes the container's directory (the lock fd stays valid until drop).
    pub fn remove(&self) -> Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", self.dir.display())),
        }
    }

    pub fn lock_fd(&self) -> i32 {
        self.lock.as_raw_fd()
    }
}

/// Write `data` to a temporary file beside `path`, then rename it over `path`.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, data).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "abc-1.2_x+y", "0123456789abcdef"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "../x", "x\n"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }
}
