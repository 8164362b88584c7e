//! Security settings: read-only rootfs, noNewPrivileges, capability sets, seccomp (errno
//! rules with and without argument conditions), no leaked runtime descriptors, and a working
//! directory that cannot escape the rootfs (CVE-2024-21626).

use std::fs;

use runtime_tests::Container;
use serde_json::{json, Value};

/// `Cap*` lines of /proc/self/status as (name, hex) pairs.
fn caps(status: &str) -> Vec<(String, String)> {
    status
        .lines()
        .filter(|l| l.starts_with("Cap"))
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

fn cap(caps: &[(String, String)], name: &str) -> String {
    caps.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("{name} missing from /proc/self/status"))
}

#[test]
fn readonly_rootfs_refuses_writes_but_tmpfs_works() {
    let c = Container::new(&[
        "sh",
        "-c",
        "touch /newfile || echo root-refused; touch /tmp/ok && echo tmp-ok; \
         touch /dev/shm/ok && echo shm-ok",
    ])
    .with(|cfg| {
        cfg["root"]["readonly"] = true.into();
        cfg["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]
        }));
    });
    let out = c.run_fg().success();
    assert_eq!(out.stdout, "root-refused\ntmp-ok\nshm-ok\n", "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(!c.rootfs().join("newfile").exists());
}

#[test]
fn no_new_privileges_is_set() {
    let c = Container::new(&["grep", "NoNewPrivs", "/proc/self/status"]);
    let out = c.run_fg().success();
    assert_eq!(out.out().split_whitespace().last(), Some("1"), "{out}");

    let c = Container::new(&["grep", "NoNewPrivs", "/proc/self/status"])
        .with(|cfg| cfg["process"]["noNewPrivileges"] = false.into());
    let out = c.run_fg().success();
    assert_eq!(out.out().split_whitespace().last(), Some("0"), "{out}");
}

#[test]
fn capabilities_match_the_config() {
    let c = Container::new(&["cat", "/proc/self/status"]).with(|cfg| {
        cfg["process"]["capabilities"] = json!({
            "bounding": ["CAP_CHOWN"],
            "effective": ["CAP_CHOWN"],
            "permitted": ["CAP_CHOWN"]
        });
    });
    let out = c.run_fg().success();
    let caps = caps(&out.stdout);
    for name in ["CapBnd", "CapEff", "CapPrm"] {
        assert_eq!(cap(&caps, name), "0000000000000001", "{name}\n{out}");
    }
    assert_eq!(cap(&caps, "CapAmb"), "0000000000000000", "{out}");
    assert_eq!(cap(&caps, "CapInh"), "0000000000000000", "{out}");
}

#[test]
fn default_capabilities_of_runc_spec() {
    // CAP_AUDIT_WRITE (29), CAP_KILL (5), CAP_NET_BIND_SERVICE (10). The ambient set stays
    // empty: the kernel only raises ambient caps that are also inheritable, and the default
    // config lists none as inheritable.
    let c = Container::new(&["cat", "/proc/self/status"]);
    let out = c.run_fg().success();
    let caps = caps(&out.stdout);
    assert_eq!(cap(&caps, "CapAmb"), "0000000000000000", "{out}");
    for name in ["CapBnd", "CapEff", "CapPrm"] {
        assert_eq!(cap(&caps, name), "0000000020000420", "{name}\n{out}");
    }
}

#[test]
fn ambient_capabilities_for_a_non_root_user() {
    // CAP_KILL (5) inheritable + ambient: kept by a uid 1000 process across execve.
    let c = Container::new(&["cat", "/proc/self/status"]).with(|cfg| {
        cfg["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        cfg["process"]["capabilities"] = json!({
            "bounding": ["CAP_KILL"],
            "effective": ["CAP_KILL"],
            "permitted": ["CAP_KILL"],
            "inheritable": ["CAP_KILL"],
            "ambient": ["CAP_KILL"]
        });
    });
    let out = c.run_fg().success();
    let caps = caps(&out.stdout);
    for name in ["CapAmb", "CapEff", "CapPrm", "CapInh", "CapBnd"] {
        assert_eq!(cap(&caps, name), "0000000000000020", "{name}\n{out}");
    }
}

