//! `list` (table, `-q`, `--format json`) and `ps` (`--format json` array of host pids, the
//! table form with a PID column, extra ps arguments).

use std::time::Duration;

use runtime_tests::host::{is_rfc3339, wait_for};
use runtime_tests::{Container, Runtime};
use serde_json::Value;

#[test]
fn list_table_shows_the_container() {
    let c = Container::new(&["sleep", "100"]);
    c.start_ok();
    let out = c.rt.run(&["list"]).success();
    let mut lines = out.stdout.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
        "{out}"
    );
    let row: Vec<&str> = lines
        .find(|l| l.split_whitespace().next() == Some(c.id.as_str()))
        .unwrap_or_else(|| panic!("no row for {}\n{out}", c.id))
        .split_whitespace()
        .collect();
    assert_eq!(row[1], c.pid().to_string(), "{out}");
    assert_eq!(row[2], "running", "{out}");
    assert_eq!(row[3], c.bundle_str(), "{out}");
    assert!(is_rfc3339(row[4]), "created column: {out}");
}

#[test]
fn list_quiet_prints_ids_only() {
    let a = Container::new(&["sleep", "100"]);
    a.create().success();
    let b = Container::in_runtime(a.rt.clone(), &["sleep", "100"]);
    b.create().success();
    let out = a.rt.run(&["list", "-q"]).success();
    let mut ids: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    ids.sort();
    let mut want = vec![a.id.as_str(), b.id.as_str()];
    want.sort();
    assert_eq!(ids, want, "{out}");
}

#[test]
fn list_json_is_an_array_with_the_fields() {
    let c = Container::new(&["sleep", "100"]);
    c.create().success();
    for args in [
        &["list", "--format", "json"][..],
        &["list", "--format=json"][..],
    ] {
        let out = c.rt.run(args).success();
        let list: Value = serde_json::from_str(&out.stdout).expect("list output is JSON");
        let items = list
            .as_array()
            .unwrap_or_else(|| panic!("not an array\n{out}"));
        assert_eq!(items.len(), 1, "{out}");
        let item = &items[0];
        assert_eq!(item["id"], c.id.as_str());
        assert_eq!(item["pid"].as_i64(), Some(c.pid() as i64));
        assert_eq!(item["status"], "created");
        assert_eq!(item["bundle"], c.bundle_str().as_str());
        assert!(
            is_rfc3339(item["created"].as_str().unwrap_or_default()),
            "{item}"
        );
        assert!(item["owner"].is_string(), "{item}");
    }
}

#[test]
fn list_json_of_an_empty_root_has_no_containers() {
    let rt = Runtime::new();
    let out = rt.run(&["list", "--format", "json"]).success();
    let list: Value = serde_json::from_str(&out.stdout).expect("list output is JSON");
    // runc prints `null` here; an empty array is equally valid for JSON clients.
    assert!(
        list.is_null() || list.as_array().is_some_and(|a| a.is_empty()),
        "{out}"
    );
}

#[test]
fn ps_json_lists_host_pids_including_init() {
    let c = Container::new(&["sh", "-c", "sleep 100 & sleep 100"]);
    c.start_ok();
    let init = c.pid() as i64;
    let mut pids: Vec<i64> = Vec::new();
    wait_for("two processes in ps", Duration::from_secs(10), || {
        let out = c.rt.run(&["ps", "--format", "json", &c.id]).success();
        assert!(
            out.stdout.ends_with('\n'),
            "ps json must end with a newline\n{out}"
        );
        let v: Value = serde_json::from_str(&out.stdout).expect("ps output is JSON");
        pids = v
            .as_array()
            .unwrap_or_else(|| panic!("not an array\n{out}"))
            .iter()
            .map(|p| p.as_i64().unwrap_or_else(|| panic!("not a pid: {p}")))
            .collect();
        pids.len() == 2
    });
    assert!(pids.contains(&init), "init {init} not in {pids:?}");
    for p in &pids {
        assert!(
            std::path::Path::new(&format!("/proc/{p}")).exists(),
            "{p} is not a host pid"
        );
    }
}

#[test]
fn ps_table_has_a_pid_column_with_init() {
    let c = Container::new(&["sleep", "100"]);
    c.start_ok();
    let out = c.rt.run(&["ps", &c.id]).success();
    let mut lines = out.stdout.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let col = header
        .iter()
        .position(|h| *h == "PID")
        .unwrap_or_else(|| panic!("no PID column\n{out}"));
    let pids: Vec<String> = lines
        .filter_map(|l| l.split_whitespace().nth(col).map(str::to_owned))
        .collect();
    assert_eq!(pids, [c.pid().to_string()], "{out}");
}

#[test]
fn ps_passes_extra_arguments_to_ps() {
    let c = Container::new(&["sleep", "100"]);
    c.start_ok();
    let out =
        c.rt.run(&["ps", "--format", "table", &c.id, "-o", "pid,comm"])
            .success();
    let lines: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["PID", "COMMAND"], "{out}");
    assert_eq!(lines[1], [c.pid().to_string().as_str(), "sleep"], "{out}");
    assert_eq!(lines.len(), 2, "{out}");
}
