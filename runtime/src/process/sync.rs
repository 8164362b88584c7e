//! The parent <-> container-init channel: a SOCK_SEQPACKET socketpair carrying one small
//! message per packet, each step of the setup named, so a broken peer is reported with
//! the step it broke at.

use anyhow::{anyhow, bail, Result};
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

#[derive(Debug, PartialEq)]
pub enum Msg {
    /// Parent -> child: you are in the cgroup, id maps are written; carries the child's
    /// host pid (the child may not see it from inside its pid namespace).
    Go(i32),
    /// Child -> parent: mounts are done, run prestart/createRuntime hooks.
    RunHooks,
    HooksDone,
    /// Child -> parent: set up and waiting; record the state.
    Ready,
    Proceed,
    /// Either way: the step failed, with the message to show.
    Error(String),
}

pub fn pair() -> Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

fn encode(m: &Msg) -> Vec<u8> {
    match m {
        Msg::Go(pid) => {
            let mut v = vec![b'G'];
            v.extend_from_slice(&pid.to_le_bytes());
            v
        }
        Msg::RunHooks => vec![b'H'],
        Msg::HooksDone => vec![b'h'],
        Msg::Ready => vec![b'R'],
        Msg::Proceed => vec![b'P'],
        Msg::Error(s) => {
            let mut v = vec![b'E'];
            v.extend_from_slice(s.as_bytes());
            v
        }
    }
}

fn decode(b: &[u8]) -> Result<Msg> {
    Ok(match b.first() {
        Some(b'G') if b.len() == 5 => Msg::Go(i32::from_le_bytes([b[1], b[2], b[3], b[4]])),
        Some(b'H') => Msg::RunHooks,
        Some(b'h') => Msg::HooksDone,
        Some(b'R') => Msg::Ready,
        Some(b'P') => Msg::Proceed,
        Some(b'E') => Msg::Error(String::from_utf8_lossy(&b[1..]).into_owned()),
        _ => bail!("garbled sync message {b:?}"),
    })
}

pub fn send_msg(fd: RawFd, m: &Msg) -> Result<()> {
    let buf = encode(m);
    loop {
        match send(fd, &buf, MsgFlags::MSG_NOSIGNAL) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(anyhow!("sync: cannot send {m:?}: {e}")),
            Ok(_) => return Ok(()),
        }
    }
}

/// Next message; `None` when the peer closed its end (exited).
pub fn recv_msg(fd: &OwnedFd) -> Result<Option<Msg>> {
    let mut buf = vec![0u8; 8192];
    loop {
        match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("sync: receive failed: {e}"),
            Ok(0) => return Ok(None),
            Ok(n) => return decode(&buf[..n]).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let (a, b) = pair().unwrap();
        for m in [
            Msg::Go(4242),
            Msg::RunHooks,
            Msg::HooksDone,
            Msg::Ready,
            Msg::Proceed,
            Msg::Error("boom".into()),
        ] {
            send_msg(a.as_raw_fd(), &m).unwrap();
            assert_eq!(recv_msg(&b).unwrap(), Some(m));
        }
        drop(a);
        assert_eq!(recv_msg(&b).unwrap(), None);
    }
}
