//! Host-side probes used to check a runtime's effects from outside the container: cgroupfs
//! (v1 controllers under /sys/fs/cgroup/<controller>), /proc/self/mountinfo, /proc/<pid>, plus
//! small parsers (RFC 3339 time) and a tmpfs mount guard for host-side mount fixtures.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The v1 controllers whose directories are checked for leftovers.
pub const CHECKED_CONTROLLERS: [&str; 4] = ["memory", "pids", "cpu", "freezer"];

/// `/sys/fs/cgroup/<controller>/<cgroups_path>` (the path as given in config.json).
pub fn cgroup_dir(controller: &str, cgroups_path: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(cgroups_path.trim_start_matches('/'))
}

/// Reads a cgroup file of a container's cgroup, trimmed.
pub fn cgroup_read(controller: &str, cgroups_path: &str, file: &str) -> String {
    let path = cgroup_dir(controller, cgroups_path).join(file);
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// The path of `pid` in a v1 hierarchy, from /proc/<pid>/cgroup (`4:memory:/a/b` -> `/a/b`).
pub fn proc_cgroup(pid: i32, controller: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _num = parts.next()?;
        let ctrls = parts.next()?;
        let path = parts.next()?;
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_owned())
    })
}

/// Lines of /proc/self/mountinfo whose mount point lies under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let needle = dir.to_string_lossy().into_owned();
    text.lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|mp| mp.starts_with(&needle))
        })
        .map(str::to_owned)
        .collect()
}

/// Lines of /proc/self/mountinfo mentioning `needle` anywhere (root, mount point, source).
pub fn mountinfo_mentions(needle: &str) -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// A field of /proc/<pid>/status (`pid` may be "self"), value trimmed.
pub fn proc_status(pid: &str, field: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    })
}

/// True if a process with this pid exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // state is the field after the ")" that closes comm
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// Polls `cond` until true; fails the test with `what` after `timeout`.
#[track_caller]
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Checks `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`.
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !(b[10] == b'T' || b[10] == b't')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    if rest == "Z" || rest == "z" {
        return true;
    }
    let t = rest.as_bytes();
    t.len() == 6
        && (t[0] == b'+' || t[0] == b'-')
        && t[1..3].iter().all(u8::is_ascii_digit)
        && t[3] == b':'
        && t[4..6].iter().all(u8::is_ascii_digit)
}

/// A tmpfs mounted on a host directory for the duration of a test (lazily unmounted on drop).
pub struct HostTmpfs {
    path: PathBuf,
}

impl HostTmpfs {
    pub fn mount(path: &Path) -> HostTmpfs {
        fs::create_dir_all(path).expect("create tmpfs mount point");
        let target = CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
        let fstype = CString::new("tmpfs").expect("static");
        let data = CString::new("size=1m").expect("static");
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mount tmpfs on {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        HostTmpfs {
            path: path.to_owned(),
        }
    }
}

impl Drop for HostTmpfs {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.path.as_os_str().as_bytes()) {
            // SAFETY: valid NUL-terminated path.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_rfc3339;

    #[test]
    fn rfc3339_forms() {
        assert!(is_rfc3339("2026-11-23T05:36:16Z"));
        assert!(is_rfc3339("2026-11-23T05:38:44.651782444Z"));
        assert!(is_rfc3339("2026-11-23T05:38:44+01:00"));
        assert!(!is_rfc3339("2026-11-23 05:38:44"));
        assert!(!is_rfc3339("2026-11-23T05:38:44"));
        assert!(!is_rfc3339("yesterday"));
    }
}
