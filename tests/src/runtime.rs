//! Runs the runtime binary with `--root <private temp dir>` and a hard timeout, capturing its
//! exit status, stdout and stderr.
//!
//! Output is captured through unnamed temporary files, not pipes: a detached container inherits
//! the runtime's stdio, and a pipe it holds would keep a reader blocked forever. The runtime is
//! done when its own process exits.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// Upper bound for any single runtime invocation; a hang fails the test instead of blocking it.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// One runtime "installation": the binary plus a private `--root` state directory. Clones
/// share the same root (several containers in one root); it is removed with the last clone.
#[derive(Clone)]
pub struct Runtime {
    bin: PathBuf,
    root: Arc<TempDir>,
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Runtime {
    /// A runtime with a fresh, empty state root. Fails loudly when the binary is missing.
    pub fn new() -> Runtime {
        let bin = crate::runtime_bin();
        assert!(
            bin.is_file(),
            "runtime binary {} not found (set RUNTIME_BIN or build it with `make build`)",
            bin.display()
        );
        let root = tempfile::Builder::new()
            .prefix("rt-root-")
            .tempdir()
            .expect("create state root");
        Runtime {
            bin,
            root: Arc::new(root),
        }
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The directory passed as `--root`.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A call with only the global `--root` flag; add the subcommand and its arguments.
    pub fn call<S: AsRef<OsStr>>(&self, args: &[S]) -> Call {
        let mut call = Call::new(&self.bin);
        call.args.push("--root".into());
        call.args.push(self.root.path().into());
        call.args.extend(args.iter().map(|a| a.as_ref().to_owned()));
        call
    }

    /// A call without any global flag added (for `--version`, `spec`, flag-order tests).
    pub fn bare<S: AsRef<OsStr>>(&self, args: &[S]) -> Call {
        let mut call = Call::new(&self.bin);
        call.args.extend(args.iter().map(|a| a.as_ref().to_owned()));
        call
    }

    /// Runs `args` (after `--root`) and returns the result.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.call(args).run()
    }

    pub fn create(&self, id: &str, bundle: &Path) -> Output {
        self.run(&[os("create"), os("--bundle"), bundle.into(), os(id)])
    }

    pub fn start(&self, id: &str) -> Output {
        self.run(&["start", id])
    }

    pub fn run_detached(&self, id: &str, bundle: &Path) -> Output {
        self.run(&[
            os("run"),
            os("--detach"),
            os("--bundle"),
            bundle.into(),
            os(id),
        ])
    }

    pub fn kill(&self, id: &str, signal: &str) -> Output {
        self.run(&["kill", id, signal])
    }

    pub fn delete(&self, id: &str) -> Output {
        self.run(&["delete", id])
    }

    pub fn delete_force(&self, id: &str) -> Output {
        self.run(&["delete", "--force", id])
    }

    /// `exec <id> <cmd...>` in the foreground.
    pub fn exec(&self, id: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", id];
        args.extend_from_slice(cmd);
        self.run(&args)
    }

    /// `state <id>` parsed as JSON; panics (fails the test) if the call or the parse fails.
    pub fn state(&self, id: &str) -> Value {
        let out = self.run(&["state", id]).success();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("state output is not JSON ({e}):\n{out}"))
    }

    /// The `status` field of `state <id>`.
    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .unwrap_or_else(|| panic!("state of {id} has no status string"))
            .to_owned()
    }

    /// Polls `state` until the status is `want`; fails the test after 10 s.
    pub fn wait_status(&self, id: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = String::new();
        while Instant::now() < deadline {
            last = self.status(id);
            if last == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("container {id} did not become {want:?} within 10s (last status {last:?})");
    }
}

fn os(s: &str) -> OsString {
    s.into()
}

/// A prepared runtime invocation (builder). Stdin is /dev/null unless bytes are given.
pub struct Call {
    bin: PathBuf,
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
    fds: Vec<(RawFd, OwnedFd)>,
    cwd: Option<PathBuf>,
    timeout: Duration,
}

impl Call {
    fn new(bin: &Path) -> Call {
        Call {
            bin: bin.to_owned(),
            args: Vec::new(),
            stdin: None,
            fds: Vec::new(),
            cwd: None,
            timeout: TIMEOUT,
        }
    }

