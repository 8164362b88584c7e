//! Cgroups from config.json on this v1 host: memory, pids (enforced), cpu shares/quota,
//! cpuset, blkio weight (only if the kernel exposes it), the devices allowlist (enforced),
//! absolute and relative cgroupsPath, and removal of the cgroup on delete.

use std::fs;
use std::path::Path;

use runtime_tests::host::{self, cgroup_dir, proc_cgroup};
use runtime_tests::Container;
use serde_json::json;

/// The v1 hierarchies a container must join.
const JOINED: [&str; 7] = [
    "memory", "pids", "cpu", "cpuacct", "cpuset", "freezer", "devices",
];

#[test]
fn memory_limit_and_reservation() {
    let c = Container::new(&["sleep", "100"]).with(|cfg| {
        cfg["linux"]["resources"]["memory"] = json!({"limit": 67108864, "reservation": 33554432});
    });
    c.start_ok();
    assert_eq!(c.cgroup_read("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(
        c.cgroup_read("memory", "memory.soft_limit_in_bytes"),
        "33554432"
    );
}

#[test]
fn pids_limit_is_enforced() {
    let c = Container::new(&[
        "sh",
        "-c",
        "n=0; for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & n=$((n+1)); done 2>/dev/null; \
         echo started; kill $(jobs -p) 2>/dev/null; true",
    ])
    .with(|cfg| cfg["linux"]["resources"]["pids"] = json!({"limit": 4}));
    c.create().success();
    assert_eq!(c.cgroup_read("pids", "pids.max"), "4");
    c.start().success();
    c.wait_status("stopped");
    let events = c.cgroup_read("pids", "pids.events");
    let max_hits: u64 = events
        .lines()
        .find_map(|l| l.strip_prefix("max "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        max_hits > 0,
        "no fork was refused by pids.max=4: {events:?}"
    );
}

#[test]
fn cpu_shares_quota_and_period() {
    let c = Container::new(&["sleep", "100"]).with(|cfg| {
        cfg["linux"]["resources"]["cpu"] = json!({"shares": 100, "quota": 20000, "period": 100000});
    });
    c.start_ok();
    assert_eq!(c.cgroup_read("cpu", "cpu.shares"), "100");
    assert_eq!(c.cgroup_read("cpu", "cpu.cfs_quota_us"), "20000");
    assert_eq!(c.cgroup_read("cpu", "cpu.cfs_period_us"), "100000");
}

#[test]
fn cpuset_cpus_and_mems() {
    let c = Container::new(&["sleep", "100"])
        .with(|cfg| cfg["linux"]["resources"]["cpu"] = json!({"cpus": "0", "mems": "0"}));
    c.create().success();
    assert_eq!(c.cgroup_read("cpuset", "cpuset.cpus"), "0");
    assert_eq!(c.cgroup_read("cpuset", "cpuset.mems"), "0");
    let allowed = runtime_tests::host::proc_status(&c.pid().to_string(), "Cpus_allowed_list");
    assert_eq!(allowed.as_deref(), Some("0"), "init not confined to cpu 0");
}

#[test]
fn blkio_weight_when_the_kernel_exposes_it() {
    let candidates = ["blkio.weight", "blkio.bfq.weight"];
    let Some(file) = candidates
        .into_iter()
        .find(|f| Path::new("/sys/fs/cgroup/blkio").join(f).exists())
    else {
        println!(
            "NOT TESTED: this kernel exposes neither blkio.weight nor blkio.bfq.weight in \
             /sys/fs/cgroup/blkio (no proportional-weight I/O scheduler enabled for cgroups)"
        );
        return;
    };
    let c = Container::new(&["sleep", "100"])
        .with(|cfg| cfg["linux"]["resources"]["blockIO"] = json!({"weight": 500}));
    c.start_ok();
    let value = c.cgroup_read("blkio", file);
    assert!(value.contains("500"), "{file} = {value:?}");
}

/// Opens /dev/fuse (10:229, not in the default allowlist) for reading.
const OPEN_FUSE: &[&str] = &["sh", "-c", "exec 3</dev/fuse && echo opened"];

/// Creates the /dev/fuse node through linux.devices; with `allow`, also allows it in the
/// devices cgroup after the deny-all rule.
fn with_fuse(allow: bool) -> impl FnOnce(&mut serde_json::Value) {
    move |cfg| {
        cfg["linux"]["devices"] = json!([{
            "path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
            "fileMode": 438, "uid": 0, "gid": 0
        }]);
        if allow {
            cfg["linux"]["resources"]["devices"] = json!([
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"}
            ]);
        }
    }
}

#[test]
fn hugetlb_limit_when_the_v1_controller_is_mounted() {
    let v1 = Path::new("/sys/fs/cgroup/hugetlb");
    if !v1.is_dir() {
        println!(
            "NOT TESTED: no v1 hugetlb hierarchy at {} (on this hybrid host hugetlb is only \
             in the cgroup2 mount, where runc 1.1.5 cannot set limits either)",
            v1.display()
        );
        return;
    }
    let c = Container::new(&["sleep", "100"]).with(|cfg| {
        cfg["linux"]["resources"]["hugepageLimits"] =
            json!([{"pageSize": "2MB", "limit": 4194304}]);
    });
    c.start_ok();
    assert_eq!(
        c.cgroup_read("hugetlb", "hugetlb.2MB.limit_in_bytes"),
        "4194304"
    );
}

#[test]
fn devices_deny_all_blocks_a_device_not_allowed() {
    // The node exists in the container, but the devices cgroup must refuse to open it.
    let c = Container::new(OPEN_FUSE).with(with_fuse(false));
    let out = c.run_fg().failure();
    assert!(!out.stdout.contains("opened"), "{out}");
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
}

#[test]
fn devices_allowlist_entry_permits_the_device() {
    let c = Container::new(OPEN_FUSE).with(with_fuse(true));
    c.create().success();
    let list = c.cgroup_read("devices", "devices.list");
    assert!(
        list.lines().any(|l| l == "c 10:229 rw"),
        "devices.list:\n{list}"
    );
    assert!(
        !list.lines().any(|l| l == "a *:* rwm"),
        "deny-all not applied:\n{list}"
    );
    c.delete_force().success();

    let fg = Container::new(OPEN_FUSE).with(with_fuse(true));
    let out = fg.run_fg().success();
    assert_eq!(out.out(), "opened", "{out}");
}

#[test]
fn default_devices_are_usable_under_deny_all() {
    let c = Container::new(&[
        "sh",
        "-c",
        "echo x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 4 /dev/urandom | wc -c \
         && head -c 4 /dev/random | wc -c && echo ok",
    ]);
    let out = c.run_fg().success();
    assert_eq!(out.stdout, "4\n4\n4\nok\n", "{out}");
}

#[test]
fn absolute_cgroups_path_is_joined_and_removed() {
    let c = Container::new(&["sleep", "100"]);
    c.start_ok();
    let pid = c.pid();
    for controller in JOINED {
        assert_eq!(
            proc_cgroup(pid, controller).as_deref(),
            Some(c.cgroups_path().as_str()),
            "{controller} cgroup of pid {pid}"
        );
        let procs = fs::read_to_string(c.cgroup_dir(controller).join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|l| l.trim() == pid.to_string()),
            "{pid} not in {controller} cgroup.procs"
        );
    }
    c.delete_force().success();
    c.assert_nothing_left();
    for controller in JOINED {
        assert!(
            !c.cgroup_dir(controller).exists(),
            "{controller} cgroup left"
        );
    }
}

#[test]
fn relative_cgroups_path_is_joined_and_removed() {
    let mut c = Container::new(&["sleep", "100"]);
    let rel = format!("rel-{}", c.id);
    let rel2 = rel.clone();
    c.configure(|cfg| cfg["linux"]["cgroupsPath"] = rel2.into());
    c.start_ok();
    let pid = c.pid();
    let mut dirs = Vec::new();
    for controller in ["memory", "pids", "cpu", "freezer"] {
        let path = proc_cgroup(pid, controller)
            .unwrap_or_else(|| panic!("pid {pid} has no {controller} cgroup"));
        assert!(
            path.ends_with(&format!("/{rel}")),
            "{controller} cgroup {path:?} does not end with the relative path {rel:?}"
        );
        let dir = cgroup_dir(controller, &path);
        assert!(dir.is_dir(), "{} missing", dir.display());
        dirs.push(dir);
    }
    c.delete_force().success();
    for dir in dirs {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[test]
fn memory_limit_is_visible_inside() {
    let c = Container::new(&["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"])
        .with(|cfg| cfg["linux"]["resources"]["memory"] = json!({"limit": 33554432}));
    let out = c.run_fg().success();
    assert_eq!(out.out(), "33554432", "{out}");
}

/// With a relative cgroupsPath each v1 hierarchy is relative to the runtime's own cgroup in
/// it (as in runc). When the runtime's memory cgroup is nested and the others are not (a
/// systemd user session, a CI sandbox), limits, `update` and `events --stats` must each use
/// their own hierarchy's directory.
#[test]
fn relative_cgroups_path_under_a_nested_memory_cgroup() {
    // Declared first, dropped last: after `c`'s `delete --force` when the test fails.
    let _nest: Rmdir;
    let mut c = Container::new(&["sleep", "100"]);
    let rel = format!("rel-{}", c.id);
    let rel2 = rel.clone();
    c.configure(|cfg| {
        cfg["linux"]["cgroupsPath"] = rel2.into();
        cfg["linux"]["resources"]["memory"] = json!({"limit": 67108864});
        cfg["linux"]["resources"]["pids"] = json!({"limit": 30});
    });
    let me = std::process::id() as i32;
    let own_mem = proc_cgroup(me, "memory").expect("own memory cgroup");
    let own_pids = proc_cgroup(me, "pids").expect("own pids cgroup");
    let nest = format!("{}/nest-{}", own_mem.trim_end_matches('/'), c.id);
    let nest_dir = cgroup_dir("memory", &nest);
    fs::create_dir(&nest_dir).expect("create the nested memory cgroup");
    _nest = Rmdir(nest_dir.clone());
    // The runtime, moved into the nested memory cgroup only (the other hierarchies stay).
    // Its errors go to --log: a detached container keeps the stdio it inherits.
    let log = c.rt.root().join("nest.log");
    let in_nest = |args: &[&str], stdout: std::process::Stdio| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
            .arg(&nest_dir)
            .arg(c.rt.bin())
            .arg("--root")
            .arg(c.rt.root())
            .arg("--log")
            .arg(&log)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(std::process::Stdio::null())
            .output()
            .expect("run the runtime");
        assert!(
            out.status.success(),
            "runtime {args:?} failed: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let piped = std::process::Stdio::piped;
    let bundle = c.bundle_str();
    in_nest(
        &["run", "-d", "-b", &bundle, &c.id],
        std::process::Stdio::null(),
    );
    let mem = format!("{nest}/{rel}");
    let pids = format!("{}/{rel}", own_pids.trim_end_matches('/'));
    assert_eq!(
        proc_cgroup(c.pid(), "memory").as_deref(),
        Some(mem.as_str())
    );
    assert_eq!(proc_cgroup(c.pid(), "pids").as_deref(), Some(pids.as_str()));
    assert_eq!(
        host::cgroup_read("memory", &mem, "memory.limit_in_bytes"),
        "67108864"
    );
    assert_eq!(host::cgroup_read("pids", &pids, "pids.max"), "30");

    in_nest(
        &[
            "update",
            "--memory",
            "100663296",
            "--pids-limit",
            "40",
            &c.id,
        ],
        piped(),
    );
    assert_eq!(
        host::cgroup_read("memory", &mem, "memory.limit_in_bytes"),
        "100663296"
    );
    assert_eq!(host::cgroup_read("pids", &pids, "pids.max"), "40");

    let stats: serde_json::Value =
        serde_json::from_str(&in_nest(&["events", "--stats", &c.id], piped()))
            .expect("events JSON");
    let usage = stats["data"]["memory"]["usage"]["usage"]
        .as_u64()
        .unwrap_or(0);
    assert!(usage > 0, "no memory usage from the nested cgroup: {stats}");
    assert_eq!(
        stats["data"]["pids"]["current"].as_u64(),
        Some(1),
        "{stats}"
    );

    c.delete_force().success();
    for dir in [cgroup_dir("memory", &mem), cgroup_dir("pids", &pids)] {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

/// Removes an (empty) cgroup directory when dropped.
struct Rmdir(std::path::PathBuf);

impl Drop for Rmdir {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}
