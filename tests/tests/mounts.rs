//! Mounts from config.json: bind (rw, ro, file, rbind vs bind), tmpfs with size/mode,
//! nosuid/nodev/noexec, a destination that is a symlink pointing outside the rootfs (must land
//! inside), and propagation (container mounts never reach the host).

use std::fs;
use std::os::unix::fs::symlink;

use runtime_tests::host::{mountinfo_mentions, HostTmpfs};
use runtime_tests::Container;
use serde_json::{json, Value};
use tempfile::TempDir;

fn host_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("rt-hostdir-")
        .tempdir()
        .expect("host dir")
}

fn add_mount(cfg: &mut Value, mount: Value) {
    cfg["mounts"]
        .as_array_mut()
        .expect("mounts array")
        .push(mount);
}

#[test]
fn bind_mounts_rw_and_ro() {
    let rw = host_dir();
    let ro = host_dir();
    fs::write(ro.path().join("data"), "hello").unwrap();
    let c = Container::new(&[
        "sh",
        "-c",
        "cat /mnt/ro/data; echo; touch /mnt/ro/new || echo ro-refused; echo written > /mnt/rw/out",
    ])
    .with(|cfg| {
        add_mount(
            cfg,
            json!({"destination": "/mnt/rw", "type": "bind",
            "source": rw.path(), "options": ["rbind", "rw"]}),
        );
        add_mount(
            cfg,
            json!({"destination": "/mnt/ro", "type": "bind",
            "source": ro.path(), "options": ["rbind", "ro"]}),
        );
    });
    let out = c.run_fg().success();
    assert!(out.stdout.starts_with("hello\n"), "{out}");
    assert!(out.stdout.contains("ro-refused"), "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(!ro.path().join("new").exists());
    assert_eq!(
        fs::read_to_string(rw.path().join("out")).unwrap(),
        "written\n"
    );
    c.assert_nothing_left();
}

#[test]
fn bind_mount_of_a_file() {
    let dir = host_dir();
    let file = dir.path().join("hosts");
    fs::write(&file, "127.0.0.1 test-host\n").unwrap();
    let c = Container::new(&["cat", "/etc/hosts"]).with(|cfg| {
        add_mount(
            cfg,
            json!({"destination": "/etc/hosts", "type": "bind",
            "source": file, "options": ["bind", "ro"]}),
        );
    });
    let out = c.run_fg().success();
    assert_eq!(out.stdout, "127.0.0.1 test-host\n", "{out}");
}

#[test]
fn tmpfs_with_size_mode_and_flags() {
    let c = Container::new(&[
        "sh",
        "-c",
        "stat -c %a /mnt/t; grep ' /mnt/t ' /proc/self/mountinfo",
    ])
    .with(|cfg| {
        add_mount(
            cfg,
            json!({"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs",
                "options": ["size=1m", "mode=700", "nosuid", "nodev", "noexec"]}),
        );
    });
    let out = c.run_fg().success();
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("700"), "{out}");
    let info = lines
        .next()
        .unwrap_or_else(|| panic!("/mnt/t not mounted\n{out}"));
    let fields: Vec<&str> = info.split_whitespace().collect();
    let mount_opts: Vec<&str> = fields[5].split(',').collect();
    for flag in ["nosuid", "nodev", "noexec"] {
        assert!(mount_opts.contains(&flag), "{flag} missing: {info}");
    }
    assert!(info.contains(" tmpfs "), "{info}");
    assert!(info.contains("size=1024k"), "{info}");
}

#[test]
fn noexec_tmpfs_refuses_execution() {
    let c = Container::new(&[
        "sh",
        "-c",
        "cp /bin/busybox /mnt/ne/echo && cp /bin/busybox /mnt/ex/echo && \
         /mnt/ex/echo exec-ok; /mnt/ne/echo noexec-ran; echo rc=$?",
    ])
    .with(|cfg| {
        add_mount(
            cfg,
            json!({"destination": "/mnt/ne", "type": "tmpfs", "source": "tmpfs",
            "options": ["noexec", "size=8m"]}),
        );
        add_mount(
            cfg,
            json!({"destination": "/mnt/ex", "type": "tmpfs", "source": "tmpfs",
            "options": ["exec", "size=8m"]}),
        );
    });
    let out = c.run_fg().success();
    assert!(out.stdout.contains("exec-ok"), "{out}");
    assert!(!out.stdout.contains("noexec-ran"), "{out}");
    assert!(out.stdout.contains("rc=126"), "{out}");
    assert!(out.stderr.contains("Permission denied"), "{out}");
}

