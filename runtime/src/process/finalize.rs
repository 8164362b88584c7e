//! The last steps before a container process becomes the user's program, shared by the
//! init and by exec: rlimits, LSM labels, user and groups, capabilities,
//! no_new_privs, seccomp, closing the runtime's fds, and execve.

use crate::{capabilities, seccomp};
use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::{Process, Spec};
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// rlimits from process.rlimits.
pub fn set_rlimits(p: &Process) -> Result<()> {
    for r in p.rlimits().iter().flatten() {
        let name = serde_json::to_value(r.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let res = resource(&name).ok_or_else(|| anyhow!("unknown rlimit {name}"))?;
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: setrlimit with a valid struct.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot set {name}"));
        }
    }
    Ok(())
}

fn resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

/// AppArmor profile / SELinux label for the next exec, when the host has that LSM.
pub fn set_lsm_labels(p: &Process) -> Result<()> {
    if let Some(profile) = p.apparmor_profile().as_ref().filter(|s| !s.is_empty()) {
        if Path::new("/sys/kernel/security/apparmor").exists() {
            let f = if Path::new("/proc/self/attr/apparmor/exec").exists() {
                "/proc/self/attr/apparmor/exec"
            } else {
                "/proc/self/attr/exec"
            };
            std::fs::write(f, format!("exec {profile}"))
                .with_context(|| format!("cannot apply AppArmor profile {profile}"))?;
        } else {
            crate::debug!("AppArmor is not enabled on this host: profile {profile} not applied");
        }
    }
    if let Some(label) = p.selinux_label().as_ref().filter(|s| !s.is_empty()) {
        if Path::new("/sys/fs/selinux/enforce").exists() {
            std::fs::write("/proc/self/attr/exec", label)
                .with_context(|| format!("cannot apply SELinux label {label}"))?;
        } else {
            crate::debug!("SELinux is not enabled on this host: label {label} not applied");
        }
    }
    Ok(())
}

/// Everything after the environment is ready: user, capabilities, no_new_privs and
/// seccomp, in the order that lets each step still have the rights it needs.
pub fn drop_privileges(spec: &Spec, p: &Process) -> Result<()> {
    let caps = p.capabilities().as_ref();
    let nnp = p.no_new_privileges().unwrap_or(false);
    let filter = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(seccomp::build(s)?),
        None => None,
    };
    set_lsm_labels(p)?;
    capabilities::apply_bounding(caps)?;
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we have it.
    if !nnp {
        if let Some(f) = &filter {
            seccomp::load(f)?;
        }
    }
    set_user(spec, p)?;
    capabilities::apply_rest(caps)?;
    if nnp {
        // SAFETY: prctl with constant arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            bail!(
                "cannot set no_new_privs: {}",
                std::io::Error::last_os_error()
            );
        }
        if let Some(f) = &filter {
            seccomp::load(f)?;
        }
    }
    Ok(())
}

fn set_user(spec: &Spec, p: &Process) -> Result<()> {
    let u = p.user();
    let (uid, gid) = (u.uid(), u.gid());
    // SAFETY: prctl/setgroups/setres[ug]id with plain values.
    unsafe {
        libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
        let groups: Vec<libc::gid_t> = u.additional_gids().clone().unwrap_or_default();
        let in_userns = spec
            .linux()
            .as_ref()
            .is_some_and(|l| l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty()));
        let setgroups_allowed = !in_userns
            || std::fs::read_to_string("/proc/self/setgroups")
                .map(|s| s.trim() == "allow")
                .unwrap_or(true);
        if setgroups_allowed && libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
            bail!(
                "cannot set additional groups {groups:?}: {}",
                std::io::Error::last_os_error()
            );
        }
        if libc::setresgid(gid, gid, gid) != 0 {
            bail!("cannot set gid {gid}: {}", std::io::Error::last_os_error());
        }
        if libc::setresuid(uid, uid, uid) != 0 {
            bail!("cannot set uid {uid}: {}", std::io::Error::last_os_error());
        }
        libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
    }
    Ok(())
}

/// `PATH` from the process environment (or the default one).
fn path_var(env: &[String]) -> String {
    env.iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .to_string()
}

/// Finds the program to run the way runc reports it (the messages engines map to exit
/// codes 126/127).
pub fn find_program(p: &Process) -> Result<PathBuf> {
    let args = p.args().clone().unwrap_or_default();
    let Some(arg0) = args.first() else {
        bail!("process.args is empty");
    };
    let check = |path: &Path| -> Result<()> {
        let md = std::fs::metadata(path)
            .map_err(|e| anyhow!("exec: {arg0:?}: stat {}: {}", path.display(), io_text(&e)))?;
        use std::os::unix::fs::PermissionsExt;
        if md.is_dir() || md.permissions().mode() & 0o111 == 0 {
            bail!("exec: {arg0:?}: permission denied");
        }
        Ok(())
    };
    if arg0.contains('/') {
        let p = PathBuf::from(arg0);
        check(&p)?;
        return Ok(p);
    }
    let env = p.env().clone().unwrap_or_default();
    for dir in path_var(&env).split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(arg0);
        if let Ok(md) = std::fs::metadata(&cand) {
            use std::os::unix::fs::PermissionsExt;
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                return Ok(cand);
            }
        }
    }
    bail!("exec: {arg0:?}: executable file not found in $PATH")
}

/// io::Error text without Rust's " (os error N)" suffix: matches runc's wording.
pub fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s,
    }
}

/// Closes every runtime fd (>= 3 + preserved) on exec, then execs the program.
/// The home directory of `uid` in the container's /etc/passwd ("/" if none): runc sets
/// HOME from it when the config does not.
pub fn home_of(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
            })
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

fn with_home(p: &Process, home: &str) -> Vec<String> {
    let mut env = p.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    env
}

/// Execs the program; `home` is the user's home directory (read before privileges were
/// dropped, see `home_of`).
pub fn exec(
    p: &Process,
    program: &Path,
    preserve_fds: u32,
    home: &str,
) -> Result<std::convert::Infallible> {
    crate::sys::cloexec_from(3 + preserve_fds).context("close_range")?;
    for fd in 3..3 + preserve_fds as i32 {
        // SAFETY: clearing FD_CLOEXEC on fds the caller asked to pass through.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
    if let Some(mask) = p.user().umask() {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    let prog = CString::new(program.as_os_str().as_encoded_bytes())?;
    let args: Vec<CString> = p
        .args()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(CString::new)
        .collect::<Result<_, _>>()?;
    let env: Vec<CString> = with_home(p, home)
        .into_iter()
        .map(CString::new)
        .collect::<Result<_, _>>()?;
    let e = nix::unistd::execve(&prog, &args, &env).unwrap_err();
    let arg0 = p
        .args()
        .as_ref()
        .and_then(|a| a.first().cloned())
        .unwrap_or_default();
    Err(anyhow!(
        "exec: {arg0:?}: {}",
        io_text(&std::io::Error::from_raw_os_error(e as i32))
    ))
}
