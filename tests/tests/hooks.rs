//! Hooks: prestart, createRuntime, createContainer, startContainer, poststart and poststop run
//! at the right step with the state JSON on stdin, their args and env; a failing prestart
//! hook makes create fail without leftovers; a hook timeout is enforced.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use runtime_tests::Container;
use serde_json::{json, Value};

/// A hook running `sh -c script arg0 arg1` with PATH and HOOK_VAR set. The script records the
/// hook's name in `order`, its stdin in `<name>.json` and `$HOOK_VAR $0 $1` in `<name>.env`,
/// all in `dir` (a path that resolves where the hook runs).
fn recording_hook(sh: &str, dir: &str, name: &str) -> Value {
    let script = format!(
        "echo {name} >> {dir}/order; cat > {dir}/{name}.json; echo \"$HOOK_VAR $0 $1\" > {dir}/{name}.env"
    );
    json!({
        "path": sh,
        "args": ["sh", "-c", script, "first-arg", "second-arg"],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", format!("HOOK_VAR=value-of-{name}")]
    })
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("hook output {} missing: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "hook stdin in {} is not JSON ({e}): {text:?}",
            path.display()
        )
    })
}

fn order(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("order"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn all_hooks_run_in_order_with_state_args_and_env() {
    let mut c = Container::new(&["sleep", "100"]);
    let host_dir = c.rootfs().join("tmp/hooks");
    fs::create_dir_all(&host_dir).unwrap();
    let hd = host_dir.to_string_lossy().into_owned();
    c.configure(|cfg| {
        cfg["hooks"] = json!({
            "prestart": [recording_hook("/bin/sh", &hd, "prestart")],
            "createRuntime": [recording_hook("/bin/sh", &hd, "createRuntime")],
            // Path resolved in the runtime's namespace, before pivot_root.
            "createContainer": [recording_hook("/bin/sh", &hd, "createContainer")],
            // Runs inside the container after pivot_root: container paths.
            "startContainer": [recording_hook("/bin/sh", "/tmp/hooks", "startContainer")],
            "poststart": [recording_hook("/bin/sh", &hd, "poststart")],
            "poststop": [recording_hook("/bin/sh", &hd, "poststop")]
        });
    });

    c.create().success();
    // runc 1.1.5 runs poststart at the end of `create` (fixed in runc 1.2); the spec wants it
    // after the program started: accept both here, `poststart_waits_for_start` is strict.
    let mut created = order(&host_dir);
    if created.last().map(String::as_str) == Some("poststart") {
        created.pop();
    }
    assert_eq!(created, ["prestart", "createRuntime", "createContainer"]);
    let pid = c.pid() as i64;
    for name in ["prestart", "createRuntime"] {
        let state = read_json(&host_dir.join(format!("{name}.json")));
        assert_eq!(state["id"], c.id.as_str(), "{name}: {state}");
        assert_eq!(state["pid"].as_i64(), Some(pid), "{name}: {state}");
        assert!(state["status"].is_string(), "{name}: {state}");
        assert_eq!(state["bundle"], c.bundle_str().as_str(), "{name}: {state}");
    }
    let cc = read_json(&host_dir.join("createContainer.json"));
    assert_eq!(cc["id"], c.id.as_str(), "createContainer: {cc}");

    c.start().success();
    let mut started = order(&host_dir);
    started.sort();
    let mut want = [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
    ];
    want.sort();
    assert_eq!(started, want);
    let sc = read_json(&host_dir.join("startContainer.json"));
    assert_eq!(sc["id"], c.id.as_str(), "startContainer: {sc}");
    let ps = read_json(&host_dir.join("poststart.json"));
    assert_eq!(ps["id"], c.id.as_str(), "poststart: {ps}");
    assert_eq!(ps["pid"].as_i64(), Some(pid), "poststart: {ps}");
    assert!(ps["status"].is_string(), "poststart: {ps}");

    c.kill("KILL").success();
    c.wait_status("stopped");
    assert!(
        !host_dir.join("poststop.json").exists(),
        "poststop ran before delete"
    );
    c.delete().success();
    assert_eq!(
        order(&host_dir).last().map(String::as_str),
        Some("poststop")
    );
    let stop = read_json(&host_dir.join("poststop.json"));
    assert_eq!(stop["id"], c.id.as_str(), "poststop: {stop}");
    assert_eq!(stop["status"], "stopped", "poststop: {stop}");

    for name in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        let env = fs::read_to_string(host_dir.join(format!("{name}.env"))).unwrap();
        assert_eq!(
            env.trim(),
            format!("value-of-{name} first-arg second-arg"),
            "{name}: env or args not passed"
        );
    }
}

#[test]
fn poststart_waits_for_start() {
    // ours_only: runc 1.1.5 runs poststart hooks at the end of `create` (a runtime-spec
    // violation fixed in runc 1.2, opencontainers/runc#4347). The spec: poststart runs after
    // the user program started, i.e. during `start`, after startContainer.
    if !runtime_tests::ours_only() {
        println!("NOT TESTED against runc 1.1.5: it runs poststart during create");
        return;
    }
    let mut c = Container::new(&["sleep", "100"]);
    let dir = c.rootfs().join("tmp/hooks");
    fs::create_dir_all(&dir).unwrap();
    let d = dir.to_string_lossy().into_owned();
    c.configure(|cfg| {
        cfg["hooks"] = json!({
            "startContainer": [recording_hook("/bin/sh", "/tmp/hooks", "startContainer")],
            "poststart": [recording_hook("/bin/sh", &d, "poststart")]
        })
    });
    c.create().success();
    assert_eq!(order(&dir), Vec::<String>::new(), "hooks ran during create");
    c.start().success();
    assert_eq!(order(&dir), ["startContainer", "poststart"]);
    let ps = read_json(&dir.join("poststart.json"));
    assert_eq!(ps["status"], "running", "poststart: {ps}");
    assert_eq!(ps["pid"].as_i64(), Some(c.pid() as i64), "poststart: {ps}");
}

#[test]
fn poststop_runs_on_delete_force_of_a_running_container() {
    let mut c = Container::new(&["sleep", "100"]);
    let dir = c.rootfs().join("tmp/hooks");
    fs::create_dir_all(&dir).unwrap();
    let d = dir.to_string_lossy().into_owned();
    c.configure(|cfg| {
        cfg["hooks"] = json!({"poststop": [recording_hook("/bin/sh", &d, "poststop")]})
    });
    c.start_ok();
    c.delete_force().success();
    assert_eq!(order(&dir), ["poststop"]);
}

#[test]
fn failing_prestart_hook_fails_create_and_leaves_nothing() {
    let c = Container::new(&["sh", "-c", "touch /tmp/ran; sleep 100"]).with(|cfg| {
        cfg["hooks"] = json!({"prestart": [{"path": "/bin/false", "args": ["false"]}]});
    });
    c.create().failure().one_error_line();
    c.assert_nothing_left();
    assert!(!c.rootfs().join("tmp/ran").exists());
}

#[test]
fn failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    let c = Container::new(&["sleep", "100"]).with(|cfg| {
        cfg["hooks"] =
            json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]});
    });
    c.create().failure().one_error_line();
    c.assert_nothing_left();
}

#[test]
fn hook_timeout_is_enforced() {
    let c = Container::new(&["sleep", "100"]).with(|cfg| {
        cfg["hooks"] = json!({"prestart": [
            {"path": "/bin/sleep", "args": ["sleep", "15"], "timeout": 1}
        ]});
    });
    let started = Instant::now();
    c.create().failure().one_error_line();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a 1 s hook timeout took {:?}",
        started.elapsed()
    );
    c.assert_nothing_left();
}

#[test]
fn missing_hook_binary_fails_create() {
    let c = Container::new(&["sleep", "100"]).with(|cfg| {
        cfg["hooks"] = json!({"createRuntime": [{"path": "/no/such/hook"}]});
    });
    c.create().failure().one_error_line();
    c.assert_nothing_left();
}
