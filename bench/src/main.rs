//! `runtime-bench` (`make bench`): times `runtime`, runc and crun side by side in one run. For each
//! row and each iteration every column is measured once, in an order rotated by the iteration, and
//! one runtime is measured twice (the A/A column) to show the noise. The checkpoint/restore rows
//! add a raw `criu` column (see `cr`); the migration rows have their own columns on a two-host bed
//! (see `migration`). Runs as root, inside a private mount namespace without
//! /sys/fs/cgroup/unified (see `isolate`). Prints versions, the table and errors; writes the raw
//! samples to target/bench/bench-<unix time>.json (and latest.json).

mod bundle;
mod column;
mod cr;
mod criu;
mod isolate;
mod migration;
mod report;
mod rows;

use anyhow::{bail, Context, Result};
use column::{Column, Kind};
use report::{Cell, RowResult};
use rows::{Columns, Row};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

const USAGE: &str =
    "usage: runtime-bench [--runtime PATH] [--runs N | --quick] [--rows NAME,.. | --cr-only]
         [--aa runc|crun|runtime] [--runc PATH] [--crun PATH] [--criu PATH] [--timeout SECS]
         [--out FILE]
  --runtime PATH  our runtime (default: $RUNTIME_BIN, else target/release/runtime); may be missing
  --runs N        iterations per row (default 100; the 256M and 1G checkpoint/restore rows run
                  N/5 and N/10, migrate httpd N/20, migrate 1G N/33, each at least 3); --quick = 10
  --rows LIST     only these rows: names (baseline, run, create, start, create+start+delete,
                  exec, state, checkpoint counter, restore 1G, migrate httpd, ...) or groups:
                  startup, cr (all checkpoint/restore rows; also checkpoint, restore), counter,
                  256M, 1G, migration (the two-host migration rows)
  --cr-only       same as --rows cr
  --aa NAME       the column measured twice to show noise (default runc; the migration rows
                  use runc unless NAME is runtime)
  --criu PATH     criu for the raw column; its directory goes first in every command's PATH
  --timeout SECS  per runtime command (default 30)
  --out FILE      raw samples JSON (default target/bench/bench-<unix time>.json)";

struct Args {
    runtime: PathBuf,
    runc: PathBuf,
    crun: PathBuf,
    criu: PathBuf,
    runs: usize,
    rows: Option<Vec<String>>,
    aa: String,
    timeout: u64,
    out: Option<PathBuf>,
}

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// First `name` on $PATH (or in the sbin dirs root's PATH may lack), else just `name`.
fn which(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut dirs =
        path.split(':')
            .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]);
    let found = dirs.find(|d| Path::new(d).join(name).is_file());
    found
        .map(|d| Path::new(d).join(name))
        .unwrap_or_else(|| name.into())
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        runtime: std::env::var_os("RUNTIME_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_dir().join("target/release/runtime")),
        runc: which("runc"),
        crun: which("crun"),
        criu: which("criu"),
        runs: 100,
        rows: None,
        aa: "runc".into(),
        timeout: 30,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--runtime" => a.runtime = value()?.into(),
            "--runc" => a.runc = value()?.into(),
            "--crun" => a.crun = value()?.into(),
            "--criu" => a.criu = value()?.into(),
            "--cr-only" => a.rows = Some(vec!["cr".into()]),
            "--runs" => a.runs = value()?.parse().context("--runs")?,
            "--quick" => a.runs = 10,
            "--rows" => a.rows = Some(value()?.split(',').map(String::from).collect()),
            "--aa" => a.aa = value()?,
            "--timeout" => a.timeout = value()?.parse().context("--timeout")?,
            "--out" => a.out = Some(value()?.into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => bail!("unknown argument {flag}\n{USAGE}"),
        }
    }
    if !["runc", "crun", "runtime"].contains(&a.aa.as_str()) {
        bail!("--aa must be runc, crun or runtime");
    }
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(a)
}

