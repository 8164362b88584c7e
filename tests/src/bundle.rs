//! Builds OCI bundles in temporary directories: a rootfs made of the host's static busybox
//! (one symlink per applet), /etc/passwd and /etc/group with root and a uid 1000 user, and a
//! config.json from a template equivalent to `runc spec`'s default.
//!
//! Template differences from `runc spec`, on purpose: `terminal` is false (tests capture
//! stdio) and `root.readonly` is false (most tests write into the rootfs; readonly is tested
//! explicitly).

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};
use tempfile::TempDir;

/// Path of the static busybox copied into every rootfs.
pub const BUSYBOX: &str = "/bin/busybox";

/// The default capability set of `runc spec`.
pub const DEFAULT_CAPS: [&str; 3] = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

/// config.json equivalent to `runc spec`, with `terminal: false`, `readonly: false` and the
/// given process arguments.
pub fn default_config(args: &[&str]) -> Value {
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
                "bounding": DEFAULT_CAPS,
                "effective": DEFAULT_CAPS,
                "permitted": DEFAULT_CAPS,
                "ambient": DEFAULT_CAPS
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "runtime-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

fn applets() -> &'static [String] {
    static LIST: OnceLock<Vec<String>> = OnceLock::new();
    LIST.get_or_init(|| {
        let out = Command::new(BUSYBOX)
            .arg("--list")
            .output()
            .expect("run busybox --list (is busybox-static installed?)");
        assert!(out.status.success(), "busybox --list failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty() && *a != "busybox")
            .map(str::to_owned)
            .collect()
    })
}

/// A bundle directory (`config.json` + `rootfs/`) that is removed on drop, unless a mount still
/// points into it (then it is left in place and reported, so nothing is deleted through a
/// leaked bind mount).
pub struct Bundle {
    dir: Option<TempDir>,
    config: Value,
}

impl Bundle {
    /// A bundle whose process runs `args`. The config is written immediately.
    pub fn new(args: &[&str]) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("rt-bundle-")
            .tempdir()
            .expect("create bundle dir");
        // Traversable by a container root mapped to another uid (user namespace tests).
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod bundle");
        let rootfs = dir.path().join("rootfs");
        for d in [
            "bin",
            "proc",
            "sys",
            "dev",
            "etc",
            "tmp",
            "root",
            "home/user",
            "mnt",
        ] {
            fs::create_dir_all(rootfs.join(d)).expect("create rootfs dir");
        }
        fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))
            .expect("chmod /tmp");
        fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("copy busybox into rootfs");
        for applet in applets() {
            symlink("busybox", rootfs.join("bin").join(applet)).expect("applet symlink");
        }
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
        )
        .expect("write passwd");
        fs::write(
            rootfs.join("etc/group"),
            "root:x:0:\ntty:x:5:\nwheel:x:10:\nusers:x:100:\nuser:x:1000:\n",
        )
        .expect("write group");
        let bundle = Bundle {
            dir: Some(dir),
            config: default_config(args),
        };
        bundle.save();
        bundle
    }

    /// Absolute bundle path.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("bundle dir").path()
    }

    /// Absolute rootfs path.
    pub fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    pub fn config(&self) -> &Value {
        &self.config
    }

    /// Changes the config and rewrites config.json.
    pub fn configure(&mut self, f: impl FnOnce(&mut Value)) {
        f(&mut self.config);
        self.save();
    }

    /// Writes the current config to `config.json`.
    pub fn save(&self) {
        let text = serde_json::to_string_pretty(&self.config).expect("serialize config");
        fs::write(self.path().join("config.json"), text).expect("write config.json");
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let leaked = crate::host::mounts_under(dir.path());
        if leaked.is_empty() {
            let _ = dir.close();
        } else {
            let path = dir.keep();
            eprintln!(
                "bundle {} left in place: mounts still point into it:\n{}",
                path.display(),
                leaked.join("\n")
            );
        }
    }
}
