//! Cgroups for a container, v1 (including this host's hybrid layout) and v2: where they
//! are, creating and joining them, limits (through cgroups-rs), freeze/thaw with a fast
//! poll, the pids inside, stats, and removal.
//!
//! Joining is done by the container's own first process writing "0" to each v1 `tasks`
//! file: moving only the current thread skips the kernel's global threadgroup lock, whose
//! RCU sync costs up to tens of milliseconds per call (runc and crun pay it).

use anyhow::{anyhow, bail, Context, Result};
use cgroups_rs::manager::{FsManager, Manager};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Where a container's cgroup lives in every hierarchy.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct CgroupPaths {
    /// Unified (v2-only) host.
    pub v2: bool,
    /// v2: the single directory under "". v1: hierarchy name (its controllers joined by
    /// ',' as in /proc/self/cgroup, e.g. "cpu", "name=systemd", "" for the hybrid v2
    /// mount) -> directory.
    pub dirs: BTreeMap<String, PathBuf>,
    /// Path relative to the hierarchy roots ("/libpod_parent/libpod-<id>").
    pub path: String,
    /// v1 with a relative cgroupsPath: hierarchy name -> its own path, where our own
    /// cgroup differs between hierarchies (e.g. a nested memory cgroup); `path` for the rest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub paths: BTreeMap<String, String>,
}

/// True when /sys/fs/cgroup is a cgroup2 mount (unified mode).
pub fn is_unified() -> bool {
    // SAFETY: statfs into a zeroed struct with a valid C path.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c"/sys/fs/cgroup".as_ptr(), &mut st) == 0
            && st.f_type as i64 == CGROUP2_SUPER_MAGIC
    }
}

/// One mounted hierarchy: its name (controllers) and mount point.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    pub name: String,
    pub mountpoint: PathBuf,
    pub v2: bool,
}

/// Cgroup mounts of this mount namespace, from /proc/self/mountinfo.
pub fn hierarchies() -> Result<Vec<Hierarchy>> {
    let info = fs::read_to_string("/proc/self/mountinfo").context("cannot read mountinfo")?;
    let mut out: Vec<Hierarchy> = Vec::new();
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split(' ');
        let (fstype, _src, opts) = (post.next(), post.next(), post.next().unwrap_or(""));
        let Some(mountpoint) = pre.split(' ').nth(4) else {
            continue;
        };
        let name = match fstype {
            Some("cgroup") => opts
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains("relatime"))
                .filter(|o| {
                    !matches!(
                        *o,
                        "nosuid" | "nodev" | "noexec" | "clone_children" | "xattr" | "noprefix"
                    )
                })
                .filter(|o| !o.starts_with("release_agent="))
                .collect::<Vec<_>>()
                .join(","),
            Some("cgroup2") => String::new(),
            _ => continue,
        };
        if out.iter().any(|h| h.name == name) {
            continue; // the same hierarchy mounted twice: keep the first
        }
        out.push(Hierarchy {
            name,
            mountpoint: PathBuf::from(unescape(mountpoint)),
            v2: fstype == Some("cgroup2"),
        });
    }
    Ok(out)
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\134", "\\")
}

/// This process's own cgroup path per hierarchy name (from /proc/self/cgroup).
fn own_cgroups() -> Result<BTreeMap<String, String>> {
    let data = fs::read_to_string("/proc/self/cgroup").context("cannot read /proc/self/cgroup")?;
    Ok(data
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, name, path) = (it.next()?, it.next()?, it.next()?);
            Some((name.to_string(), path.to_string()))
        })
        .collect())
}

