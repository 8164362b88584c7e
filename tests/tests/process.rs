//! The process and namespace settings of config.json, checked from inside: cwd, env, user
//! with additionalGids, umask, rlimits, hostname, oomScoreAdj, sysctl, `--preserve-fds`,
//! linux.devices, the default /dev nodes, and a user namespace with uid/gid mappings.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{lchown, MetadataExt};
use std::path::Path;

use runtime_tests::Container;
use serde_json::json;

#[test]
fn cwd_from_config() {
    let c = Container::new(&["pwd"]).with(|cfg| cfg["process"]["cwd"] = "/tmp".into());
    assert_eq!(c.run_fg().success().out(), "/tmp");
}

#[test]
fn cwd_that_does_not_exist_is_created() {
    let c = Container::new(&["pwd"]).with(|cfg| cfg["process"]["cwd"] = "/work/dir".into());
    assert_eq!(c.run_fg().success().out(), "/work/dir");
}

#[test]
fn env_from_config_is_exact() {
    let c = Container::new(&["env"]).with(|cfg| {
        cfg["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz", "EMPTY="]);
    });
    let out = c.run_fg().success();
    let mut vars: Vec<&str> = out.stdout.lines().collect();
    vars.sort();
    // HOME is added when the config does not set it (runc and the spec's usual behaviour).
    vars.retain(|v| !v.starts_with("HOME="));
    assert_eq!(vars, ["EMPTY=", "FOO=bar baz", "PATH=/bin"], "{out}");
}

#[test]
fn home_is_set_from_passwd() {
    let c = Container::new(&["sh", "-c", "echo $HOME"])
        .with(|cfg| cfg["process"]["user"] = json!({"uid": 1000, "gid": 1000}));
    assert_eq!(c.run_fg().success().out(), "/home/user");
}

#[test]
fn user_group_and_additional_gids() {
    let c = Container::new(&["sh", "-c", "id -u; id -g; id -G"]).with(|cfg| {
        cfg["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 100]});
    });
    let out = c.run_fg().success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(&lines[..2], ["1000", "1000"], "{out}");
    let mut groups: Vec<&str> = lines[2].split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, ["10", "100", "1000"], "{out}");
}

#[test]
fn non_root_user_cannot_read_root_only_files() {
    let c = Container::new(&["sh", "-c", "cat /root/secret || echo denied"])
        .with(|cfg| cfg["process"]["user"] = json!({"uid": 1000, "gid": 1000}));
    let path = c.rootfs().join("root/secret");
    fs::write(&path, "s").unwrap();
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = c.run_fg().success();
    assert_eq!(out.out(), "denied", "{out}");
}

#[test]
fn umask_from_config() {
    let c = Container::new(&["sh", "-c", "umask"])
        .with(|cfg| cfg["process"]["user"]["umask"] = 0o027.into());
    assert_eq!(c.run_fg().success().out(), "0027");
}

#[test]
fn rlimits_are_applied() {
    let c = Container::new(&["sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c"]).with(|cfg| {
        cfg["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
        ]);
    });
    let out = c.run_fg().success();
    assert_eq!(out.stdout, "512\n1000\n0\n", "{out}");
}

#[test]
fn hostname_in_a_new_uts_namespace() {
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let c = Container::new(&["sh", "-c", "hostname; cat /proc/sys/kernel/hostname"])
        .with(|cfg| cfg["hostname"] = "box-1".into());
    let out = c.run_fg().success();
    assert_eq!(out.stdout, "box-1\nbox-1\n", "{out}");
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host
    );
}

#[test]
fn oom_score_adj_is_applied() {
    let c = Container::new(&["cat", "/proc/self/oom_score_adj"])
        .with(|cfg| cfg["process"]["oomScoreAdj"] = 500.into());
    assert_eq!(c.run_fg().success().out(), "500");
}

