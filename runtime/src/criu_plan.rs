//! What CRIU must be told about a container, shared by checkpoint and restore: which mounts
//! are external (and what to mount there at restore), which namespaces are external, and
//! the options both directions take from the command line.

use crate::cgroups::CgroupPaths;
use crate::criu::rpc::{CriuCgMode, CriuNetworkLockMethod};
use crate::safepath::clean;
use anyhow::{bail, Result};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::path::{Path, PathBuf};

/// What an external mount is backed by at restore time.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A bind mount's host source (from the restore-time config).
    Bind(PathBuf),
    /// The n-th tmpfs mount of config.json: a fresh tmpfs filled from its archive.
    Tmpfs(usize),
    /// A masked file: the host's /dev/null.
    DevNull,
    /// A masked directory (an empty read-only tmpfs): an empty directory.
    EmptyDir,
    /// The tmpfs holding the v1 cgroup binds: a directory with one subdirectory each.
    CgroupRoot(Vec<String>),
    /// The container's own cgroup directory of one v1 hierarchy.
    CgroupDir(PathBuf),
}

impl Source {
    /// The name recorded in the manifest.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Bind(_) => "bind",
            Source::Tmpfs(_) => "tmpfs",
            Source::DevNull => "dev-null",
            Source::EmptyDir => "empty-dir",
            Source::CgroupRoot(_) => "cgroup-root",
            Source::CgroupDir(_) => "cgroup-dir",
        }
    }
}

/// Masked paths as the container has them: files bound to /dev/null, directories covered
/// by an empty tmpfs.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Masked {
    pub files: Vec<PathBuf>,
    pub dirs: Vec<PathBuf>,
}

/// An external mount: CRIU's key (the destination inside the container) and its source.
#[derive(Debug, Clone, PartialEq)]
pub struct External {
    pub key: PathBuf,
    pub source: Source,
}

fn is_bind(m: &oci_spec::runtime::Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

/// The external mounts of a container created from `spec`, with its masked paths as found
/// in its mount table. Everything CRIU would otherwise archive with tar (one exec per
/// mount) is external: config binds and tmpfs, the cgroup tmpfs, masked paths.
pub fn external_mounts(
    spec: &Spec,
    bundle: &Path,
    cgroup: &CgroupPaths,
    masked: &Masked,
) -> Result<Vec<External>> {
    let mut out = Vec::new();
    let mut tmpfs = 0;
    for m in spec.mounts().iter().flatten() {
        let key = clean(m.destination());
        let typ = m.typ().as_deref().unwrap_or("");
        if is_bind(m) {
            out.push(External {
                key,
                source: Source::Bind(crate::mounts::bind_source(bundle, m)?),
            });
        } else if typ == "tmpfs" {
            out.push(External {
                key,
                source: Source::Tmpfs(tmpfs),
            });
            tmpfs += 1;
        } else if (typ == "cgroup" || typ == "cgroup2") && !cgroup.v2 {
            let subs: Vec<String> = cgroup
                .dirs
                .keys()
                .map(|n| n.strip_prefix("name=").unwrap_or(n).to_string())
                .collect();
            out.push(External {
                key: key.clone(),
                source: Source::CgroupRoot(subs.clone()),
            });
            for ((_, dir), sub) in cgroup.dirs.iter().zip(subs) {
                out.push(External {
                    key: key.join(sub),
                    source: Source::CgroupDir(dir.clone()),
                });
            }
        }
    }
    for p in &masked.files {
        out.push(External {
            key: clean(p),
            source: Source::DevNull,
        });
    }
    for p in &masked.dirs {
        out.push(External {
            key: clean(p),
            source: Source::EmptyDir,
        });
    }
    Ok(out)
}

/// Masked paths of the config as mounted in the container of `pid`.
pub fn masked_mounts(spec: &Spec, pid: i32) -> Masked {
    let masked: Vec<PathBuf> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default()
        .iter()
        .map(|p| clean(Path::new(p)))
        .collect();
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let mut out = Masked::default();
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let point = PathBuf::from(pre.split(' ').nth(4).unwrap_or("").replace("\\040", " "));
        if !masked.contains(&point) || out.files.contains(&point) || out.dirs.contains(&point) {
            continue;
        }
        // A file mask is the host's /dev/null; anything else covers a directory (a tmpfs,
        // or after a restore the empty directory it was restored from).
        match post.split(' ').next().unwrap_or("") {
            "devtmpfs" => out.files.push(point),
            _ => out.dirs.push(point),
        }
    }
    out
}

/// Is the private network namespace of `pid` bare: only `lo`, no routes of its own, no
/// iptables or nftables tables? Such a namespace is checkpointed empty and restored as a
/// fresh one with `lo` up, sparing CRIU's ip/iptables runs (~35 ms dump, ~20 ms restore).
pub fn bare_netns(pid: i32) -> bool {
    let read =
        |f: &str| std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).unwrap_or_default();
    let devs: Vec<String> = read("dev")
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|s| s.trim().to_string()))
        .collect();
    let routes = read("route").lines().skip(1).count()
        + read("ipv6_route")
            .lines()
            .filter(|l| !l.ends_with(" lo"))
            .count();
    devs == ["lo"]
        && routes == 0
        && read("ip_tables_names").trim().is_empty()
        && read("ip6_tables_names").trim().is_empty()
        && !has_nft_tables(pid).unwrap_or(true)
}

