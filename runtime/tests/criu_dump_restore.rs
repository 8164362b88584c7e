//! Real dump and restore of small process trees through `criu swrk`.

mod common;

use std::fs;
use std::io::{PipeReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;
use runtime::criu::log::last_timestamp;
use runtime::criu::rpc::{CriuCgMode, InheritFd};
use runtime::criu::{read_dump_stats, read_restore_stats, CriuOpts, CriuReqType};

/// A v1 pids cgroup of our own, removed when dropped.
struct PidsCgroup(std::path::PathBuf);

impl PidsCgroup {
    fn new(name: &str) -> PidsCgroup {
        let p =
            std::path::PathBuf::from(format!("/sys/fs/cgroup/pids/{name}-{}", std::process::id()));
        fs::create_dir_all(&p).expect("create pids cgroup");
        PidsCgroup(p)
    }
    fn rel(&self) -> String {
        format!(
            "/{}",
            self.0.file_name().and_then(|n| n.to_str()).expect("name")
        )
    }
}

impl Drop for PidsCgroup {
    /// Kill what is left (the restored shell's `sleep`) and remove the cgroup once empty.
    fn drop(&mut self) {
        let procs = self.0.join("cgroup.procs");
        for _ in 0..100 {
            let left = fs::read_to_string(&procs).unwrap_or_default();
            for pid in left.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: plain kill(2) of a process in our own test cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

fn pids_cgroup_of(pid: i32) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read cgroup");
    let line = text
        .lines()
        .find(|l| l.split(':').nth(1) == Some("pids"))
        .expect("pids line");
    line.splitn(3, ':').nth(2).expect("path").to_string()
}

#[test]
fn dump_then_restore_counter_continues() {
    let tmp = TempDir::new("counter");
    let (images, work) = (tmp.sub("images"), tmp.sub("work"));
    let count = tmp.0.join("count");
    let mut child = spawn_counter(&count, Stdio::null(), 0);
    let pid = child.id() as i32;

    let (img_fd, work_fd) = (open_dir(&images), open_dir(&work));
    let mut record = Recorder::default();
    let opts = CriuOpts {
        pid: Some(pid),
        notify_scripts: Some(true),
        ..base_opts(&img_fd, &work_fd, "dump.log")
    };
    let t = Instant::now();
    let resp = run(CriuReqType::Dump, opts, &work, |_| {}, &mut record);
    let dump_time = t.elapsed();
    let resp = resp.unwrap_or_else(|e| panic!("dump: {e:#}\n{}", log_text(&work, "dump.log")));
    assert!(resp.success);
    child.wait().expect("reap dumped counter");
    let stopped_at = read_count(&count).expect("count after dump");
    let criu_dump = last_timestamp(&work.join("dump.log"))
        .expect("log")
        .expect("timestamp");
    println!(
        "dump: {dump_time:?} (criu's log: {criu_dump:?}), notifications {:?}",
        record.seen
    );
    assert!(
        record.saw("pre-dump") && record.saw("post-dump"),
        "{:?}",
        record.seen
    );

    let stats = read_dump_stats(&work).expect("stats-dump");
    println!("{stats:?}");
    assert!(stats.pages_written > 0 && stats.pages_scanned >= stats.pages_written);
    assert!(stats.frozen_time > 0);

    // Restore with CRIU moved into our cgroup first; IGNORE (= 0) keeps the tree there, while
    // CRIU's default mode would put it back into the dumped cgroup (the root).
    wait_pid_free(pid);
    let cg = PidsCgroup::new("criu-rpc-test");
    record.seen.clear();
    let mut opts = CriuOpts {
        rst_sibling: Some(true),
        notify_scripts: Some(true),
        manage_cgroups: Some(true),
        ..base_opts(&img_fd, &work_fd, "restore.log")
    };
    opts.set_manage_cgroups_mode(CriuCgMode::Ignore);
    let procs = cg.0.join("cgroup.procs");
    let into_cgroup = |criu: u32| fs::write(&procs, criu.to_string()).expect("move criu");
    let t = Instant::now();
    let resp = run_with(
        CriuReqType::Restore,
        opts,
        &work,
        |_| {},
        into_cgroup,
        &mut record,
    );
    let restore_time = t.elapsed();
    let resp =
        resp.unwrap_or_else(|e| panic!("restore: {e:#}\n{}", log_text(&work, "restore.log")));
    let restored = resp.restore.expect("restore resp").pid;
    let _reaper = Reaper(restored);
    let criu_restore = last_timestamp(&work.join("restore.log"))
        .expect("log")
        .expect("timestamp");
    println!(
        "restore: {restore_time:?} (criu's log: {criu_restore:?}), notifications {:?}",
        record.seen
    );
    assert_eq!(restored, pid, "CRIU restores the same pid");
    assert!(
        record
            .seen
            .contains(&("post-restore".to_string(), restored, 0)),
        "{:?}",
        record.seen
    );
    assert_eq!(pids_cgroup_of(restored), cg.rel());

    // The counter goes on from where it was stopped (a fresh start would begin at 1).
    wait_for(|| read_count(&count).is_some_and(|n| n > stopped_at + 2));
    let rs = read_restore_stats(&work).expect("stats-restore");
    println!("{rs:?}");
    assert!(rs.restore_time > 0 && rs.pages_restored > 0);
}

#[test]
fn namespaced_tree_notifies_namespace_scripts() {
    let tmp = TempDir::new("ns");
    let (images, work) = (tmp.sub("images"), tmp.sub("work"));
    let count = tmp.0.join("count");
    let flags = libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWNET;
    let mut child = spawn_counter(&count, Stdio::null(), flags);
    let pid = child.id() as i32;
    let (img_fd, work_fd) = (open_dir(&images), open_dir(&work));
    let mut record = Recorder::default();
    let opts = CriuOpts {
        pid: Some(pid),
        notify_scripts: Some(true),
        ..base_opts(&img_fd, &work_fd, "dump.log")
    };
    run(CriuReqType::Dump, opts, &work, |_| {}, &mut record)
        .unwrap_or_else(|e| panic!("dump: {e:#}\n{}", log_text(&work, "dump.log")));
    println!("dump notifications {:?}", record.seen);
    assert!(record.saw("network-lock"), "{:?}", record.seen);
    child.wait().expect("reap dumped counter");
    let stopped_at = read_count(&count).expect("count after dump");
    wait_pid_free(pid);

    record.seen.clear();
    let opts = CriuOpts {
        rst_sibling: Some(true),
        notify_scripts: Some(true),
        ..base_opts(&img_fd, &work_fd, "restore.log")
    };
    let resp = run(CriuReqType::Restore, opts, &work, |_| {}, &mut record)
        .unwrap_or_else(|e| panic!("restore: {e:#}\n{}", log_text(&work, "restore.log")));
    let restored = resp.restore.expect("restore resp").pid;
    let _reaper = Reaper(restored);
    println!("restore notifications {:?}", record.seen);
    for script in ["setup-namespaces", "post-restore"] {
        let want = (script.to_string(), restored, 0);
        assert!(record.seen.contains(&want), "{script}: {:?}", record.seen);
    }
    for script in [
        "pre-restore",
        "post-setup-namespaces",
        "network-unlock",
        "post-resume",
    ] {
        assert!(record.saw(script), "{script}: {:?}", record.seen);
    }
    let ns = |p: &str| fs::read_link(p).expect("read ns link");
    assert_ne!(
        ns(&format!("/proc/{restored}/ns/net")),
        ns("/proc/self/ns/net")
    );
    wait_for(|| read_count(&count).is_some_and(|n| n > stopped_at + 2));
}

/// Read what is there now from a non-blocking pipe.
fn drain(r: &mut PipeReader) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn nonblocking(r: &PipeReader) {
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
}

fn pipe_key(r: &PipeReader) -> String {
    let ino = fs::metadata(format!("/proc/self/fd/{}", r.as_raw_fd()))
        .expect("stat pipe")
        .ino();
    format!("pipe:[{ino}]")
}

#[test]
fn restore_reconnects_stdio_through_criu_stdio_and_swapped_extra_fds() {
    let tmp = TempDir::new("stdio");
    let (images, work) = (tmp.sub("images"), tmp.sub("work"));
    let (out_r, out_w) = std::io::pipe().expect("pipe");
    let (err_r, err_w) = std::io::pipe().expect("pipe");
    let (out_key, err_key) = (pipe_key(&out_r), pipe_key(&err_r));
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("i=0; while :; do i=$((i+1)); echo out$i; echo err$i >&2; sleep 0.1; done")
        .stdin(Stdio::null())
        .stdout(out_w)
        .stderr(err_w);
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        })
    };
    let mut child = ChildGuard(cmd.spawn().expect("spawn"));
    let pid = child.id() as i32;
    drop(cmd);
    let mut old_out = out_r;
    nonblocking(&old_out);
    wait_for(|| drain(&mut old_out).contains("out2"));

    let (img_fd, work_fd) = (open_dir(&images), open_dir(&work));
    let opts = CriuOpts {
        pid: Some(pid),
        ..base_opts(&img_fd, &work_fd, "dump.log")
    };
    run(
        CriuReqType::Dump,
        opts,
        &work,
        |_| {},
        &mut Recorder::default(),
    )
    .unwrap_or_else(|e| panic!("dump: {e:#}\n{}", log_text(&work, "dump.log")));
    child.wait().expect("reap");
    drop((old_out, err_r));
    wait_pid_free(pid);

    // New stdout = CRIU's stdout. Extra fds: `a_w` goes to the number `b_w` has here and `b_w`
    // to `a_w`'s number (each source is the other's target; a naive dup2 in order would turn
    // both into `a_w`). New stderr = CRIU's fd `a_num`, which must be `b_w`.
    let (mut new_out, new_out_w) = std::io::pipe().expect("pipe");
    let (mut a_r, a_w) = std::io::pipe().expect("pipe");
    let (mut b_r, b_w) = std::io::pipe().expect("pipe");
    for r in [&new_out, &a_r, &b_r] {
        nonblocking(r);
    }
    let (a_num, b_num) = (a_w.as_raw_fd(), b_w.as_raw_fd());
    let opts = CriuOpts {
        rst_sibling: Some(true),
        inherit_fd: vec![
            InheritFd {
                key: out_key,
                fd: 1,
            },
            InheritFd {
                key: err_key,
                fd: a_num,
            },
        ],
        ..base_opts(&img_fd, &work_fd, "restore.log")
    };
    let setup = |so: &mut runtime::criu::SwrkOptions| {
        so.stdout = Some(Stdio::from(new_out_w));
        so.extra_fds = vec![(b_num, OwnedFd::from(a_w)), (a_num, OwnedFd::from(b_w))];
    };
    let resp = run(
        CriuReqType::Restore,
        opts,
        &work,
        setup,
        &mut Recorder::default(),
    )
    .unwrap_or_else(|e| panic!("restore: {e:#}\n{}", log_text(&work, "restore.log")));
    let restored = resp.restore.expect("restore resp").pid;
    let _reaper = Reaper(restored);
    let (mut out, mut err) = (String::new(), String::new());
    wait_for(|| {
        out += &drain(&mut new_out);
        err += &drain(&mut b_r);
        out.contains("out") && err.contains("err")
    });
    assert!(
        !out.contains("err") && !err.contains("out"),
        "out {out:?} err {err:?}"
    );
    // a_w was handed to CRIU as fd b_num, which no inherit_fd names: nothing arrives there.
    assert_eq!(drain(&mut a_r), "");
    // Numbers continue past the dump (a fresh start would print out1).
    assert!(!out.lines().any(|l| l == "out1"), "{out:?}");
}

