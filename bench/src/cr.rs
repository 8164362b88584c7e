//! The checkpoint/restore rows. One iteration for one column: start the workload (untimed), wait
//! until it is ready, time `checkpoint`, time `restore --detach`, check the restored workload
//! runs (untimed), delete it and its images. Each row fills two table lines, `checkpoint <w>` and
//! `restore <w>`, with CRIU's frozen time, CRIU's own time and the runtime's share as parts.
//!
//! The `criu` column is the floor: the same container, started by runc, dumped and restored by
//! the criu CLI with the options runc gives CRIU (see `dump_args`, `restore_args`, README).

use crate::bundle::{Bundles, COUNTER_FILE, MASKED_PATHS, READY_FILE};
use crate::column::{path_str, Column, Kind};
use crate::criu;
use crate::rows::{Columns, Row, Sample};
use anyhow::{anyhow, bail, ensure, Context, Result};
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the rows keep their images and CRIU work dirs.
#[derive(Clone)]
pub struct Scratch {
    /// A tmpfs in the bench's mount namespace: images are written to memory, not disk.
    pub dir: PathBuf,
    /// A bind mount of the rootfs, the raw-CRIU column's `criu restore --root` (runc makes the
    /// same bind for its restores: CRIU wants a mount point there).
    pub criu_root: PathBuf,
    /// Where the CRIU logs of each cell's first failure are kept (target/bench/cr-logs).
    pub failed_logs: PathBuf,
}

/// How long a workload may take to get ready, and a restored one to show it runs.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy)]
enum Workload {
    /// The busybox sh loop writing an increasing number to `COUNTER_FILE`.
    Counter,
    /// `alloc` holding this many MiB of touched anonymous memory.
    Memory(u64),
}

pub fn rows(b: &Bundles, scratch: &Scratch) -> Vec<Box<dyn Row>> {
    let row = |tag: &'static str, bundle: &Path, workload, divisor, what: &str| -> Box<dyn Row> {
        let setup_error = match workload {
            Workload::Memory(_) => b.alloc_error.clone(),
            Workload::Counter => None,
        };
        Box::new(CheckpointRestore {
            tag,
            name: format!("checkpoint/restore {tag}"),
            lines: vec![
                (
                    format!("checkpoint {tag}"),
                    format!("`checkpoint` of {what} (parts: CRIU stats, logs)"),
                ),
                (
                    format!("restore {tag}"),
                    "`restore --detach` of that checkpoint, until the command returns".to_string(),
                ),
            ],
            bundle: bundle.to_path_buf(),
            rootfs: b.rootfs.clone(),
            workload,
            divisor,
            setup_error,
            scratch: scratch.clone(),
            saved: HashSet::new(),
        })
    };
    vec![
        row(
            "counter",
            &b.counter,
            Workload::Counter,
            1,
            "a busybox sh loop writing a count every 100 ms",
        ),
        row(
            "256M",
            &b.mem256,
            Workload::Memory(256),
            5,
            "a process with 256 MiB of touched anonymous memory",
        ),
        row(
            "1G",
            &b.mem1g,
            Workload::Memory(1024),
            10,
            "a process with 1 GiB of touched anonymous memory",
        ),
    ]
}

struct CheckpointRestore {
    tag: &'static str,
    name: String,
    lines: Vec<(String, String)>,
    bundle: PathBuf,
    rootfs: PathBuf,
    workload: Workload,
    /// Runs are `--runs` divided by this (at least 3): each 1 GiB iteration writes 1 GiB.
    divisor: usize,
    setup_error: Option<String>,
    scratch: Scratch,
    /// Columns whose failed CRIU logs were already kept.
    saved: HashSet<String>,
}

impl Row for CheckpointRestore {
    fn name(&self) -> &str {
        &self.name
    }
    fn about(&self) -> &str {
        &self.lines[0].1
    }
    fn lines(&self) -> Vec<(String, String)> {
        self.lines.clone()
    }
    fn columns(&self) -> Columns {
        Columns::CheckpointRestore
    }
    fn groups(&self) -> Vec<&str> {
        vec!["cr", "checkpoint", "restore", self.tag]
    }
    fn runs(&self, base: usize) -> usize {
        (base / self.divisor).max(base.min(3))
    }
    fn setup(&mut self, col: &Column) -> Result<()> {
        if let Some(e) = &self.setup_error {
            bail!("no /bin/alloc: {e}");
        }
        if col.kind == Kind::Runtime {
            // crun built without CRIU support has no such command.
            col.timed(&["checkpoint", "--help"])
                .context("no checkpoint command")?;
        }
        Ok(())
    }
    fn measure_lines(&mut self, col: &Column) -> Vec<Result<Sample>> {
        let dir = self.scratch.dir.join(col.key());
        let (images, work) = (dir.join("images"), dir.join("work"));
        let made = fs::create_dir_all(&images).and_then(|_| fs::create_dir_all(&work));
        let results = match made {
            Ok(()) => self.iteration(col, &images, &work),
            Err(e) => {
                let e = anyhow!(e).context(format!("mkdir {}", dir.display()));
                vec![Err(anyhow!("{e:#}")), Err(e)]
            }
        };
        if results.iter().any(Result::is_err) && self.saved.insert(col.label.clone()) {
            self.keep_logs(col, &work);
        }
        let _ = fs::remove_dir_all(&dir);
        results
    }
}