/// Measures one row: setup and one untimed warm-up per column, `runs` interleaved iterations
/// (iteration i starts at column i mod n), teardown. A column is dropped from the row when its
/// first 3 runs fail (every line of the row) or a command times out. Returns one result per line.
fn run_row(row: &mut dyn Row, cols: &[&Column], runs: usize) -> Vec<RowResult> {
    let lines = row.lines();
    let new_cells = || -> Vec<Cell> {
        cols.iter()
            .map(|c| Cell {
                label: c.label.clone(),
                note: c.version.clone().err(),
                samples: vec![],
                errors: vec![],
            })
            .collect()
    };
    // cells[line][column]
    let mut cells: Vec<Vec<Cell>> = lines.iter().map(|_| new_cells()).collect();
    let mut notes: Vec<Option<String>> = cols.iter().map(|c| c.version.clone().err()).collect();
    let mut failed_runs = vec![0usize; cols.len()];
    let mut active: Vec<bool> = cols.iter().map(|c| c.available()).collect();
    for (i, col) in cols.iter().enumerate() {
        if !active[i] {
            continue;
        }
        if let Err(e) = row.setup(col) {
            notes[i] = Some(format!("setup failed: {e:#}"));
            active[i] = false;
            continue;
        }
        // The warm-up run is untimed; only a hang disqualifies the column here.
        if let Some(Err(e)) = row
            .measure_lines(col)
            .into_iter()
            .find(|r| r.as_ref().is_err_and(column::is_timeout))
        {
            notes[i] = Some(format!("warm-up: {e:#}"));
            active[i] = false;
        }
    }
    'runs: for iter in 0..runs {
        for k in 0..cols.len() {
            let i = (iter + k) % cols.len();
            if isolate::interrupted() {
                break 'runs;
            }
            if !active[i] {
                continue;
            }
            let results = row.measure_lines(cols[i]);
            let all_failed = results.iter().all(Result::is_err);
            let mut timed_out = false;
            for (line, result) in results.into_iter().enumerate().take(lines.len()) {
                match result {
                    Ok(s) => cells[line][i].samples.push(s),
                    Err(e) => {
                        timed_out |= column::is_timeout(&e);
                        cells[line][i].errors.push(format!("{e:#}"));
                    }
                }
            }
            let no_samples = cells.iter().all(|line| line[i].samples.is_empty());
            failed_runs[i] += usize::from(all_failed);
            if timed_out {
                notes[i] = Some("gave up after a timeout".into());
                active[i] = false;
            } else if no_samples && failed_runs[i] >= 3 {
                notes[i] = Some("gave up after 3 failures".into());
                active[i] = false;
            }
        }
    }
    for col in cols.iter().filter(|c| c.available()) {
        row.teardown(col);
    }
    let ratios = row.columns().ratios();
    lines
        .into_iter()
        .zip(cells)
        .map(|((name, about), mut cells)| {
            for (cell, note) in cells.iter_mut().zip(&notes) {
                cell.note.clone_from(note);
            }
            RowResult {
                name,
                about,
                cells,
                runs,
                ratios,
            }
        })
        .collect()
}

fn main() {
    match real_main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("runtime-bench: {e:#}");
            std::process::exit(1);
        }
    }
}

