//! A column of the table: one runtime binary with its own `--root` state dir, the runc commands
//! the rows need (each timed, with a timeout), and the ids of its containers still to delete. The
//! raw-CRIU column of the checkpoint/restore rows is a column too: its lifecycle commands go to
//! runc (`runner`), its checkpoint and restore to the criu CLI (`bin`, see `cr`).

use anyhow::{bail, Context, Result};
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct Column {
    /// Column header: "runtime", "runc", "runc (A/A)", "crun", "criu".
    pub label: String,
    /// The binary measured (its version is shown): the runtime, or criu for the raw-CRIU column.
    pub bin: PathBuf,
    /// The binary run by `timed` and the lifecycle commands: `bin`, except runc for raw CRIU.
    runner: PathBuf,
    pub kind: Kind,
    /// `Err(reason)` when the binary cannot be used (then the column shows the reason).
    pub version: Result<String, String>,
    /// `--root` passed before every command; `None` for the baseline (not a runtime).
    root: Option<PathBuf>,
    /// Stderr of the last command, read when it fails.
    stderr: PathBuf,
    /// `--log` file of commands run with `/dev/null` as stderr (`timed_quiet`).
    log: PathBuf,
    /// Short name used in container ids.
    key: String,
    seq: Cell<u64>,
    live: RefCell<BTreeSet<String>>,
}

/// What a column runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// An OCI runtime: every command goes to `bin`.
    Runtime,
    /// Runtime-independent rows: `bin` with the row's arguments only.
    Baseline,
    /// The criu CLI on containers that runc starts and deletes.
    RawCriu,
}

impl Column {
    /// `work` is the bench's temp dir; the column keeps its state dir and stderr file there.
    pub fn new(label: &str, key: &str, bin: &Path, work: &Path) -> Result<Self> {
        let root = work.join(format!("root-{key}"));
        fs::create_dir_all(&root)?;
        let version = probe_version(bin);
        Ok(Self {
            label: label.to_string(),
            bin: bin.to_path_buf(),
            runner: bin.to_path_buf(),
            kind: Kind::Runtime,
            version,
            stderr: work.join(format!("stderr-{key}")),
            log: work.join(format!("log-{key}")),
            root: Some(root),
            key: key.to_string(),
            seq: Cell::new(0),
            live: RefCell::default(),
        })
    }

    /// The raw-CRIU column: `criu` dumps and restores containers that `runc` (with this column's
    /// own `--root`) starts and deletes.
    pub fn raw_criu(label: &str, criu: &Path, runc: &Path, work: &Path) -> Result<Self> {
        let mut col = Self::new(label, "criu", criu, work)?;
        col.runner = runc.to_path_buf();
        col.kind = Kind::RawCriu;
        if col.version.is_ok() && !runc.is_file() {
            col.version = Err(format!("needs runc ({} not found)", runc.display()));
        }
        Ok(col)
    }

    /// The pseudo-column of runtime-independent rows: `bin` run with the row's arguments only.
    pub fn baseline(label: &str, bin: &Path, work: &Path) -> Self {
        Self {
            label: label.to_string(),
            bin: bin.to_path_buf(),
            version: if bin.is_file() {
                Ok(String::new())
            } else {
                Err("not found".into())
            },
            runner: bin.to_path_buf(),
            kind: Kind::Baseline,
            root: None,
            stderr: work.join("stderr-baseline"),
            log: work.join("log-baseline"),
            key: "baseline".into(),
            seq: Cell::new(0),
            live: RefCell::default(),
        }
    }

    /// Short name used in container ids and scratch dirs ("rt", "runc", "criu", ...).
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn available(&self) -> bool {
        self.version.is_ok()
    }

    /// A container id unique to this bench process and column.
    pub fn new_id(&self) -> String {
        self.seq.set(self.seq.get() + 1);
        format!(
            "bench-{}-{}-{}",
            std::process::id(),
            self.key,
            self.seq.get()
        )
    }