impl CheckpointRestore {
    /// Start, checkpoint, restore, check, delete: the checkpoint and the restore line results.
    fn iteration(&self, col: &Column, images: &Path, work: &Path) -> Vec<Result<Sample>> {
        let id = col.new_id();
        let (pid, maps) = match self.start(col, &id) {
            Ok(started) => started,
            Err(e) => {
                col.delete_quietly(&id);
                let e = e.context("starting the workload");
                return vec![Err(anyhow!("{e:#}")), Err(e)];
            }
        };
        let run = Run {
            col,
            id: &id,
            images,
            work,
            maps: &maps,
        };
        let checkpoint = self.checkpoint(&run, pid);
        let (restore, restored) = match &checkpoint {
            Ok(_) => match self.restore(&run) {
                Ok((sample, pid)) => (Ok(sample), Some(pid)),
                Err((e, pid)) => (Err(e), pid),
            },
            Err(_) => (Err(anyhow!("not run: the checkpoint failed")), None),
        };
        let cleaned = cleanup(col, &id, restored);
        let restore = match (restore, cleaned) {
            (Ok(s), Ok(())) => Ok(s),
            (Ok(_), Err(e)) => Err(e.context("deleting the restored container")),
            (Err(e), _) => Err(e),
        };
        vec![checkpoint, restore]
    }

    /// Starts the workload and waits until it is ready. Returns its init's pid and, for the
    /// raw-CRIU column, its external mounts (read while it runs).
    fn start(&self, col: &Column, id: &str) -> Result<(i32, criu::ExtMounts)> {
        col.start_quiet(&self.bundle, id)?;
        let pid = col.pid(id)?;
        self.wait_ready(pid)?;
        let maps = match col.kind {
            Kind::RawCriu => criu::ext_mounts(pid, MASKED_PATHS)?,
            _ => criu::ExtMounts::default(),
        };
        Ok((pid, maps))
    }

    /// Times the checkpoint of the running workload (`pid` is its init).
    fn checkpoint(&self, run: &Run, pid: i32) -> Result<Sample> {
        let log = run.work.join("dump.log");
        let total = match run.col.kind {
            Kind::RawCriu => {
                let mut args = vec!["dump".to_string(), "--tree".into(), pid.to_string()];
                args.extend(["--root".into(), path_str(&self.rootfs)?.into()]);
                for map in &run.maps.dump {
                    args.extend(["--ext-mount-map".into(), map.clone()]);
                }
                raw_criu(run, args, "dump.log")
            }
            _ => run.col.checkpoint(run.id, run.images, run.work),
        };
        let total = total.map_err(|e| with_criu_error(e, &log))?;
        let stats = criu::dump_stats(run.work)?;
        let criu_time = criu::log_time(&log)?;
        ensure!(stats.pages_written > 0, "CRIU wrote no pages");
        Ok(Sample {
            total,
            parts: vec![
                ("frozen", stats.freezing + stats.frozen),
                ("freezing", stats.freezing),
                ("criu", criu_time),
                ("runtime share", total.saturating_sub(criu_time)),
            ],
            values: vec![],
        })
    }

    /// Times the restore, then checks the workload runs again. Returns the restored init's pid,
    /// also with an error when there is a restored process to clean up.
    fn restore(&self, run: &Run) -> Result<(Sample, i32), (anyhow::Error, Option<i32>)> {
        let log = run.work.join("restore.log");
        let pidfile = run.work.join("restored.pid");
        let total = match run.col.kind {
            Kind::RawCriu => {
                let root = path_str(&self.scratch.criu_root).map_err(|e| (e, None))?;
                let mut args = vec!["restore".to_string(), "--restore-detached".into()];
                args.extend(["--root".into(), root.into()]);
                for map in &run.maps.restore {
                    args.extend(["--ext-mount-map".into(), map.clone()]);
                }
                args.extend(["--pidfile".into(), pidfile.to_string_lossy().into()]);
                raw_criu(run, args, "restore.log")
            }
            _ => run.col.restore(&self.bundle, run.id, run.images, run.work),
        };
        let total = total.map_err(|e| (with_criu_error(e, &log), None))?;
        let pid = match run.col.kind {
            Kind::RawCriu => read_pid(&pidfile),
            _ => run.col.pid(run.id),
        };
        let pid = pid.map_err(|e| (e.context("after the restore"), None))?;
        let checked = criu::log_time(&log).and_then(|criu_time| {
            ensure!(
                criu::pages_restored(run.work)? > 0,
                "CRIU restored no pages"
            );
            self.check_restored(pid)?;
            Ok(Sample {
                total,
                parts: vec![
                    ("criu", criu_time),
                    ("runtime share", total.saturating_sub(criu_time)),
                ],
                values: vec![],
            })
        });
        match checked {
            Ok(sample) => Ok((sample, pid)),
            Err(e) => Err((e, Some(pid))),
        }
    }

