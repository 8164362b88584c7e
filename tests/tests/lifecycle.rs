//! Lifecycle: create (process blocked until start), start, kill in every signal spelling,
//! delete (with and without --force), run (detached and foreground), duplicate ids, the
//! `--pid-file` contract and the `state` JSON fields engines parse.

use std::fs;
use std::time::Duration;

use runtime_tests::host::{is_rfc3339, pid_alive, wait_for};
use runtime_tests::{Container, Runtime};
use serde_json::json;

/// A process that stops cleanly on SIGTERM even as pid 1 (which ignores signals it has no
/// handler for); it creates /tmp/ready once the trap is installed.
const TERM_TRAPPER: &[&str] = &[
    "sh",
    "-c",
    "trap 'exit 0' TERM; touch /tmp/ready; while :; do sleep 0.1; done",
];

#[test]
fn create_blocks_the_program_until_start() {
    let c = Container::new(&["sh", "-c", "touch /tmp/started; exec sleep 100"]);
    c.create().success();
    let state = c.state();
    assert_eq!(state["status"], "created", "{state}");
    let pid = c.pid();
    assert!(
        pid_alive(pid),
        "init pid {pid} of a created container must exist"
    );
    std::thread::sleep(Duration::from_millis(300));
    let marker = c.rootfs().join("tmp/started");
    assert!(!marker.exists(), "the program ran before `start`");
    assert_eq!(c.status(), "created");

    c.start().success();
    wait_for(
        "the program to run after start",
        Duration::from_secs(10),
        || marker.exists(),
    );
    assert_eq!(c.status(), "running");
    assert_eq!(c.pid(), pid, "start must keep the init pid");
}

#[test]
fn kill_with_numeric_and_named_sigkill_stops() {
    for sig in ["9", "KILL", "SIGKILL"] {
        let c = Container::new(&["sleep", "100"]);
        c.start_ok();
        let pid = c.pid();
        c.kill(sig).success();
        c.wait_status("stopped");
        wait_for("the init to die", Duration::from_secs(5), || {
            !pid_alive(pid)
        });
        c.delete().success();
    }
}

#[test]
fn kill_with_sigterm_spellings_and_default_stops() {
    for sig in [Some("15"), Some("TERM"), Some("SIGTERM"), None] {
        let c = Container::new(TERM_TRAPPER);
        c.start_ok();
        wait_for("the TERM trap", Duration::from_secs(10), || {
            c.rootfs().join("tmp/ready").exists()
        });
        match sig {
            Some(sig) => c.kill(sig).success(),
            // No signal argument: SIGTERM.
            None => c.rt.run(&["kill", &c.id]).success(),
        };
        c.wait_status("stopped");
    }
}

#[test]
fn delete_removes_a_stopped_container() {
    let c = Container::new(&["sleep", "100"]);
    c.start_ok();
    c.kill("KILL").success();
    c.wait_status("stopped");
    c.delete().success();
    c.rt.run(&["state", &c.id])
        .code_is(1)
        .stderr_has("container does not exist");
    c.assert_nothing_left();
}

#[test]
fn delete_without_force_refuses_a_running_container() {
    let c = Container::new(&["sleep", "100"]);
    c.start_ok();
    c.delete().failure().one_error_line();
    assert_eq!(c.status(), "running");
    assert!(pid_alive(c.pid()));
}

#[test]
fn delete_force_kills_a_running_container() {
    let c = Container::new(&["sleep", "100"]);
    c.start_ok();
    let pid = c.pid();
    c.delete_force().success();
    wait_for("the init to die", Duration::from_secs(5), || {
        !pid_alive(pid)
    });
    c.rt.run(&["state", &c.id])
        .code_is(1)
        .stderr_has("container does not exist");
    c.assert_nothing_left();
}

#[test]
fn delete_force_of_a_created_container() {
    let c = Container::new(&["sleep", "100"]);
    c.create().success();
    let pid = c.pid();
    c.delete_force().success();
    wait_for("the init to die", Duration::from_secs(5), || {
        !pid_alive(pid)
    });
    c.assert_nothing_left();
}

