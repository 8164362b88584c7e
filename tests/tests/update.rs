//! `update`: each resource flag and `--resources` (stdin and file) change the v1 cgroup files
//! of a running container.

use runtime_tests::Container;
use serde_json::json;

fn running() -> Container {
    let c = Container::new(&["sleep", "100"]);
    c.start_ok();
    c
}

#[test]
fn update_memory() {
    let c = running();
    c.rt.run(&["update", "--memory", "104857600", &c.id])
        .success();
    assert_eq!(
        c.cgroup_read("memory", "memory.limit_in_bytes"),
        "104857600"
    );
    c.rt.run(&["update", "--memory", "200M", &c.id]).success();
    assert_eq!(
        c.cgroup_read("memory", "memory.limit_in_bytes"),
        "209715200"
    );
    c.rt.run(&["update", "--memory-reservation", "50M", &c.id])
        .success();
    assert_eq!(
        c.cgroup_read("memory", "memory.soft_limit_in_bytes"),
        "52428800"
    );
}

#[test]
fn update_memory_and_swap() {
    let c = running();
    c.rt.run(&["update", "--memory", "50M", "--memory-swap", "100M", &c.id])
        .success();
    assert_eq!(c.cgroup_read("memory", "memory.limit_in_bytes"), "52428800");
    assert_eq!(
        c.cgroup_read("memory", "memory.memsw.limit_in_bytes"),
        "104857600"
    );
}

#[test]
fn update_pids_limit() {
    let c = running();
    c.rt.run(&["update", "--pids-limit", "20", &c.id]).success();
    assert_eq!(c.cgroup_read("pids", "pids.max"), "20");
}

#[test]
fn update_cpu_quota_and_period() {
    let c = running();
    c.rt.run(&[
        "update",
        "--cpu-quota",
        "50000",
        "--cpu-period",
        "100000",
        &c.id,
    ])
    .success();
    assert_eq!(c.cgroup_read("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(c.cgroup_read("cpu", "cpu.cfs_period_us"), "100000");
}

#[test]
fn update_cpu_shares() {
    let c = running();
    // runc's flag is singular: --cpu-share.
    c.rt.run(&["update", "--cpu-share", "512", &c.id]).success();
    assert_eq!(c.cgroup_read("cpu", "cpu.shares"), "512");
}

#[test]
fn update_cpuset_cpus() {
    let c = running();
    c.rt.run(&["update", "--cpuset-cpus", "0", &c.id]).success();
    assert_eq!(c.cgroup_read("cpuset", "cpuset.cpus"), "0");
}

#[test]
fn update_resources_from_stdin() {
    let c = running();
    let resources = json!({
        "memory": {"limit": 209715200},
        "pids": {"limit": 30},
        "cpu": {"shares": 256, "quota": 20000, "period": 100000}
    });
    c.rt.call(&["update", "--resources", "-", &c.id])
        .stdin(resources.to_string())
        .run()
        .success();
    assert_eq!(
        c.cgroup_read("memory", "memory.limit_in_bytes"),
        "209715200"
    );
    assert_eq!(c.cgroup_read("pids", "pids.max"), "30");
    assert_eq!(c.cgroup_read("cpu", "cpu.shares"), "256");
    assert_eq!(c.cgroup_read("cpu", "cpu.cfs_quota_us"), "20000");
    assert_eq!(c.cgroup_read("cpu", "cpu.cfs_period_us"), "100000");
}

#[test]
fn update_resources_from_file() {
    let c = running();
    let path = c.bundle.path().join("resources.json");
    std::fs::write(&path, json!({"pids": {"limit": 42}}).to_string()).unwrap();
    c.rt.run(&["update", "-r", &path.to_string_lossy(), &c.id])
        .success();
    assert_eq!(c.cgroup_read("pids", "pids.max"), "42");
}

#[test]
fn update_with_invalid_resources_json_fails() {
    let c = running();
    c.rt.run(&["update", "--pids-limit", "25", &c.id]).success();
    c.rt.call(&["update", "--resources", "-", &c.id])
        .stdin("{not json")
        .run()
        .failure()
        .one_error_line();
    assert_eq!(c.cgroup_read("pids", "pids.max"), "25");
    assert_eq!(c.status(), "running");
}
