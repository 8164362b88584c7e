//! Command line of `service-ip`: `claim|release <ipv4/prefix> <dev> [options]`, parsed by hand
//! (std only) into [`Args`]; every mistake becomes a one-line message for stderr.

use std::net::Ipv4Addr;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: service-ip claim   <ipv4/prefix> <dev> [--netns-path P] [--arp-count N] [--log FILE]
       service-ip release <ipv4/prefix> <dev> [--netns-path P] [--log FILE]

As an OCI hook: claim from prestart/createRuntime, release from poststop. The container state
(JSON) is read from stdin when stdin is not a terminal: its id for messages, its pid to see a
restore (the task still runs CRIU's binary), where the ARP is sent by a detached helper once
CRIU has restored the processes and their sockets, instead of at once.
  --netns-path P   act in the network namespace at P (e.g. the path the container joins)
                   instead of the caller's own
  --log FILE       append one line per action (time, action, address, container, outcome)
  --arp-count N    gratuitous ARP requests to send after claiming, 10 ms apart, all before
                   returning (default 2, 0 = none)";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Add the address (idempotent), bring the device up, announce it.
    Claim,
    /// Remove the address; already gone is success.
    Release,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    pub action: Action,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub dev: String,
    pub netns: Option<PathBuf>,
    pub log: Option<PathBuf>,
    pub arp_count: u32,
}

impl Args {
    /// `addr/prefix` as `ip` wants it.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.addr, self.prefix)
    }
}

/// What the command line asks for: run an action, or print the usage.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(Args),
    Help,
}

const DEFAULT_ARP_COUNT: u32 = 2;

/// Parses the arguments after the program name.
pub fn parse<I, S>(argv: I) -> Result<Parsed, String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut positional = Vec::new();
    let mut netns = None;
    let mut log = None;
    let mut arp_count = None;
    let mut it = argv.into_iter().map(Into::into);
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |flag: &str| -> Result<String, String> {
            match inline.clone().or_else(|| it.next()) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(format!("{flag} needs a value")),
            }
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--netns-path" => netns = Some(PathBuf::from(value("--netns-path")?)),
            "--log" => log = Some(PathBuf::from(value("--log")?)),
            "--arp-count" => {
                let v = value("--arp-count")?;
                arp_count =
                    Some(v.parse::<u32>().ok().filter(|n| *n <= 20).ok_or_else(|| {
                        format!("--arp-count: {v:?} is not a number from 0 to 20")
                    })?);
            }
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s}")),
            _ => positional.push(a),
        }
    }
    let [action, cidr, dev] = positional.as_slice() else {
        return Err(match positional.len() {
            0 => "missing action (claim or release)".into(),
            1 | 2 => "expected <ipv4/prefix> <dev> after the action".into(),
            _ => format!("unexpected argument {:?}", positional[3]),
        });
    };
    let action = match action.as_str() {
        "claim" => Action::Claim,
        "release" => Action::Release,
        other => {
            return Err(format!(
                "unknown action {other:?}: expected claim or release"
            ))
        }
    };
    let (addr, prefix) = parse_cidr(cidr)?;
    if dev.is_empty() || dev.len() > 15 || dev.contains(['/', ' ']) {
        return Err(format!("{dev:?} is not a network device name"));
    }
    if action == Action::Release && arp_count.is_some() {
        return Err("--arp-count applies to claim only".into());
    }
    Ok(Parsed::Run(Args {
        action,
        addr,
        prefix,
        dev: dev.clone(),
        netns,
        log,
        arp_count: arp_count.unwrap_or(DEFAULT_ARP_COUNT),
    }))
}

