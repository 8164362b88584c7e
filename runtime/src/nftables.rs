//! Just enough nftables over netlink (no `nft` binary) to find and remove the network lock
//! CRIU leaves behind: after a dump that stops a container in a network namespace given by
//! path, and after a failed restore, CRIU's `inet CRIU-<run id>` table would keep dropping
//! every packet of that namespace.

use anyhow::{bail, Result};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFTA_TABLE_NAME: u16 = 1;
const NFPROTO_INET: u8 = 1;

/// A netfilter netlink socket made inside the network namespace at `netns`.
fn socket_in(netns: &Path) -> Result<OwnedFd> {
    let theirs = File::open(netns)?;
    let ours = File::open("/proc/self/ns/net")?;
    nix::sched::setns(&theirs, nix::sched::CloneFlags::CLONE_NEWNET)?;
    // SAFETY: a socket created in that namespace; we go back at once.
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
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// nlmsghdr + nfgenmsg, then `payload`, padded to 4 bytes.
fn message(typ: u16, flags: u16, seq: u32, family: u8, res_id: u16, payload: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + payload.len();
    let mut m = Vec::with_capacity((len + 3) & !3);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&typ.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[family, 0]);
    m.extend_from_slice(&res_id.to_be_bytes());
    m.extend_from_slice(payload);
    m.resize((len + 3) & !3, 0);
    m
}

fn send(sock: &OwnedFd, buf: &[u8]) -> Result<()> {
    // SAFETY: send on our socket from a local buffer.
    if unsafe { libc::send(sock.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) } < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// Calls `f(type, payload)` for every message until DONE (or one ACK/error).
fn receive(sock: &OwnedFd, mut f: impl FnMut(u16, &[u8]) -> Result<()>) -> Result<()> {
    let mut buf = vec![0u8; 32768];
    loop {
        // SAFETY: recv into a local buffer.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let mut off = 0usize;
        while off + 16 <= n as usize {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into()?) as usize;
            let typ = u16::from_ne_bytes(buf[off + 4..off + 6].try_into()?);
            if len < 16 || off + len > n as usize {
                bail!("malformed netlink message");
            }
            let body = &buf[off + 16..off + len];
            if typ == libc::NLMSG_DONE as u16 {
                return Ok(());
            }
            if typ == libc::NLMSG_ERROR as u16 {
                let err = i32::from_ne_bytes(body.get(..4).unwrap_or(&[0; 4]).try_into()?);
                if err != 0 {
                    bail!("nftables: {}", std::io::Error::from_raw_os_error(-err));
                }
                return Ok(());
            }
            f(typ, body)?;
            off += (len + 3) & !3;
        }
    }
}

/// Names of the tables of `family` (NFPROTO_*, 0 for all) in the network namespace at `netns`.
pub fn tables(netns: &Path, family: u8) -> Result<Vec<String>> {
    let sock = socket_in(netns)?;
    let get = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE;
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    send(&sock, &message(get, flags, 1, family, 0, &[]))?;
    let mut names = Vec::new();
    receive(&sock, |typ, body| {
        if typ != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE {
            return Ok(());
        }
        // nfgenmsg (4 bytes), then attributes.
        let mut off = 4;
        while off + 4 <= body.len() {
            let alen = u16::from_ne_bytes(body[off..off + 2].try_into()?) as usize;
            let atyp = u16::from_ne_bytes(body[off + 2..off + 4].try_into()?) & 0x3fff;
            if alen < 4 || off + alen > body.len() {
                break;
            }
            if atyp == NFTA_TABLE_NAME {
                let raw = &body[off + 4..off + alen];
                let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
                names.push(String::from_utf8_lossy(&raw[..end]).into_owned());
            }
            off += (alen + 3) & !3;
        }
        Ok(())
    })?;
    Ok(names)
}

/// Deletes the `inet` table `name` in the network namespace at `netns`.
pub fn delete_inet_table(netns: &Path, name: &str) -> Result<()> {
    let sock = socket_in(netns)?;
    let mut attr = Vec::new();
    attr.extend_from_slice(&((4 + name.len() + 1) as u16).to_ne_bytes());
    attr.extend_from_slice(&NFTA_TABLE_NAME.to_ne_bytes());
    attr.extend_from_slice(name.as_bytes());
    attr.push(0);
    let req = libc::NLM_F_REQUEST as u16;
    let del = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELTABLE;
    let mut batch = message(NFNL_MSG_BATCH_BEGIN, req, 1, 0, NFNL_SUBSYS_NFTABLES, &[]);
    batch.extend(message(
        del,
        req | libc::NLM_F_ACK as u16,
        2,
        NFPROTO_INET,
        0,
        &attr,
    ));
    batch.extend(message(
        NFNL_MSG_BATCH_END,
        req,
        3,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    ));
    send(&sock, &batch)?;
    receive(&sock, |_, _| Ok(()))
}

/// Removes the lock table of the CRIU run `run_id` (CRIU truncates the name) from `netns`.
pub fn remove_criu_lock(netns: &Path, run_id: &str) -> Result<bool> {
    let full = format!("CRIU-{run_id}");
    for t in tables(netns, NFPROTO_INET)? {
        if t.starts_with("CRIU-") && full.starts_with(&t) {
            delete_inet_table(netns, &t)?;
            return Ok(true);
        }
    }
    Ok(false)
}