#[test]
fn delete_of_a_created_container_kills_it() {
    // The containerd shim runs a plain `delete` on a container that was never started.
    let c = Container::new(&["sleep", "100"]);
    c.create().success();
    let pid = c.pid();
    c.delete().success();
    wait_for("the init to die", Duration::from_secs(5), || {
        !pid_alive(pid)
    });
    c.assert_nothing_left();
}

#[test]
fn delete_force_of_a_missing_container_exits_zero() {
    // Engines call `delete --force` after every exit, also when the container is gone.
    let rt = Runtime::new();
    rt.run(&["delete", "--force", "no-such-container"])
        .code_is(0);
    let c = Container::new(&["sleep", "100"]);
    c.start_ok();
    c.delete_force().code_is(0);
    c.delete_force().code_is(0);
    c.rt.run(&["state", &c.id])
        .code_is(1)
        .stderr_has("container does not exist");
}

#[test]
fn delete_of_a_missing_container_fails_with_does_not_exist() {
    let rt = Runtime::new();
    rt.run(&["delete", "no-such-container"])
        .code_is(1)
        .stderr_has("container does not exist");
}

#[test]
fn kill_all_kills_every_process() {
    let c = Container::new(&["sh", "-c", "sleep 100 & sleep 100 & wait"]);
    c.start_ok();
    let procs = c.cgroup_dir("pids").join("cgroup.procs");
    let read_pids = || -> Vec<i32> {
        fs::read_to_string(&procs)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    wait_for(
        "three processes in the cgroup",
        Duration::from_secs(10),
        || read_pids().len() == 3,
    );
    let pids = read_pids();
    c.rt.run(&["kill", "--all", &c.id, "KILL"]).success();
    c.wait_status("stopped");
    wait_for("every process to die", Duration::from_secs(5), || {
        pids.iter().all(|&p| !pid_alive(p))
    });
}

#[test]
fn start_twice_fails() {
    let c = Container::new(&["sleep", "100"]);
    c.start_ok();
    c.start().failure().one_error_line();
    assert_eq!(c.status(), "running");
}

#[test]
fn create_with_a_duplicate_id_fails_and_keeps_the_first() {
    let c = Container::new(&["sleep", "100"]);
    c.create().success();
    let pid = c.pid();
    c.create().failure().one_error_line();
    assert_eq!(c.status(), "created");
    assert_eq!(c.pid(), pid);
    assert!(pid_alive(pid));
    c.start().success();
    assert_eq!(c.status(), "running");
}

#[test]
fn run_detached_leaves_the_container_running() {
    let c = Container::new(&["sleep", "100"]);
    c.run_detached().success();
    assert_eq!(c.status(), "running");
    assert!(pid_alive(c.pid()));
}

#[test]
fn run_foreground_passes_stdout_and_exit_code() {
    let c = Container::new(&["sh", "-c", "echo hi; echo oops >&2; exit 3"]);
    let out = c.run_fg().code_is(3);
    assert_eq!(out.stdout, "hi\n", "{out}");
    assert!(out.stderr.contains("oops"), "{out}");
    // A foreground run deletes its container when the process exits.
    c.rt.run(&["state", &c.id])
        .code_is(1)
        .stderr_has("container does not exist");
    c.assert_nothing_left();
}

#[test]
fn run_foreground_killed_by_a_signal_exits_128_plus_signal() {
    let c = Container::new(&["sleep", "100"]);
    let (rt, bundle, id) = (c.rt.clone(), c.bundle_str(), c.id.clone());
    let fg = std::thread::spawn(move || rt.run(&["run", "--bundle", &bundle, &id]));
    wait_for(
        "the foreground container to run",
        Duration::from_secs(10),
        || {
            c.rt.call(&["state", &c.id])
                .try_run()
                .ok()
                .and_then(|o| serde_json::from_str::<serde_json::Value>(&o.stdout).ok())
                .is_some_and(|s| s["status"] == "running")
        },
    );
    c.kill("KILL").success();
    let out = fg.join().expect("foreground run thread");
    assert_eq!(out.code, Some(137), "{out}");
}

#[test]
fn kill_of_a_created_container_stops_it() {
    // podman rm -f of a container that was never started: kill 9, then delete --force.
    let c = Container::new(&["sh", "-c", "touch /tmp/ran; sleep 100"]);
    c.create().success();
    let pid = c.pid();
    c.kill("9").success();
    c.wait_status("stopped");
    wait_for("the init to die", Duration::from_secs(5), || {
        !pid_alive(pid)
    });
    assert!(!c.rootfs().join("tmp/ran").exists(), "the program ran");
    c.delete().success();
    c.assert_nothing_left();
}

#[test]
fn run_foreground_exit_zero() {
    let c = Container::new(&["sh", "-c", "echo done"]);
    let out = c.run_fg().code_is(0);
    assert_eq!(out.stdout, "done\n", "{out}");
}

#[test]
fn pid_file_has_the_init_pid_without_newline() {
    let c = Container::new(&["sleep", "100"]);
    let pid_file = c.bundle.path().join("init.pid");
    c.rt.run(&[
        "create",
        "--bundle",
        &c.bundle_str(),
        "--pid-file",
        &pid_file.to_string_lossy(),
        &c.id,
    ])
    .success();
    let text = fs::read_to_string(&pid_file).expect("pid file written by create");
    assert!(
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()),
        "pid file must be a bare decimal number, got {text:?}"
    );
    assert_eq!(text.parse::<i32>().expect("decimal pid"), c.pid());
}

