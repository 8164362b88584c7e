//! Helpers for the checkpoint/restore tests (CRIU through `runtime checkpoint` / `restore`).
//!
//! * [`Cr`]: a [`Container`] plus a scratch directory for image and work dirs, and a [`Reaper`]
//!   that cleans up whatever a failed checkpoint or restore may leave: processes in the
//!   container's cgroup (a restored tree has no state dir when `restore` failed half-way),
//!   CRIU processes still holding files in the test's directories, mounts under them (runc's
//!   `criu-root`, CRIU's `.criu.cgyard.*`) and the cgroup directories themselves.
//! * [`Counter`]: a container whose shell loop counts in a bind-mounted host directory.
//! * [`NetNs`]: a named network namespace (loopback up, optionally a veth to the host).
//! * Probes: image-dir fingerprints, iptables rule counts, mountinfo lines, a tiny HTTP GET.
//!
//! Every call passes `--image-path` and `--work-path` explicitly, so the same tests run against
//! runc (whose default image dir is `./checkpoint`). CRIU must be in `PATH`
//! (`/usr/local/sbin/criu` here): runc looks it up there, and so does ours.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Deref;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::container::Container;
use crate::runtime::{Output, Runtime};

/// Panics with a clear message when `criu` is not in `PATH` (runc and ours both look it up).
pub fn assert_criu_in_path() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|d| d.join("criu").is_file());
    assert!(
        found,
        "criu is not in PATH ({}); run the tests with PATH=/usr/local/sbin:$PATH",
        path.to_string_lossy()
    );
}

/// A checkpointable container: the [`Container`] (own `--root`, bundle, id, cgroupsPath `/<id>`),
/// a scratch dir for image/work dirs, and a [`Reaper`]. Field order is the drop order:
/// `delete --force` first, then the reaper kills and unmounts leftovers, then the scratch dir
/// goes (only when no mount points into it).
pub struct Cr {
    pub c: Container,
    reaper: Reaper,
    scratch: Scratch,
}

impl Deref for Cr {
    type Target = Container;
    fn deref(&self) -> &Container {
        &self.c
    }
}

impl Cr {
    /// A container running `args` (not yet created).
    pub fn new(args: &[&str]) -> Cr {
        Cr::from_container(Container::new(args))
    }

    pub fn from_container(c: Container) -> Cr {
        assert_criu_in_path();
        let scratch = Scratch::new("rt-ckpt-");
        let reaper = Reaper {
            _rt: c.rt.clone(),
            cgroups_path: c.cgroups_path(),
            dirs: vec![
                scratch.path().to_owned(),
                c.rt.root().to_owned(),
                c.bundle.path().to_owned(),
            ],
        };
        Cr { c, reaper, scratch }
    }

    /// Changes config.json (builder style).
    pub fn with(mut self, f: impl FnOnce(&mut Value)) -> Cr {
        self.c.configure(f);
        self
    }

    /// The scratch directory (image and work dirs live here).
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// `<scratch>/img-<name>`, not created (the runtime must create it).
    pub fn image(&self, name: &str) -> PathBuf {
        self.scratch().join(format!("img-{name}"))
    }

    /// `<scratch>/work-<name>`, created.
    pub fn work(&self, name: &str) -> PathBuf {
        let dir = self.scratch().join(format!("work-{name}"));
        fs::create_dir_all(&dir).expect("create work dir");
        dir
    }

    /// Also kill processes holding files under `dir`, and unmount mounts under it, on drop.
    pub fn watch_dir(&mut self, dir: &Path) {
        self.reaper.dirs.push(dir.to_owned());
    }

    /// `checkpoint --image-path IMG --work-path WORK <flags...> <id>`.
    pub fn checkpoint(&self, image: &Path, work: &Path, flags: &[&str]) -> Output {
        let mut args: Vec<String> = vec![
            "checkpoint".into(),
            "--image-path".into(),
            path_str(image),
            "--work-path".into(),
            path_str(work),
        ];
        args.extend(flags.iter().map(|f| f.to_string()));
        args.push(self.id.clone());
        self.rt.run(&args)
    }