fn real_main() -> Result<i32> {
    let args = parse_args()?;
    let unmounted = isolate::enter_private_mount_ns()?;
    isolate::catch_interrupts();
    *column::TIMEOUT.lock().unwrap() = Duration::from_secs(args.timeout);
    if let Some(dir) = args.criu.parent().filter(|d| !d.as_os_str().is_empty()) {
        let path = std::env::var("PATH").unwrap_or_default();
        let _ = column::CHILD_PATH.set(format!("{}:{path}", dir.display()));
    }

    let work = std::env::temp_dir().join(format!("runtime-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = bench(&args, &work, unmounted);
    isolate::unmount(&work.join("cr"));
    std::fs::remove_dir_all(&work).unwrap_or_else(|e| eprintln!("cleanup {}: {e}", work.display()));
    result
}

fn bench(args: &Args, work: &Path, unmounted: bool) -> Result<i32> {
    let out_dir = workspace_dir().join("target/bench");
    let bundles = bundle::Bundles::build(&work.join("bundle"), &out_dir)?;
    let scratch = cr::Scratch {
        dir: work.join("cr"),
        criu_root: work.join("cr/criu-root"),
        failed_logs: out_dir.join("cr-logs"),
    };
    let bed = Rc::new(migration::Bed::new(&workspace_dir(), work, &out_dir));
    let mut rows = rows::all_rows(&bundles, &scratch, &bed);
    if let Some(only) = &args.rows {
        if let Some(bad) = only.iter().find(|o| !rows.iter().any(|r| r.selected_by(o))) {
            bail!("--rows: no row or group named {bad:?}\n{USAGE}");
        }
        rows.retain(|r| only.iter().any(|o| r.selected_by(o)));
    }
    let cr_rows = rows
        .iter()
        .any(|r| r.columns() == Columns::CheckpointRestore);
    if cr_rows {
        // Images go to memory: the rows measure CRIU and the runtimes, not the disk.
        isolate::mount_tmpfs(&scratch.dir)?;
        isolate::bind(&bundles.rootfs, &scratch.criu_root)?;
        let _ = std::fs::remove_dir_all(&scratch.failed_logs);
    }
    let cols = columns(args, work)?;
    let mig_rows = rows.iter().any(|r| r.columns() == Columns::Migration);
    let mig_cols = if mig_rows {
        migration::columns(&args.runtime, &args.runc, &args.aa, work)?
    } else {
        Vec::new()
    };
    let baseline = Column::baseline("unshare", &which("unshare"), work);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let kernel = kernel.trim();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "runtime-bench: {} runs per row, columns interleaved in rotating order",
        args.runs
    );
    println!("  kernel {kernel}, {cpus} CPUs");
    for c in cols.iter().filter(|c| cr_rows || c.kind != Kind::RawCriu) {
        let v = c.version.clone().unwrap_or_else(|e| e);
        println!("  {:<12} {}: {v}", c.label, c.bin.display());
    }
    if unmounted {
        println!("  (cgroup2 /sys/fs/cgroup/unified unmounted in the bench's mount namespace)");
    }
    if let Some(e) = &bundles.alloc_error {
        println!("  (no /bin/alloc for the memory rows: {e})");
    }
    if mig_rows {
        let labels: Vec<&str> = mig_cols.iter().map(|c| c.label.as_str()).collect();
        println!(
            "  migration rows: {} on the two-host bed of integration/migration",
            labels.join(", ")
        );
    }

    let mut results = Vec::new();
    for row in rows.iter_mut() {
        if isolate::interrupted() {
            break;
        }
        let t0 = Instant::now();
        let row_cols: Vec<&Column> = match row.columns() {
            Columns::Baseline => vec![&baseline],
            Columns::Runtimes => cols.iter().filter(|c| c.kind != Kind::RawCriu).collect(),
            Columns::CheckpointRestore => cols.iter().collect(),
            Columns::Migration => mig_cols.iter().collect(),
        };
        let runs = row.runs(args.runs);
        results.extend(run_row(row.as_mut(), &row_cols, runs));
        eprintln!("  {:<26} {:>6.1} s", row.name(), t0.elapsed().as_secs_f64());
    }
    let meta = json!({
        "kernel": kernel,
        "cpus": cpus,
        "runs": args.runs,
        "interrupted": isolate::interrupted(),
        "cgroup2_unified_unmounted": unmounted,
        "columns": cols.iter().map(|c| json!({
            "label": c.label, "bin": c.bin,
            "version": c.version.as_ref().ok(), "error": c.version.as_ref().err(),
        })).collect::<Vec<_>>(),
    });
    drop(cols); // deletes every container left (Column::drop)
    drop(mig_cols);
    drop(rows); // and the last Rc of the migration bed: bed.sh down (Bed::drop)
    drop(bed);

    println!();
    for r in &results {
        println!("  {:<26} {}", r.name, r.about);
    }
    if isolate::interrupted() {
        println!("\ninterrupted: partial results");
    }
    println!("\n{}", report::table(&results));
    let errors = report::errors(&results);
    if !errors.is_empty() {
        println!("errors:\n{errors}");
        if cr_rows && scratch.failed_logs.is_dir() {
            let dir = scratch.failed_logs.display();
            println!("CRIU logs of each failing checkpoint/restore cell: {dir}/<row>-<column>/");
        }
    }
    let out = write_json(args.out.as_deref(), meta, &results)?;
    println!("raw samples: {}", out.display());
    Ok(if isolate::interrupted() { 130 } else { 0 })
}

/// runtime, runc, crun, raw criu (checkpoint/restore rows only), then the A/A column: a second
/// instance of `--aa` with its own root.
fn columns(args: &Args, work: &Path) -> Result<Vec<Column>> {
    let mut cols = vec![
        Column::new("runtime", "rt", &args.runtime, work)?,
        Column::new("runc", "runc", &args.runc, work)?,
        Column::new("crun", "crun", &args.crun, work)?,
        Column::raw_criu("criu", &args.criu, &args.runc, work)?,
    ];
    let twin = cols
        .iter()
        .find(|c| c.label == args.aa)
        .map(|c| c.bin.clone());
    let label = format!("{} (A/A)", args.aa);
    let key = format!("{}-aa", args.aa);
    cols.push(Column::new(&label, &key, &twin.unwrap_or_default(), work)?);
    Ok(cols)
}

/// Writes the raw samples to `out`, or to target/bench/bench-<unix time>.json and latest.json.
fn write_json(
    out: Option<&Path>,
    mut meta: serde_json::Value,
    rows: &[RowResult],
) -> Result<PathBuf> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    meta["unix_time"] = json!(now.as_secs());
    let dir = workspace_dir().join("target/bench");
    let path = out.map_or_else(
        || dir.join(format!("bench-{}.json", now.as_secs())),
        Path::to_path_buf,
    );
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let text = serde_json::to_string_pretty(&report::to_json(meta, rows))?;
    std::fs::write(&path, &text).with_context(|| format!("write {}", path.display()))?;
    if out.is_none() {
        std::fs::write(dir.join("latest.json"), &text)?;
    }
    Ok(path)
}