    /// Waits until the fresh workload is running: the counter has written a number, or `alloc`
    /// has touched its memory.
    fn wait_ready(&self, pid: i32) -> Result<()> {
        let ready = || match self.workload {
            Workload::Counter => read_counter(pid).is_some(),
            Workload::Memory(_) => in_container(pid, READY_FILE).exists(),
        };
        poll(ready).context("the workload did not get ready")
    }

    /// The restored workload runs: the counter moves on, or `alloc` holds its memory again.
    fn check_restored(&self, pid: i32) -> Result<()> {
        match self.workload {
            Workload::Counter => {
                let before = read_counter(pid).context("no counter after the restore")?;
                poll(|| read_counter(pid).is_some_and(|n| n > before))
                    .with_context(|| format!("the restored counter stays at {before}"))
            }
            Workload::Memory(mib) => ensure_rss(pid, mib),
        }
    }

    /// Copies the CRIU logs of a failed iteration to target/bench/cr-logs/<row>-<column>/.
    fn keep_logs(&self, col: &Column, work: &Path) {
        let dest = self
            .scratch
            .failed_logs
            .join(format!("{}-{}", self.tag, col.key()));
        let _ = fs::remove_dir_all(&dest);
        let Ok(entries) = fs::read_dir(work) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".log") {
                let _ = fs::create_dir_all(&dest);
                let _ = fs::copy(entry.path(), dest.join(entry.file_name()));
            }
        }
    }
}

/// One iteration's column, container and dirs.
struct Run<'a> {
    col: &'a Column,
    id: &'a str,
    images: &'a Path,
    work: &'a Path,
    /// The raw-CRIU column's `--ext-mount-map` values.
    maps: &'a criu::ExtMounts,
}

/// `criu <args> -D <images> -W <work> -o <log> -v4 --manage-cgroups`: the options runc's RPC
/// request sets for every dump and restore (runc's log level is 4, its cgroup mode CRIU's default).
fn raw_criu(run: &Run, mut args: Vec<String>, log: &str) -> Result<Duration> {
    args.extend(["--images-dir".into(), path_str(run.images)?.into()]);
    args.extend(["--work-dir".into(), path_str(run.work)?.into()]);
    args.extend(["--log-file".into(), log.into(), "-v4".into()]);
    args.push("--manage-cgroups".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run.col.timed_bin(&run.col.bin, &args)
}

/// Deletes the iteration's container. The raw-CRIU column's restored tree is not runc's: kill it
/// and wait for it to go first, then runc deletes the (stopped) container and its cgroups.
fn cleanup(col: &Column, id: &str, restored: Option<i32>) -> Result<()> {
    if col.kind == Kind::RawCriu {
        if let Some(pid) = restored {
            // SAFETY: kill(2) of the restored init (the init of its pid namespace: all its tree
            // dies with it). It is not our child: once it exits, the host's init reaps it.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let gone = || {
                fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
                    s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
            };
            if poll(gone).is_err() {
                col.delete_quietly(id);
                bail!("restored pid {pid} does not exit after SIGKILL");
            }
        }
    }
    col.delete_force(id).map(|_| ())
}

/// Polls `done` every 2 ms until it holds, for at most `READY_TIMEOUT`.
fn poll(mut done: impl FnMut() -> bool) -> Result<()> {
    let t0 = Instant::now();
    while !done() {
        if t0.elapsed() > READY_TIMEOUT {
            bail!("timed out after {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// A path inside the container whose init is `pid`.
fn in_container(pid: i32, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root{path}"))
}

fn read_counter(pid: i32) -> Option<u64> {
    let text = fs::read_to_string(in_container(pid, COUNTER_FILE)).ok()?;
    text.trim().parse().ok()
}

fn read_pid(path: &Path) -> Result<i32> {
    let text = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{}: not a pid", path.display()))
}

/// Adds the first `Error` lines of the CRIU log to a failed checkpoint or restore.
fn with_criu_error(e: anyhow::Error, log: &Path) -> anyhow::Error {
    match criu::first_errors(log) {
        Some(line) => e.context(format!("CRIU: {line}")),
        None => e,
    }
}

/// Process `pid` (a restored `alloc`) holds at least 90% of its `mib` MiB again.
pub fn ensure_rss(pid: impl std::fmt::Display, mib: u64) -> Result<()> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")?;
    ensure!(
        rss_kib >= mib * 1024 * 9 / 10,
        "the restored process holds {rss_kib} KiB, not {mib} MiB"
    );
    Ok(())
}
