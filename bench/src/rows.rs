//! The rows of the table. A row measures one iteration for one column and returns a `Sample`
//! (total time, optionally with named parts). To add a row, implement `Row` and list it in
//! `all_rows`; long-lived fixtures go in `setup`/`teardown`. A row may fill several table lines
//! from one iteration (`lines`, `measure_lines`): the checkpoint/restore rows (`cr`) do. The
//! migration rows (`migration`) run on a two-host bed with their own columns.

use crate::bundle::Bundles;
use crate::column::Column;
use crate::cr;
use crate::migration;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One measured iteration.
pub struct Sample {
    pub total: Duration,
    /// Named sub-measurements, printed as extra lines `- <part>` under the row.
    pub parts: Vec<(&'static str, Duration)>,
    /// Named measurements that are not times (e.g. an image size), printed as they are after
    /// the parts; the name says the unit ("image MiB").
    pub values: Vec<(&'static str, f64)>,
}

impl From<Duration> for Sample {
    fn from(total: Duration) -> Self {
        Self {
            total,
            parts: Vec::new(),
            values: Vec::new(),
        }
    }
}

/// The columns a row is measured in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    /// Runtime-independent rows: one pseudo-column (the baseline command).
    Baseline,
    /// runtime, runc, crun and the A/A column.
    Runtimes,
    /// Those plus raw `criu` (the checkpoint/restore rows).
    CheckpointRestore,
    /// runc by hand, `runtime migrate` plain and lazy, and an A/A column (see `migration`).
    Migration,
}

impl Columns {
    /// The two columns whose medians each cell is compared with ("vs runc", "vs crun"...).
    pub fn ratios(self) -> [&'static str; 2] {
        match self {
            Columns::CheckpointRestore => ["runc", "criu"],
            Columns::Migration => ["runc", migration::PLAIN],
            _ => ["runc", "crun"],
        }
    }
}

pub trait Row {
    fn name(&self) -> &str;
    /// One line saying exactly what is timed.
    fn about(&self) -> &str;
    /// The table lines this row fills, each (name, what it times); `measure_lines` returns one
    /// result per line, in this order. Default: one line, the row itself.
    fn lines(&self) -> Vec<(String, String)> {
        vec![(self.name().to_string(), self.about().to_string())]
    }
    fn columns(&self) -> Columns {
        Columns::Runtimes
    }
    /// Names `--rows` also selects the row by (besides its name and line names).
    fn groups(&self) -> Vec<&str> {
        vec!["startup"]
    }
    /// Iterations, given `--runs`.
    fn runs(&self, base: usize) -> usize {
        base
    }
    /// Untimed, once per column before its first iteration.
    fn setup(&mut self, _col: &Column) -> Result<()> {
        Ok(())
    }
    /// One iteration for one column. Untimed preparation and cleanup may happen inside.
    /// Single-line rows implement this; rows with several lines implement `measure_lines`.
    fn measure(&mut self, _col: &Column) -> Result<Sample> {
        bail!("row {} implements measure_lines", self.name())
    }
    /// One iteration for one column: one result per entry of `lines`.
    fn measure_lines(&mut self, col: &Column) -> Vec<Result<Sample>> {
        vec![self.measure(col)]
    }
    /// Untimed, once per column after its last iteration (also after errors or Ctrl-C).
    fn teardown(&mut self, _col: &Column) {}