/// Turns `slice:prefix:name` (systemd form) into the cgroupfs path systemd would use:
/// `/system.slice/prefix-name.scope`; `a-b.slice` nests as `/a.slice/a-b.slice`.
pub fn systemd_path(spec: &str, id: &str) -> Result<String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (slice, prefix, name) = match parts.as_slice() {
        [] | [""] => ("system.slice", "runtime", id),
        [s, p, n] => (*s, *p, *n),
        _ => bail!("cgroupsPath {spec:?}: expected \"slice:prefix:name\" with --systemd-cgroup"),
    };
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let Some(stem) = slice.strip_suffix(".slice") else {
        bail!("cgroupsPath {spec:?}: slice {slice:?} must end in .slice");
    };
    let mut path = String::new();
    if stem != "-" {
        let mut acc = String::new();
        for part in stem.split('-') {
            if part.is_empty() {
                bail!("cgroupsPath {spec:?}: invalid slice name {slice:?}");
            }
            if !acc.is_empty() {
                acc.push('-');
            }
            acc.push_str(part);
            path.push_str(&format!("/{acc}.slice"));
        }
    }
    let unit = if name.ends_with(".slice") || name.ends_with(".scope") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    Ok(format!("{path}/{unit}"))
}

/// The part of `r` that v1 controllers `ctrls` apply.
fn resources_for(r: &LinuxResources, ctrls: &[&str]) -> LinuxResources {
    let has = |c: &str| ctrls.contains(&c);
    let mut out = LinuxResources::default();
    if let Some(cpu) = r.cpu() {
        let mut cpu = cpu.clone();
        if !has("cpuset") {
            cpu.set_cpus(None).set_mems(None);
        }
        if !has("cpu") {
            cpu.set_shares(None)
                .set_quota(None)
                .set_period(None)
                .set_realtime_runtime(None)
                .set_realtime_period(None)
                .set_idle(None);
        }
        if has("cpu") || has("cpuset") {
            out.set_cpu(Some(cpu));
        }
    }
    if has("memory") {
        out.set_memory(*r.memory());
    }
    if has("pids") {
        out.set_pids(*r.pids());
    }
    if has("blkio") {
        out.set_block_io(r.block_io().clone());
    }
    if has("hugetlb") {
        out.set_hugepage_limits(r.hugepage_limits().clone());
    }
    if has("net_cls") || has("net_prio") {
        out.set_network(r.network().clone());
    }
    if has("devices") {
        out.set_devices(r.devices().clone());
    }
    out
}