#[test]
fn sysctls_are_applied_in_the_container_namespaces() {
    let host_forward = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let host_shmmni = fs::read_to_string("/proc/sys/kernel/shmmni").unwrap();
    let c = Container::new(&[
        "sh",
        "-c",
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni",
    ])
    .with(|cfg| {
        let forward = if host_forward.trim() == "1" { "0" } else { "1" };
        cfg["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": forward, "kernel.shmmni": "1234"});
    });
    let forward = if host_forward.trim() == "1" { "0" } else { "1" };
    let out = c.run_fg().success();
    assert_eq!(out.stdout, format!("{forward}\n1234\n"), "{out}");
    // The host's values are untouched.
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_forward
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/shmmni").unwrap(),
        host_shmmni
    );
}

#[test]
fn sysctl_of_a_host_namespace_is_refused() {
    // vm.* is not namespaced: setting it would change the host, so it must be refused.
    let c = Container::new(&["true"])
        .with(|cfg| cfg["linux"]["sysctl"] = json!({"vm.swappiness": "10"}));
    c.create().failure().one_error_line();
    c.assert_nothing_left();
}

#[test]
fn preserve_fds_passes_fd_3() {
    let c = Container::new(&["sh", "-c", "cat <&3; ls /proc/self/fd | wc -l"]);
    let path = c.bundle.path().join("preserved.txt");
    fs::write(&path, "preserved content\n").unwrap();
    let file: OwnedFd = fs::File::open(&path).unwrap().into();
    let out =
        c.rt.call(&[
            "run",
            "--preserve-fds",
            "1",
            "--bundle",
            &c.bundle_str(),
            &c.id,
        ])
        .pass_fd(3, file)
        .run()
        .success();
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("preserved content"), "{out}");
    // 0, 1, 2, 3 and the directory ls opened.
    assert_eq!(lines.next(), Some("5"), "{out}");
}

#[test]
fn linux_devices_are_created_with_major_minor_and_mode() {
    let c = Container::new(&["stat", "-c", "%F %t %T %a %u %g", "/dev/mynull"]).with(|cfg| {
        cfg["linux"]["devices"] = json!([{
            "path": "/dev/mynull", "type": "c", "major": 1, "minor": 3,
            "fileMode": 0o640, "uid": 1000, "gid": 100
        }]);
    });
    let out = c.run_fg().success();
    assert_eq!(
        out.out(),
        "character special file 1 3 640 1000 100",
        "{out}"
    );
}

#[test]
fn default_dev_nodes_and_symlinks() {
    let c = Container::new(&[
        "sh",
        "-c",
        "for d in null zero full random urandom tty; do test -c /dev/$d && echo $d; done; \
         test -e /dev/ptmx && echo ptmx; readlink /dev/fd; readlink /dev/stdin; \
         readlink /dev/stdout; readlink /dev/stderr; stat -c %t:%T /dev/null",
    ]);
    let out = c.run_fg().success();
    assert_eq!(
        out.stdout,
        "null\nzero\nfull\nrandom\nurandom\ntty\nptmx\n/proc/self/fd\n/proc/self/fd/0\n\
         /proc/self/fd/1\n/proc/self/fd/2\n1:3\n",
        "{out}"
    );
}

/// Recursively chowns `path` (without following symlinks) to `uid:gid`.
fn chown_tree(path: &Path, uid: u32, gid: u32) {
    lchown(path, Some(uid), Some(gid)).unwrap();
    let meta = fs::symlink_metadata(path).unwrap();
    if meta.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}

#[test]
fn user_namespace_with_mappings() {
    const HOST_ID: u32 = 100000;
    let c = Container::new(&[
        "sh",
        "-c",
        "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; touch /tmp/owned",
    ])
    .with(|cfg| {
        cfg["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": HOST_ID, "size": 65536}]);
        cfg["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": HOST_ID, "size": 65536}]);
    });
    chown_tree(&c.rootfs(), HOST_ID, HOST_ID);
    let out = c.run_fg().success();
    let lines: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[0], ["0"], "{out}");
    assert_eq!(lines[1], ["0"], "{out}");
    assert_eq!(lines[2], ["0", "100000", "65536"], "uid_map\n{out}");
    assert_eq!(lines[3], ["0", "100000", "65536"], "gid_map\n{out}");
    // The container's root writes files as the mapped host uid.
    let meta = fs::metadata(c.rootfs().join("tmp/owned")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (HOST_ID, HOST_ID));
    c.assert_nothing_left();
}