#[test]
fn dropped_capability_is_enforced() {
    // Without CAP_CHOWN, root cannot chown a file it does not own to someone else.
    let c = Container::new(&[
        "sh",
        "-c",
        "touch /tmp/f && chown 1000 /tmp/f && echo chowned",
    ]);
    let out = c.run_fg();
    assert!(!out.stdout.contains("chowned"), "{out}");
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
    let c = Container::new(&[
        "sh",
        "-c",
        "touch /tmp/f && chown 1000 /tmp/f && echo chowned",
    ])
    .with(|cfg| {
        for set in ["bounding", "effective", "permitted"] {
            cfg["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push("CAP_CHOWN".into());
        }
    });
    let out = c.run_fg().success();
    assert_eq!(out.out(), "chowned", "{out}");
}

fn seccomp(cfg: &mut Value, rules: Value) {
    cfg["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules});
}

#[test]
fn seccomp_errno_rule_blocks_mkdir() {
    let c = Container::new(&[
        "sh",
        "-c",
        "mkdir /tmp/x || echo refused; touch /tmp/y && echo touched",
    ])
    .with(|cfg| {
        seccomp(
            cfg,
            json!([{
                "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1
            }]),
        )
    });
    let out = c.run_fg().success();
    assert_eq!(out.stdout, "refused\ntouched\n", "{out}");
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
    assert!(!c.rootfs().join("tmp/x").exists());
}

#[test]
fn seccomp_rule_with_an_argument_condition() {
    // kill(pid, SIGUSR1) is refused; kill(pid, 0) is not.
    let c = Container::new(&[
        "sh",
        "-c",
        "kill -0 $$ && echo zero-ok; kill -USR1 $$ || echo usr1-refused",
    ])
    .with(|cfg| {
        seccomp(
            cfg,
            json!([{
                "names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]
            }]),
        )
    });
    let out = c.run_fg().success();
    assert_eq!(out.stdout, "zero-ok\nusr1-refused\n", "{out}");
}

#[test]
fn only_stdio_descriptors_reach_the_container() {
    // `ls` opens the directory itself as the lowest free fd: 3 when nothing leaked.
    let c = Container::new(&["ls", "-1", "/proc/self/fd"]);
    let out = c.run_fg().success();
    let fds: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "leaked descriptors\n{out}");

    let c = Container::new(&["sleep", "100"]);
    c.start_ok();
    let out = c.exec(&["ls", "-1", "/proc/self/fd"]).success();
    let fds: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        fds,
        ["0", "1", "2", "3"],
        "leaked descriptors in exec\n{out}"
    );
}

#[test]
fn descriptors_of_the_caller_are_not_passed_without_preserve_fds() {
    // The runtime inherits fds 3 and 4 from its caller; without --preserve-fds the container
    // must not get them.
    let c = Container::new(&["ls", "-1", "/proc/self/fd"]);
    let f3: std::os::fd::OwnedFd = fs::File::open("/etc/hostname").unwrap().into();
    let f4: std::os::fd::OwnedFd = fs::File::open("/etc/hostname").unwrap().into();
    let out =
        c.rt.call(&["run", "--bundle", &c.bundle_str(), &c.id])
            .pass_fd(3, f3)
            .pass_fd(4, f4)
            .run()
            .success();
    let fds: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        fds,
        ["0", "1", "2", "3"],
        "caller descriptors leaked\n{out}"
    );
}

#[test]
fn working_directory_is_inside_the_rootfs() {
    let c = Container::new(&["sh", "-c", "readlink /proc/self/cwd; readlink /proc/1/cwd"]);
    let out = c.run_fg().success();
    assert_eq!(out.stdout, "/\n/\n", "{out}");
}

#[test]
fn cwd_through_proc_self_fd_cannot_escape() {
    // CVE-2024-21626: a cwd of /proc/self/fd/N pointing at a leaked host directory let the
    // process walk up to the host root. Either the runtime refuses, or the cwd is inside.
    let probe = "cd ../../../../../../..; test -e .rt-marker && echo contained";
    let control =
        Container::new(&["sh", "-c", probe]).with(|cfg| cfg["process"]["cwd"] = "/tmp".into());
    fs::write(control.rootfs().join(".rt-marker"), "").unwrap();
    assert_eq!(
        control.run_fg().success().out(),
        "contained",
        "the probe itself is broken"
    );
    for n in 3..=9 {
        let c = Container::new(&["sh", "-c", probe])
            .with(|cfg| cfg["process"]["cwd"] = format!("/proc/self/fd/{n}").into());
        fs::write(c.rootfs().join(".rt-marker"), "").unwrap();
        let out = c.run_fg();
        if out.code == Some(0) {
            assert_eq!(
                out.out(),
                "contained",
                "cwd fd {n} escaped the rootfs\n{out}"
            );
        } else {
            assert!(out.code.is_some(), "{out}");
        }
        c.assert_nothing_left();
    }
}

/// CVE-2019-5736: the runtime process that becomes the container's init (and any runtime
/// process near a container) must not be the writable host binary. While a created
/// container waits for `start`, its init still runs the runtime's code: writing through
/// /proc/<pid>/exe must fail because the file is read-only (EROFS, or EPERM for a sealed
/// memfd), not merely busy (ETXTBSY, which a container could wait out).
#[test]
fn the_init_runs_from_a_read_only_copy_of_the_runtime() {
    if !runtime_tests::ours_only() {
        println!("NOT TESTED against runc: runc's init is a re-exec'd copy with its own checks");
        return;
    }
    let c = Container::new(&["true"]);
    c.create().success();
    let pid = c.pid();
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/exe"))
        .expect_err("the init's executable must not be writable");
    let errno = err.raw_os_error().unwrap_or(0);
    assert!(
        errno == libc::EROFS || errno == libc::EPERM,
        "expected EROFS or EPERM, got {err}"
    );
}
