//! `criu swrk` client against the real CRIU: version, features, failures, crashes, notify errors.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use runtime::criu::{
    check_features, default_criu_path, require_features, version, CriuError, CriuOpts, CriuReq,
    CriuReqType, Swrk, SwrkOptions,
};

#[test]
fn version_is_4_2() {
    let (major, minor, sublevel) = version(&default_criu_path()).expect("version");
    assert_eq!((major, minor), (4, 2), "sublevel {sublevel}");
    assert!((4, 2, 0) <= (major, minor, sublevel));
}

#[test]
fn missing_binary_is_reported() {
    let err = version(Path::new("/nonexistent/criu")).expect_err("no criu there");
    assert!(format!("{err:#}").contains("/nonexistent/criu"), "{err:#}");
}

#[test]
fn feature_check_agrees_with_criu_check() {
    let criu = default_criu_path();
    let f = check_features(&criu, true, true).expect("feature check");
    // CRIU's CLI answers the same question for memory tracking.
    let cli = Command::new(&criu)
        .args(["check", "--feature", "mem_dirty_track"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("criu check");
    assert_eq!(f.mem_track, Some(cli.success()), "{f:?}");
    assert!(f.lazy_pages.is_some(), "{f:?}");
    // Not asked for, but CRIU 4.2.1 always fills it in.
    assert!(f.pidfd_store.is_some(), "{f:?}");

    let required = require_features(&criu, true, false);
    assert_eq!(required.is_ok(), cli.success(), "{required:?}");
    if let Err(e) = required {
        assert!(
            e.to_string().contains("memory tracking for pre-dump"),
            "{e}"
        );
    }
    assert!(require_features(&criu, false, false).is_ok());
}

#[test]
fn dump_of_a_missing_process_names_the_cause() {
    let tmp = TempDir::new("nopid");
    let (images, work) = (tmp.sub("images"), tmp.sub("work"));
    let (i, w) = (open_dir(&images), open_dir(&work));
    // pid_max is well above this on any host; pick one no process uses.
    let pid = (30000..32000)
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .expect("free pid");
    let opts = CriuOpts {
        pid: Some(pid),
        ..base_opts(&i, &w, "dump.log")
    };
    let err = run(
        CriuReqType::Dump,
        opts,
        &work,
        |_| {},
        &mut Recorder::default(),
    )
    .expect_err("dump of a missing pid");
    let text = format!("{err:#}");
    println!("{text}");
    assert!(
        text.starts_with("criu dump failed: the process to checkpoint does not exist"),
        "{text}"
    );
    assert!(text.contains("errno 3 (No such process)"), "{text}");
    match err.downcast_ref::<CriuError>() {
        Some(CriuError::Failed { errno, errmsg, .. }) => {
            assert_eq!(*errno, Some(libc::ESRCH));
            assert!(
                errmsg.as_deref().is_some_and(|m| m.starts_with("Error (")),
                "{errmsg:?}"
            );
        }
        other => panic!("not a CriuError::Failed: {other:?}"),
    }
}

#[test]
fn established_tcp_without_the_option_fails_and_leaves_the_process_running() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let tmp = TempDir::new("tcp");
    let count = tmp.0.join("count");
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port}; i=0; while :; do i=$((i+1)); echo $i > {}; sleep 0.1; done",
        count.display()
    );
    let mut child = spawn_session_leader("bash", &script);
    let _conn = listener.accept().expect("accept");
    wait_for(|| read_count(&count).is_some_and(|n| n >= 2));

    let (images, work) = (tmp.sub("images"), tmp.sub("work"));
    let (i, w) = (open_dir(&images), open_dir(&work));
    let opts = CriuOpts {
        pid: Some(child.id() as i32),
        ..base_opts(&i, &w, "dump.log")
    };
    let err = run(
        CriuReqType::Dump,
        opts,
        &work,
        |_| {},
        &mut Recorder::default(),
    )
    .expect_err("dump with an established connection");
    let text = format!("{err:#}");
    println!("{text}");
    assert!(
        text.contains("established TCP connection: pass --tcp-established"),
        "{text}"
    );
    assert!(text.contains("dump.log"), "{text}");
    // A failed dump resumes the tree.
    let before = read_count(&count).expect("count");
    wait_for(|| read_count(&count).is_some_and(|n| n > before + 2));
    child.kill().expect("kill");
    child.wait().expect("reap");
}

