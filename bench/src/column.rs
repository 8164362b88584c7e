//! A column of the table: one runtime binary with its own `--root` state dir, the runc commands
//! the rows need (each timed, with a timeout), and the ids of its containers still to delete.

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
    /// Column header: "runtime", "runc", "runc (A/A)", "crun".
    pub label: String,
    pub bin: PathBuf,
    /// `Err(reason)` when the binary cannot be used (then the column shows the reason).
    pub version: Result<String, String>,
    /// `--root` passed before every command; `None` for the baseline (not a runtime).
    root: Option<PathBuf>,
    /// Stderr of the last command, read when it fails.
    stderr: PathBuf,
    /// Short name used in container ids.
    key: String,
    seq: Cell<u64>,
    live: RefCell<BTreeSet<String>>,
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
            version,
            stderr: work.join(format!("stderr-{key}")),
            root: Some(root),
            key: key.to_string(),
            seq: Cell::new(0),
            live: RefCell::default(),
        })
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
            root: None,
            stderr: work.join("stderr-baseline"),
            key: "baseline".into(),
            seq: Cell::new(0),
            live: RefCell::default(),
        }
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

    /// Runs `<bin> --root <root> <args>` and returns its wall time.
    pub fn timed(&self, args: &[&str]) -> Result<Duration> {
        let mut cmd = Command::new(&self.bin);
        if let Some(root) = &self.root {
            cmd.arg("--root").arg(root);
        }
        cmd.args(args);
        timed(cmd, &self.stderr, None).with_context(|| format!("{} {}", self.label, args.join(" ")))
    }

    pub fn create(&self, bundle: &Path, id: &str) -> Result<Duration> {
        self.live.borrow_mut().insert(id.to_string());
        self.timed(&["create", "--bundle", path_str(bundle)?, id])
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
        let mut list = Command::new(&self.bin);
        list.arg("--root").arg(root).args(["list", "--quiet"]);
        let listed = self.stderr.with_extension("list");
        match timed(list, &self.stderr, Some(&listed)) {
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

fn path_str(p: &Path) -> Result<&str> {
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

/// Spawns `cmd` (stdin /dev/null, stdout /dev/null or `stdout_path`, stderr to `stderr_path`, own
/// process group), waits, and returns the wall time from spawn to exit. A non-zero exit is an
/// error quoting the end of stderr. The output files are fresh inodes each call: containers
/// created by `cmd` inherit them.
fn timed(mut cmd: Command, stderr_path: &Path, stdout_path: Option<&Path>) -> Result<Duration> {
    start_watchdog();
    let fresh = |p: &Path| {
        let _ = fs::remove_file(p);
        File::create(p)
    };
    let stdout = match stdout_path {
        Some(p) => Stdio::from(fresh(p)?),
        None => Stdio::null(),
    };
    cmd.stdin(Stdio::null())
        .stdout(stdout)
        .stderr(fresh(stderr_path)?)
        .process_group(0);
    let timeout = *TIMEOUT.lock().unwrap();
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
    let text = fs::read_to_string(stderr_path).unwrap_or_default();
    let lines: Vec<&str> = text.trim().lines().collect();
    let tail = match lines.len() {
        0 => "(no stderr)".to_string(),
        n => lines[n.saturating_sub(3)..].join(" | "),
    };
    if elapsed >= timeout {
        return Err(anyhow::Error::new(TimedOut(timeout)).context(format!("{status}: {tail}")));
    }
    bail!("{status}: {tail}")
}
