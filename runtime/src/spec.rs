//! Loading and validating a bundle's config.json before anything is created.

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A validated bundle: the spec plus absolute bundle and rootfs paths.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub spec: Spec,
}

/// The bundle directory given with `--bundle`, or the current directory.
pub fn bundle_dir(arg: Option<&Path>) -> Result<PathBuf> {
    let dir = match arg {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::canonicalize(&dir)
        .with_context(|| format!("bundle directory {} does not exist", dir.display()))
}

impl Bundle {
    /// Reads `<dir>/config.json` and checks it can be run.
    pub fn load(dir: &Path) -> Result<Bundle> {
        let path = dir.join("config.json");
        let data =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let spec: Spec =
            serde_json::from_slice(&data).with_context(|| format!("invalid {}", path.display()))?;
        Self::from_spec(dir, spec)
    }

    pub fn from_spec(dir: &Path, spec: Spec) -> Result<Bundle> {
        let cfg = dir.join("config.json");
        let cfg = cfg.display();
        let Some(root) = spec.root() else {
            bail!("{cfg}: root is missing");
        };
        let rootfs = if root.path().is_absolute() {
            root.path().clone()
        } else {
            dir.join(root.path())
        };
        let rootfs = std::fs::canonicalize(&rootfs)
            .with_context(|| format!("{cfg}: rootfs {} does not exist", rootfs.display()))?;
        if !rootfs.is_dir() {
            bail!("{cfg}: rootfs {} is not a directory", rootfs.display());
        }
        validate(&spec).with_context(|| format!("invalid {cfg}"))?;
        Ok(Bundle {
            dir: dir.to_path_buf(),
            rootfs,
            spec,
        })
    }
}

fn validate(spec: &Spec) -> Result<()> {
    let Some(process) = spec.process() else {
        bail!("process is missing");
    };
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        bail!("process.args must name a program");
    }
    if !process.cwd().is_absolute() {
        bail!("process.cwd {:?} must be absolute", process.cwd());
    }
    let Some(linux) = spec.linux() else {
        bail!("linux section is missing");
    };
    let mut seen = HashSet::new();
    let mut user_ns = false;
    for ns in linux.namespaces().iter().flatten() {
        if !seen.insert(ns.typ()) {
            bail!("namespace {} is listed twice", ns.typ());
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                bail!(
                    "namespace {} path {} must be absolute",
                    ns.typ(),
                    p.display()
                );
            }
        }
        if ns.typ() == LinuxNamespaceType::User && ns.path().is_none() {
            user_ns = true;
        }
    }
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        && linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if user_ns && !has_maps {
        bail!("a new user namespace needs linux.uidMappings and linux.gidMappings");
    }
    if !user_ns && (linux.uid_mappings().is_some() || linux.gid_mappings().is_some()) {
        let any = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if any && !seen.contains(&LinuxNamespaceType::User) {
            bail!("uidMappings are set but no user namespace is configured");
        }
    }
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            bail!(
                "mount destination {} must be absolute",
                m.destination().display()
            );
        }
    }
    for (k, _) in linux.sysctl().iter().flatten() {
        if k.contains("..") || k.starts_with('/') {
            bail!("invalid sysctl name {k:?}");
        }
        check_sysctl(k, &seen)?;
    }
    Ok(())
}

/// A sysctl may only be set when it belongs to a namespace the container has its own
/// copy of (as runc checks): anything else would change the host.
fn check_sysctl(k: &str, nss: &HashSet<LinuxNamespaceType>) -> Result<()> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let (needs, name) = if IPC.contains(&k) || k.starts_with("fs.mqueue.") {
        (LinuxNamespaceType::Ipc, "ipc")
    } else if k.starts_with("net.") {
        (LinuxNamespaceType::Network, "network")
    } else if k == "kernel.hostname" || k == "kernel.domainname" {
        (LinuxNamespaceType::Uts, "uts")
    } else {
        bail!("sysctl {k:?} is not in a separate kernel namespace: refused (it would change the host)");
    };
    if !nss.contains(&needs) {
        bail!("sysctl {k:?} needs a {name} namespace of the container's own");
    }
    Ok(())
}

/// Is namespace `t` in the config, and with which path?
pub fn namespace(spec: &Spec, t: LinuxNamespaceType) -> Option<Option<PathBuf>> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == t)
        .map(|n| n.path().clone())
}