#[test]
fn failing_notify_handler_aborts_the_dump_with_its_error() {
    let tmp = TempDir::new("notifyfail");
    let count = tmp.0.join("count");
    let mut child = spawn_counter(&count, Stdio::null(), 0);
    let (images, work) = (tmp.sub("images"), tmp.sub("work"));
    let (i, w) = (open_dir(&images), open_dir(&work));
    let opts = CriuOpts {
        pid: Some(child.id() as i32),
        notify_scripts: Some(true),
        ..base_opts(&i, &w, "dump.log")
    };
    let mut rec = Recorder {
        fail_on: Some("post-dump"),
        ..Default::default()
    };
    let err = run(CriuReqType::Dump, opts, &work, |_| {}, &mut rec).expect_err("refused post-dump");
    let text = format!("{err:#}");
    println!("{text} {:?}", rec.seen);
    assert!(text.contains("criu notification \"post-dump\""), "{text}");
    assert!(text.contains("test handler refuses post-dump"), "{text}");
    // CRIU gave up after the script failed: the counter still runs.
    let before = read_count(&count).expect("count");
    wait_for(|| read_count(&count).is_some_and(|n| n > before + 2));
    child.kill().expect("kill");
    child.wait().expect("reap");
}

#[test]
fn criu_killed_mid_request_is_reported_as_unexpected_exit() {
    let tmp = TempDir::new("crash");
    let count = tmp.0.join("count");
    let mut child = spawn_counter(&count, Stdio::null(), 0);
    let (images, work) = (tmp.sub("images"), tmp.sub("work"));
    let (i, w) = (open_dir(&images), open_dir(&work));
    let swrk = Swrk::spawn(SwrkOptions::new(default_criu_path())).expect("spawn");
    let criu_pid = swrk.pid() as i32;
    let mut kill_criu = |script: &str, _pid: i32, _fds| {
        if script == "pre-dump" {
            // SAFETY: plain kill(2) of the CRIU we started.
            unsafe { libc::kill(criu_pid, libc::SIGKILL) };
        }
        Ok(())
    };
    let opts = CriuOpts {
        pid: Some(child.id() as i32),
        notify_scripts: Some(true),
        ..base_opts(&i, &w, "dump.log")
    };
    let err = swrk
        .request(CriuReq::with_opts(CriuReqType::Dump, opts), &mut kill_criu)
        .expect_err("criu was killed");
    let text = format!("{err:#}");
    println!("{text}");
    assert!(
        text.starts_with("criu exited unexpectedly: signal: 9 (SIGKILL)"),
        "{text}"
    );
    assert!(matches!(
        err.downcast_ref::<CriuError>(),
        Some(CriuError::Exited { .. })
    ));
    let before = read_count(&count).expect("count");
    wait_for(|| read_count(&count).is_some_and(|n| n > before + 2));
    child.kill().expect("kill");
    child.wait().expect("reap");
}

#[test]
fn dropping_an_unused_swrk_reaps_criu() {
    let swrk = Swrk::spawn(SwrkOptions::new(default_criu_path())).expect("spawn");
    let pid = swrk.pid();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(swrk);
    // Reaped: the pid is gone (or reused by an unrelated process, which is not our child).
    // SAFETY: waitpid on a pid that must no longer be our child.
    let r = unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), libc::WNOHANG) };
    assert_eq!(r, -1, "criu {pid} was not reaped");
}

#[test]
fn extra_fd_numbers_are_validated() {
    let fd = std::fs::File::open("/dev/null").expect("open").into();
    let mut opts = SwrkOptions::new(default_criu_path());
    opts.extra_fds.push((3, fd));
    let err = Swrk::spawn(opts).expect_err("fd 3 is CRIU's socket");
    assert!(err.to_string().contains("extra fd number 3"), "{err}");
}
