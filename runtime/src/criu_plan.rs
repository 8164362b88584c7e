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

/// Asks the kernel (netfilter netlink, in the namespace of `pid`) whether any nftables
/// table exists there.
fn has_nft_tables(pid: i32) -> Result<bool> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    const NFT_MSG_GETTABLE: u16 = 1;
    const NFT_MSG_NEWTABLE: u16 = 0;
    let theirs = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    let ours = std::fs::File::open("/proc/self/ns/net")?;
    nix::sched::setns(&theirs, nix::sched::CloneFlags::CLONE_NEWNET)?;
    // SAFETY: a netlink socket created in the container's netns; we go back at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        )
    };
    nix::sched::setns(&ours, nix::sched::CloneFlags::CLONE_NEWNET)?;
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: the fd we just created.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // nlmsghdr (16 bytes) + nfgenmsg (4 bytes: family, version, res_id).
    let mut req = [0u8; 20];
    req[0..4].copy_from_slice(&20u32.to_ne_bytes());
    req[4..6].copy_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE).to_ne_bytes());
    req[6..8].copy_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    // SAFETY: send/recv on our socket with local buffers.
    if unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let mut buf = vec![0u8; 16384];
    loop {
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let mut off = 0usize;
        while off + 16 <= n as usize {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into()?) as usize;
            let typ = u16::from_ne_bytes(buf[off + 4..off + 6].try_into()?);
            if typ == libc::NLMSG_DONE as u16 {
                return Ok(false);
            }
            if typ == libc::NLMSG_ERROR as u16 {
                bail!("netfilter netlink error");
            }
            if typ == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE {
                return Ok(true);
            }
            if len < 16 {
                bail!("bad netlink message");
            }
            off += (len + 3) & !3;
        }
    }
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