    /// `<runner> --root <root>` (just `<runner>` for the baseline).
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.runner);
        if let Some(root) = &self.root {
            cmd.arg("--root").arg(root);
        }
        cmd
    }

    /// Runs `<bin> --root <root> <args>` and returns its wall time.
    pub fn timed(&self, args: &[&str]) -> Result<Duration> {
        let mut cmd = self.command();
        cmd.args(args);
        let io = Io {
            stdout: None,
            stderr: Some(&self.stderr),
            errors: &self.stderr,
        };
        timed(cmd, io).with_context(|| format!("{} {}", self.label, args.join(" ")))
    }

    /// Like `timed`, but with `/dev/null` as stderr and errors taken from `--log <file>`: for
    /// commands whose container inherits stderr and is then checkpointed (CRIU cannot dump a
    /// container holding a host file open).
    pub fn timed_quiet(&self, args: &[&str]) -> Result<Duration> {
        let _ = fs::remove_file(&self.log);
        let mut cmd = self.command();
        cmd.arg("--log").arg(&self.log).args(args);
        let io = Io {
            stdout: None,
            stderr: None,
            errors: &self.log,
        };
        timed(cmd, io).with_context(|| format!("{} {}", self.label, args.join(" ")))
    }

    /// Runs `<bin> <args>` (no `--root`: e.g. criu) the same way, quoting its stderr on failure.
    pub fn timed_bin(&self, bin: &Path, args: &[&str]) -> Result<Duration> {
        let mut cmd = Command::new(bin);
        cmd.args(args);
        let io = Io {
            stdout: None,
            stderr: Some(&self.stderr),
            errors: &self.stderr,
        };
        timed(cmd, io).with_context(|| format!("{} {}", bin.display(), args.join(" ")))
    }

    /// The pid of a container's init, from `state <id>`.
    pub fn pid(&self, id: &str) -> Result<i32> {
        let out = self.stderr.with_extension("state");
        let mut cmd = self.command();
        cmd.args(["state", id]);
        let io = Io {
            stdout: Some(&out),
            stderr: Some(&self.stderr),
            errors: &self.stderr,
        };
        timed(cmd, io).with_context(|| format!("{} state {id}", self.label))?;
        let state: serde_json::Value = serde_json::from_slice(&fs::read(&out)?)
            .with_context(|| format!("{} state {id}: not JSON", self.label))?;
        match state["pid"].as_i64() {
            Some(pid) if pid > 0 => Ok(pid as i32),
            _ => bail!("{} state {id}: no pid in {state}", self.label),
        }
    }

    pub fn create(&self, bundle: &Path, id: &str) -> Result<Duration> {
        self.live.borrow_mut().insert(id.to_string());
        self.timed(&["create", "--bundle", path_str(bundle)?, id])
    }

    /// `create` with `/dev/null` on the container's stdio (see `timed_quiet`), then `start`.
    pub fn start_quiet(&self, bundle: &Path, id: &str) -> Result<()> {
        self.live.borrow_mut().insert(id.to_string());
        self.timed_quiet(&["create", "--bundle", path_str(bundle)?, id])?;
        self.start(id)?;
        Ok(())
    }

    /// `delete --force`, ignoring errors (after a failure the container may not exist any more;
    /// `cleanup` still finds any left in the state dir).
    pub fn delete_quietly(&self, id: &str) {
        let _ = self.delete_force(id);
        self.live.borrow_mut().remove(id);
    }

    /// `checkpoint` into `images`, with CRIU's logs and stats in `work`.
    pub fn checkpoint(&self, id: &str, images: &Path, work: &Path) -> Result<Duration> {
        self.timed(&[
            "checkpoint",
            "--image-path",
            path_str(images)?,
            "--work-path",
            path_str(work)?,
            id,
        ])
    }

    /// `restore --detach` from `images`, with CRIU's logs and stats in `work`.
    pub fn restore(&self, bundle: &Path, id: &str, images: &Path, work: &Path) -> Result<Duration> {
        self.live.borrow_mut().insert(id.to_string());
        self.timed_quiet(&[
            "restore",
            "--detach",
            "--bundle",
            path_str(bundle)?,
            "--image-path",
            path_str(images)?,
            "--work-path",
            path_str(work)?,
            id,
        ])
    }

    pub fn start(&self, id: &str) -> Result<Duration> {
        self.timed(&["start", id])
    }

    pub fn delete_force(&self, id: &str) -> Result<Duration> {
        let d = self.timed(&["delete", "--force", id])?;
        self.live.borrow_mut().remove(id);
        Ok(d)
    }

    /// Foreground `run`: returns when the container process has exited and the container is gone.
    pub fn run(&self, bundle: &Path, id: &str) -> Result<Duration> {
        self.live.borrow_mut().insert(id.to_string());
        let d = self.timed(&["run", "--bundle", path_str(bundle)?, id]);
        if d.is_ok() {
            self.live.borrow_mut().remove(id);
        }
        d
    }

    /// Foreground `exec` without a terminal.
    pub fn exec(&self, id: &str, args: &[&str]) -> Result<Duration> {
        let mut all = vec!["exec", id];
        all.extend_from_slice(args);
        self.timed(&all)
    }

    pub fn state(&self, id: &str) -> Result<Duration> {
        self.timed(&["state", id])
    }

    /// Creates and starts a container from `bundle` (untimed setup for other measurements).
    pub fn start_container(&self, bundle: &Path) -> Result<String> {
        let id = self.new_id();
        self.create(bundle, &id)?;
        self.start(&id)?;
        Ok(id)
    }

    /// Deletes, best effort, every container this column created and did not delete, plus any
    /// other container in its state dir. Stops at the first timeout (a hung runtime).
    pub fn cleanup(&self) {
        let Some(root) = self.root.as_ref().filter(|_| self.available()) else {
            return;
        };
        let mut ids = self.live.borrow().clone();
        let mut list = Command::new(&self.runner);
        list.arg("--root").arg(root).args(["list", "--quiet"]);
        let listed = self.stderr.with_extension("list");
        let io = Io {
            stdout: Some(&listed),
            stderr: Some(&self.stderr),
            errors: &self.stderr,
        };
        match timed(list, io) {
            Ok(_) => {
                let text = fs::read_to_string(&listed).unwrap_or_default();
                ids.extend(text.split_whitespace().map(String::from));
            }
            Err(e) if is_timeout(&e) => ids.clear(),
            Err(_) => {}
        }
        for id in ids {
            if let Err(e) = self.delete_force(&id) {
                eprintln!("cleanup: {e:#}");
                if is_timeout(&e) {
                    break;
                }
            }
        }
    }
}

