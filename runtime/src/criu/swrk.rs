//! The `criu swrk` client: spawn CRIU on a SEQPACKET socketpair, send one request, serve NOTIFY messages.
//!
//! Usage: `let s = Swrk::spawn(opts)?; move s.pid() into a cgroup; let resp = s.request(req, &mut handler)?`.
//! CRIU's stdio (which a restored tree inherits as its own) and extra fds at fixed numbers are set
//! in [`SwrkOptions`]; CRIU's socket is always its fd 3, so extra fds start at 4.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::sys::socket::{
    recv, recvmsg, send, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag,
    SockType, UnixAddr,
};
use prost::Message;

use super::log;
use super::rpc::{CriuFeatures, CriuReq, CriuReqType, CriuResp};

/// Where the setup of this host installs CRIU; [`default_criu_path`] prefers it over `$PATH`.
pub const LOCAL_CRIU: &str = "/usr/local/sbin/criu";
/// CRIU's end of the socketpair is this fd in CRIU (`criu swrk 3`).
pub const SWRK_FD: RawFd = 3;
/// Largest response accepted; CRIU's responses are a few hundred bytes.
const MAX_MSG: usize = 64 * 1024;
/// Most fds accepted with one NOTIFY message (orphan-pts-master sends one).
const MAX_FDS: usize = 8;

/// Called for every NOTIFY message (CRIU's "action scripts": post-dump, setup-namespaces,
/// post-restore, orphan-pts-master, ...). `fds` are the fds CRIU attached (SCM_RIGHTS). An error
/// makes CRIU abort the operation; [`Swrk::request`] then returns that error.
pub trait Notify {
    fn notify(&mut self, script: &str, pid: i32, fds: Vec<OwnedFd>) -> Result<()>;
}

impl<F: FnMut(&str, i32, Vec<OwnedFd>) -> Result<()>> Notify for F {
    fn notify(&mut self, script: &str, pid: i32, fds: Vec<OwnedFd>) -> Result<()> {
        self(script, pid, fds)
    }
}

/// A [`Notify`] that accepts every notification.
pub struct AcceptAll;

impl Notify for AcceptAll {
    fn notify(&mut self, _: &str, _: i32, _: Vec<OwnedFd>) -> Result<()> {
        Ok(())
    }
}

/// CRIU's answer was `success = false`, or CRIU died. Returned inside `anyhow::Error`; downcast to match.
#[derive(Debug, thiserror::Error)]
pub enum CriuError {
    /// The final response had `success = false`. `cause` is derived from the CRIU log `log`.
    #[error("criu {request} failed: {}{}", failure_text(.errno, .errmsg, .cause), log_suffix(.log))]
    Failed {
        request: String,
        errno: Option<i32>,
        errmsg: Option<String>,
        cause: Option<String>,
        log: Option<PathBuf>,
    },
    /// The socket reached EOF before a final response: CRIU crashed or was killed.
    #[error("criu exited unexpectedly: {status}{}{}", cause_suffix(.cause), log_suffix(.log))]
    Exited {
        status: ExitStatus,
        cause: Option<String>,
        log: Option<PathBuf>,
    },
    /// CRIU answered `success = true` but then exited with an error.
    #[error("criu {request} succeeded but criu then exited with {status}")]
    BadExit { request: String, status: ExitStatus },
}

/// "cause; criu said: cr_errmsg; errno N (text)", leaving out what adds nothing.
fn failure_text(errno: &Option<i32>, errmsg: &Option<String>, cause: &Option<String>) -> String {
    let mut parts = Vec::new();
    if let Some(cause) = cause {
        parts.push(cause.clone());
    }
    // cr_errmsg is CRIU's first error line, which may be a harmless one.
    let errmsg = errmsg.as_deref().map(str::trim).filter(|m| !m.is_empty());
    if let Some(msg) = errmsg.filter(|m| cause.is_none() || !log::is_harmless(m)) {
        parts.push(format!("criu said: {msg}"));
    }
    if let Some(errno) = errno.filter(|e| *e != 0) {
        parts.push(format!("errno {errno} ({})", Errno::from_raw(errno).desc()));
    }
    if parts.is_empty() {
        parts.push("no error message".into());
    }
    parts.join("; ")
}

fn cause_suffix(cause: &Option<String>) -> String {
    cause.as_ref().map(|c| format!(": {c}")).unwrap_or_default()
}