    pub fn arg<S: AsRef<OsStr>>(mut self, arg: S) -> Call {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Feeds these bytes on stdin (through a temporary file).
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Call {
        self.stdin = Some(data.into());
        self
    }

    /// Passes `fd` to the runtime as descriptor number `target` (for `--preserve-fds`).
    pub fn pass_fd(mut self, target: RawFd, fd: OwnedFd) -> Call {
        self.fds.push((target, fd));
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Call {
        self.cwd = Some(dir.to_owned());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Call {
        self.timeout = timeout;
        self
    }

    fn cmdline(&self) -> String {
        let mut s = self.bin.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    fn command(&self) -> std::io::Result<Command> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        match &self.stdin {
            None => {
                cmd.stdin(Stdio::null());
            }
            Some(data) => {
                let mut f = tempfile::tempfile()?;
                f.write_all(data)?;
                f.seek(SeekFrom::Start(0))?;
                cmd.stdin(f);
            }
        }
        let fds: Vec<(RawFd, RawFd)> = self
            .fds
            .iter()
            .map(|(target, fd)| (*target, fd.as_raw_fd()))
            .collect();
        if !fds.is_empty() {
            // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    for &(target, src) in &fds {
                        if target == src {
                            let flags = libc::fcntl(src, libc::F_GETFD);
                            if flags < 0
                                || libc::fcntl(src, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0
                            {
                                return Err(std::io::Error::last_os_error());
                            }
                        } else if libc::dup2(src, target) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        Ok(cmd)
    }

    /// Runs to completion; a timeout is an `Err` (the runtime process is killed first).
    pub fn try_run(self) -> std::io::Result<Output> {
        let cmdline = self.cmdline();
        let mut cmd = self.command()?;
        let mut out_file = tempfile::tempfile()?;
        let mut err_file = tempfile::tempfile()?;
        cmd.stdout(out_file.try_clone()?);
        cmd.stderr(err_file.try_clone()?);
        let started = Instant::now();
        let mut child = cmd.spawn()?;
        drop(cmd);
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("timed out after {:?}: {cmdline}", self.timeout),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Ok(Output {
            cmdline,
            code: status.code(),
            signal: status.signal(),
            stdout: read_all(&mut out_file)?,
            stderr: read_all(&mut err_file)?,
            elapsed: started.elapsed(),
        })
    }

    /// Runs to completion; a timeout or spawn failure fails the test.
    pub fn run(self) -> Output {
        self.try_run()
            .unwrap_or_else(|e| panic!("runtime call failed: {e}"))
    }

    /// Starts the runtime with stdout on a pipe (stderr to a temp file) for streaming commands
    /// such as `events`. The caller must kill and wait the child.
    pub fn spawn_piped(self) -> Child {
        let mut cmd = self.command().expect("prepare runtime command");
        cmd.stdout(Stdio::piped());
        cmd.stderr(tempfile::tempfile().expect("stderr temp file"));
        cmd.spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.cmdline()))
    }
}

fn read_all(f: &mut File) -> std::io::Result<String> {
    f.seek(SeekFrom::Start(0))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The result of one runtime invocation.
pub struct Output {
    pub cmdline: String,
    /// Exit code, `None` if killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.cmdline)?;
        match (self.code, self.signal) {
            (Some(c), _) => writeln!(f, "exit code: {c}")?,
            (None, Some(s)) => writeln!(f, "killed by signal {s}")?,
            _ => writeln!(f, "unknown exit status")?,
        }
        writeln!(f, "stdout: {:?}", self.stdout)?;
        write!(f, "stderr: {:?}", self.stderr)
    }
}

impl Output {
    /// Asserts exit code 0.
    #[track_caller]
    pub fn success(self) -> Output {
        assert_eq!(self.code, Some(0), "expected success\n{self}");
        self
    }

    /// Asserts a non-zero exit code (a crash by signal is not an acceptable failure).
    #[track_caller]
    pub fn failure(self) -> Output {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "expected a non-zero exit code\n{self}"
        );
        self
    }

    /// Asserts this exact exit code.
    #[track_caller]
    pub fn code_is(self, code: i32) -> Output {
        assert_eq!(self.code, Some(code), "unexpected exit code\n{self}");
        self
    }

    /// Asserts stderr contains `needle` (case-insensitive).
    #[track_caller]
    pub fn stderr_has(self, needle: &str) -> Output {
        assert!(
            self.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "stderr should contain {needle:?}\n{self}"
        );
        self
    }

    /// Asserts stderr is exactly one non-empty line: the error message.
    #[track_caller]
    pub fn one_error_line(self) -> Output {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "expected one error line on stderr\n{self}");
        self
    }

    /// Stdout with surrounding whitespace removed.
    pub fn out(&self) -> &str {
        self.stdout.trim()
    }
}
