//! The command line itself: `--version`, `--help` of every subcommand, the global `--log` /
//! `--log-format json` contract engines parse, `spec` and `features`.

use std::fs;

use runtime_tests::host::is_rfc3339;
use runtime_tests::{runtime_name, Runtime};
use serde_json::Value;

const SUBCOMMANDS: [&str; 16] = [
    "checkpoint",
    "create",
    "delete",
    "events",
    "exec",
    "features",
    "kill",
    "list",
    "pause",
    "ps",
    "restore",
    "resume",
    "run",
    "spec",
    "start",
    "state",
];

#[test]
fn version_first_line_names_the_binary() {
    let rt = Runtime::new();
    for flag in ["--version", "-v"] {
        let out = rt.bare(&[flag]).run().success();
        let first = out.stdout.lines().next().unwrap_or_default();
        let prefix = format!("{} version ", runtime_name());
        let version = first
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("first line must start with {prefix:?}\n{out}"));
        assert!(!version.trim().is_empty(), "{out}");
        assert!(
            out.stdout.lines().any(|l| l.starts_with("spec: ")),
            "a `spec: ` line is expected\n{out}"
        );
    }
}

#[test]
fn help_of_every_subcommand_exits_zero() {
    let rt = Runtime::new();
    rt.bare(&["--help"]).run().success();
    rt.bare(&["no-such-command"]).run().failure();
    for cmd in SUBCOMMANDS {
        let out = rt.bare(&[cmd, "--help"]).run().success();
        assert!(
            !out.stdout.trim().is_empty(),
            "`{cmd} --help` printed nothing\n{out}"
        );
    }
}

/// Parses a `--log-format json` file: every line must be one JSON object.
fn log_lines(path: &std::path::Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l:?}"))
        })
        .collect()
}

#[test]
fn log_json_on_failure_writes_one_error_line() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.json");
    let log = log.to_string_lossy();
    // The shim's spelling, then conmon's (`--log-format=json`, after --log or before it).
    let spellings: [&[&str]; 3] = [
        &["--log", &log, "--log-format", "json"],
        &["--log", &log, "--log-format=json"],
        &["--log-format=json", "--log", &log],
    ];
    for globals in spellings {
        let _ = fs::remove_file(&*log);
        let mut args = globals.to_vec();
        args.extend(["state", "no-such-container"]);
        let out = rt.run(&args).code_is(1);
        let lines = log_lines(std::path::Path::new(&*log));
        assert_eq!(
            lines.len(),
            1,
            "exactly one log line expected: {lines:?}\n{out}"
        );
        let line = &lines[0];
        assert_eq!(line["level"], "error", "{line}");
        let msg = line["msg"].as_str().unwrap_or_default();
        assert!(msg.contains("container does not exist"), "{line}");
        assert!(
            is_rfc3339(line["time"].as_str().unwrap_or_default()),
            "{line}"
        );
        // The same message, as plain text, on stderr.
        assert_eq!(out.stderr.trim(), msg, "{out}");
    }
}

#[test]
fn log_json_with_the_shim_argument_order() {
    // RT --root R --log F --log-format json kill ID 9
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.json");
    let out = rt
        .run(&[
            "--log",
            &log.to_string_lossy(),
            "--log-format",
            "json",
            "kill",
            "no-such-container",
            "9",
        ])
        .code_is(1);
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 1, "{lines:?}\n{out}");
    assert!(
        lines[0]["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("container does not exist"),
        "{lines:?}"
    );
}