/// Does the network namespace of `pid` hold any nftables table?
fn has_nft_tables(pid: i32) -> Result<bool> {
    let ns = PathBuf::from(format!("/proc/{pid}/ns/net"));
    Ok(!crate::nftables::tables(&ns, 0)?.is_empty())
}

/// Brings `lo` up in the network namespace of `pid` (a bare namespace comes back down).
pub fn loopback_up_in(pid: i32) -> Result<()> {
    let theirs = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    let ours = std::fs::File::open("/proc/self/ns/net")?;
    nix::sched::setns(&theirs, nix::sched::CloneFlags::CLONE_NEWNET)?;
    let r = crate::namespaces::loopback_up();
    nix::sched::setns(&ours, nix::sched::CloneFlags::CLONE_NEWNET)?;
    r
}

/// The run id CRIU logged (the last "CRIU run id = " line: its worker's, which names the
/// network lock table).
pub fn criu_run_id(log: &Path) -> String {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .take(5)
        .filter_map(|l| l.split("CRIU run id = ").nth(1))
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The network namespace path of the config, if given by path.
pub fn netns_path(spec: &Spec) -> Option<PathBuf> {
    crate::spec::namespace(spec, LinuxNamespaceType::Network).flatten()
}

/// CRIU's `external` key of a namespace given by path in the config.
pub fn external_ns_key(t: LinuxNamespaceType) -> Option<&'static str> {
    match t {
        LinuxNamespaceType::Network => Some("extRootNetNS"),
        LinuxNamespaceType::Pid => Some("extRootPidNS"),
        _ => None,
    }
}

/// `--manage-cgroups-mode` value.
pub fn cg_mode(s: Option<&str>) -> Result<Option<CriuCgMode>> {
    Ok(match s {
        None | Some("") => None,
        Some("soft") => Some(CriuCgMode::Soft),
        Some("full") => Some(CriuCgMode::Full),
        Some("strict") => Some(CriuCgMode::Strict),
        Some("ignore") => Some(CriuCgMode::Ignore),
        Some(o) => bail!("invalid --manage-cgroups-mode {o:?}: use soft, full, strict or ignore"),
    })
}

/// `--empty-ns` names to CRIU's bitmask of CLONE_NEW* flags.
pub fn empty_ns(names: &[String]) -> Result<Option<u32>> {
    let mut mask = 0u32;
    for n in names.iter().flat_map(|n| n.split(',')) {
        mask |= match n {
            "network" | "net" => libc::CLONE_NEWNET as u32,
            "" => 0,
            o => bail!("--empty-ns {o:?}: only network can be checkpointed empty"),
        };
    }
    Ok((mask != 0).then_some(mask))
}

/// How CRIU locks the network while the tree is frozen: with nftables, in-process (no
/// iptables-restore exec, ~40 ms less per run) when TCP connections must be kept;
/// not at all otherwise (no established connection needs protecting).
pub fn network_lock(tcp_established: bool) -> CriuNetworkLockMethod {
    if tcp_established {
        CriuNetworkLockMethod::Nftables
    } else {
        CriuNetworkLockMethod::Skip
    }
}

/// The criu binary: --criu, else /usr/local/sbin/criu if present, else `criu` in PATH.
pub fn criu_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .unwrap_or_else(crate::criu::default_criu_path)
}

/// `org.criu.config` annotation, else /etc/criu/runtime.conf if present: CRIU reads it
/// after the RPC options, so it can override them (documented in the README).
pub fn config_file(spec: &Spec) -> Option<String> {
    if let Some(v) = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get("org.criu.config"))
    {
        return (!v.is_empty()).then(|| v.clone());
    }
    let p = Path::new("/etc/criu/runtime.conf");
    p.exists().then(|| p.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn externals_from_config() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind"]},
                {"destination": "/run/", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"}
            ]
        }))
        .unwrap();
        let cg = CgroupPaths {
            v2: false,
            dirs: [(
                "memory".to_string(),
                PathBuf::from("/sys/fs/cgroup/memory/c"),
            )]
            .into(),
            path: "/c".into(),
            paths: Default::default(),
        };
        let masked = Masked {
            files: vec![PathBuf::from("/proc/kcore")],
            dirs: vec![PathBuf::from("/proc/acpi")],
        };
        let ext = external_mounts(&spec, Path::new("/b"), &cg, &masked).unwrap();
        let keys: Vec<_> = ext
            .iter()
            .map(|e| e.key.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            keys,
            [
                "/dev",
                "/data",
                "/run",
                "/sys/fs/cgroup",
                "/sys/fs/cgroup/memory",
                "/proc/kcore",
                "/proc/acpi"
            ]
        );
        assert_eq!(ext[1].source, Source::Bind("/b/data".into()));
        assert_eq!(ext[2].source, Source::Tmpfs(1));
        assert_eq!(ext[3].source, Source::CgroupRoot(vec!["memory".into()]));
        assert_eq!(ext[5].source, Source::DevNull);
        assert_eq!(ext[6].source, Source::EmptyDir);
    }

    #[test]
    fn modes_and_empty_ns() {
        assert_eq!(cg_mode(Some("ignore")).unwrap(), Some(CriuCgMode::Ignore));
        assert!(cg_mode(Some("bogus")).is_err());
        assert_eq!(
            empty_ns(&["network".into()]).unwrap(),
            Some(libc::CLONE_NEWNET as u32)
        );
        assert!(empty_ns(&["pid".into()]).is_err());
    }
}
