//! Failures: bad config.json, missing rootfs or executable, unknown containers for every
//! command, and operations in the wrong state. Each must exit non-zero with one error line on
//! stderr and leave nothing behind (state dir, cgroup directories, mounts).

use std::fs;
use std::os::unix::fs::PermissionsExt;

use runtime_tests::{Container, Runtime};

#[test]
fn invalid_json_config_fails_cleanly() {
    let c = Container::new(&["true"]);
    fs::write(
        c.bundle.path().join("config.json"),
        "{\"ociVersion\": \"1.0.2\", bad",
    )
    .unwrap();
    c.create().code_is(1).one_error_line();
    c.assert_nothing_left();
}

#[test]
fn config_without_process_fails_cleanly() {
    let c = Container::new(&["true"]).with(|cfg| {
        cfg.as_object_mut().unwrap().remove("process");
    });
    c.create().code_is(1).one_error_line();
    c.assert_nothing_left();
}

#[test]
fn config_without_root_fails_cleanly() {
    let c = Container::new(&["true"]).with(|cfg| {
        cfg.as_object_mut().unwrap().remove("root");
    });
    c.create().code_is(1).one_error_line();
    c.assert_nothing_left();
}

#[test]
fn missing_config_json_fails_cleanly() {
    let c = Container::new(&["true"]);
    fs::remove_file(c.bundle.path().join("config.json")).unwrap();
    c.create().code_is(1).one_error_line();
    c.assert_nothing_left();
}

#[test]
fn missing_rootfs_fails_cleanly() {
    let c = Container::new(&["true"]).with(|cfg| cfg["root"]["path"] = "no-such-rootfs".into());
    c.create().code_is(1).one_error_line();
    c.assert_nothing_left();
}

#[test]
fn missing_executable_fails_at_create_with_enoent_text() {
    // podman maps "no such file or directory" to exit 127.
    let c = Container::new(&["/nonexistent"]);
    c.create()
        .code_is(1)
        .one_error_line()
        .stderr_has("no such file or directory");
    c.assert_nothing_left();
}

#[test]
fn non_executable_file_fails_with_permission_denied() {
    // podman maps "permission denied" to exit 126.
    let c = Container::new(&["/bin/noexec"]);
    let path = c.rootfs().join("bin/noexec");
    fs::write(&path, "#!/bin/sh\necho no\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let out = c.run_fg();
    assert_ne!(out.code, Some(0), "{out}");
    assert!(out.code.is_some(), "{out}");
    let out = out.stderr_has("permission denied");
    assert!(out.stdout.is_empty(), "the script must not have run\n{out}");
    c.assert_nothing_left();
}

#[test]
fn unknown_container_for_every_command() {
    let rt = Runtime::new();
    let id = "no-such-container";
    let cases: &[&[&str]] = &[
        &["start", id],
        &["state", id],
        &["kill", id, "9"],
        &["pause", id],
        &["resume", id],
        &["ps", id],
        &["events", "--stats", id],
        &["update", "--pids-limit", "10", id],
        &["delete", id],
    ];
    for args in cases {
        rt.run(args)
            .code_is(1)
            .one_error_line()
            .stderr_has("container does not exist");
    }
    // exec reports failures to start the process with 255.
    rt.run(&["exec", id, "true"])
        .code_is(255)
        .one_error_line()
        .stderr_has("container does not exist");
    assert!(!rt.root().join(id).exists());
}

#[test]
fn pause_of_a_created_container_is_allowed() {
    // runc semantics: a created container can be paused (its cgroup is frozen); resume brings
    // it back to "created" and start still works.
    let c = Container::new(&["sh", "-c", "touch /tmp/ran; sleep 100"]);
    c.create().success();
    c.rt.run(&["pause", &c.id]).success();
    assert_eq!(c.status(), "paused");
    c.rt.run(&["resume", &c.id]).success();
    assert_eq!(c.status(), "created");
    assert!(!c.rootfs().join("tmp/ran").exists());
    c.start().success();
    assert_eq!(c.status(), "running");
}

#[test]
fn pause_of_a_stopped_container_fails() {
    let c = Container::new(&["true"]);
    c.run_to_exit();
    c.rt.run(&["pause", &c.id]).failure().one_error_line();
    assert_eq!(c.status(), "stopped");
}

#[test]
fn resume_of_a_running_container_fails() {
    let c = Container::new(&["sleep", "100"]);
    c.start_ok();
    c.rt.run(&["resume", &c.id]).failure().one_error_line();
    assert_eq!(c.status(), "running");
}

#[test]
fn start_of_a_stopped_container_fails() {
    let c = Container::new(&["true"]);
    c.run_to_exit();
    c.start().failure().one_error_line();
    assert_eq!(c.status(), "stopped");
}

#[test]
fn exec_into_a_stopped_container_fails() {
    let c = Container::new(&["true"]);
    c.run_to_exit();
    c.exec(&["true"]).failure().one_error_line();
    assert_eq!(c.status(), "stopped");
}

#[test]
fn kill_of_a_stopped_container_fails_with_not_running() {
    // The containerd shim treats "container not running" as "already exited".
    let c = Container::new(&["true"]);
    c.run_to_exit();
    let out = c.kill("9").failure().one_error_line();
    let err = out.stderr.to_lowercase();
    assert!(
        [
            "container not running",
            "no such process",
            "process already finished"
        ]
        .iter()
        .any(|s| err.contains(s)),
        "stderr must say the process is gone in a way the shim recognises\n{out}"
    );
}

#[test]
fn unknown_signal_is_rejected() {
    let c = Container::new(&["sleep", "100"]);
    c.start_ok();
    c.kill("NOSUCHSIG").failure().one_error_line();
    assert_eq!(c.status(), "running");
}

#[test]
fn invalid_container_id_is_rejected() {
    let c = Container::new(&["true"]);
    c.rt.run(&["create", "--bundle", &c.bundle_str(), "../escape"])
        .failure()
        .one_error_line();
    assert!(!c.rt.root().join("../escape").exists());
    assert!(fs::read_dir(c.rt.root()).map(|d| d.count()).unwrap_or(0) == 0);
}
