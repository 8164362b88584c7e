//! The bench's own bundles, built in its temp dir: one busybox rootfs shared (read-only) by a
//! `/bin/true` bundle, a `sleep` bundle and the checkpoint/restore workloads (a counter, and
//! `alloc` touching 256 MiB or 1 GiB), with the config `runc spec` writes (default mounts, masked
//! paths, namespaces pid/ipc/uts/mount/network) and `terminal: false`. `alloc` (src/alloc.c) is
//! compiled once with `cc -static` into target/bench/.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

const BUSYBOX: &str = "/bin/busybox";
const ALLOC_C: &str = include_str!("alloc.c");

/// `linux.maskedPaths` of every bundle (those of `runc spec`).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// Where the counter writes its count, inside the container (a tmpfs that CRIU dumps).
pub const COUNTER_FILE: &str = "/dev/shm/counter";
/// What `alloc` creates once its memory is touched.
pub const READY_FILE: &str = "/dev/shm/ready";

pub struct Bundles {
    /// The shared rootfs (the raw-CRIU column passes it to `criu --root`).
    pub rootfs: PathBuf,
    /// Runs `/bin/true` (busybox) and exits.
    pub true_: PathBuf,
    /// Runs `sleep 1000000`.
    pub sleep: PathBuf,
    /// A shell loop writing 1, 2, 3, ... to `COUNTER_FILE` every 100 ms.
    pub counter: PathBuf,
    /// `alloc 256 READY_FILE` and `alloc 1024 READY_FILE`.
    pub mem256: PathBuf,
    pub mem1g: PathBuf,
    /// Why `/bin/alloc` is missing from the rootfs, if it is (the memory rows then fail setup).
    pub alloc_error: Option<String>,
}

impl Bundles {
    /// Builds the bundles in `dir`; `tools` (target/bench) keeps the compiled `alloc`.
    pub fn build(dir: &Path, tools: &Path) -> Result<Self> {
        let rootfs = dir.join("rootfs");
        for d in ["bin", "dev", "proc", "sys", "tmp", "etc", "root"] {
            fs::create_dir_all(rootfs.join(d))?;
        }
        fs::copy(BUSYBOX, rootfs.join("bin/busybox"))
            .with_context(|| format!("copy {BUSYBOX} (apt-get install busybox-static)"))?;
        for applet in ["sh", "true", "sleep", "cat", "ps"] {
            symlink("busybox", rootfs.join("bin").join(applet))?;
        }
        let alloc_error = compile_alloc(tools)
            .and_then(|bin| Ok(fs::copy(bin, rootfs.join("bin/alloc"))?))
            .err()
            .map(|e| format!("{e:#}"));
        let bundle = |name: &str, args: &[&str]| -> Result<PathBuf> {
            let b = dir.join(name);
            fs::create_dir_all(&b)?;
            let config = config(&rootfs, args);
            fs::write(b.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
            Ok(b)
        };
        let counter =
            format!("i=0; while :; do i=$((i+1)); echo $i > {COUNTER_FILE}; sleep 0.1; done");
        Ok(Self {
            true_: bundle("true", &["/bin/true"])?,
            sleep: bundle("sleep", &["/bin/sleep", "1000000"])?,
            counter: bundle("counter", &["/bin/sh", "-c", &counter])?,
            mem256: bundle("mem256", &["/bin/alloc", "256", READY_FILE])?,
            mem1g: bundle("mem1g", &["/bin/alloc", "1024", READY_FILE])?,
            rootfs,
            alloc_error,
        })
    }
}

/// `tools/alloc`, compiled from src/alloc.c with `cc -static -O2` unless `tools/alloc.c` already
/// holds the same source and the binary exists.
fn compile_alloc(tools: &Path) -> Result<PathBuf> {
    fs::create_dir_all(tools)?;
    let (src, bin) = (tools.join("alloc.c"), tools.join("alloc"));
    if bin.is_file() && fs::read_to_string(&src).ok().as_deref() == Some(ALLOC_C) {
        return Ok(bin);
    }
    let _ = fs::remove_file(&bin);
    fs::write(&src, ALLOC_C)?;
    let out = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .context("run cc (apt-get install gcc libc6-dev)")?;
    if !out.status.success() {
        let _ = fs::remove_file(&src);
        bail!(
            "cc -static {} failed (needs libc6-dev's libc.a): {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(bin)
}

fn mount(dest: &str, typ: &str, src: &str, opts: &[&str]) -> Value {
    json!({
        "destination": dest, "type": typ, "source": src, "options": opts
    })
}

fn config(rootfs: &Path, args: &[&str]) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let (nosuid, noexec, nodev) = ("nosuid", "noexec", "nodev");
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": rootfs, "readonly": true},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            mount("/dev", "tmpfs", "tmpfs", &[nosuid, "strictatime", "mode=755", "size=65536k"]),
            mount("/dev/pts", "devpts", "devpts",
                  &[nosuid, noexec, "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
            mount("/dev/shm", "tmpfs", "shm", &[nosuid, noexec, nodev, "mode=1777", "size=65536k"]),
            mount("/dev/mqueue", "mqueue", "mqueue", &[nosuid, noexec, nodev]),
            mount("/sys", "sysfs", "sysfs", &[nosuid, noexec, nodev, "ro"]),
            mount("/sys/fs/cgroup", "cgroup", "cgroup", &[nosuid, noexec, nodev, "relatime", "ro"]),
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                {"type": "mount"}
            ],
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}