fn log_suffix(log: &Option<PathBuf>) -> String {
    log.as_ref()
        .map(|p| format!(" (log: {})", p.display()))
        .unwrap_or_default()
}

/// How to start `criu swrk`.
#[derive(Debug)]
pub struct SwrkOptions {
    /// CRIU binary: a path, or a bare name looked up in `$PATH`.
    pub criu_path: PathBuf,
    /// CRIU's fds 0-2 (a restored tree inherits them); `None` inherits ours.
    pub stdin: Option<Stdio>,
    pub stdout: Option<Stdio>,
    pub stderr: Option<Stdio>,
    /// Extra fds as (number in CRIU, fd); numbers must be >= 4 and distinct. Closed in the parent
    /// once CRIU is started (pass a `try_clone()` to keep one).
    pub extra_fds: Vec<(RawFd, OwnedFd)>,
    /// CRIU's log file (as this process sees it), read to explain a failure.
    pub log_path: Option<PathBuf>,
    /// Cgroup files (v1 `tasks`, v2 `cgroup.procs`) CRIU writes "0" to before it execs:
    /// it starts inside the container's cgroup, so restored tasks are born there, without
    /// the slow cross-process migration.
    pub join_cgroup: Vec<PathBuf>,
    /// Start CRIU in a process group of its own, so a Ctrl-C meant for us does not kill it
    /// half way (we decide what to do: see `interrupt`). Off for a shell job, whose restored
    /// tree belongs in the terminal's group.
    pub own_process_group: bool,
}

impl SwrkOptions {
    pub fn new(criu_path: impl Into<PathBuf>) -> Self {
        SwrkOptions {
            criu_path: criu_path.into(),
            stdin: None,
            stdout: None,
            stderr: None,
            extra_fds: Vec::new(),
            log_path: None,
            join_cgroup: Vec::new(),
            own_process_group: true,
        }
    }
}

/// [`LOCAL_CRIU`] if it exists, else `criu` (looked up in `$PATH`).
pub fn default_criu_path() -> PathBuf {
    let local = Path::new(LOCAL_CRIU);
    if local.exists() {
        local.to_path_buf()
    } else {
        PathBuf::from("criu")
    }
}

/// A running `criu swrk`, ready for one request.
#[derive(Debug)]
pub struct Swrk {
    child: Option<Child>,
    sock: Option<OwnedFd>,
    log_path: Option<PathBuf>,
}

impl Swrk {
    /// Start `criu swrk 3`. The request is not sent yet, so the caller can first act on [`Swrk::pid`].
    pub fn spawn(opts: SwrkOptions) -> Result<Swrk> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .context("creating the CRIU socketpair")?;
        let mut targets = vec![SWRK_FD];
        for (target, _) in &opts.extra_fds {
            if *target <= SWRK_FD || targets.contains(target) {
                bail!(
                    "extra fd number {target} for criu is invalid: must be > {SWRK_FD} and unique"
                );
            }
            targets.push(*target);
        }
        // Copy every source above the highest target, so no dup2 in the child can overwrite a
        // source that is still to be moved (a source may equal another target number).
        let floor = targets.iter().max().copied().unwrap_or(SWRK_FD) + 1;
        let mut moves = Vec::with_capacity(targets.len());
        let mut high_copies = Vec::with_capacity(targets.len());
        let sources = std::iter::once(&theirs).chain(opts.extra_fds.iter().map(|(_, fd)| fd));
        for (src, target) in sources.zip(&targets) {
            let high = dup_above(src.as_raw_fd(), floor)
                .with_context(|| format!("duplicating fd {} for criu", src.as_raw_fd()))?;
            moves.push((high.as_raw_fd(), *target));
            high_copies.push(high);
        }