#[test]
fn pid_file_relative_path_with_run_detach() {
    let c = Container::new(&["sleep", "100"]);
    c.rt.call(&[
        "run",
        "--detach",
        "--pid-file",
        "run.pid",
        "--bundle",
        ".",
        &c.id,
    ])
    .current_dir(c.bundle.path())
    .run()
    .success();
    let text = fs::read_to_string(c.bundle.path().join("run.pid")).expect("pid file");
    assert_eq!(text, c.pid().to_string(), "pid file must be the bare pid");
}

#[test]
fn state_json_has_the_engine_fields() {
    let c = Container::new(&["sleep", "100"]).with(|cfg| {
        cfg["annotations"] = json!({"org.example.key": "value"});
    });
    c.create().success();
    let out = c.rt.run(&["state", &c.id]).success();
    let state: serde_json::Value = serde_json::from_str(&out.stdout).expect("state is JSON");
    let oci = state["ociVersion"].as_str().unwrap_or_default();
    assert!(!oci.is_empty(), "ociVersion: {state}");
    assert_eq!(state["id"], c.id.as_str());
    assert!(state["pid"].as_i64().unwrap_or(0) > 0, "pid: {state}");
    assert_eq!(state["status"], "created");
    let bundle = c.bundle.path().to_string_lossy().into_owned();
    assert_eq!(
        state["bundle"],
        bundle.as_str(),
        "bundle must be absolute: {state}"
    );
    assert_eq!(
        state["rootfs"],
        c.rootfs().to_string_lossy().as_ref(),
        "rootfs must be absolute: {state}"
    );
    let created = state["created"].as_str().unwrap_or_default();
    assert!(is_rfc3339(created), "created is not RFC 3339: {created:?}");
    assert!(state["owner"].is_string(), "owner: {state}");
    assert_eq!(state["annotations"]["org.example.key"], "value", "{state}");

    c.start().success();
    assert_eq!(c.state()["status"], "running");
    c.kill("KILL").success();
    c.wait_status("stopped");
    let stopped = c.state();
    assert_eq!(stopped["id"], c.id.as_str());
    assert_eq!(
        stopped["created"].as_str(),
        Some(created),
        "created must not change"
    );
}

#[test]
fn state_of_a_container_whose_process_exited_is_stopped() {
    let c = Container::new(&["true"]);
    c.run_to_exit();
    c.delete().success();
    c.assert_nothing_left();
}

#[test]
fn bundle_defaults_to_the_cwd_and_is_stored_absolute() {
    let c = Container::new(&["sleep", "100"]);
    c.rt.call(&["create", &c.id])
        .current_dir(c.bundle.path())
        .run()
        .success();
    let state = c.state();
    assert_eq!(state["bundle"], c.bundle.path().to_string_lossy().as_ref());
    let rootfs = state["rootfs"].as_str().unwrap_or_default();
    assert!(rootfs.starts_with('/'), "rootfs must be absolute: {state}");
}
