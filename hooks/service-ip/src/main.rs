//! `service-ip`: an OCI hook that moves a container's service IP with the container.
//!
//! `claim` (prestart / createRuntime: at create, and at restore before the restored processes
//! run) adds the address to a device, in the caller's network namespace or in the one given by
//! `--netns-path`, and announces it with gratuitous ARP so clients and bridges learn its new
//! place at once. `release` (poststop: after delete, and after a checkpoint that stopped the
//! container) removes it; an address, device or namespace already gone is success, so a
//! release never fails the lifecycle for nothing. Both are idempotent.
//!
//! At restore (CRIU's setup-namespaces notification: the state's pid is the task CRIU is
//! restoring, still running CRIU's binary) the address is added at once (sockets bound to it
//! need it) but the announcement waits, in a detached helper, until CRIU has rebuilt the
//! processes and their sockets: CRIU does not lock a network namespace it did not create, so
//! a client retransmission reaching this host earlier would find no socket and get a reset.
//! Until the announcement the neighbours keep sending to the old host, whose namespace CRIU's
//! dump left locked (dropped, not reset).
//!
//! Works the same under runc and `runtime` (same config.json). It shells out to `ip`
//! (iproute2) and sends the ARP itself; from the state JSON on stdin it uses the id (for
//! messages) and the pid (to tell a restore from a create).

mod args;
mod garp;
mod restore;
mod state;

use args::{Action, Args, Parsed};
use restore::{Task, DEFERRED};
use state::State;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

/// Hooks may run with an empty environment (the OCI hook `env` list): find the tools anyway.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Between two gratuitous ARP requests (all are sent before the hook returns).
pub(crate) const ARP_GAP: Duration = Duration::from_millis(10);
/// `setns(2)` nstype for a network namespace.
const CLONE_NEWNET: i32 = 0x4000_0000;