/// `10.0.0.5/24` -> (10.0.0.5, 24). The prefix is required: `ip` would otherwise pick /32,
/// which makes the address unreachable from the rest of the subnet on some setups.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, len) = s.split_once('/').ok_or_else(|| {
        format!("{s:?}: expected an IPv4 address with a prefix length, like 10.0.0.5/24")
    })?;
    let addr: Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IPv4 address (IPv6 is not supported)"))?;
    let prefix: u8 = len
        .parse()
        .ok()
        .filter(|p| (1..=32).contains(p))
        .ok_or_else(|| format!("{len:?} is not a prefix length from 1 to 32"))?;
    if addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast() || addr.is_loopback() {
        return Err(format!("{addr} cannot be a service address"));
    }
    Ok((addr, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(v: &[&str]) -> Args {
        match parse(v.iter().copied()) {
            Ok(Parsed::Run(a)) => a,
            other => panic!("{v:?}: {other:?}"),
        }
    }

    fn err(v: &[&str]) -> String {
        match parse(v.iter().copied()) {
            Err(e) => e,
            other => panic!("{v:?} should fail, got {other:?}"),
        }
    }

    #[test]
    fn claim_with_defaults() {
        let a = run(&["claim", "10.231.7.100/24", "eth0"]);
        assert_eq!(a.action, Action::Claim);
        assert_eq!(a.addr, Ipv4Addr::new(10, 231, 7, 100));
        assert_eq!(a.prefix, 24);
        assert_eq!(a.dev, "eth0");
        assert_eq!(a.netns, None);
        assert_eq!(a.arp_count, 2);
        assert_eq!(a.cidr(), "10.231.7.100/24");
    }

    #[test]
    fn options_before_after_and_inline() {
        let a = run(&[
            "--netns-path",
            "/run/x/net",
            "claim",
            "10.0.0.5/16",
            "veth1",
            "--arp-count=0",
        ]);
        assert_eq!(a.netns.as_deref(), Some(std::path::Path::new("/run/x/net")));
        assert_eq!(a.arp_count, 0);
        let b = run(&[
            "release",
            "10.0.0.5/16",
            "veth1",
            "--netns-path=/p",
            "--log",
            "/l",
        ]);
        assert_eq!(b.action, Action::Release);
        assert_eq!(b.log.as_deref(), Some(std::path::Path::new("/l")));
        assert_eq!(a.log, None);
        assert_eq!(b.netns.as_deref(), Some(std::path::Path::new("/p")));
    }

    #[test]
    fn help() {
        assert_eq!(parse(["claim", "--help"]), Ok(Parsed::Help));
        assert_eq!(parse(["-h"]), Ok(Parsed::Help));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(err(&[]).contains("missing action"));
        assert!(err(&["claim"]).contains("expected <ipv4/prefix> <dev>"));
        assert!(err(&["claim", "10.0.0.1/24"]).contains("expected <ipv4/prefix> <dev>"));
        assert!(err(&["claim", "10.0.0.1/24", "eth0", "x"]).contains("unexpected argument"));
        assert!(err(&["grab", "10.0.0.1/24", "eth0"]).contains("unknown action"));
        assert!(err(&["claim", "10.0.0.1", "eth0"]).contains("prefix length"));
        assert!(err(&["claim", "10.0.0.1/33", "eth0"]).contains("prefix length"));
        assert!(err(&["claim", "fd00::1/64", "eth0"]).contains("IPv6"));
        assert!(err(&["claim", "127.0.0.1/8", "eth0"]).contains("cannot be a service address"));
        assert!(err(&["claim", "10.0.0.1/24", "a-very-long-interface-name"]).contains("device"));
        assert!(err(&["claim", "10.0.0.1/24", "eth0", "--netns-path"]).contains("needs a value"));
        assert!(err(&["claim", "10.0.0.1/24", "eth0", "--arp-count", "x"]).contains("0 to 20"));
        assert!(err(&["claim", "10.0.0.1/24", "eth0", "--bogus"]).contains("unknown option"));
        assert!(err(&["release", "10.0.0.1/24", "eth0", "--arp-count", "1"]).contains("claim only"));
    }
}
