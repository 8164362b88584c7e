//! A console socket like conmon's or the shim's: an AF_UNIX stream socket in a temp dir; the
//! runtime connects and sends the pty master as SCM_RIGHTS. The test receives it as an
//! `OwnedFd` and reads the container's terminal output from it.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tempfile::TempDir;

use crate::runtime::TIMEOUT;

pub struct ConsoleSocket {
    _dir: TempDir,
    path: PathBuf,
    listener: UnixListener,
}

impl Default for ConsoleSocket {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsoleSocket {
    /// Binds `<tempdir>/console.sock`.
    pub fn new() -> ConsoleSocket {
        let dir = tempfile::Builder::new()
            .prefix("rt-console-")
            .tempdir()
            .expect("console socket dir");
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).expect("bind console socket");
        listener
            .set_nonblocking(true)
            .expect("nonblocking console socket");
        ConsoleSocket {
            _dir: dir,
            path,
            listener,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn path_str(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Accepts one connection and receives one fd (the pty master). Fails the test after
    /// the standard timeout.
    pub fn receive_master(&self) -> OwnedFd {
        let deadline = Instant::now() + TIMEOUT;
        let stream: UnixStream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "no connection on the console socket within {TIMEOUT:?}"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept on console socket: {e}"),
            }
        };
        wait_readable(stream.as_fd(), deadline, "the pty master message");
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg on console socket");
        let mut received = Vec::new();
        for c in msg.cmsgs().expect("control messages") {
            if let ControlMessageOwned::ScmRights(fds) = c {
                received.extend(fds);
            }
        }
        assert_eq!(
            received.len(),
            1,
            "expected exactly one fd over the console socket, got {received:?}"
        );
        // SAFETY: the kernel just installed this fd for us; nothing else owns it.
        unsafe { OwnedFd::from_raw_fd(received[0]) }
    }
}

fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, deadline: Instant, what: &str) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out waiting for {what}");
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        let ms = left.as_millis().min(1000) as u16;
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// Reads from a pty master until the accumulated text contains `needle`, or the slave side
/// is closed (EIO/EOF). Fails the test if `needle` never shows up within the timeout.
pub fn read_until(master: &OwnedFd, needle: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    loop {
        if text.contains(needle) {
            return text;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{needle:?} not read from the pty within {TIMEOUT:?}; got {text:?}"
        );
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        let ms = left.as_millis().min(1000) as u16;
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => panic!("poll on pty master: {e}"),
        }
        match nix::unistd::read(master, &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EIO) => {
                assert!(
                    text.contains(needle),
                    "pty closed before {needle:?}; got {text:?}"
                );
                return text;
            }
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
            Err(e) => panic!("read pty master: {e}"),
        }
    }
}
