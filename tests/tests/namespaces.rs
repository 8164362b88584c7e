//! Namespaces: a new network namespace has only a working loopback; joining a namespace by
//! path (a network namespace made with `ip netns`, another container's pid namespace); the
//! host network when no network namespace is requested; ipc isolation.

use std::fs;
use std::process::Command;

use runtime_tests::Container;
use serde_json::{json, Value};

/// A named network namespace (`ip netns add`), deleted on drop.
struct NetNs {
    name: String,
}

impl NetNs {
    fn new(name: &str) -> NetNs {
        let ok = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .expect("run ip netns add")
            .success();
        assert!(ok, "ip netns add {name} failed");
        NetNs {
            name: name.to_owned(),
        }
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn set_namespace_path(cfg: &mut Value, ns_type: &str, path: &str) {
    let list = cfg["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces");
    list.retain(|n| n["type"] != ns_type);
    list.push(json!({"type": ns_type, "path": path}));
}

#[test]
fn new_network_namespace_has_only_loopback_and_it_is_up() {
    let c = Container::new(&["sh", "-c", "ls /sys/class/net; ip -o link show lo"]);
    let out = c.run_fg().success();
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("lo"), "{out}");
    let lo = lines.next().unwrap_or_default();
    assert!(lo.contains(",UP"), "loopback is not up: {lo:?}\n{out}");
}

#[test]
fn loopback_tcp_works_inside() {
    let c = Container::new(&[
        "sh",
        "-c",
        "mkdir -p /tmp/www && echo served > /tmp/www/index.html && \
         httpd -p 127.0.0.1:8080 -h /tmp/www && \
         for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://127.0.0.1:8080/index.html && exit 0; \
         sleep 0.2; done; exit 1",
    ]);
    let out = c.run_fg().success();
    assert_eq!(out.out(), "served", "{out}");
}

#[test]
fn joins_a_network_namespace_by_path() {
    let c = Container::new(&["readlink", "/proc/self/ns/net"]);
    let netns = NetNs::new(&c.id);
    let c = c.with(|cfg| set_namespace_path(cfg, "network", &netns.path()));
    let out = c.run_fg().success();
    let inode = fs::metadata(netns.path()).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    });
    assert_eq!(out.out(), format!("net:[{}]", inode.unwrap()), "{out}");
    drop(c);
}

#[test]
fn joins_the_pid_namespace_of_another_container() {
    let first = Container::new(&["sleep", "100"]);
    first.start_ok();
    let pidns = format!("/proc/{}/ns/pid", first.pid());
    let second =
        Container::new(&["sleep", "100"]).with(|cfg| set_namespace_path(cfg, "pid", &pidns));
    second.start_ok();
    // From the second container, pid 1 is the first container's init.
    let out = second.exec(&["cat", "/proc/1/cmdline"]).success();
    assert_eq!(out.stdout, "sleep\x00100\x00", "{out}");
    let mine = fs::read_link(format!("/proc/{}/ns/pid", second.pid())).unwrap();
    let theirs = fs::read_link(&pidns).unwrap();
    assert_eq!(mine, theirs);
}

#[test]
fn host_network_when_no_network_namespace() {
    let host_ns = fs::read_link("/proc/self/ns/net").unwrap();
    let c = Container::new(&["readlink", "/proc/self/ns/net"]).with(|cfg| {
        cfg["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "network");
    });
    let out = c.run_fg().success();
    assert_eq!(out.out(), host_ns.to_string_lossy(), "{out}");
}

#[test]
fn namespaces_differ_from_the_host() {
    let c = Container::new(&[
        "sh",
        "-c",
        "for n in pid net ipc uts mnt; do readlink /proc/self/ns/$n; done",
    ]);
    let out = c.run_fg().success();
    for (line, ns) in out.stdout.lines().zip(["pid", "net", "ipc", "uts", "mnt"]) {
        let host = fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(line, host.to_string_lossy(), "{ns} namespace is the host's");
    }
    assert_eq!(out.stdout.lines().count(), 5, "{out}");
}