    /// Whether `--rows` entry `sel` picks this row.
    fn selected_by(&self, sel: &str) -> bool {
        sel == self.name()
            || self.lines().iter().any(|(line, _)| line == sel)
            || self.groups().contains(&sel)
    }
}

pub fn all_rows(
    b: &Bundles,
    scratch: &cr::Scratch,
    bed: &std::rc::Rc<migration::Bed>,
) -> Vec<Box<dyn Row>> {
    let mut rows: Vec<Box<dyn Row>> = vec![
        Box::new(Baseline),
        Box::new(Run {
            bundle: b.true_.clone(),
        }),
        Box::new(Create {
            bundle: b.sleep.clone(),
        }),
        Box::new(Start {
            bundle: b.sleep.clone(),
        }),
        Box::new(Lifecycle {
            bundle: b.sleep.clone(),
        }),
        Box::new(InRunning {
            name: "exec",
            about: "foreground `exec <id> /bin/true` into a running sleep container",
            op: |col, id| col.exec(id, &["/bin/true"]),
            fixture: Running::new(&b.sleep),
        }),
        Box::new(InRunning {
            name: "state",
            about: "`state <id>` of a running sleep container",
            op: |col, id| col.state(id),
            fixture: Running::new(&b.sleep),
        }),
    ];
    rows.extend(cr::rows(b, scratch));
    rows.extend(migration::rows(bed));
    rows
}

/// `unshare --fork --pid --mount --net --ipc --uts /bin/true`: the floor of any container start.
struct Baseline;

impl Row for Baseline {
    fn name(&self) -> &str {
        "baseline"
    }
    fn about(&self) -> &str {
        "`unshare --fork --pid --mount --net --ipc --uts /bin/true` (no runtime)"
    }
    fn columns(&self) -> Columns {
        Columns::Baseline
    }
    fn measure(&mut self, col: &Column) -> Result<Sample> {
        let d = col.timed(&[
            "--fork",
            "--pid",
            "--mount",
            "--net",
            "--ipc",
            "--uts",
            "/bin/true",
        ])?;
        Ok(d.into())
    }
}

struct Run {
    bundle: PathBuf,
}

impl Row for Run {
    fn name(&self) -> &str {
        "run"
    }
    fn about(&self) -> &str {
        "foreground `run` of /bin/true, until it exits and the container is removed"
    }
    fn measure(&mut self, col: &Column) -> Result<Sample> {
        let id = col.new_id();
        let d = col.run(&self.bundle, &id);
        if d.is_err() {
            let _ = col.delete_force(&id);
        }
        Ok(d?.into())
    }
}

struct Create {
    bundle: PathBuf,
}

impl Row for Create {
    fn name(&self) -> &str {
        "create"
    }
    fn about(&self) -> &str {
        "`create` of a sleep container (then untimed `delete --force`)"
    }
    fn measure(&mut self, col: &Column) -> Result<Sample> {
        let id = col.new_id();
        let d = col.create(&self.bundle, &id);
        let deleted = col.delete_force(&id);
        let d = d?;
        deleted?;
        Ok(d.into())
    }
}

struct Start {
    bundle: PathBuf,
}

impl Row for Start {
    fn name(&self) -> &str {
        "start"
    }
    fn about(&self) -> &str {
        "`start` of a created sleep container (create and delete --force untimed)"
    }
    fn measure(&mut self, col: &Column) -> Result<Sample> {
        let id = col.new_id();
        col.create(&self.bundle, &id)?;
        let d = col.start(&id);
        let deleted = col.delete_force(&id);
        let d = d?;
        deleted?;
        Ok(d.into())
    }
}

struct Lifecycle {
    bundle: PathBuf,
}

impl Row for Lifecycle {
    fn name(&self) -> &str {
        "create+start+delete"
    }
    fn about(&self) -> &str {
        "`create`, `start`, `delete --force` of a sleep container, end to end (parts below)"
    }
    fn measure(&mut self, col: &Column) -> Result<Sample> {
        let id = col.new_id();
        let create = col.create(&self.bundle, &id)?;
        let start = col.start(&id);
        let delete = col.delete_force(&id);
        let (start, delete) = (start?, delete?);
        Ok(Sample {
            total: create + start + delete,
            parts: vec![("create", create), ("start", start), ("delete -f", delete)],
            values: vec![],
        })
    }
}

/// One long-lived sleep container per column, for rows that act on a running container.
struct Running {
    bundle: PathBuf,
    ids: HashMap<String, String>,
}

impl Running {
    fn new(bundle: &Path) -> Self {
        Self {
            bundle: bundle.to_path_buf(),
            ids: HashMap::new(),
        }
    }
}

/// A command (`op`) timed against the column's running sleep container.
struct InRunning {
    name: &'static str,
    about: &'static str,
    op: fn(&Column, &str) -> Result<Duration>,
    fixture: Running,
}

impl Row for InRunning {
    fn name(&self) -> &str {
        self.name
    }
    fn about(&self) -> &str {
        self.about
    }
    fn setup(&mut self, col: &Column) -> Result<()> {
        let id = col.start_container(&self.fixture.bundle)?;
        self.fixture.ids.insert(col.label.clone(), id);
        Ok(())
    }
    fn measure(&mut self, col: &Column) -> Result<Sample> {
        let id = self
            .fixture
            .ids
            .get(&col.label)
            .context("no running container (setup failed)")?;
        Ok((self.op)(col, id)?.into())
    }
    fn teardown(&mut self, col: &Column) {
        if let Some(id) = self.fixture.ids.remove(&col.label) {
            if let Err(e) = col.delete_force(&id) {
                eprintln!("teardown {}: {e:#}", self.name);
            }
        }
    }
}