fn clean(p: &str) -> Result<String> {
    let mut parts = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => bail!("cgroupsPath {p:?} must not contain \"..\""),
            c => parts.push(c),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

impl CgroupPaths {
    /// Resolves the cgroup of container `id` from `cgroupsPath` (absolute, relative to our
    /// own cgroup, or `slice:prefix:name` with `systemd`).
    pub fn resolve(cgroups_path: Option<&str>, id: &str, systemd: bool) -> Result<Self> {
        let raw = cgroups_path.unwrap_or("");
        let v2 = is_unified();
        let own = own_cgroups()?;
        let (rel, absolute) = if systemd {
            (systemd_path(raw, id)?, true)
        } else if raw.is_empty() {
            (id.to_string(), false)
        } else {
            (raw.to_string(), raw.starts_with('/'))
        };
        // Hybrid hosts: only the v1 hierarchies (as runc's cgroupfs driver); joining the
        // v2 mount there would need the slow cgroup.procs path.
        let mut dirs = BTreeMap::new();
        let mut paths = BTreeMap::new();
        for h in hierarchies()?.into_iter().filter(|h| h.v2 == v2) {
            let path = if absolute {
                clean(&rel)?
            } else {
                let base = own.get(&h.name).map(String::as_str).unwrap_or("/");
                clean(&format!("{base}/{rel}"))?
            };
            dirs.insert(
                h.name.clone(),
                h.mountpoint.join(path.trim_start_matches('/')),
            );
            paths.insert(h.name, path);
        }
        // The most common path is `path`; only the hierarchies that differ keep their own.
        let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
        for p in paths.values() {
            *counts.entry(p).or_default() += 1;
        }
        let path = counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(p, _)| p.clone())
            .ok_or_else(|| anyhow!("no cgroup hierarchy is mounted under {CGROUP_ROOT}"))?;
        paths.retain(|_, p| *p != path);
        Ok(CgroupPaths {
            v2,
            dirs,
            path,
            paths,
        })
    }

    /// The path of hierarchy `name` under its root.
    pub fn path_of(&self, name: &str) -> &str {
        self.paths.get(name).unwrap_or(&self.path)
    }

    /// Distinct paths, each with the controllers whose hierarchy has it there.
    fn groups(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut g: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        g.entry(self.path.as_str()).or_default();
        for name in self.dirs.keys() {
            g.entry(self.path_of(name))
                .or_default()
                .extend(name.split(','));
        }
        g
    }

    /// A cgroups-rs manager for each distinct path, with the part of `resources` whose
    /// controllers live there (all of it when there is one path).
    fn managers(&self) -> Result<Vec<(FsManager, Vec<&str>)>> {
        self.groups()
            .into_iter()
            .map(|(path, ctrls)| {
                let m = FsManager::new(path.trim_start_matches('/'))
                    .map_err(|e| anyhow!("cgroup {path}: {e}"))?;
                Ok((m, ctrls))
            })
            .collect()
    }

    fn dir_of(&self, controller: &str) -> Option<&Path> {
        if self.v2 {
            return self.dirs.get("").map(PathBuf::as_path);
        }
        self.dirs
            .iter()
            .find(|(name, _)| name.split(',').any(|c| c == controller))
            .map(|(_, d)| d.as_path())
    }

    /// The cgroup of container `id` as config.json's cgroupsPath names it.
    pub fn from_spec(spec: &oci_spec::runtime::Spec, id: &str, systemd: bool) -> Result<Self> {
        let path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.to_string_lossy().into_owned());
        Self::resolve(path.as_deref(), id, systemd)
    }

    /// `create`, then config.json's linux.resources.
    pub fn create_with(&self, spec: &oci_spec::runtime::Spec) -> Result<()> {
        self.create()?;
        match spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
            Some(r) => self.apply(r),
            None => Ok(()),
        }
    }

    /// Creates every directory (parents too) and prepares cpuset (v1) / controllers (v2).
    pub fn create(&self) -> Result<()> {
        for (name, dir) in &self.dirs {
            fs::create_dir_all(dir)
                .with_context(|| format!("cannot create cgroup {}", dir.display()))?;
            if !self.v2 && name.split(',').any(|c| c == "cpuset") {
                inherit_cpuset(dir)?;
            }
        }
        if self.v2 {
            if let Some(dir) = self.dirs.get("") {
                enable_controllers(dir)?;
            }
        }
        Ok(())
    }

    /// Moves the calling (single-threaded) process into the cgroup, cheaply: see the
    /// module comment.
    pub fn join_self(&self) -> Result<()> {
        for f in self.join_files() {
            write(&f, "0")?;
        }
        Ok(())
    }

    /// The files a single-threaded process writes "0" to in order to join (see join_self).
    pub fn join_files(&self) -> Vec<PathBuf> {
        let file = if self.v2 { "cgroup.procs" } else { "tasks" };
        self.dirs.values().map(|d| d.join(file)).collect()
    }

    /// Moves process `pid` into the cgroup.
    pub fn add_pid(&self, pid: i32) -> Result<()> {
        for dir in self.dirs.values() {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Applies `linux.resources`. Device rules get runc's default allowlist appended
    /// (the standard nodes, ptys, tun, and mknod of anything), as every runc container has.
    pub fn apply(&self, resources: &LinuxResources) -> Result<()> {
        let mut resources = resources.clone();
        if let Some(rules) = resources.devices().clone().filter(|r| !r.is_empty()) {
            let mut rules = rules;
            rules.extend(default_device_rules());
            // cgroups-rs writes a missing major/minor as 0; the kernel's wildcard is -1 ("*").
            for r in &mut rules {
                r.set_major(Some(r.major().unwrap_or(-1)));
                r.set_minor(Some(r.minor().unwrap_or(-1)));
            }
            if self.v2 {
                // No devices files on v2: the rules become an eBPF program.
                if let Some(dir) = self.dirs.get("") {
                    crate::devices_bpf::apply(dir, &rules)?;
                }
                resources.set_devices(None);
            } else {
                resources.set_devices(Some(rules));
            }
        }
        if self.paths.is_empty() {
            let mut m = FsManager::new(self.path.trim_start_matches('/'))
                .map_err(|e| anyhow!("cgroup {}: {e}", self.path))?;
            return m
                .set(&resources)
                .map_err(|e| anyhow!("cannot apply resources to cgroup {}: {e}", self.path));
        }
        for (mut m, ctrls) in self.managers()? {
            let part = resources_for(&resources, &ctrls);
            m.set(&part).map_err(|e| {
                anyhow!(
                    "cannot apply resources to cgroup {} ({}): {e}",
                    self.path,
                    ctrls.join(",")
                )
            })?;
        }
        Ok(())
    }

    pub fn stats(&self) -> Result<cgroups_rs::CgroupStats> {
        let mut all = self.managers()?;
        let (first, _) = all.remove(0);
        let mut stats = first.stats();
        // Where hierarchies differ, each part comes from its own controller's manager.
        for (m, ctrls) in all {
            let s = m.stats();
            if ctrls.contains(&"cpuacct") {
                stats.cpu = s.cpu;
            }
            if ctrls.contains(&"memory") {
                stats.memory = s.memory;
            }
            if ctrls.contains(&"pids") {
                stats.pids = s.pids;
            }
            if ctrls.contains(&"blkio") {
                stats.blkio = s.blkio;
            }
            if ctrls.contains(&"hugetlb") {
                stats.hugetlb = s.hugetlb;
            }
        }
        Ok(stats)
    }

    /// Host pids of every process in the container's cgroup.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let dir = ["pids", "freezer", "memory", "devices", "cpu"]
            .iter()
            .find_map(|c| self.dir_of(c))
            .or_else(|| self.dirs.values().next().map(PathBuf::as_path))
            .ok_or_else(|| anyhow!("no cgroup directory"))?;
        let data = fs::read_to_string(dir.join("cgroup.procs"))
            .with_context(|| format!("cannot read {}/cgroup.procs", dir.display()))?;
        Ok(data.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// The freezer directory: v1 freezer hierarchy, or the v2 cgroup itself.
    pub fn freezer_dir(&self) -> Option<&Path> {
        self.dir_of("freezer")
    }

    pub fn is_frozen(&self) -> bool {
        if self.v2 {
            return self
                .dir_of("")
                .and_then(|d| fs::read_to_string(d.join("cgroup.freeze")).ok())
                .map(|s| s.trim() == "1")
                .unwrap_or(false);
        }
        self.freezer_dir()
            .and_then(|d| fs::read_to_string(d.join("freezer.state")).ok())
            .map(|s| s.trim() != "THAWED")
            .unwrap_or(false)
    }

    /// Freezes every task and waits (polling every 100 µs up to 1 ms, then every ms)
    /// until the kernel reports the cgroup frozen.
    pub fn freeze(&self) -> Result<Duration> {
        let start = Instant::now();
        let dir = self
            .freezer_dir()
            .ok_or_else(|| anyhow!("no freezer cgroup for {}", self.path))?;
        let (file, want_file, want) = if self.v2 {
            ("cgroup.freeze", "cgroup.events", "frozen 1")
        } else {
            ("freezer.state", "freezer.state", "FROZEN")
        };
        let on = if self.v2 { "1" } else { "FROZEN" };
        for i in 0u32.. {
            if i % 1000 == 0 {
                write(&dir.join(file), on)?;
            }
            let state = fs::read_to_string(dir.join(want_file)).unwrap_or_default();
            if state.lines().any(|l| l.trim() == want) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.thaw();
                bail!("cgroup {} did not freeze within 10 s", dir.display());
            }
            std::thread::sleep(Duration::from_micros(if i < 10 { 100 } else { 1000 }));
        }
        unreachable!()
    }

    pub fn thaw(&self) -> Result<()> {
        let dir = self
            .freezer_dir()
            .ok_or_else(|| anyhow!("no freezer cgroup for {}", self.path))?;
        if self.v2 {
            write(&dir.join("cgroup.freeze"), "0")
        } else {
            write(&dir.join("freezer.state"), "THAWED")
        }
    }

    /// Removes every directory; tolerates missing ones; retries while tasks exit.
    pub fn destroy(&self) -> Result<()> {
        let mut last = None;
        for dir in self.dirs.values() {
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => {
                        last = Some(anyhow!("cannot remove cgroup {}: {e}", dir.display()));
                        break;
                    }
                }
            }
        }
        last.map_or(Ok(()), Err)
    }

    pub fn exists(&self) -> bool {
        self.dirs.values().any(|d| d.exists())
    }
}