#[test]
fn orphan_pts_master_arrives_by_scm_rights() {
    let tmp = TempDir::new("pty");
    let (images, work) = (tmp.sub("images"), tmp.sub("work"));
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills two fds that we then own.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty");
    // SAFETY: fresh fds from openpty.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: fcntl on fds we own; the child gets the slave only through dup2 below.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    let s = slave.as_raw_fd();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("i=0; while :; do i=$((i+1)); echo tick$i; sleep 0.1; done");
    // SAFETY: only async-signal-safe calls.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(s, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for target in 0..3 {
                if libc::dup2(s, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = ChildGuard(cmd.spawn().expect("spawn"));
    let pid = child.id() as i32;
    drop(slave);
    let mut old = fs::File::from(master);
    let mut seen = String::new();
    wait_for(|| {
        let mut buf = [0u8; 256];
        let n = old.read(&mut buf).unwrap_or(0);
        seen += &String::from_utf8_lossy(&buf[..n]);
        seen.contains("tick2")
    });

    let (img_fd, work_fd) = (open_dir(&images), open_dir(&work));
    let opts = CriuOpts {
        pid: Some(pid),
        orphan_pts_master: Some(true),
        ..base_opts(&img_fd, &work_fd, "dump.log")
    };
    run(
        CriuReqType::Dump,
        opts,
        &work,
        |_| {},
        &mut Recorder::default(),
    )
    .unwrap_or_else(|e| panic!("dump: {e:#}\n{}", log_text(&work, "dump.log")));
    child.wait().expect("reap");
    drop(old);
    wait_pid_free(pid);

    let mut console: Option<OwnedFd> = None;
    let mut take_master = |script: &str, _pid: i32, mut fds: Vec<OwnedFd>| {
        if script == "orphan-pts-master" {
            anyhow::ensure!(fds.len() == 1, "expected one fd, got {}", fds.len());
            console = fds.pop();
        }
        Ok(())
    };
    let opts = CriuOpts {
        rst_sibling: Some(true),
        orphan_pts_master: Some(true),
        // CRIU sends the master only in RPC-scripts mode.
        notify_scripts: Some(true),
        ..base_opts(&img_fd, &work_fd, "restore.log")
    };
    let resp = run(CriuReqType::Restore, opts, &work, |_| {}, &mut take_master)
        .unwrap_or_else(|e| panic!("restore: {e:#}\n{}", log_text(&work, "restore.log")));
    let restored = resp.restore.expect("restore resp").pid;
    let _reaper = Reaper(restored);
    let mut console = fs::File::from(console.expect("no orphan-pts-master notification"));
    let mut after = String::new();
    wait_for(|| {
        let mut buf = [0u8; 256];
        let n = console.read(&mut buf).unwrap_or(0);
        after += &String::from_utf8_lossy(&buf[..n]);
        after.matches("tick").count() >= 2
    });
    assert!(
        !after.contains("tick1\r"),
        "restarted instead of restored: {after:?}"
    );
}