impl Drop for Column {
    /// Early returns and errors still delete the column's containers.
    fn drop(&mut self) {
        self.cleanup();
    }
}

pub fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

fn probe_version(bin: &Path) -> Result<String, String> {
    if !bin.is_file() {
        return Err("not found".into());
    }
    match Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()),
        Err(e) => Err(format!("cannot run: {e}")),
    }
}

/// Per-command timeout: a hung command would otherwise stall the table and its cleanup.
pub static TIMEOUT: Mutex<Duration> = Mutex::new(Duration::from_secs(30));

/// $PATH of every command: the criu binary's directory first, so runc finds the same criu as
/// the raw-CRIU column (set once in `main`; unset = inherited).
pub static CHILD_PATH: OnceLock<String> = OnceLock::new();

/// The command being timed (its process group id) and when to kill it.
static WATCHED: Mutex<Option<(i32, Instant)>> = Mutex::new(None);

/// A thread that SIGKILLs the watched command's process group once its deadline has passed.
/// Waiting stays a blocking `wait`, so timing has no polling error.
fn start_watchdog() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_millis(100));
            if let Some((pgid, deadline)) = *WATCHED.lock().unwrap() {
                if Instant::now() > deadline {
                    // SAFETY: kill(2) on a process group we created.
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                }
            }
        });
    });
}

/// The error of a command killed at its deadline; rows give up on a column after one.
#[derive(Debug)]
pub struct TimedOut(pub Duration);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "timed out after {:?}", self.0)
    }
}

impl std::error::Error for TimedOut {}

pub fn is_timeout(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<TimedOut>())
}

/// The `--timeout` of every runtime command.
pub fn timeout() -> Duration {
    *TIMEOUT.lock().unwrap()
}

/// Where a timed command's output goes.
pub struct Io<'a> {
    /// Stdout file, else /dev/null.
    pub stdout: Option<&'a Path>,
    /// Stderr file, else /dev/null.
    pub stderr: Option<&'a Path>,
    /// The file whose end is quoted when the command fails (stderr, or a log file).
    pub errors: &'a Path,
}

/// `timed_for` with the `--timeout` of every runtime command.
fn timed(cmd: Command, io: Io) -> Result<Duration> {
    timed_for(cmd, io, timeout())
}

/// Spawns `cmd` (stdin /dev/null, stdout and stderr as `io` says, own process group), waits, and
/// returns the wall time from spawn to exit; the process group is killed after `timeout`. A
/// non-zero exit is an error quoting the end of `io.errors`. The output files are fresh inodes
/// each call: containers created by `cmd` inherit them.
pub fn timed_for(mut cmd: Command, io: Io, timeout: Duration) -> Result<Duration> {
    start_watchdog();
    let fresh = |p: Option<&Path>| -> Result<Stdio> {
        Ok(match p {
            Some(p) => {
                let _ = fs::remove_file(p);
                Stdio::from(File::create(p)?)
            }
            None => Stdio::null(),
        })
    };
    if let Some(path) = CHILD_PATH.get() {
        cmd.env("PATH", path);
    }
    cmd.stdin(Stdio::null())
        .stdout(fresh(io.stdout)?)
        .stderr(fresh(io.stderr)?)
        .process_group(0);
    let t0 = Instant::now();
    let mut child = cmd.spawn().context("spawn")?;
    *WATCHED.lock().unwrap() = Some((child.id() as i32, t0 + timeout));
    let status = child.wait();
    let elapsed = t0.elapsed();
    *WATCHED.lock().unwrap() = None;
    let status = status?;
    if status.success() {
        return Ok(elapsed);
    }
    let text = fs::read_to_string(io.errors).unwrap_or_default();
    let lines: Vec<&str> = text.trim().lines().collect();
    let tail = match lines.len() {
        0 => format!("(nothing in {})", io.errors.display()),
        n => lines[n.saturating_sub(3)..].join(" | "),
    };
    if elapsed >= timeout {
        return Err(anyhow::Error::new(TimedOut(timeout)).context(format!("{status}: {tail}")));
    }
    bail!("{status}: {tail}")
}
