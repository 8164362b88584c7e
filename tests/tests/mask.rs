//! maskedPaths (a file reads empty, a directory lists empty, the real content is untouched)
//! and readonlyPaths (writes fail with EROFS).

use std::fs;

use runtime_tests::Container;
use serde_json::Value;

fn push(cfg: &mut Value, key: &str, path: &str) {
    cfg["linux"][key]
        .as_array_mut()
        .expect("path list")
        .push(path.into());
}

#[test]
fn masked_file_reads_empty() {
    let c = Container::new(&[
        "sh",
        "-c",
        "wc -c < /etc/secret; echo overwrite > /etc/secret; wc -c < /etc/secret",
    ])
    .with(|cfg| push(cfg, "maskedPaths", "/etc/secret"));
    fs::write(c.rootfs().join("etc/secret"), "top secret\n").unwrap();
    let out = c.run_fg().success();
    let counts: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(counts, ["0", "0"], "a masked file must read empty\n{out}");
    assert_eq!(
        fs::read_to_string(c.rootfs().join("etc/secret")).unwrap(),
        "top secret\n",
        "a write to a masked file must not reach the real file"
    );
}

#[test]
fn masked_directory_lists_empty_and_refuses_writes() {
    let c = Container::new(&[
        "sh",
        "-c",
        "ls -A /etc/secret-dir | wc -l; touch /etc/secret-dir/new && echo created",
    ])
    .with(|cfg| push(cfg, "maskedPaths", "/etc/secret-dir"));
    fs::create_dir(c.rootfs().join("etc/secret-dir")).unwrap();
    fs::write(c.rootfs().join("etc/secret-dir/key"), "k").unwrap();
    let out = c.run_fg();
    assert_eq!(
        out.stdout.lines().next(),
        Some("0"),
        "masked dir not empty\n{out}"
    );
    assert!(
        !out.stdout.contains("created"),
        "write into a masked dir succeeded\n{out}"
    );
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(!c.rootfs().join("etc/secret-dir/new").exists());
}

#[test]
fn masked_path_that_does_not_exist_is_ignored() {
    let c = Container::new(&["sh", "-c", "test -e /no/such/path || echo absent"])
        .with(|cfg| push(cfg, "maskedPaths", "/no/such/path"));
    assert_eq!(c.run_fg().success().out(), "absent");
}

#[test]
fn readonly_path_refuses_writes_with_erofs() {
    let c = Container::new(&[
        "sh",
        "-c",
        "cat /etc/ro-dir/f; touch /etc/ro-dir/new || echo refused; \
         echo 1 > /proc/sys/kernel/ns_last_pid || echo proc-sys-refused",
    ])
    .with(|cfg| push(cfg, "readonlyPaths", "/etc/ro-dir"));
    fs::create_dir(c.rootfs().join("etc/ro-dir")).unwrap();
    fs::write(c.rootfs().join("etc/ro-dir/f"), "readable\n").unwrap();
    let out = c.run_fg().success();
    assert!(out.stdout.starts_with("readable\n"), "{out}");
    assert!(out.stdout.contains("\nrefused\n"), "{out}");
    assert!(out.stdout.contains("proc-sys-refused"), "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(!c.rootfs().join("etc/ro-dir/new").exists());
}

#[test]
fn default_masked_proc_entries_are_empty() {
    let c = Container::new(&[
        "sh",
        "-c",
        "wc -c < /proc/keys; wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l",
    ]);
    let out = c.run_fg().success();
    let counts: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(counts, ["0", "0", "0"], "{out}");
}
