//! Announcing after a restore: at CRIU's setup-namespaces notification the state's pid is a
//! task CRIU is still restoring (its executable is CRIU's). The address is added at once, but
//! the gratuitous ARP is left to a detached helper (this binary, re-run with a hidden first
//! argument) that sends it once the task runs its own program again, i.e. once CRIU has
//! rebuilt its sockets. CRIU does not lock a network namespace it did not create, so a client
//! reaching this host earlier would find no socket and get a reset.

use crate::args::Args;
use crate::state::State;
use crate::{garp, log_line, ARP_GAP};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Hidden first argument of the helper that announces after a restore.
pub const DEFERRED: &str = "__announce-after-restore";
/// How long the helper waits for CRIU to finish the restore.
const RESTORE_WAIT: Duration = Duration::from_secs(60);

/// Where a task stands, seen from its executable.
#[derive(Debug, PartialEq, Eq)]
pub enum Task {
    /// Still CRIU's binary: being restored.
    Restoring,
    /// Its own program: created normally, or restored and about to resume.
    Running,
    /// Gone (or a zombie): a restore that failed.
    Gone,
}

pub fn task(pid: i32) -> Task {
    match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(p) if exe_is_criu(&p) => Task::Restoring,
        Ok(_) => Task::Running,
        Err(_) => Task::Gone,
    }
}

fn exe_is_criu(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == "criu" || n.starts_with("criu "))
}

/// Starts the helper that announces once CRIU has restored task `pid`. It inherits this
/// process's network namespace and nothing of its stdio, so the runtime does not wait for it.
pub fn spawn_deferred(
    pid: i32,
    ifindex: i32,
    mac: [u8; 6],
    a: &Args,
    state: &State,
) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let mac = mac.map(|b| format!("{b:02x}")).join(":");
    Command::new(exe)
        .args([
            DEFERRED.to_string(),
            pid.to_string(),
            ifindex.to_string(),
            mac,
            a.addr.to_string(),
            a.arp_count.to_string(),
            a.log
                .as_deref()
                .map_or("-".into(), |p| p.display().to_string()),
            state.id.clone().unwrap_or_else(|| "-".into()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
        .map_err(|e| format!("cannot start the announcing helper: {e}"))
}

/// The helper: waits while `pid` runs CRIU's binary, then announces; a restore that failed
/// (task gone) announces nothing.
pub fn deferred_announce(argv: &[String]) -> ExitCode {
    let parsed = (|| {
        let [pid, ifindex, mac, ip, count, log, id] = argv else {
            return None;
        };
        Some((
            pid.parse::<i32>().ok()?,
            ifindex.parse::<i32>().ok()?,
            garp::parse_mac(mac)?,
            ip.parse::<std::net::Ipv4Addr>().ok()?,
            count.parse::<u32>().ok()?,
            (log != "-").then(|| std::path::PathBuf::from(log)),
            id.clone(),
        ))
    })();
    let Some((pid, ifindex, mac, ip, count, log, id)) = parsed else {
        return ExitCode::from(2);
    };
    let start = Instant::now();
    let waited = || format!("after {} ms", start.elapsed().as_millis());
    let ctx = format!("{ip} id {id} pid {pid}");
    loop {
        match task(pid) {
            Task::Restoring if start.elapsed() < RESTORE_WAIT => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Task::Running => {
                return match garp::send(ifindex, mac, ip, count, ARP_GAP) {
                    Ok(()) => {
                        log_line(
                            log.as_deref(),
                            &format!("announce {ctx} restored, announced {}", waited()),
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        log_line(log.as_deref(), &format!("announce {ctx} error: {e}"));
                        ExitCode::FAILURE
                    }
                };
            }
            Task::Restoring => {
                log_line(
                    log.as_deref(),
                    &format!(
                        "announce {ctx} not announced: restore still running {}",
                        waited()
                    ),
                );
                return ExitCode::FAILURE;
            }
            Task::Gone => {
                log_line(
                    log.as_deref(),
                    &format!(
                        "announce {ctx} not announced: the restore failed (task gone {})",
                        waited()
                    ),
                );
                return ExitCode::FAILURE;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criu_executable() {
        assert!(exe_is_criu(Path::new("/usr/local/sbin/criu")));
        assert!(exe_is_criu(Path::new("/usr/sbin/criu (deleted)")));
        assert!(!exe_is_criu(Path::new("/bin/busybox")));
        assert!(!exe_is_criu(Path::new("/usr/bin/criu-ns")));
        assert_eq!(task(i32::MAX), Task::Gone);
        assert_eq!(task(std::process::id() as i32), Task::Running);
    }
}