/// runc's `AllowedDevices`.
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    let rule = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    use LinuxDeviceType::{B, C};
    vec![
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"),
        rule(C, Some(1), Some(8), "rwm"),
        rule(C, Some(1), Some(7), "rwm"),
        rule(C, Some(5), Some(0), "rwm"),
        rule(C, Some(1), Some(5), "rwm"),
        rule(C, Some(1), Some(9), "rwm"),
        rule(C, Some(136), None, "rwm"),
        rule(C, Some(5), Some(2), "rwm"),
        rule(C, Some(10), Some(200), "rwm"),
    ]
}

fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).with_context(|| format!("cannot write {value:?} to {}", path.display()))
}

/// A v1 cpuset cgroup needs cpus and mems before tasks can join: copy them down from
/// the nearest ancestor that has them.
fn inherit_cpuset(dir: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let mut chain = Vec::new();
        let mut d = dir;
        while fs::read_to_string(d.join(file))
            .map(|s| s.trim().is_empty())
            .unwrap_or(false)
        {
            chain.push(d);
            match d.parent() {
                Some(p) => d = p,
                None => break,
            }
        }
        let value = fs::read_to_string(d.join(file)).unwrap_or_default();
        for d in chain.iter().rev() {
            write(&d.join(file), value.trim())?;
        }
    }
    Ok(())
}