        let joins: Vec<std::ffi::CString> = opts
            .join_cgroup
            .iter()
            .map(|p| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()))
            .collect::<Result<_, _>>()?;
        let mut cmd = Command::new(&opts.criu_path);
        cmd.arg("swrk").arg(SWRK_FD.to_string());
        if let Some(s) = opts.stdin {
            cmd.stdin(s);
        }
        if let Some(s) = opts.stdout {
            cmd.stdout(s);
        }
        if let Some(s) = opts.stderr {
            cmd.stderr(s);
        }
        if opts.own_process_group {
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        }
        // SAFETY: the closure only calls async-signal-safe functions (dup2, syscall) and does not allocate.
        unsafe {
            cmd.pre_exec(move || {
                // Hygiene like runc's CloseExecFrom(3): nothing but our targets leaks into CRIU.
                // Done first, since the dup2s below make the targets inheritable again.
                libc::syscall(
                    libc::SYS_close_range,
                    SWRK_FD as libc::c_uint,
                    libc::c_uint::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                );
                for path in &joins {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                for &(src, target) in &moves {
                    // dup2 onto a different number clears FD_CLOEXEC on the target.
                    if libc::dup2(src, target) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} swrk", opts.criu_path.display()))?;
        // Close our copies of CRIU's end now: if CRIU dies, our reads see EOF instead of hanging.
        drop(high_copies);
        drop(theirs);
        drop(opts.extra_fds);
        Ok(Swrk {
            child: Some(child),
            sock: Some(ours),
            log_path: opts.log_path,
        })
    }

    /// CRIU's pid, known before any request is sent (e.g. to move CRIU into a cgroup).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Send `req`, serve NOTIFY messages with `notify`, return the final response and wait for
    /// CRIU to exit. A response with `success = false` becomes a [`CriuError::Failed`].
    pub fn request(mut self, req: CriuReq, notify: &mut dyn Notify) -> Result<CriuResp> {
        let request = format!("{:?}", req.r#type()).to_lowercase();
        let outcome = self.exchange(&request, &req, notify);
        // Closing our end first makes a CRIU that still waits for us exit.
        drop(self.sock.take());
        let status = self.wait()?;
        let resp = match outcome {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                return Err(CriuError::Exited {
                    status,
                    cause: self.cause(),
                    log: self.log_path.clone(),
                }
                .into());
            }
            Err(e) => return Err(e),
        };
        if !resp.success {
            return Err(CriuError::Failed {
                request,
                errno: resp.cr_errno,
                errmsg: resp.cr_errmsg.clone(),
                cause: self.cause(),
                log: self.log_path.clone(),
            }
            .into());
        }
        if resp.r#type != req.r#type {
            bail!(
                "criu answered a {request} request with a {:?} response",
                resp.r#type()
            );
        }
        if !status.success() {
            return Err(CriuError::BadExit { request, status }.into());
        }
        Ok(resp)
    }

    /// The request/notify loop; `Ok(None)` means EOF before a final response.
    fn exchange(
        &mut self,
        request: &str,
        req: &CriuReq,
        notify: &mut dyn Notify,
    ) -> Result<Option<CriuResp>> {
        let sock = self.sock.as_ref().context("criu socket already closed")?;
        let fd = sock.as_raw_fd();
        if !send_msg(fd, &req.encode_to_vec()).context("sending the request to criu")? {
            return Ok(None);
        }
        let mut script_error: Option<anyhow::Error> = None;
        loop {
            let Some((resp, fds)) = recv_resp(fd)? else {
                return Ok(None);
            };
            if resp.r#type() != CriuReqType::Notify {
                if let Some(e) = script_error {
                    return Err(e.context(format!("criu {request} aborted")));
                }
                return Ok(Some(resp));
            }
            let n = resp.notify.unwrap_or_default();
            let script = n.script.unwrap_or_default();
            let result = notify
                .notify(&script, n.pid.unwrap_or(0), fds)
                .with_context(|| format!("criu notification {script:?}"));
            let reply = CriuReq {
                notify_success: Some(result.is_ok()),
                ..CriuReq::new(CriuReqType::Notify)
            };
            if let Err(e) = result {
                script_error.get_or_insert(e);
            }
            if !send_msg(fd, &reply.encode_to_vec()).context("answering a criu notification")? {
                return Ok(None);
            }
        }
    }

    fn wait(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("criu already waited for")?;
        child.wait().context("waiting for criu")
    }

    fn cause(&self) -> Option<String> {
        self.log_path
            .as_deref()
            .and_then(|p| log::explain(p).ok().flatten())
    }
}

