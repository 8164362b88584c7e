//! Linux namespaces from config.json: which to create (clone flags), which to join by
//! path (opened early, joined with setns), and the user namespace id maps.

use anyhow::{bail, Context, Result};
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// Name used under /proc/<pid>/ns/.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// A namespace to join: its type and an open fd.
pub struct Join {
    pub typ: LinuxNamespaceType,
    pub fd: OwnedFd,
    pub path: PathBuf,
}

/// The namespace plan of a container.
pub struct Plan {
    /// CLONE_NEW* flags of the namespaces to create.
    pub create: CloneFlags,
    /// Namespaces to join, user first (it grants the rights to join the others).
    pub join: Vec<Join>,
}

impl Plan {
    pub fn from_spec(spec: &Spec) -> Result<Plan> {
        let mut create = CloneFlags::empty();
        let mut join = Vec::new();
        let nss = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        for ns in &nss {
            match ns.path() {
                None => create |= flag(ns.typ()),
                Some(p) => {
                    let f = File::open(p).with_context(|| {
                        format!("cannot open {} namespace {}", ns.typ(), p.display())
                    })?;
                    join.push(Join {
                        typ: ns.typ(),
                        fd: f.into(),
                        path: p.clone(),
                    });
                }
            }
        }
        join.sort_by_key(|j| j.typ != LinuxNamespaceType::User);
        if join.iter().any(|j| j.typ == LinuxNamespaceType::User)
            && create.contains(CloneFlags::CLONE_NEWPID)
        {
            bail!("joining a user namespace by path together with a new pid namespace is not supported");
        }
        Ok(Plan { create, join })
    }

    /// Namespaces that apply to children only (pid, time): the runtime joins them itself
    /// just around the clone. Removed from `join`.
    pub fn take_for_children(&mut self) -> Vec<Join> {
        let (kids, rest) = std::mem::take(&mut self.join)
            .into_iter()
            .partition(|j| matches!(j.typ, LinuxNamespaceType::Pid | LinuxNamespaceType::Time));
        self.join = rest;
        kids
    }

    pub fn creates(&self, t: LinuxNamespaceType) -> bool {
        self.create.contains(flag(t))
    }

    pub fn joins(&self, t: LinuxNamespaceType) -> bool {
        self.join.iter().any(|j| j.typ == t)
    }
}

fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Writes /proc/<pid>/{uid,gid}_map for a child that created a user namespace.
pub fn write_id_maps(pid: i32, spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let uid = linux
        .and_then(|l| l.uid_mappings().clone())
        .unwrap_or_default();
    let gid = linux
        .and_then(|l| l.gid_mappings().clone())
        .unwrap_or_default();
    for (file, maps) in [("uid_map", &uid), ("gid_map", &gid)] {
        let p = format!("/proc/{pid}/{file}");
        std::fs::write(&p, map_text(maps)).with_context(|| format!("cannot write {p}"))?;
    }
    Ok(())
}

/// Host uid/gid that container id `id` maps to (identity without a user namespace).
pub fn host_id(maps: Option<&Vec<LinuxIdMapping>>, id: u32) -> Option<u32> {
    let Some(maps) = maps.filter(|m| !m.is_empty()) else {
        return Some(id);
    };
    maps.iter().find_map(|m| {
        (id >= m.container_id() && id - m.container_id() < m.size())
            .then(|| m.host_id() + (id - m.container_id()))
    })
}

/// Brings `lo` up in a new network namespace (runc does; nothing else would).
pub fn loopback_up() -> Result<()> {
    // SAFETY: an ioctl pair on a socket we own, with a zeroed, NUL-terminated ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            bail!("cannot bring lo up: {}", std::io::Error::last_os_error());
        }
        let sock = <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        use std::os::fd::AsRawFd;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            bail!(
                "cannot read lo's flags: {}",
                std::io::Error::last_os_error()
            );
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            bail!("cannot bring lo up: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Joins pid/time namespaces for our next child; returns how to go back to ours (so hooks
/// the runtime runs later stay in the runtime's namespaces).
#[allow(clippy::type_complexity)]
pub fn enter_for_children(joins: &[Join]) -> Result<Option<Box<dyn FnOnce() -> Result<()>>>> {
    if joins.is_empty() {
        return Ok(None);
    }
    let mut back = Vec::new();
    for j in joins {
        let own = File::open(format!("/proc/self/ns/{}", proc_name(j.typ)))
            .with_context(|| format!("cannot open our own {} namespace", j.typ))?;
        nix::sched::setns(&j.fd, flag(j.typ))
            .with_context(|| format!("cannot join {} namespace {}", j.typ, j.path.display()))?;
        back.push((j.typ, own));
    }
    Ok(Some(Box::new(move || {
        for (t, own) in back {
            nix::sched::setns(&own, flag(t))
                .with_context(|| format!("cannot return to our {t} namespace"))?;
        }
        Ok(())
    })))
}

/// A new time namespace cannot be made by clone with offsets (they must be written before
/// any process is inside): unshare it for our children, write linux.timeOffsets, and
/// return how to go back to our own.
#[allow(clippy::type_complexity)]
pub fn new_time_ns_for_children(spec: &Spec) -> Result<Box<dyn FnOnce() -> Result<()>>> {
    let own = File::open("/proc/self/ns/time").context("cannot open our time namespace")?;
    nix::sched::unshare(flag(LinuxNamespaceType::Time))
        .context("cannot create a time namespace")?;
    let offsets = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().clone())
        .unwrap_or_default();
    let mut text = String::new();
    for (clock, o) in &offsets {
        if !matches!(clock.as_str(), "monotonic" | "boottime") {
            bail!("linux.timeOffsets: unknown clock {clock:?} (monotonic or boottime)");
        }
        text.push_str(&format!(
            "{clock} {} {}\n",
            o.secs().unwrap_or(0),
            o.nanosecs().unwrap_or(0)
        ));
    }
    if !text.is_empty() {
        std::fs::write("/proc/self/timens_offsets", text)
            .context("cannot write the time namespace offsets")?;
    }
    Ok(Box::new(move || {
        nix::sched::setns(&own, flag(LinuxNamespaceType::Time))
            .context("cannot return to our time namespace")
    }))
}
