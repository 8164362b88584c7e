//! The bench's own bundles, built in its temp dir: one busybox rootfs shared (read-only) by a
//! `/bin/true` bundle and a `sleep` bundle, with the config `runc spec` writes (default mounts,
//! masked paths, namespaces pid/ipc/uts/mount/network) and `terminal: false`.

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

const BUSYBOX: &str = "/bin/busybox";

pub struct Bundles {
    /// Runs `/bin/true` (busybox) and exits.
    pub true_: PathBuf,
    /// Runs `sleep 1000000`.
    pub sleep: PathBuf,
}

impl Bundles {
    pub fn build(dir: &Path) -> Result<Self> {
        let rootfs = dir.join("rootfs");
        for d in ["bin", "dev", "proc", "sys", "tmp", "etc", "root"] {
            fs::create_dir_all(rootfs.join(d))?;
        }
        fs::copy(BUSYBOX, rootfs.join("bin/busybox"))
            .with_context(|| format!("copy {BUSYBOX} (apt-get install busybox-static)"))?;
        for applet in ["sh", "true", "sleep", "cat", "ps"] {
            symlink("busybox", rootfs.join("bin").join(applet))?;
        }
        let bundle = |name: &str, args: &[&str]| -> Result<PathBuf> {
            let b = dir.join(name);
            fs::create_dir_all(&b)?;
            let config = config(&rootfs, args);
            fs::write(b.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
            Ok(b)
        };
        Ok(Self {
            true_: bundle("true", &["/bin/true"])?,
            sleep: bundle("sleep", &["/bin/sleep", "1000000"])?,
        })
    }
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
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}