#[test]
fn log_json_of_a_failed_create_is_one_object() {
    // podman unmarshals the whole log file as a single JSON object.
    let c = runtime_tests::Container::new(&["/nonexistent"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("oci-log");
    c.rt.run(&[
        "--log-format=json",
        "--log",
        &log.to_string_lossy(),
        "create",
        "--bundle",
        &c.bundle_str(),
        &c.id,
    ])
    .failure()
    .stderr_has("no such file or directory");
    let text = fs::read_to_string(&log).unwrap_or_default();
    let whole: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("log file is not one JSON object ({e}): {text:?}"));
    assert_eq!(whole["level"], "error");
    assert!(
        whole["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("no such file or directory"),
        "{whole}"
    );
    c.assert_nothing_left();
}

#[test]
fn log_json_stays_empty_on_success() {
    let c = runtime_tests::Container::new(&["sleep", "100"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.json");
    let log_str = log.to_string_lossy().into_owned();
    let bundle = c.bundle_str();
    let with_log = |args: &[&str]| -> Vec<String> {
        ["--log", log_str.as_str(), "--log-format", "json"]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect()
    };
    c.rt.run(&with_log(&["create", "--bundle", &bundle, &c.id]))
        .success();
    c.rt.run(&with_log(&["start", &c.id])).success();
    let out = c.rt.run(&with_log(&["state", &c.id])).success();
    let state: Value = serde_json::from_str(&out.stdout).expect("state is JSON");
    assert_eq!(state["status"], "running");
    c.rt.run(&with_log(&["delete", "--force", &c.id])).success();
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(text.is_empty(), "log written on success: {text:?}");
}

#[test]
fn spec_writes_a_default_config() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    rt.bare(&["spec"]).current_dir(dir.path()).run().success();
    let path = dir.path().join("config.json");
    let text = fs::read_to_string(&path).expect("spec writes config.json in the cwd");
    let cfg: Value = serde_json::from_str(&text).expect("config.json is JSON");
    assert!(
        cfg["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "{cfg}"
    );
    assert_eq!(cfg["process"]["args"], serde_json::json!(["sh"]));
    assert_eq!(cfg["root"]["path"], "rootfs");
    let namespaces: Vec<&str> = cfg["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    for ns in ["pid", "network", "ipc", "uts", "mount"] {
        assert!(namespaces.contains(&ns), "{ns} missing: {namespaces:?}");
    }

    // A second spec refuses to overwrite.
    fs::write(&path, "keep me").unwrap();
    rt.bare(&["spec"])
        .current_dir(dir.path())
        .run()
        .failure()
        .one_error_line();
    assert_eq!(fs::read_to_string(&path).unwrap(), "keep me");
}

#[test]
fn spec_with_bundle_flag() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    rt.bare(&["spec", "--bundle", &dir.path().to_string_lossy()])
        .run()
        .success();
    let cfg: Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("config.json")).unwrap())
            .expect("config.json is JSON");
    assert_eq!(cfg["process"]["args"], serde_json::json!(["sh"]));
}

#[test]
fn spec_rootless_adds_a_user_namespace() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    rt.bare(&["spec", "--rootless"])
        .current_dir(dir.path())
        .run()
        .success();
    let cfg: Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("config.json")).unwrap())
            .expect("config.json is JSON");
    let namespaces: Vec<&str> = cfg["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    assert!(namespaces.contains(&"user"), "{namespaces:?}");
    for key in ["uidMappings", "gidMappings"] {
        let maps = cfg["linux"][key].as_array().expect(key);
        assert!(!maps.is_empty(), "{key} empty");
        // Mapped to the caller's ids (root here).
        assert_eq!(maps[0]["hostID"], 0, "{key}: {maps:?}");
        assert_eq!(maps[0]["containerID"], 0, "{key}: {maps:?}");
    }
}

#[test]
fn features_describes_the_runtime() {
    let rt = Runtime::new();
    let out = rt.bare(&["features"]).run().success();
    let f: Value = serde_json::from_str(&out.stdout).expect("features output is JSON");
    for key in ["ociVersionMin", "ociVersionMax"] {
        assert!(
            f[key].as_str().is_some_and(|v| v.starts_with("1.")),
            "{key}: {f}"
        );
    }
    let hooks: Vec<&str> = f["hooks"]
        .as_array()
        .expect("hooks")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for hook in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(hooks.contains(&hook), "{hook} missing: {hooks:?}");
    }
    let opts: Vec<&str> = f["mountOptions"]
        .as_array()
        .expect("mountOptions")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for opt in [
        "bind", "rbind", "ro", "nosuid", "nodev", "noexec", "rprivate",
    ] {
        assert!(opts.contains(&opt), "{opt} missing: {opts:?}");
    }
    let namespaces: Vec<&str> = f["linux"]["namespaces"]
        .as_array()
        .expect("linux.namespaces")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for ns in ["pid", "network", "ipc", "uts", "mount", "user", "cgroup"] {
        assert!(namespaces.contains(&ns), "{ns} missing: {namespaces:?}");
    }
}
