//! `exec`: output, stdin and exit code propagated; `--process` JSON; `--env`, `--cwd`,
//! `--user`, `--additional-gids`; `--detach` with `--pid-file`; refusal in a paused
//! container; the exec'd process joins the container's namespaces and cgroup.

use std::fs;
use std::time::Duration;

use runtime_tests::host::{pid_alive, proc_cgroup, wait_for};
use runtime_tests::Container;
use serde_json::json;

fn running() -> Container {
    let c = Container::new(&["sleep", "100"]).with(|cfg| cfg["hostname"] = "exec-box".into());
    c.start_ok();
    c
}

#[test]
fn exec_passes_stdout_stderr_and_exit_code() {
    let c = running();
    let out = c
        .exec(&["sh", "-c", "echo out; echo err >&2; exit 7"])
        .code_is(7);
    assert_eq!(out.stdout, "out\n", "{out}");
    assert!(out.stderr.contains("err"), "{out}");
    c.exec(&["true"]).code_is(0);
    assert_eq!(c.status(), "running");
}

#[test]
fn exec_passes_stdin() {
    let c = running();
    let out =
        c.rt.call(&["exec", &c.id, "cat"])
            .stdin("from stdin\n")
            .run()
            .success();
    assert_eq!(out.stdout, "from stdin\n", "{out}");
}

#[test]
fn exec_of_a_missing_binary_exits_255() {
    let c = running();
    c.exec(&["/nonexistent"])
        .code_is(255)
        .stderr_has("no such file or directory");
    assert_eq!(c.status(), "running");
}

#[test]
fn exec_with_process_json() {
    let c = running();
    let process = json!({
        "terminal": false,
        "user": {"uid": 1000, "gid": 1000},
        "args": ["sh", "-c", "echo $FOO; pwd; id -u; id -g"],
        "env": ["PATH=/bin", "FOO=from-process-json"],
        "cwd": "/tmp"
    });
    let path = c.bundle.path().join("process.json");
    fs::write(&path, process.to_string()).unwrap();
    for flag in ["--process", "-p"] {
        let out = c.exec_with(&[flag, &path.to_string_lossy()], &[]).success();
        assert_eq!(out.stdout, "from-process-json\n/tmp\n1000\n1000\n", "{out}");
    }
}

#[test]
fn exec_with_env_cwd_and_user_flags() {
    let c = running();
    let out = c
        .exec_with(
            &["--env", "FOO=bar", "--cwd", "/tmp", "--user", "1000:1000"],
            &["sh", "-c", "echo $FOO; pwd; id -u; id -g"],
        )
        .success();
    assert_eq!(out.stdout, "bar\n/tmp\n1000\n1000\n", "{out}");
    // The config's environment is kept for exec.
    let out = c.exec(&["sh", "-c", "echo $PATH"]).success();
    assert!(out.stdout.contains("/bin"), "{out}");
}

#[test]
fn exec_with_additional_gids() {
    let c = running();
    let out = c
        .exec_with(
            &[
                "--user",
                "1000:1000",
                "--additional-gids",
                "10",
                "--additional-gids",
                "100",
            ],
            &["id", "-G"],
        )
        .success();
    let mut gids: Vec<&str> = out.out().split_whitespace().collect();
    gids.sort();
    assert_eq!(gids, ["10", "100", "1000"], "{out}");
}

#[test]
fn exec_detached_writes_pid_file() {
    let c = running();
    let pid_file = c.bundle.path().join("exec.pid");
    c.exec_with(
        &["--detach", "--pid-file", &pid_file.to_string_lossy()],
        &["sleep", "100"],
    )
    .success();
    let text = fs::read_to_string(&pid_file).expect("exec pid file");
    assert!(
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()),
        "pid file must be a bare decimal number, got {text:?}"
    );
    let pid: i32 = text.parse().unwrap();
    assert!(pid_alive(pid), "exec'd process {pid} is not running");
    assert_ne!(pid, c.pid());
    assert_eq!(
        proc_cgroup(pid, "memory"),
        proc_cgroup(c.pid(), "memory"),
        "exec'd process must be in the container's cgroup"
    );
    // Killing the container with --all also takes the exec'd process.
    c.rt.run(&["kill", "--all", &c.id, "KILL"]).success();
    wait_for("the exec'd process to die", Duration::from_secs(5), || {
        !pid_alive(pid)
    });
}

#[test]
fn exec_into_a_paused_container_fails() {
    let c = running();
    c.rt.run(&["pause", &c.id]).success();
    c.exec(&["true"]).failure().one_error_line();
    assert_eq!(c.status(), "paused");
    c.rt.run(&["resume", &c.id]).success();
    c.exec(&["true"]).success();
}

#[test]
fn exec_joins_the_container_namespaces() {
    let c = running();
    let out = c.exec(&["hostname"]).success();
    assert_eq!(out.out(), "exec-box");
    // pid 1 in the exec'd process's view is the container's init.
    let out = c.exec(&["cat", "/proc/1/cmdline"]).success();
    assert_eq!(out.stdout, "sleep\x00100\x00", "{out}");
    let out = c.exec(&["ps", "-o", "pid,args"]).success();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "sleep", "100"]),
        "{out}"
    );
    let init = c.pid();
    for ns in ["pid", "net", "ipc", "uts", "mnt"] {
        let host_view = fs::read_link(format!("/proc/{init}/ns/{ns}")).unwrap();
        let out = c
            .exec(&["readlink", &format!("/proc/self/ns/{ns}")])
            .success();
        assert_eq!(
            out.out(),
            host_view.to_string_lossy(),
            "{ns} namespace differs"
        );
    }
}

#[test]
fn exec_process_is_in_the_container_cgroup() {
    let c = running();
    let out = c.exec(&["cat", "/proc/self/cgroup"]).success();
    let line = out
        .stdout
        .lines()
        .find(|l| l.split(':').nth(1) == Some("pids"))
        .unwrap_or_else(|| panic!("no pids line\n{out}"))
        .to_owned();
    // Without a cgroup namespace the path is the host path.
    assert!(
        line.ends_with(&c.cgroups_path()),
        "{line} vs {}",
        c.cgroups_path()
    );
}
