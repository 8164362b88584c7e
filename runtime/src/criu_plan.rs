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
    /// The container's own cgroup directory of one v1 hierarchy.
    CgroupDir(PathBuf),
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

/// The external mounts of a container created from `spec`. `masked_files` are the masked
/// paths that are files (bound to /dev/null), as found in the container's mount table.
pub fn external_mounts(
    spec: &Spec,
    bundle: &Path,
    cgroup: &CgroupPaths,
    masked_files: &[PathBuf],
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
            for (name, dir) in &cgroup.dirs {
                let sub = name.strip_prefix("name=").unwrap_or(name);
                out.push(External {
                    key: key.join(sub),
                    source: Source::CgroupDir(dir.clone()),
                });
            }
        }
    }
    for p in masked_files {
        out.push(External {
            key: clean(p),
            source: Source::DevNull,
        });
    }
    Ok(out)
}

/// Masked paths of the config that are /dev/null binds in the container (pid's mounts).
pub fn masked_files(spec: &Spec, pid: i32) -> Vec<PathBuf> {
    let masked: Vec<PathBuf> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default()
        .iter()
        .map(|p| clean(Path::new(p)))
        .collect();
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let mut out = Vec::new();
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let point = pre.split(' ').nth(4).unwrap_or("");
        let fstype = post.split(' ').next().unwrap_or("");
        let point = PathBuf::from(point.replace("\\040", " "));
        if fstype == "devtmpfs" && masked.contains(&point) && !out.contains(&point) {
            out.push(point);
        }
    }
    out
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
        };
        let ext =
            external_mounts(&spec, Path::new("/b"), &cg, &[PathBuf::from("/proc/kcore")]).unwrap();
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
                "/sys/fs/cgroup/memory",
                "/proc/kcore"
            ]
        );
        assert_eq!(ext[1].source, Source::Bind("/b/data".into()));
        assert_eq!(ext[2].source, Source::Tmpfs(1));
        assert_eq!(ext[4].source, Source::DevNull);
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
