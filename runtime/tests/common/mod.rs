//! Helpers shared by the CRIU integration tests: temp dirs, a counter process, dump and restore calls.
#![allow(dead_code)]

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use runtime::criu::{
    default_criu_path, CriuOpts, CriuReq, CriuReqType, CriuResp, Notify, Swrk, SwrkOptions,
};

/// A directory under /tmp removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = PathBuf::from(format!("/tmp/criu-rpc-tests/{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn sub(&self, name: &str) -> PathBuf {
        let p = self.0.join(name);
        fs::create_dir_all(&p).expect("create sub dir");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A child killed and reaped when dropped (std does not signal a child it has already reaped).
pub struct ChildGuard(pub Child);

impl std::ops::Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `shell -c script` as a session leader with stdio on /dev/null.
pub fn spawn_session_leader(shell: &str, script: &str) -> ChildGuard {
    let mut cmd = Command::new(shell);
    cmd.arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    ChildGuard(cmd.spawn().expect("spawn session leader"))
}

/// The counter from the brief, as a session leader (CRIU needs that or shell_job), in new
/// namespaces when `unshare` has CLONE_NEW* flags (UTS, IPC, NET: those need no fork).
pub fn spawn_counter(count_file: &Path, stdout: Stdio, unshare: libc::c_int) -> ChildGuard {
    let script = format!(
        "i=0; while :; do i=$((i+1)); echo $i > {}; echo $i; sleep 0.1; done",
        count_file.display()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null());
    // SAFETY: unshare and setsid are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if unshare != 0 && libc::unshare(unshare) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = ChildGuard(cmd.spawn().expect("spawn counter"));
    wait_for(|| read_count(count_file).is_some_and(|n| n >= 3));
    child
}

pub fn read_count(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub fn wait_for(mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "condition not met in 10s"
        );
        sleep(Duration::from_millis(20));
    }
}

/// Options every test uses: image dir and work dir as fds of this process, a log file, log level 4.
pub fn base_opts(images: &File, work: &File, log: &str) -> CriuOpts {
    CriuOpts {
        images_dir_fd: images.as_raw_fd(),
        work_dir_fd: Some(work.as_raw_fd()),
        log_file: Some(log.into()),
        log_level: Some(4),
        ..Default::default()
    }
}

pub fn open_dir(p: &Path) -> File {
    File::open(p).expect("open dir")
}

/// Run one request with CRIU's log at `<work>/<log>` so failures get explained.
pub fn run(
    kind: CriuReqType,
    opts: CriuOpts,
    work: &Path,
    setup: impl FnOnce(&mut SwrkOptions),
    notify: &mut dyn Notify,
) -> Result<CriuResp> {
    run_with(kind, opts, work, setup, |_| {}, notify)
}

/// As [`run`], calling `spawned(criu_pid)` between spawning CRIU and sending the request.
pub fn run_with(
    kind: CriuReqType,
    opts: CriuOpts,
    work: &Path,
    setup: impl FnOnce(&mut SwrkOptions),
    spawned: impl FnOnce(u32),
    notify: &mut dyn Notify,
) -> Result<CriuResp> {
    let log = opts
        .log_file
        .clone()
        .context("test opts without log file")?;
    let mut so = SwrkOptions::new(default_criu_path());
    so.log_path = Some(work.join(log));
    setup(&mut so);
    let s = Swrk::spawn(so)?;
    spawned(s.pid());
    s.request(CriuReq::with_opts(kind, opts), notify)
}

/// Kill and reap a (restored) child by pid.
pub fn kill_and_reap(pid: i32) {
    // SAFETY: plain syscalls on a pid we own.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// Kills and reaps a restored tree's root when dropped, so a failing assertion leaks nothing.
pub struct Reaper(pub i32);

impl Drop for Reaper {
    fn drop(&mut self) {
        kill_and_reap(self.0);
    }
}

/// The contents of a CRIU log, for assertion messages.
pub fn log_text(work: &Path, name: &str) -> String {
    fs::read_to_string(work.join(name)).unwrap_or_default()
}

/// A [`Notify`] that records (script, pid, number of fds) and can fail one script.
#[derive(Default)]
pub struct Recorder {
    pub seen: Vec<(String, i32, usize)>,
    pub fail_on: Option<&'static str>,
}

impl Recorder {
    pub fn saw(&self, script: &str) -> bool {
        self.seen.iter().any(|(s, _, _)| s == script)
    }
}

impl Notify for Recorder {
    fn notify(&mut self, script: &str, pid: i32, fds: Vec<std::os::fd::OwnedFd>) -> Result<()> {
        self.seen.push((script.to_string(), pid, fds.len()));
        if self.fail_on == Some(script) {
            anyhow::bail!("test handler refuses {script}");
        }
        Ok(())
    }
}

/// Wait until no process uses `pid` as its pid, process group or session. After a dump the
/// killed tree's orphans (here: `sleep`) are reaped by init a little later, and until then the
/// number stays allocated, so restoring the same pid fails with "Can't fork for N: File exists".
pub fn wait_pid_free(pid: i32) {
    wait_for(|| !pid_in_use(pid));
}

fn pid_in_use(pid: i32) -> bool {
    let Ok(dir) = fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let own = head
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<i32>().ok());
        // After "comm)": state ppid pgrp session ...
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ids = [f.get(2), f.get(3)].map(|x| x.and_then(|v| v.parse::<i32>().ok()));
        own == Some(pid) || ids.contains(&Some(pid))
    })
}
