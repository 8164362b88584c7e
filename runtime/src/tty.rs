//! Terminals: the container's pty is opened from its own devpts instance, the master is
//! sent over the console socket (SCM_RIGHTS, as runc does) and the slave becomes the
//! process's stdio and controlling terminal. A foreground `run`/`exec` with a terminal
//! receives the master itself and relays it to the caller's terminal.

use anyhow::{bail, Context, Result};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Connects to the caller's console socket (before the container process is made).
pub fn connect(path: &Path) -> Result<OwnedFd> {
    let s = UnixStream::connect(path)
        .with_context(|| format!("cannot connect to console socket {}", path.display()))?;
    Ok(s.into())
}

/// Where a new process sends its pty master: the caller's console socket, or (foreground,
/// no socket) one end of a socketpair whose other end we keep to relay the terminal.
/// Returns (the process's end, our end); nothing without a terminal.
pub fn pty_channel(
    console_socket: Option<&Path>,
    terminal: bool,
) -> Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    match (console_socket, terminal) {
        (Some(p), true) => Ok((Some(connect(p)?), None)),
        (None, true) => {
            use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
            let (ours, theirs) = socketpair(
                AddressFamily::Unix,
                SockType::Stream,
                None,
                SockFlag::SOCK_CLOEXEC,
            )?;
            Ok((Some(theirs), Some(ours)))
        }
        _ => Ok((None, None)),
    }
}

/// Opens a new pty from `ptmx`: returns (master, slave).
pub fn open_pty(ptmx: OwnedFd) -> Result<(OwnedFd, OwnedFd)> {
    let master = ptmx;
    let unlock: libc::c_int = 0;
    // SAFETY: ioctls on the pty master we own.
    unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) != 0 {
            return Err(std::io::Error::last_os_error()).context("cannot unlock pty");
        }
        let slave = libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if slave < 0 {
            return Err(std::io::Error::last_os_error()).context("cannot open pty slave");
        }
        Ok((master, OwnedFd::from_raw_fd(slave)))
    }
}

/// Sends `fd` with `name` as data over the connected unix socket `sock`.
pub fn send_fd(sock: RawFd, fd: RawFd, name: &str) -> Result<()> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<UnixAddr>(sock, &iov, &cmsg, MsgFlags::empty(), None)
        .context("cannot send the pty master over the console socket")?;
    Ok(())
}

/// Receives one fd sent with SCM_RIGHTS.
pub fn recv_fd(sock: RawFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<UnixAddr>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .context("cannot receive the pty master")?;
    for c in msg.cmsgs().context("bad control message")? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel installed this fd for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    bail!("no fd received on the console socket")
}

/// Makes `slave` the stdio and controlling terminal of the calling process (which must
/// be a session leader).
pub fn make_controlling(slave: &OwnedFd) -> Result<()> {
    for fd in 0..3 {
        // SAFETY: dup2 of an fd we own onto stdio.
        if unsafe { libc::dup2(slave.as_raw_fd(), fd) } < 0 {
            return Err(std::io::Error::last_os_error()).context("cannot dup the pty onto stdio");
        }
    }
    // SAFETY: ioctl on our stdin, now the pty slave.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot set the controlling terminal");
    }
    Ok(())
}

/// Copies the caller's stdin to `master` and `master` to the caller's stdout until the
/// pty closes (foreground run/exec with a terminal); stdin is put in raw mode if a tty.
pub fn relay(master: &OwnedFd) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::termios;
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    let saved = termios::tcgetattr(stdin).ok();
    if let Some(t) = &saved {
        let mut raw = t.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin, termios::SetArg::TCSANOW, &raw);
    }
    let mut buf = [0u8; 8192];
    let mut stdin_open = true;
    loop {
        let mut fds = vec![PollFd::new(
            unsafe { BorrowedFd::borrow_raw(master.as_raw_fd()) },
            PollFlags::POLLIN,
        )];
        if stdin_open {
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("poll: {e}"),
            Ok(_) => {}
        }
        let m = fds[0].revents().unwrap_or(PollFlags::empty());
        let s = fds
            .get(1)
            .and_then(|f| f.revents())
            .unwrap_or(PollFlags::empty());
        if m.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match nix::unistd::read(master, &mut buf) {
                Ok(0) | Err(_) => break, // EIO: the last slave fd closed
                Ok(n) => {
                    let _ = nix::unistd::write(unsafe { BorrowedFd::borrow_raw(1) }, &buf[..n]);
                }
            }
        }
        if s.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) {
            match nix::unistd::read(stdin, &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let _ = nix::unistd::write(master, &buf[..n]);
                }
            }
        }
    }
    if let Some(t) = saved {
        let _ = termios::tcsetattr(stdin, termios::SetArg::TCSANOW, &t);
    }
    Ok(())
}