    /// `restore --detach --bundle B --image-path IMG --work-path WORK <flags...> <id>`.
    pub fn restore(&self, image: &Path, work: &Path, flags: &[&str]) -> Output {
        self.rt.run(&self.restore_args(image, work, flags))
    }

    /// The argv (after `--root`) of a detached restore, for callers that need a custom `Call`.
    pub fn restore_args(&self, image: &Path, work: &Path, flags: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "restore".into(),
            "--detach".into(),
            "--bundle".into(),
            self.bundle_str(),
            "--image-path".into(),
            path_str(image),
            "--work-path".into(),
            path_str(work),
        ];
        args.extend(flags.iter().map(|f| f.to_string()));
        args.push(self.id.clone());
        args
    }

    /// Checkpoints into a fresh `img-<name>` (work dir `work-<name>`), asserts success (showing
    /// CRIU's error lines otherwise) and, unless `--leave-running` is among `flags`, that the
    /// container is gone. Returns the image dir.
    #[track_caller]
    pub fn checkpoint_ok(&self, name: &str, flags: &[&str]) -> PathBuf {
        let image = self.image(name);
        let work = self.work(name);
        let out = self.checkpoint(&image, &work, flags);
        assert_eq!(
            out.code,
            Some(0),
            "checkpoint failed\n{out}\n{}",
            criu_log_tail(&work, "dump.log")
        );
        assert!(
            image.join("inventory.img").is_file(),
            "no inventory.img in {} after a successful checkpoint",
            image.display()
        );
        if !flags.contains(&"--leave-running") {
            self.assert_gone();
        }
        image
    }

    /// Restores from `image` (work dir `work-<name>`), asserts success and status "running".
    #[track_caller]
    pub fn restore_ok(&self, image: &Path, name: &str, flags: &[&str]) -> Output {
        let work = self.work(name);
        let out = self.restore(image, &work, flags);
        assert_eq!(
            out.code,
            Some(0),
            "restore failed\n{out}\n{}",
            criu_log_tail(&work, "restore.log")
        );
        assert_eq!(self.status(), "running", "status after restore");
        out
    }

    /// `state` of the id must fail with "does not exist" (runc's wording; ours the same).
    #[track_caller]
    pub fn assert_gone(&self) {
        let out = self.rt.run(&["state", &self.id]);
        assert!(
            matches!(out.code, Some(c) if c != 0),
            "the container must be gone after a checkpoint without --leave-running\n{out}"
        );
        assert!(
            out.stderr.to_lowercase().contains("does not exist"),
            "state of a checkpointed container: expected \"does not exist\"\n{out}"
        );
    }

    /// Pids in the container's cgroup (all v1 hierarchies, recursively).
    pub fn cgroup_pids(&self) -> Vec<i32> {
        cgroup_pids(&self.cgroups_path())
    }

    /// The cgroup directories of this container that exist, in every mounted hierarchy.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        cgroup_dirs(&self.cgroups_path())
    }

    /// Mountinfo lines that mention this test's bundle, state root or scratch dir.
    pub fn own_mounts(&self) -> Vec<String> {
        own_mounts(&self.reaper.dirs)
    }

    /// Processes (other than this test) that hold a file or cwd under the test's directories.
    pub fn own_processes(&self) -> Vec<i32> {
        holders_of(&self.reaper.dirs)
    }

    /// Stronger than `Container::assert_nothing_left`: no state dir, no cgroup dir in any
    /// hierarchy, no mount under the test's dirs, no process in the cgroup or holding files
    /// under the test's dirs. Waits up to 5 s for processes to disappear (zombies count as dead).
    #[track_caller]
    pub fn assert_nothing_left(&self) {
        let state_dir = self.rt.root().join(&self.id);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids: Vec<i32> = self
                .cgroup_pids()
                .into_iter()
                .chain(self.own_processes())
                .filter(|p| crate::host::pid_alive(*p))
                .collect();
            let dirs = self.cgroup_dirs();
            let mounts = self.own_mounts();
            // The state dir, or any other entry of --root named after the id.
            let state = state_dir.exists()
                || fs::read_dir(self.rt.root()).is_ok_and(|rd| {
                    rd.flatten()
                        .any(|e| e.file_name().to_string_lossy().contains(&self.id))
                });
            if pids.is_empty() && dirs.is_empty() && mounts.is_empty() && !state {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "left behind for {}:\n state dir {} exists: {state}\n processes: {}\n \
                     cgroup dirs: {dirs:?}\n mounts:\n{}",
                    self.id,
                    state_dir.display(),
                    describe_pids(&pids),
                    mounts.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The last lines of a CRIU log that matter: every "Error" line (without the harmless
/// RLIMIT_NOFILE one) and the final 15 lines. For assertion messages.
pub fn criu_log_tail(work: &Path, name: &str) -> String {
    let path = work.join(name);
    let Ok(text) = fs::read_to_string(&path) else {
        return format!("({} not readable)", path.display());
    };
    let mut out = format!("--- {} errors:\n", path.display());
    for l in text
        .lines()
        .filter(|l| l.contains("Error") && !l.contains("RLIMIT_NOFILE"))
        .take(20)
    {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str("--- tail:\n");
    let lines: Vec<&str> = text.lines().collect();
    for l in &lines[lines.len().saturating_sub(15)..] {
        out.push_str(l);
        out.push('\n');
    }
    out
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------------------
// Counter

/// How far (in 0.1 s steps) a restored loop may have advanced before the test first looks:
/// the delay between CRIU resuming the tree and `restore` returning plus polling, under load.
pub const RESUME_SLACK: u64 = 8;

/// The counter loop: every 0.1 s, `i+1` is written atomically to `/data/count` and, with a log,
/// appended to `/data/count.log`. Stdio goes to /dev/null first (CRIU cannot dump a container
/// whose stdout is a host file, which the test harness's capture files are). TERM exits.
pub fn counter_script(with_log: bool) -> String {
    let log = if with_log {
        " echo $i >>/data/count.log;"
    } else {
        ""
    };
    format!(
        "exec </dev/null >/dev/null 2>&1; trap 'exit 0' TERM; i=0; \
         while :; do i=$((i+1)); echo $i >/data/count.tmp; mv /data/count.tmp /data/count;{log} \
         sleep 0.1; done"
    )
}

/// A counter container: [`counter_script`] with `/data` a bind mount of a host temp dir.
/// Field order = drop order: the container (and its cleanup) before the data dir.
pub struct Counter {
    pub cr: Cr,
    data: TempDir,
}

impl Deref for Counter {
    type Target = Cr;
    fn deref(&self) -> &Cr {
        &self.cr
    }
}

impl Counter {
    pub fn new(with_log: bool) -> Counter {
        let script = counter_script(with_log);
        let data = tempfile::Builder::new()
            .prefix("rt-ckdata-")
            .tempdir()
            .expect("create data dir");
        fs::set_permissions(data.path(), fs::Permissions::from_mode(0o755)).expect("chmod data");
        let src = path_str(data.path());
        let cr = Cr::new(&["sh", "-c", &script]).with(|cfg| {
            cfg["mounts"].as_array_mut().expect("mounts").push(json!({
                "destination": "/data", "type": "bind", "source": src,
                "options": ["rbind", "rw"]
            }));
        });
        fs::create_dir_all(cr.rootfs().join("data")).expect("create /data mountpoint");
        Counter { cr, data }
    }

    /// Host path of the bind-mounted /data.
    pub fn data(&self) -> &Path {
        self.data.path()
    }

    /// The current value of /data/count, if any.
    pub fn value(&self) -> Option<u64> {
        read_u64(&self.data().join("count"))
    }

    /// Starts the container with `run --detach` and waits for the first values.
    #[track_caller]
    pub fn start_counting(&self) {
        self.run_detached().success();
        assert_eq!(self.status(), "running");
        self.wait_above(2, Duration::from_secs(10));
    }

    /// Waits until the count is above `v`; returns the first value seen above it.
    #[track_caller]
    pub fn wait_above(&self, v: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(n) = self.value() {
                if n > v {
                    return n;
                }
            }
            assert!(
                Instant::now() < deadline,
                "count did not go above {v} within {timeout:?} (now {:?})",
                self.value()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// After a restore from a dump taken at count `at_dump`: see [`assert_continues`].
    #[track_caller]
    pub fn assert_resumes_from(&self, at_dump: u64) -> u64 {
        assert_continues("/data/count", at_dump, || self.value())
    }

    /// Asserts the count does not change for `d` (no process is counting).
    #[track_caller]
    pub fn assert_still(&self, d: Duration) -> Option<u64> {
        let before = self.value();
        std::thread::sleep(d);
        let after = self.value();
        assert_eq!(
            before, after,
            "the count changed while it should be stopped"
        );
        after
    }

    /// Asserts the count increases within 3 s.
    #[track_caller]
    pub fn assert_counting(&self) -> u64 {
        let v = self.value().expect("a count value");
        self.wait_above(v, Duration::from_secs(3))
    }

    /// The numbers in /data/count.log.
    pub fn log(&self) -> Vec<u64> {
        fs::read_to_string(self.data().join("count.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Asserts /data/count.log is exactly 1, 2, 3, ..., n (no reset, no gap, no repeat) and
    /// returns n.
    #[track_caller]
    pub fn assert_log_contiguous(&self) -> u64 {
        let log = self.log();
        assert!(!log.is_empty(), "empty count.log");
        for (i, v) in log.iter().enumerate() {
            assert_eq!(
                *v,
                i as u64 + 1,
                "count.log is not 1..n: at line {} found {v} (context {:?})",
                i + 1,
                &log[i.saturating_sub(3)..(i + 3).min(log.len())]
            );
        }
        log.len() as u64
    }
}

/// After a restore from a dump taken when `read()` gave `at_dump`: waits for the first value
/// that differs and asserts it continues the sequence: above `at_dump` (a restarted process
/// would begin again at 1) and at most `at_dump + RESUME_SLACK` (a loop that kept running
/// while "dumped" would be further). Returns that first value.
#[track_caller]
pub fn assert_continues(what: &str, at_dump: u64, read: impl Fn() -> Option<u64>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        match read() {
            Some(n) if n != at_dump => break n,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not move from {at_dump} within 10 s after restore"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(
        first > at_dump && first <= at_dump + RESUME_SLACK,
        "{what}: {at_dump} at dump, first value after restore {first}: not a continuation"
    );
    first
}

/// A trimmed file parsed as a number.
pub fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Image directory fingerprint

/// Relative path -> (size, content hash) of every file under `dir` (empty if it does not exist).
pub fn dir_fingerprint(dir: &Path) -> BTreeMap<String, (u64, u64)> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, (u64, u64)>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            let rel = p
                .strip_prefix(base)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            if ft.is_dir() {
                out.insert(format!("{rel}/"), (0, 0));
                walk(base, &p, out);
            } else {
                let data = fs::read(&p).unwrap_or_default();
                let mut h = std::collections::hash_map::DefaultHasher::new();
                data.hash(&mut h);
                out.insert(rel, (data.len() as u64, h.finish()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Asserts two fingerprints are equal, naming the files that differ.
#[track_caller]
pub fn assert_same_fingerprint(
    before: &BTreeMap<String, (u64, u64)>,
    after: &BTreeMap<String, (u64, u64)>,
    what: &str,
) {
    if before == after {
        return;
    }
    let mut diff = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => diff.push(format!("removed {k}")),
            Some(w) if w != v => diff.push(format!("changed {k}: {v:?} -> {w:?}")),
            _ => {}
        }
    }
    for k in after.keys().filter(|k| !before.contains_key(*k)) {
        diff.push(format!("added {k}"));
    }
    panic!("{what} changed:\n{}", diff.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Host probes: cgroups, processes, mounts, iptables

/// Every mounted v1 hierarchy (and the v2 `unified` one) under /sys/fs/cgroup.
fn cgroup_hierarchies() -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists())
        .collect();
    out.sort();
    out
}

/// Existing `<hierarchy>/<cgroups_path>` directories (v1 and the unified v2 hierarchy).
pub fn cgroup_dirs(cgroups_path: &str) -> Vec<PathBuf> {
    let rel = cgroups_path.trim_start_matches('/');
    if rel.is_empty() {
        return Vec::new();
    }
    cgroup_hierarchies()
        .into_iter()
        .map(|h| h.join(rel))
        .filter(|d| d.is_dir())
        .collect()
}

/// Sub-directories of a cgroup dir, deepest first, the dir itself last.
fn cgroup_tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(cgroup_tree(&e.path()));
            }
        }
    }
    out.push(dir.to_owned());
    out
}

/// Pids in the cgroup `cgroups_path` in any hierarchy, recursively.
pub fn cgroup_pids(cgroups_path: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = cgroup_dirs(cgroups_path)
        .iter()
        .flat_map(|d| cgroup_tree(d))
        .flat_map(|d| {
            fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Processes other than this one with an open fd, cwd or root under one of `dirs`.
pub fn holders_of(dirs: &[PathBuf]) -> Vec<i32> {
    let me = std::process::id() as i32;
    let prefixes: Vec<String> = dirs.iter().map(|d| path_str(d)).collect();
    let under = |p: &Path| {
        let s = p.to_string_lossy();
        prefixes
            .iter()
            .any(|pre| s == pre.as_str() || s.starts_with(&format!("{pre}/")))
    };
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let base = e.path();
        let mut hit = ["cwd", "root"]
            .iter()
            .any(|l| fs::read_link(base.join(l)).is_ok_and(|t| under(&t)));
        if !hit {
            if let Ok(fds) = fs::read_dir(base.join("fd")) {
                hit = fds
                    .flatten()
                    .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| under(&t)));
            }
        }
        if hit {
            out.push(pid);
        }
    }
    out
}

/// `pid (comm) state` for each pid, for messages.
pub fn describe_pids(pids: &[i32]) -> String {
    pids.iter()
        .map(|p| {
            let cmd = fs::read(format!("/proc/{p}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            let state = crate::host::proc_status(&p.to_string(), "State").unwrap_or_default();
            format!("{p} [{state}] {cmd}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Mountinfo lines whose mount point or root lies under one of `dirs`.
pub fn own_mounts(dirs: &[PathBuf]) -> Vec<String> {
    let mut out = Vec::new();
    for d in dirs {
        for l in crate::host::mountinfo_mentions(&path_str(d)) {
            if !out.contains(&l) {
                out.push(l);
            }
        }
    }
    out
}

/// Mount points (field 5 of mountinfo) under `dir`, deepest first.
fn mount_points_under(dir: &Path) -> Vec<String> {
    let mut mps: Vec<String> = crate::host::mounts_under(dir)
        .iter()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .collect();
    mps.sort_by_key(|m| std::cmp::Reverse(m.len()));
    mps.dedup();
    mps
}

fn lazy_umount(mp: &str) {
    let target = mp.replace("\\040", " ");
    if let Ok(c) = CString::new(target.as_bytes()) {
        // SAFETY: valid NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Total number of lines of /proc/self/mountinfo.
pub fn mount_count() -> usize {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .count()
}

/// The firewall ruleset lines of a network namespace (`None` = the test's own, i.e. the host's):
/// `iptables -S` (all tables CRIU touches: filter) plus `nft list ruleset` when nft exists.
/// Returns `None` when neither tool exists.
pub fn firewall_rules(netns: Option<&Path>) -> Option<Vec<String>> {
    let run = |argv: &[&str]| -> Option<Vec<String>> {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg("--");
                c.args(argv);
                c
            }
            None => {
                let mut c = Command::new(argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        let out = cmd.output().ok()?;
        out.status.success().then(|| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        })
    };
    let have = |tool: &str| {
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin"]
            .iter()
            .any(|d| Path::new(d).join(tool).exists())
    };
    let mut lines = Vec::new();
    let mut any = false;
    if have("iptables") {
        if let Some(l) = run(&["iptables", "-S"]) {
            lines.extend(l.into_iter().map(|l| format!("iptables: {l}")));
            any = true;
        }
    }
    if have("nft") {
        if let Some(l) = run(&["nft", "list", "ruleset"]) {
            lines.extend(l.into_iter().map(|l| format!("nft: {l}")));
            any = true;
        }
    }
    any.then_some(lines)
}

/// The CRIU-related lines of [`firewall_rules`] (CRIU's network lock: the iptables chain
/// `CRIU`, the nftables table `CRIU-<pid>`). The host's full ruleset is shared mutable state
/// (other containers, CNI), so host-level checks compare only these.
pub fn criu_firewall_rules(netns: Option<&Path>) -> Option<Vec<String>> {
    firewall_rules(netns).map(|v| v.into_iter().filter(|l| l.contains("CRIU")).collect())
}

// ---------------------------------------------------------------------------------------------
// Network namespaces

/// A named network namespace `/run/netns/<name>` with loopback up, optionally with a veth pair
/// to the host (a /30: host .1, namespace .2 with a default route). Removed on drop.
pub struct NetNs {
    pub name: String,
    veth_host: Option<String>,
    pub host_ip: Option<String>,
    pub ns_ip: Option<String>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    /// A namespace with only `lo` (up).
    pub fn new() -> NetNs {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("rtck-{}-{n}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = NetNs {
            name,
            veth_host: None,
            host_ip: None,
            ns_ip: None,
        };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// A namespace reachable from the host through a veth pair on a per-process /30 of
    /// 10.213.0.0/16.
    pub fn with_veth() -> NetNs {
        let mut ns = NetNs::new();
        let pid = std::process::id();
        let third = (pid >> 6) & 0xff;
        let base = (pid & 0x3f) * 4;
        let host_ip = format!("10.213.{third}.{}", base + 1);
        let ns_ip = format!("10.213.{third}.{}", base + 2);
        let host_if = format!("rck{pid:x}h");
        let peer_if = format!("rck{pid:x}c");
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
        ]);
        ns.veth_host = Some(host_if.clone());
        ip(&["link", "set", &peer_if, "netns", &ns.name]);
        ip(&["-n", &ns.name, "link", "set", &peer_if, "name", "eth0"]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns.name, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns.name, "route", "add", "default", "via", &host_ip]);
        ns.host_ip = Some(host_ip);
        ns.ns_ip = Some(ns_ip);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }
}

impl Default for NetNs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Some(h) = &self.veth_host {
            let _ = Command::new("ip").args(["link", "del", h]).output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Puts the container into the network namespace at `path` (config.json namespace path).
pub fn set_netns_path(cfg: &mut Value, path: &Path) {
    let list = cfg["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces");
    list.retain(|n| n["type"] != "network");
    list.push(json!({"type": "network", "path": path_str(path)}));
}

/// A plain HTTP/1.0 GET from the host; returns the whole response (headers + body).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    let sa: SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    // Short: callers retry, and a dumped service behind CRIU's DROP rules must not cost long.
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Reaper and scratch dir

/// Cleans up after a container whose record may be gone: kills processes in its cgroup (thawing
/// the freezer first) and processes holding files under the test's dirs (a CRIU left running
/// by a timed-out runtime call), lazily unmounts mounts under those dirs, removes the cgroup
/// directories. Holds a clone of the runtime so the `--root` dir outlives this cleanup.
struct Reaper {
    /// Keeps the `--root` dir alive until the reaper ran (never read).
    _rt: Runtime,
    cgroups_path: String,
    dirs: Vec<PathBuf>,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // Only ever touch a cgroup path this test made up ("/rt-<test>-<pid>-<n>").
        let own_cgroup = self.cgroups_path.trim_start_matches('/').starts_with("rt-");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut pids = holders_of(&self.dirs);
            if own_cgroup {
                for d in cgroup_dirs(&self.cgroups_path) {
                    if d.join("freezer.state").exists() {
                        let _ = fs::write(d.join("freezer.state"), "THAWED");
                    }
                }
                pids.extend(cgroup_pids(&self.cgroups_path));
            }
            pids.sort_unstable();
            pids.dedup();
            pids.retain(|p| crate::host::pid_alive(*p));
            if pids.is_empty() || Instant::now() > deadline {
                if !pids.is_empty() {
                    eprintln!("reaper: still alive: {}", describe_pids(&pids));
                }
                break;
            }
            eprintln!("reaper: killing leftovers: {}", describe_pids(&pids));
            for p in &pids {
                // SAFETY: plain kill(2) on a pid found in this test's cgroup or dirs.
                unsafe { libc::kill(*p, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for d in &self.dirs {
            for mp in mount_points_under(d) {
                eprintln!("reaper: unmounting leftover {mp}");
                lazy_umount(&mp);
            }
        }
        if own_cgroup {
            // A killed init stays a zombie until PID 1 reaps it (every ~2 s on these hosts),
            // and a zombie keeps a v2 (unified) cgroup busy: retry for a while.
            let deadline = Instant::now() + Duration::from_secs(6);
            loop {
                let left: Vec<PathBuf> = cgroup_dirs(&self.cgroups_path)
                    .iter()
                    .flat_map(|d| cgroup_tree(d))
                    .filter(|sub| fs::remove_dir(sub).is_err() && sub.exists())
                    .collect();
                if left.is_empty() {
                    break;
                }
                if Instant::now() > deadline {
                    eprintln!("reaper: cannot remove cgroups {left:?}");
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// A temp dir removed on drop only when no mount points into it (lazily unmounting first);
/// otherwise kept and reported (never delete through a leaked bind or cgroup mount).
struct Scratch {
    dir: Option<TempDir>,
}

impl Scratch {
    fn new(prefix: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("create scratch dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod scratch");
        Scratch { dir: Some(dir) }
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().expect("scratch dir").path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        for mp in mount_points_under(dir.path()) {
            lazy_umount(&mp);
        }
        let left = crate::host::mounts_under(dir.path());
        if left.is_empty() {
            let _ = dir.close();
        } else {
            let path = dir.keep();
            eprintln!(
                "scratch dir {} left in place: mounts still point into it:\n{}",
                path.display(),
                left.join("\n")
            );
        }
    }
}

/// Writes bytes to a path, creating parent dirs (for fixtures inside a rootfs).
pub fn write_file(path: &Path, data: impl AsRef<[u8]>) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent dir");
    }
    fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Truncates a file to `len` bytes.
pub fn truncate(path: &Path, len: u64) {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.set_len(len)
        .unwrap_or_else(|e| panic!("truncate {}: {e}", path.display()));
}

/// Copies a directory tree of regular files (an image dir) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create copy target");
    for e in fs::read_dir(from).expect("read dir").flatten() {
        let p = e.path();
        let t = to.join(e.file_name());
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            copy_dir(&p, &t);
        } else {
            fs::copy(&p, &t).unwrap_or_else(|e| panic!("copy {}: {e}", p.display()));
        }
    }
}

/// `true` if `path` does not exist or is an empty directory.
pub fn absent_or_empty(path: &Path) -> bool {
    match fs::read_dir(path) {
        Ok(mut rd) => rd.next().is_none(),
        Err(_) => !path.exists(),
    }
}