/// v2: enable every available controller in each ancestor's subtree_control.
fn enable_controllers(dir: &Path) -> Result<()> {
    let root = Path::new(CGROUP_ROOT);
    let Ok(rel) = dir.strip_prefix(root) else {
        return Ok(());
    };
    let mut cur = root.to_path_buf();
    for comp in rel.components() {
        let avail = fs::read_to_string(cur.join("cgroup.controllers")).unwrap_or_default();
        let want: Vec<String> = avail.split_whitespace().map(|c| format!("+{c}")).collect();
        if !want.is_empty() {
            // Best effort: a controller busy in a parent with tasks is left as it is.
            let _ = fs::write(cur.join("cgroup.subtree_control"), want.join(" "));
        }
        cur.push(comp);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_split_by_controller() {
        let r: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 1048576},
            "pids": {"limit": 5},
            "cpu": {"shares": 100, "cpus": "0"}
        }))
        .unwrap();
        let mem = resources_for(&r, &["memory"]);
        assert_eq!(mem.memory().and_then(|m| m.limit()), Some(1048576));
        assert!(mem.pids().is_none() && mem.cpu().is_none());
        let cpu = resources_for(&r, &["cpu", "cpuacct"]);
        let c = cpu.cpu().clone().unwrap();
        assert_eq!((c.shares(), c.cpus().clone()), (Some(100), None));
        let cpuset = resources_for(&r, &["cpuset"]);
        let c = cpuset.cpu().clone().unwrap();
        assert_eq!((c.shares(), c.cpus().as_deref()), (None, Some("0")));
        assert!(resources_for(&r, &["name=systemd"]) == LinuxResources::default());
    }

    #[test]
    fn systemd_paths() {
        assert_eq!(
            systemd_path("system.slice:libpod:abc", "x").unwrap(),
            "/system.slice/libpod-abc.scope"
        );
        assert_eq!(
            systemd_path("a-b.slice:p:n", "x").unwrap(),
            "/a.slice/a-b.slice/p-n.scope"
        );
        assert_eq!(
            systemd_path("", "x").unwrap(),
            "/system.slice/runtime-x.scope"
        );
        assert!(systemd_path("bad:x", "x").is_err());
        assert!(systemd_path("noslice:p:n", "x").is_err());
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean("a//b/./c").unwrap(), "/a/b/c");
        assert!(clean("/a/../b").is_err());
    }
}