impl Drop for Swrk {
    /// A Swrk dropped without a request: close the socket (CRIU exits on EOF) and reap CRIU.
    fn drop(&mut self) {
        drop(self.sock.take());
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

/// Copy `fd` to the lowest free number >= `floor`, close-on-exec.
fn dup_above(fd: RawFd, floor: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd that we then own.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, floor) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh, open fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Send one message; `Ok(false)` when CRIU has gone (EPIPE / ECONNRESET).
fn send_msg(fd: RawFd, buf: &[u8]) -> Result<bool> {
    loop {
        match send(fd, buf, MsgFlags::MSG_NOSIGNAL) {
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(Errno::EPIPE | Errno::ECONNRESET) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receive one response with any fds attached; `Ok(None)` on EOF.
fn recv_resp(fd: RawFd) -> Result<Option<(CriuResp, Vec<OwnedFd>)>> {
    // Peek at the real size of the next message (SEQPACKET keeps boundaries). A CRIU that died
    // gives EOF, or ECONNRESET if it left our last message unread.
    let size = match retry(|| recv(fd, &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC)) {
        Ok(0) | Err(Errno::ECONNRESET) => return Ok(None),
        Ok(size) => size,
        Err(e) => return Err(e).context("reading a criu response"),
    };
    if size > MAX_MSG {
        bail!("criu response of {size} bytes is larger than the {MAX_MSG} bytes accepted");
    }
    let mut buf = vec![0u8; size];
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (len, flags, fds) = {
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let flags = MsgFlags::MSG_CMSG_CLOEXEC;
        let msg = loop {
            match recvmsg::<UnixAddr>(fd, &mut iov, Some(&mut cmsg), flags) {
                Err(Errno::EINTR) => continue,
                other => break other.context("reading a criu response")?,
            }
        };
        let mut fds = Vec::new();
        // Take ownership of every fd first, so they are closed on any error below.
        for c in msg.cmsgs().context("criu sent more fds than accepted")? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel just installed these fds in our table for us.
                fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
            }
        }
        (msg.bytes, msg.flags, fds)
    };
    if flags.contains(MsgFlags::MSG_TRUNC) || flags.contains(MsgFlags::MSG_CTRUNC) {
        bail!("criu response truncated ({len} bytes, flags {flags:?})");
    }
    let resp = CriuResp::decode(&buf[..len]).context("decoding a criu response")?;
    Ok(Some((resp, fds)))
}

fn retry<T>(mut f: impl FnMut() -> nix::Result<T>) -> nix::Result<T> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// Run a request that needs no fds or stdio of its own.
fn simple_request(criu_path: &Path, req: CriuReq) -> Result<CriuResp> {
    let mut opts = SwrkOptions::new(criu_path);
    opts.stdin = Some(Stdio::null());
    opts.stdout = Some(Stdio::null());
    Swrk::spawn(opts)?.request(req, &mut AcceptAll)
}

/// CRIU's version as (major, minor, sublevel); tuples compare like versions, e.g. `>= (3, 16, 0)`.
pub fn version(criu_path: &Path) -> Result<(i32, i32, i32)> {
    let resp = simple_request(criu_path, CriuReq::new(CriuReqType::Version))
        .context("querying the criu version")?;
    let v = resp
        .version
        .context("criu answered VERSION without a version")?;
    Ok((v.major_number, v.minor_number, v.sublevel.unwrap_or(0)))
}

/// Ask CRIU (and the kernel) whether memory tracking (pre-dump) and lazy pages work here.
/// The answer holds `Some(bool)` for each feature asked about.
pub fn check_features(criu_path: &Path, mem_track: bool, lazy_pages: bool) -> Result<CriuFeatures> {
    let req = CriuReq {
        features: Some(CriuFeatures {
            mem_track: Some(mem_track),
            lazy_pages: Some(lazy_pages),
            pidfd_store: None,
        }),
        ..CriuReq::new(CriuReqType::FeatureCheck)
    };
    let resp = simple_request(criu_path, req).context("checking criu features")?;
    resp.features
        .context("criu answered FEATURE_CHECK without features")
}

/// [`check_features`], turned into an error naming each requested feature that is missing.
pub fn require_features(criu_path: &Path, mem_track: bool, lazy_pages: bool) -> Result<()> {
    let found = check_features(criu_path, mem_track, lazy_pages)?;
    let mut missing = Vec::new();
    if mem_track && !found.mem_track() {
        missing.push("memory tracking for pre-dump (kernel without soft-dirty bits?)");
    }
    if lazy_pages && !found.lazy_pages() {
        missing.push("lazy pages (kernel without non-cooperative userfaultfd?)");
    }
    if !missing.is_empty() {
        bail!("criu cannot do {} here", missing.join(" nor "));
    }
    Ok(())
}
