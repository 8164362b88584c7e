//! Gratuitous ARP over a raw packet socket: an ARP request from the service IP for itself,
//! broadcast on the device, so neighbours and bridges move the address to this MAC at once.
//! Sent synchronously and with no wait for replies (arping from iputils waits a whole second
//! after its last packet, which would lengthen every restore).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

const AF_PACKET: i32 = 17;
const SOCK_RAW: i32 = 3;
const SOCK_CLOEXEC: i32 = 0o2_000_000;
const ETH_P_ARP: u16 = 0x0806;
const ARPHRD_ETHER: u16 = 1;

/// `struct sockaddr_ll` of <linux/if_packet.h>.
#[repr(C)]
struct SockaddrLl {
    family: u16,
    protocol: u16,
    ifindex: i32,
    hatype: u16,
    pkttype: u8,
    halen: u8,
    addr: [u8; 8],
}

extern "C" {
    fn socket(domain: i32, ty: i32, protocol: i32) -> i32;
    fn sendto(
        fd: i32,
        buf: *const u8,
        len: usize,
        flags: i32,
        addr: *const SockaddrLl,
        addrlen: u32,
    ) -> isize;
}

/// The Ethernet frame of a gratuitous ARP request (sender = target = `ip`), padded to 60 bytes.
pub fn frame(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]); // destination: broadcast
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&ARPHRD_ETHER.to_be_bytes()); // htype
    f.extend_from_slice(&0x0800u16.to_be_bytes()); // ptype IPv4
    f.extend_from_slice(&[6, 4]); // hlen, plen
    f.extend_from_slice(&1u16.to_be_bytes()); // op: request
    f.extend_from_slice(&mac); // sender MAC
    f.extend_from_slice(&ip.octets()); // sender IP
    f.extend_from_slice(&[0; 6]); // target MAC: unknown
    f.extend_from_slice(&ip.octets()); // target IP = sender IP: gratuitous
    f.resize(60, 0);
    f
}

/// `aa:bb:cc:dd:ee:ff` -> bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Sends `count` gratuitous ARP requests on interface `ifindex`, `gap` apart.
pub fn send(ifindex: i32, mac: [u8; 6], ip: Ipv4Addr, count: u32, gap: Duration) -> io::Result<()> {
    // SAFETY: plain syscall; the fd is owned right away.
    let fd = unsafe {
        socket(
            AF_PACKET,
            SOCK_RAW | SOCK_CLOEXEC,
            i32::from(ETH_P_ARP.to_be()),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut to = SockaddrLl {
        family: AF_PACKET as u16,
        protocol: ETH_P_ARP.to_be(),
        ifindex,
        hatype: 0,
        pkttype: 0,
        halen: 6,
        addr: [0; 8],
    };
    to.addr[..6].copy_from_slice(&[0xff; 6]);
    let f = frame(mac, ip);
    for i in 0..count {
        if i > 0 {
            std::thread::sleep(gap);
        }
        // SAFETY: buffer and address are valid for the given lengths.
        let n = unsafe {
            sendto(
                sock.as_raw_fd(),
                f.as_ptr(),
                f.len(),
                0,
                &to,
                std::mem::size_of::<SockaddrLl>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_frame_layout() {
        let mac = [0x02, 0, 0, 0, 0, 0x42];
        let f = frame(mac, Ipv4Addr::new(10, 231, 7, 100));
        assert_eq!(f.len(), 60);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[14..22], &[0, 1, 0x08, 0, 6, 4, 0, 1]);
        assert_eq!(&f[22..28], &mac);
        assert_eq!(&f[28..32], &[10, 231, 7, 100]);
        assert_eq!(&f[32..38], &[0; 6]);
        assert_eq!(&f[38..42], &[10, 231, 7, 100]);
        assert!(f[42..].iter().all(|b| *b == 0));
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(
            parse_mac("de:7d:a6:55:a1:4f"),
            Some([0xde, 0x7d, 0xa6, 0x55, 0xa1, 0x4f])
        );
        assert_eq!(parse_mac("de:7d:a6:55:a1"), None);
        assert_eq!(parse_mac("de:7d:a6:55:a1:4f:00"), None);
        assert_eq!(parse_mac("de:7d:a6:55:a1:zz"), None);
        assert_eq!(parse_mac("d:7d:a6:55:a1:4f"), None);
    }
}