extern "C" {
    fn setns(fd: i32, nstype: i32) -> i32;
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some(DEFERRED) {
        return restore::deferred_announce(&argv[1..]);
    }
    let a = match args::parse(argv) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Help) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("service-ip: {e}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let state = state::read_state();
    let who = state
        .id
        .as_ref()
        .map(|id| format!("container {id}: "))
        .unwrap_or_default();
    let ctx = format!(
        "{} dev {} netns {} id {} pid {}",
        a.cidr(),
        a.dev,
        a.netns
            .as_deref()
            .map_or("-".into(), |p| p.display().to_string()),
        state.id.as_deref().unwrap_or("-"),
        state.pid.map_or("-".into(), |p| p.to_string()),
    );
    let (result, action) = match a.action {
        Action::Claim => (claim(&a, &state), "claim"),
        Action::Release => (release(&a), "release"),
    };
    match result {
        Ok(done) => {
            log_line(a.log.as_deref(), &format!("{action} {ctx} {}", done.log));
            if let Some(n) = done.note {
                eprintln!("service-ip: {who}{n}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            log_line(a.log.as_deref(), &format!("{action} {ctx} error: {e}"));
            eprintln!(
                "service-ip: {who}{} {} on {}{}: {e}",
                verb(a.action),
                a.cidr(),
                a.dev,
                where_(&a)
            );
            ExitCode::FAILURE
        }
    }
}

/// What an action did: a word for the log, and maybe a note for stderr.
struct Done {
    log: String,
    note: Option<String>,
}

impl Done {
    fn log(s: impl Into<String>) -> Self {
        Done {
            log: s.into(),
            note: None,
        }
    }
    fn noted(log: &str, note: String) -> Self {
        Done {
            log: log.into(),
            note: Some(note),
        }
    }
}

fn verb(a: Action) -> &'static str {
    match a {
        Action::Claim => "cannot claim",
        Action::Release => "cannot release",
    }
}

fn where_(a: &Args) -> String {
    a.netns
        .as_ref()
        .map(|p| format!(" in netns {}", p.display()))
        .unwrap_or_default()
}

/// Appends `<unix time, s.ms> <host-side words...>` to the --log file; never fails the hook.
pub(crate) fn log_line(file: Option<&Path>, words: &str) {
    let Some(f) = file else { return };
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let line = format!("{}.{:06} {words}\n", t.as_secs(), t.subsec_micros());
    if let Ok(mut out) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(f)
    {
        let _ = out.write_all(line.as_bytes());
    }
}

/// Moves this (single-threaded) process into the network namespace at `path`; the tools
/// started afterwards inherit it.
fn enter_netns(path: &Path) -> Result<(), String> {
    let f = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // SAFETY: setns on an fd we own; the process has one thread, so the whole process moves.
    if unsafe { setns(f.as_raw_fd(), CLONE_NEWNET) } != 0 {
        return Err(format!(
            "{} is not a network namespace we can join: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn tool(name: &str) -> Command {
    let mut c = Command::new(name);
    if std::env::var_os("PATH").is_none() {
        c.env("PATH", DEFAULT_PATH);
    }
    c.stdin(Stdio::null());
    c
}

/// Runs a tool to the end; its stderr (or status) is the error.
fn run(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(format!(
        "`{shown}` failed ({}){}{err}",
        out.status,
        if err.is_empty() { "" } else { ": " }
    ))
}

/// One line of `ip -o link show`.
#[derive(Debug, PartialEq, Eq)]
struct Link {
    index: i32,
    up: bool,
    mac: Option<[u8; 6]>,
}

/// Finds `dev` in `ip -o link show` output
/// (`7: eth0@if8: <BROADCAST,UP,LOWER_UP> mtu 1500 ... link/ether 3a:df:... brd ...`).
fn parse_link(list: &str, dev: &str) -> Option<Link> {
    list.lines().find_map(|l| {
        let mut f = l.split(": ");
        let index = f.next()?.trim().parse().ok()?;
        if f.next()?.split('@').next() != Some(dev) {
            return None;
        }
        let flags = l.split('<').nth(1)?.split('>').next()?;
        let mut words = l.split_whitespace();
        let mac = words
            .by_ref()
            .find(|w| *w == "link/ether")
            .and_then(|_| words.next())
            .and_then(garp::parse_mac);
        Some(Link {
            index,
            up: flags.split(',').any(|x| x == "UP"),
            mac,
        })
    })
}

fn link(dev: &str) -> Result<Option<Link>, String> {
    let list = run(tool("ip").args(["-o", "link", "show"]))?;
    Ok(parse_link(&list, dev))
}

fn has_addr(a: &Args) -> Result<bool, String> {
    let out = run(tool("ip").args(["-o", "-4", "addr", "show", "dev", &a.dev]))?;
    let want = a.cidr();
    Ok(out.lines().any(|l| l.split_whitespace().any(|w| w == want)))
}

fn claim(a: &Args, state: &State) -> Result<Done, String> {
    if let Some(p) = &a.netns {
        enter_netns(p)?;
    }
    let l = link(&a.dev)?.ok_or_else(|| format!("no device {}{}", a.dev, where_(a)))?;
    if !l.up {
        run(tool("ip").args(["link", "set", "dev", &a.dev, "up"]))?;
    }
    // `replace` is idempotent: a second claim (or a restore after a failed one) is a no-op.
    run(tool("ip").args(["addr", "replace", &a.cidr(), "dev", &a.dev]))?;
    if a.arp_count == 0 {
        return Ok(Done::log("added, not announced (--arp-count 0)"));
    }
    let mac = l
        .mac
        .ok_or_else(|| format!("{} has no Ethernet address to announce from", a.dev))?;
    if let Some(p) = state.pid.filter(|p| restore::task(*p) == Task::Restoring) {
        restore::spawn_deferred(p, l.index, mac, a, state)?;
        return Ok(Done::log(
            "added, announce deferred until CRIU has restored the task",
        ));
    }
    garp::send(l.index, mac, a.addr, a.arp_count, ARP_GAP)
        .map_err(|e| format!("gratuitous ARP on {} failed: {e}", a.dev))?;
    Ok(Done::log("added, announced"))
}

fn release(a: &Args) -> Result<Done, String> {
    if let Some(p) = &a.netns {
        if !p.exists() {
            let n = format!("netns {} is gone: nothing to release", p.display());
            return Ok(Done::noted("absent (no netns)", n));
        }
        enter_netns(p)?;
    }
    if link(&a.dev)?.is_none() {
        let n = format!("no device {}{}: nothing to release", a.dev, where_(a));
        return Ok(Done::noted("absent (no device)", n));
    }
    match run(tool("ip").args(["addr", "del", &a.cidr(), "dev", &a.dev])) {
        Ok(_) => Ok(Done::log("removed")),
        // Already gone (a second release, or never claimed): fine.
        Err(_) if !has_addr(a)? => Ok(Done::log("absent")),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
7: eth0@if8: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 3a:df:24:4b:ad:22 brd ff:ff:ff:ff:ff:ff link-netns migbr
9: eth1: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    link/ether 02:00:00:00:00:01 brd ff:ff:ff:ff:ff:ff
";

    #[test]
    fn links_from_ip_output() {
        assert_eq!(
            parse_link(LIST, "eth0"),
            Some(Link {
                index: 7,
                up: true,
                mac: Some([0x3a, 0xdf, 0x24, 0x4b, 0xad, 0x22])
            })
        );
        assert_eq!(
            parse_link(LIST, "eth1"),
            Some(Link {
                index: 9,
                up: false,
                mac: Some([2, 0, 0, 0, 0, 1])
            })
        );
        assert_eq!(parse_link(LIST, "lo").map(|l| l.mac), Some(None));
        assert_eq!(parse_link(LIST, "eth"), None);
        assert_eq!(parse_link(LIST, "if8"), None);
    }
}