#[test]
fn rbind_includes_submounts_and_bind_does_not() {
    let dir = host_dir();
    let sub = HostTmpfs::mount(&dir.path().join("sub"));
    fs::write(dir.path().join("sub/inner"), "inner").unwrap();
    let c = Container::new(&[
        "sh",
        "-c",
        "cat /mnt/r/sub/inner; echo; test -e /mnt/b/sub/inner && echo bind-has-inner; echo done",
    ])
    .with(|cfg| {
        add_mount(
            cfg,
            json!({"destination": "/mnt/r", "type": "bind",
            "source": dir.path(), "options": ["rbind"]}),
        );
        add_mount(
            cfg,
            json!({"destination": "/mnt/b", "type": "bind",
            "source": dir.path(), "options": ["bind"]}),
        );
    });
    let out = c.run_fg().success();
    assert_eq!(out.stdout, "inner\ndone\n", "{out}");
    drop(c);
    drop(sub);
}

#[test]
fn symlink_destination_pointing_outside_lands_inside_rootfs() {
    let victim = host_dir();
    let source = host_dir();
    let c = Container::new(&["sh", "-c", "echo inside > /evil/marker"]);
    // /evil -> /../../../../../<victim>: resolved on the host it would be the victim dir.
    let target = format!("/../../../../..{}", victim.path().display());
    symlink(&target, c.rootfs().join("evil")).unwrap();
    let c = c.with(|cfg| {
        add_mount(
            cfg,
            json!({"destination": "/evil", "type": "bind",
            "source": source.path(), "options": ["rbind", "rw"]}),
        );
    });
    c.create().success();
    let victim_str = victim.path().to_string_lossy().into_owned();
    assert!(
        mountinfo_mentions(&victim_str).is_empty(),
        "something was mounted on the host dir the symlink points to"
    );
    c.start().success();
    c.wait_status("stopped");
    assert_eq!(
        fs::read_to_string(source.path().join("marker")).unwrap_or_default(),
        "inside\n",
        "the bind mount did not land where the container resolves /evil"
    );
    assert_eq!(
        fs::read_dir(victim.path()).unwrap().count(),
        0,
        "the host directory outside the rootfs was written to"
    );
    c.delete().success();
    c.assert_nothing_left();
}

#[test]
fn container_mounts_do_not_propagate_to_the_host() {
    let c = Container::new(&["sleep", "100"]).with(|cfg| {
        add_mount(
            cfg,
            json!({"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs",
            "options": ["size=1m"]}),
        );
    });
    c.start_ok();
    let bundle = c.bundle_str();
    let leaked = mountinfo_mentions(&bundle);
    assert!(
        leaked.is_empty(),
        "container mounts visible on the host:\n{}",
        leaked.join("\n")
    );
    // Inside: no mount is shared with the host's peer groups.
    let out = c.exec(&["cat", "/proc/self/mountinfo"]).success();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.split(' ').nth(4) == Some("/mnt/t")),
        "the container's own tmpfs is missing from its mountinfo\n{out}"
    );
    for line in out.stdout.lines() {
        assert!(
            !line.contains(" shared:"),
            "shared mount in the container: {line}"
        );
    }
}

#[test]
fn rprivate_rootfs_propagation() {
    let c = Container::new(&["cat", "/proc/self/mountinfo"])
        .with(|cfg| cfg["linux"]["rootfsPropagation"] = "rprivate".into());
    let out = c.run_fg().success();
    let root = out
        .stdout
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .unwrap_or_else(|| panic!("no / mount\n{out}"));
    assert!(
        !root.contains("shared:") && !root.contains("master:"),
        "root mount not private: {root}"
    );
}

#[test]
fn default_mounts_are_present() {
    let c = Container::new(&["cat", "/proc/self/mountinfo"]);
    let out = c.run_fg().success();
    let points: Vec<(&str, &str)> = out
        .stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some((f[4], *f.get(sep + 1)?))
        })
        .collect();
    for (dest, fstype) in [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
    ] {
        assert!(
            points.contains(&(dest, fstype)),
            "{dest} ({fstype}) not mounted:\n{}",
            out.stdout
        );
    }
    assert!(
        points.iter().any(|(d, _)| d.starts_with("/sys/fs/cgroup")),
        "no cgroup mount:\n{}",
        out.stdout
    );
}
