//! The migration rows (`--rows migration`): move a running container from host A to host B of the
//! two-host bed of integration/migration (network and mount namespaces on this machine, sshfs
//! shared storage, a service IP moved by the `service-ip` hook; see its README) and time the move,
//! interleaved run by run like every row. Two workloads, one row each:
//!
//! - `migrate httpd`: the bed's httpd bundle (busybox httpd, tmpfs mounts, host-local web root);
//! - `migrate 1G`: the same httpd with `alloc` next to it holding 1 GiB of pseudo-random
//!   (incompressible) memory, in the bed's second service slot (`mem1g` bundle, built here).
//!
//! Four columns (`columns`), each with its own state dir on both hosts:
//!
//! - `runc`, moved by hand exactly as integration/migration/test.sh does it: quiesce the service
//!   netns on A (`QUIESCE_SCRIPT`), `runc checkpoint --tcp-established` on A into the shared
//!   storage, `runc restore -d --tcp-established` on B, then remove CRIU's network lock from A's
//!   slot (`UNLOCK_SCRIPT`, untimed);
//! - `runtime plain`: `runtime migrate --to exec:<B's command prefix> --probe ...` run on A;
//! - `runtime lazy`: the same with `--strategy lazy --page-server <A>:27500` (post-copy);
//! - an A/A column: runc by hand again (`--aa runtime`: `runtime plain` again).
//!
//! One iteration: start the container on A and wait until it answers (untimed), start the client
//! probes, move A→B (timed), wait for an answer from B, check the container runs there (and that
//! `alloc` has its 1 GiB back), then delete it and its images and work dirs (untimed). The row's
//! value is the client-visible downtime: from the client's netns, `PROBES` threads GET the page
//! over and over, each on a new connection; the downtime is the longest gap between two
//! successful answers around the move, i.e. last answer before the service stopped answering →
//! first answer from B. Parts: `total` (the move as driven: quiesce + checkpoint + restore by
//! hand, or the whole `migrate` command with its pre-flight check and probe), `checkpoint` and
//! `restore` (by hand: those commands; `migrate`: its JSON report), `image KiB`/`image MiB` (the
//! image directory on the shared storage).
//!
//! The bed is brought up on the first setup of a migration row (`bed.sh up`, `make-bundle.sh`,
//! the `mem1g` bundle) and always brought down (`bed.sh down`) when the rows are dropped, after
//! errors and Ctrl-C too. The bed is made from the bench's mount namespace, so the hosts see the
//! bench's files (target/bench/alloc, its temp dir); the bench reads the hosts' files through
//! `/proc/<holder>/root`.

use crate::column::{self, Column, Io};
use crate::criu;
use crate::rows::{Columns, Row, Sample};
use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Label of the `runtime migrate` (plain) column; the second ratio column compares with it.
pub const PLAIN: &str = "runtime plain";
const LAZY: &str = "runtime lazy";
/// Where A's CRIU page server listens for a lazy migration (as in test.sh).
const PAGE_SERVER_PORT: u16 = 27500;
/// The httpd port of both bundles.
const HTTP_PORT: u16 = 8080;
/// The memory bundle: its name on the shared storage, its memory and ready file (a tmpfs of the
/// httpd bundle).
const MEM_BUNDLE: &str = "mem1g";
const MEM_MIB: u64 = 1024;
const MEM_READY: &str = "/run/ready";

/// Client probe threads, their connect and answer timeouts, and their pauses: a request every
/// ~10 ms while the service answers, a new SYN every ~30 ms while it does not.
const PROBES: u32 = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(100);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
const PAUSE_OK: Duration = Duration::from_millis(40);
const PAUSE_FAILED: Duration = Duration::from_millis(10);
/// How long the service may take to answer: on A after its start, on B after the move.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// How long `alloc` may take to touch its memory.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Before the freeze (by hand): refuse new inbound TCP connections in the service netns (a
/// reset, so clients retry at once) and wait until the listeners' accept queues are empty.
/// Copied from integration/migration/test.sh (`quiesce`).
const QUIESCE_RULES: &str = "table inet mig-quiesce {
  chain input {
    type filter hook input priority -200; policy accept;
    tcp flags & (syn | ack) == syn reject with tcp reset
  }
}";
const QUIESCE_SCRIPT: &str = r#"printf "%s\n" "$1" | nft -f - || exit 1
  i=0 empty=0
  while [ $i -lt 200 ] && [ $empty -lt 2 ]; do
    if ss -Hltn | awk "\$2 > 0 { q = 1 } END { exit q }"; then empty=$((empty + 1)); else empty=0; fi
    sleep 0.002; i=$((i + 1))
  done"#;
/// After a move: CRIU's network lock (nft table `inet CRIU-*`, or iptables chain `CRIU`) and the
/// quiesce table leave the source's service netns: the same script as test.sh's `unlock_source`.
const UNLOCK_SCRIPT: &str = include_str!("../../integration/migration/unlock-netns.sh");

/// The columns of the migration rows. Keys start with `m-` (state dirs on the hosts are named
/// after them); `mode` tells how each one moves its container.
pub fn columns(runtime: &Path, runc: &Path, aa: &str, work: &Path) -> Result<Vec<Column>> {
    let (twin_label, twin_key, twin_bin) = if aa == "runtime" {
        (format!("{PLAIN} (A/A)"), "m-rt-plain-aa", runtime)
    } else {
        // crun has no checkpoint: the A/A column is runc then.
        ("runc (A/A)".to_string(), "m-runc-aa", runc)
    };
    Ok(vec![
        Column::new("runc", "m-runc", runc, work)?,
        Column::new(PLAIN, "m-rt-plain", runtime, work)?,
        Column::new(LAZY, "m-rt-lazy", runtime, work)?,
        Column::new(&twin_label, twin_key, twin_bin, work)?,
    ])
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// quiesce + checkpoint on A + restore on B, driven by the bench (runc).
    ByHand,
    /// `runtime migrate`, plain or lazy.
    Migrate { lazy: bool },
}

fn mode(col: &Column) -> Mode {
    match col.key() {
        k if k.starts_with("m-rt-lazy") => Mode::Migrate { lazy: true },
        k if k.starts_with("m-rt-") => Mode::Migrate { lazy: false },
        _ => Mode::ByHand,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    Httpd,
    Memory,
}

impl Workload {
    /// The bundle's name in `<shared>/bundles/`.
    fn bundle(self) -> &'static str {
        match self {
            Workload::Httpd => "httpd",
            Workload::Memory => MEM_BUNDLE,
        }
    }
    /// The image size line: its name and unit in bytes.
    fn image_unit(self) -> (&'static str, f64) {
        match self {
            Workload::Httpd => ("image KiB", 1024.0),
            Workload::Memory => ("image MiB", 1024.0 * 1024.0),
        }
    }
    /// The bed's service slot (netns and service IP) the bundle joins.
    fn slot(self) -> &'static str {
        match self {
            Workload::Httpd => "web",
            Workload::Memory => "counter",
        }
    }
}

pub fn rows(bed: &Rc<Bed>) -> Vec<Box<dyn Row>> {
    let row = |name, about, workload, divisor, step| -> Box<dyn Row> {
        Box::new(Migration {
            name,
            about,
            workload,
            divisor,
            step,
            bed: bed.clone(),
            saved: HashSet::new(),
        })
    };
    vec![
        row(
            "migrate httpd",
            "client-visible downtime of moving the httpd example A→B (parts: total, checkpoint, restore, image)",
            Workload::Httpd,
            20,
            Duration::from_secs(60),
        ),
        row(
            "migrate 1G",
            "the same for httpd next to a process holding 1 GiB of random memory",
            Workload::Memory,
            33,
            Duration::from_secs(300),
        ),
    ]
}

struct Migration {
    name: &'static str,
    about: &'static str,
    workload: Workload,
    /// Runs are `--runs` divided by this (at least 3): 5 and 3 by default.
    divisor: usize,
    /// Timeout of each move command (at least `--timeout`).
    step: Duration,
    bed: Rc<Bed>,
    /// Columns whose failed logs were already kept.
    saved: HashSet<String>,
}

impl Row for Migration {
    fn name(&self) -> &str {
        self.name
    }
    fn about(&self) -> &str {
        self.about
    }
    fn columns(&self) -> Columns {
        Columns::Migration
    }
    fn groups(&self) -> Vec<&str> {
        vec!["migration", "migrate"]
    }
    fn runs(&self, base: usize) -> usize {
        (base / self.divisor).max(base.min(3))
    }
    fn setup(&mut self, col: &Column) -> Result<()> {
        self.bed.ensure_up()?;
        if self.workload == Workload::Memory {
            if let Some(e) = &self.bed.hosts()?.mem_error {
                bail!("no {MEM_BUNDLE} bundle: {e}");
            }
        }
        let command = match mode(col) {
            Mode::ByHand => "checkpoint",
            Mode::Migrate { .. } => "migrate",
        };
        col.timed(&[command, "--help"])
            .with_context(|| format!("no {command} command"))?;
        Ok(())
    }
    fn measure(&mut self, col: &Column) -> Result<Sample> {
        let hosts = self.bed.hosts()?;
        let id = col.new_id();
        let (shared, local) = (&hosts.cfg.shared, &hosts.cfg.host_local);
        let m = Move {
            h: &hosts,
            col,
            workload: self.workload,
            step: self.step.max(column::timeout()),
            state: format!("{local}/state/{}", col.key()),
            work: format!("{local}/work/{id}"),
            image: format!("{shared}/ckpt/{id}"),
            bundle: format!("{shared}/bundles/{}", self.workload.bundle()),
            slot_ns: format!("--net={local}/net/{}", self.workload.slot()),
            id,
        };
        let result = m.run();
        if result.is_err() && self.saved.insert(col.label.clone()) {
            let tag = self.name.trim_start_matches("migrate ");
            m.keep_logs(&self.bed.logs.join(format!("{tag}-{}", col.key())));
        }
        m.cleanup(result.is_err());
        result
    }
}

/// The bed's two hosts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Host {
    A,
    B,
}

impl Host {
    fn i(self) -> usize {
        self as usize
    }
    fn name(self) -> &'static str {
        match self {
            Host::A => "A",
            Host::B => "B",
        }
    }
}

/// The bed's settings, read from integration/migration/config.sh (environment overrides apply).
struct Config {
    shared: String,
    host_local: String,
    ip_a: String,
    prefix_len: String,
    dev: String,
    web_ip: String,
    counter_ip: String,
    bed_dir: String,
    client_ns: String,
}

impl Config {
    fn service_ip(&self, slot: &str) -> &str {
        if slot == "web" {
            &self.web_ip
        } else {
            &self.counter_ip
        }
    }
}

/// The two-host bed, shared by the migration rows: brought up by the first setup, brought down
/// when the last row holding it is dropped.
pub struct Bed {
    /// integration/migration (bed.sh, make-bundle.sh, config.sh).
    scripts: PathBuf,
    /// bundle-examples/out/httpd: the rootfs the mem1g bundle copies.
    httpd_example: PathBuf,
    /// target/bench/alloc, compiled by `bundle::Bundles::build`.
    alloc: PathBuf,
    /// target/release/service-ip, handed to make-bundle.sh when built.
    hook: PathBuf,
    /// The bench's temp dir for command outputs and the mem1g config.
    work: PathBuf,
    /// target/bench/migration-logs: the logs of each cell's first failing iteration.
    logs: PathBuf,
    state: RefCell<BedState>,
}

enum BedState {
    Down,
    Up(Rc<Hosts>),
    /// `owned`: `bed.sh up` ran (maybe halfway), so `bed.sh down` is ours to run.
    Failed {
        error: String,
        owned: bool,
    },
}

impl Bed {
    pub fn new(workspace: &Path, work: &Path, tools: &Path) -> Self {
        Self {
            scripts: workspace.join("integration/migration"),
            httpd_example: workspace.join("bundle-examples/out/httpd"),
            alloc: tools.join("alloc"),
            hook: workspace.join("target/release/service-ip"),
            work: work.join("migration"),
            logs: tools.join("migration-logs"),
            state: RefCell::new(BedState::Down),
        }
    }

    /// Brings the bed up once; later calls return the first attempt's outcome.
    fn ensure_up(&self) -> Result<()> {
        if matches!(*self.state.borrow(), BedState::Down) {
            let mut owned = false;
            let up = self.up(&mut owned);
            *self.state.borrow_mut() = match up {
                Ok(hosts) => BedState::Up(Rc::new(hosts)),
                Err(e) => BedState::Failed {
                    error: format!("migration bed: {e:#}"),
                    owned,
                },
            };
        }
        self.hosts().map(|_| ())
    }

    fn hosts(&self) -> Result<Rc<Hosts>> {
        match &*self.state.borrow() {
            BedState::Up(h) => Ok(h.clone()),
            BedState::Failed { error, .. } => bail!("{error}"),
            BedState::Down => bail!("the migration bed is not up"),
        }
    }

    /// `bed.sh up`, `make-bundle.sh`, the mem1g bundle. Sets `owned` once `bed.sh up` ran.
    fn up(&self, owned: &mut bool) -> Result<Hosts> {
        fs::create_dir_all(&self.work)?;
        let _ = fs::remove_dir_all(&self.logs);
        let cfg = self.config()?;
        ensure!(
            !Path::new(&cfg.bed_dir).exists(),
            "a migration bed is already up ({} exists): integration/migration/bed.sh down removes it",
            cfg.bed_dir
        );
        eprintln!("  migration bed: up (bed.sh up, make-bundle.sh)");
        *owned = true;
        self.script("bed.sh", &["up"], Duration::from_secs(180))?;
        self.script("make-bundle.sh", &[], Duration::from_secs(300))?;
        let prefix = |h: &str| -> Result<Vec<String>> {
            let out = self.script("bed.sh", &["prefix", h], Duration::from_secs(30))?;
            Ok(out.split_whitespace().map(String::from).collect())
        };
        let prefix = [prefix("A")?, prefix("B")?];
        let holder = |p: &[String]| -> Result<i32> {
            let i = p
                .iter()
                .position(|a| a == "-t")
                .context("no -t in the prefix")?;
            p.get(i + 1)
                .context("no pid after -t")?
                .parse()
                .context("holder pid")
        };
        let mut hosts = Hosts {
            holder: [holder(&prefix[0])?, holder(&prefix[1])?],
            prefix,
            cfg,
            out: self.work.join("stdout"),
            err: self.work.join("stderr"),
            mem_error: None,
        };
        let ckpt = format!("{}/ckpt", hosts.cfg.shared);
        hosts.run(Host::A, column::timeout(), &["mkdir", "-p", &ckpt])?;
        hosts.mem_error = self.mem_bundle(&hosts).err().map(|e| format!("{e:#}"));
        Ok(hosts)
    }

    /// Runs a script of integration/migration; returns its stdout.
    fn script(&self, name: &str, args: &[&str], timeout: Duration) -> Result<String> {
        let mut cmd = Command::new(self.scripts.join(name));
        cmd.args(args);
        if self.hook.is_file() {
            // make-bundle.sh would run cargo otherwise.
            cmd.env("HOOK_BIN", &self.hook);
        }
        let (out, err) = (self.work.join("script.out"), self.work.join("script.err"));
        let io = Io {
            stdout: Some(&out),
            stderr: Some(&err),
            errors: &err,
        };
        column::timed_for(cmd, io, timeout)
            .with_context(|| format!("{name} {}", args.join(" ")))?;
        Ok(fs::read_to_string(&out)?)
    }

    fn config(&self) -> Result<Config> {
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(
                r#". "$1" && printf '%s\n' "$SHARED" "$HOST_LOCAL" "$IP_A" "$BED_PREFIX_LEN" "$SVC_DEV" \
                   "${SVC_IP[web]}" "${SVC_IP[counter]}" "$BED_DIR" "$(ns_of client)""#,
            )
            .arg("_")
            .arg(self.scripts.join("config.sh"));
        let (out, err) = (self.work.join("config.out"), self.work.join("config.err"));
        let io = Io {
            stdout: Some(&out),
            stderr: Some(&err),
            errors: &err,
        };
        column::timed_for(cmd, io, column::timeout()).context("reading config.sh")?;
        let text = fs::read_to_string(&out)?;
        let v: Vec<String> = text.lines().map(String::from).collect();
        ensure!(
            v.len() == 9 && v.iter().all(|s| !s.is_empty()),
            "config.sh: unexpected values {v:?}"
        );
        let mut v = v.into_iter();
        let mut next = || v.next().unwrap_or_default();
        Ok(Config {
            shared: next(),
            host_local: next(),
            ip_a: next(),
            prefix_len: next(),
            dev: next(),
            web_ip: next(),
            counter_ip: next(),
            bed_dir: next(),
            client_ns: next(),
        })
    }

    /// `<shared>/bundles/mem1g`: the bed's httpd bundle (made by make-bundle.sh) in the
    /// `counter` slot, running `alloc MEM_MIB MEM_READY random` in the background of httpd.
    fn mem_bundle(&self, h: &Hosts) -> Result<()> {
        ensure!(
            self.alloc.is_file(),
            "{} missing (see the memory rows)",
            self.alloc.display()
        );
        let c = &h.cfg;
        let httpd = format!("{}/bundles/httpd", c.shared);
        let text = fs::read_to_string(h.host_file(Host::A, &format!("{httpd}/config.json")))?;
        let mut cfg: Value = serde_json::from_str(&text)?;
        let args: Vec<&str> = cfg["process"]["args"]
            .as_array()
            .context("no process.args")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let script = format!(
            "/bin/alloc {MEM_MIB} {MEM_READY} random & exec {}",
            args.join(" ")
        );
        let (web_ns, mem_ns) = (
            format!("{}/net/web", c.host_local),
            format!("{}/net/counter", c.host_local),
        );
        let (web_ip, mem_ip) = (
            format!("{}/{}", c.web_ip, c.prefix_len),
            format!("{}/{}", c.counter_ip, c.prefix_len),
        );
        let final_dir = format!("{}/bundles/{MEM_BUNDLE}", c.shared);
        cfg["process"]["args"] = json!(["sh", "-c", script]);
        cfg["hostname"] = json!(MEM_BUNDLE);
        cfg["linux"]["cgroupsPath"] = json!(format!("mig-bed/{MEM_BUNDLE}"));
        cfg["annotations"]["org.criu.config"] = json!(format!("{final_dir}/criu.conf"));
        for ns in cfg["linux"]["namespaces"]
            .as_array_mut()
            .context("no linux.namespaces")?
        {
            if ns["type"] == "network" {
                ns["path"] = json!(mem_ns);
            }
        }
        let mut replaced = 0;
        for hooks in cfg["hooks"]
            .as_object_mut()
            .context("no hooks")?
            .values_mut()
        {
            for arg in hooks
                .as_array_mut()
                .into_iter()
                .flatten()
                .filter_map(|hook| hook["args"].as_array_mut())
                .flatten()
            {
                if *arg == *web_ip {
                    *arg = json!(mem_ip);
                    replaced += 1;
                } else if *arg == *web_ns {
                    *arg = json!(mem_ns);
                    replaced += 1;
                }
            }
        }
        ensure!(
            replaced >= 4,
            "the httpd bundle's hooks do not name {web_ip} and {web_ns}"
        );
        let local_cfg = self.work.join("mem1g-config.json");
        fs::write(&local_cfg, serde_json::to_vec_pretty(&cfg)?)?;
        // Like make-bundle.sh: build next to it, then rename into place.
        let build = r#"set -e
            rm -rf "$1"; mkdir -p "$1"
            tar -C "$2" -cf - rootfs | tar -C "$1" --no-same-owner --touch -xf -
            install -m 755 "$3" "$1/rootfs/bin/alloc"
            cp "$4" "$1/config.json"
            cp "$5/criu.conf" "$1/criu.conf"
            rm -rf "$6"; mv "$1" "$6""#;
        let tmp = format!("{}/bundles/.{MEM_BUNDLE}.new", c.shared);
        let (src, alloc) = (path(&self.httpd_example)?, path(&self.alloc)?);
        let args = [
            "sh",
            "-c",
            build,
            "_",
            &tmp,
            src,
            alloc,
            path(&local_cfg)?,
            &httpd,
        ];
        let mut args = args.to_vec();
        args.push(&final_dir);
        h.run(Host::A, Duration::from_secs(120), &args)?;
        let cfg_path = format!("{final_dir}/config.json");
        h.run(Host::B, column::timeout(), &["test", "-f", &cfg_path])
            .with_context(|| format!("host B does not see {cfg_path}"))?;
        Ok(())
    }
}

impl Drop for Bed {
    /// `bed.sh down` when we brought the bed up (even halfway).
    fn drop(&mut self) {
        let owned = match &*self.state.borrow() {
            BedState::Up(_) => true,
            BedState::Failed { owned, .. } => *owned,
            BedState::Down => false,
        };
        if owned {
            match self.script("bed.sh", &["down"], Duration::from_secs(120)) {
                Ok(_) => eprintln!("  migration bed: down"),
                Err(e) => eprintln!("  migration bed: bed.sh down failed: {e:#}"),
            }
        }
    }
}

fn path(p: &Path) -> Result<&str> {
    column::path_str(p)
}

/// What runs commands on the hosts once the bed is up.
struct Hosts {
    cfg: Config,
    /// `bed.sh prefix A|B`: nsenter into the host's holder + its cgroup wrapper.
    prefix: [Vec<String>; 2],
    /// The holder pids (their `/proc/<pid>/root` is the host's file system view).
    holder: [i32; 2],
    /// Stdout and stderr files of the last command.
    out: PathBuf,
    err: PathBuf,
    /// Why the mem1g bundle could not be built, if it could not.
    mem_error: Option<String>,
}

impl Hosts {
    fn command(&self, h: Host, args: &[&str]) -> Command {
        let p = &self.prefix[h.i()];
        let mut cmd = Command::new(&p[0]);
        cmd.args(&p[1..]).args(args);
        cmd
    }

    /// Runs `args` on host `h`; stdout to /dev/null, stderr quoted on failure.
    fn run(&self, h: Host, timeout: Duration, args: &[&str]) -> Result<Duration> {
        let io = Io {
            stdout: None,
            stderr: Some(&self.err),
            errors: &self.err,
        };
        column::timed_for(self.command(h, args), io, timeout)
            .with_context(|| format!("on {}: {}", h.name(), args.join(" ")))
    }

    /// Like `run`, returning stdout.
    fn output(&self, h: Host, timeout: Duration, args: &[&str]) -> Result<(Duration, String)> {
        let io = Io {
            stdout: Some(&self.out),
            stderr: Some(&self.err),
            errors: &self.err,
        };
        let d = column::timed_for(self.command(h, args), io, timeout)
            .with_context(|| format!("on {}: {}", h.name(), args.join(" ")))?;
        Ok((d, fs::read_to_string(&self.out)?))
    }

    /// Like `run` with /dev/null as stdio (for commands whose container inherits it) and errors
    /// read from `log`, a file on host `h`.
    fn run_quiet(&self, h: Host, timeout: Duration, args: &[&str], log: &str) -> Result<Duration> {
        let log = self.host_file(h, log);
        let _ = fs::remove_file(&log);
        let io = Io {
            stdout: None,
            stderr: None,
            errors: &log,
        };
        column::timed_for(self.command(h, args), io, timeout)
            .with_context(|| format!("on {}: {}", h.name(), args.join(" ")))
    }

    /// A path of host `h`'s file system, seen from the bench.
    fn host_file(&self, h: Host, p: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{p}", self.holder[h.i()]))
    }
}

/// One iteration: one container of one column moved A→B.
struct Move<'a> {
    h: &'a Hosts,
    col: &'a Column,
    workload: Workload,
    /// Timeout of the move's commands.
    step: Duration,
    id: String,
    /// The column's `--root` on both hosts.
    state: String,
    /// CRIU and runtime logs, on each host.
    work: String,
    /// Images, on the shared storage.
    image: String,
    bundle: String,
    /// `--net=<the service slot's netns>` for nsenter on a host.
    slot_ns: String,
}

impl Move<'_> {
    fn run(&self) -> Result<Sample> {
        let h = self.h;
        let short = column::timeout();
        for host in [Host::A, Host::B] {
            h.run(host, short, &["mkdir", "-p", &self.state, &self.work])?;
        }
        self.start().context("starting the container on A")?;
        let ip = h.cfg.service_ip(self.workload.slot());
        let addr: SocketAddr = format!("{ip}:{HTTP_PORT}").parse()?;
        let client = Client::start(&PathBuf::from("/run/netns").join(&h.cfg.client_ns), addr)?;
        client
            .wait_answer(Instant::now() - Duration::from_secs(1), ANSWER_WAIT)
            .context("the service does not answer on A")?;
        let t0 = Instant::now();
        let (checkpoint, restore) = match mode(self.col) {
            Mode::ByHand => self.by_hand()?,
            Mode::Migrate { lazy } => self.migrate(lazy)?,
        };
        let t1 = Instant::now();
        client
            .wait_answer(t1, ANSWER_WAIT)
            .context("the service does not answer after the move")?;
        let downtime = downtime(&client.stop(), t0, t1)?;
        self.check_on_b()?;
        let image = dir_size(&h.host_file(Host::B, &self.image))?;
        let (unit, bytes) = self.workload.image_unit();
        h.run(
            Host::A,
            short,
            &["nsenter", &self.slot_ns, "sh", "-c", UNLOCK_SCRIPT],
        )?;
        Ok(Sample {
            total: downtime,
            parts: vec![
                ("total", t1 - t0),
                ("checkpoint", checkpoint),
                ("restore", restore),
            ],
            values: vec![(unit, image as f64 / bytes)],
        })
    }

    fn bin(&self) -> Result<&str> {
        path(&self.col.bin)
    }

    /// `run -d` on A (stdio /dev/null, errors in --log), then waits until `alloc` is ready.
    fn start(&self) -> Result<()> {
        let log = format!("{}/run.log", self.work);
        let args = [
            self.bin()?,
            "--root",
            &self.state,
            "--log",
            &log,
            "run",
            "-d",
            "-b",
            &self.bundle,
            &self.id,
        ];
        self.h.run_quiet(Host::A, self.step, &args, &log)?;
        if self.workload == Workload::Memory {
            let pid = self.pid(Host::A)?;
            let ready = PathBuf::from(format!("/proc/{pid}/root{MEM_READY}"));
            let t0 = Instant::now();
            while !ready.exists() {
                ensure!(
                    t0.elapsed() < READY_TIMEOUT,
                    "alloc not ready after {READY_TIMEOUT:?}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }

    /// The container's init pid on host `h` (`state`; it must be running).
    fn pid(&self, h: Host) -> Result<i32> {
        let args = [self.bin()?, "--root", &self.state, "state", &self.id];
        let (_, out) = self.h.output(h, column::timeout(), &args)?;
        let state: Value = serde_json::from_str(&out).context("state: not JSON")?;
        ensure!(
            state["status"] == "running",
            "on {}: the container is {}",
            h.name(),
            state["status"]
        );
        state["pid"]
            .as_i64()
            .filter(|p| *p > 0)
            .map(|p| p as i32)
            .context("state: no pid")
    }

    /// runc's move, as test.sh's `migrate_step` does it: quiesce, checkpoint on A, restore on B.
    /// Returns the checkpoint's and the restore's wall times.
    fn by_hand(&self) -> Result<(Duration, Duration)> {
        let (h, bin) = (self.h, self.bin()?);
        let quiesce = [
            "nsenter",
            &self.slot_ns,
            "sh",
            "-c",
            QUIESCE_SCRIPT,
            "_",
            QUIESCE_RULES,
        ];
        h.run(Host::A, column::timeout(), &quiesce)
            .context("quiesce")?;
        let checkpoint = [
            bin,
            "--root",
            &self.state,
            "checkpoint",
            "--tcp-established",
            "--image-path",
            &self.image,
            "--work-path",
            &self.work,
            &self.id,
        ];
        let ck = h
            .run(Host::A, self.step, &checkpoint)
            .map_err(|e| self.with_criu_error(e))?;
        let log = format!("{}/runtime.log", self.work);
        let restore = [
            bin,
            "--root",
            &self.state,
            "--log",
            &log,
            "restore",
            "-d",
            "--tcp-established",
            "-b",
            &self.bundle,
            "--image-path",
            &self.image,
            "--work-path",
            &self.work,
            &self.id,
        ];
        let rs = h
            .run_quiet(Host::B, self.step, &restore, &log)
            .map_err(|e| self.with_criu_error(e))?;
        Ok((ck, rs))
    }

    /// `runtime migrate` on A; returns the checkpoint and restore times of its JSON report.
    fn migrate(&self, lazy: bool) -> Result<(Duration, Duration)> {
        let (h, c) = (self.h, &self.h.cfg);
        let to = format!("exec:{}", h.prefix[Host::B.i()].join(" "));
        let probe = format!("tcp:{}:{HTTP_PORT}", c.service_ip(self.workload.slot()));
        let page_server = format!("{}:{PAGE_SERVER_PORT}", c.ip_a);
        let mut args = vec![
            self.bin()?,
            "--root",
            &self.state,
            "migrate",
            "--to",
            &to,
            "--target-root",
            &self.state,
            "--image-path",
            &self.image,
            "--work-path",
            &self.work,
            "--target-work-path",
            &self.work,
            "--probe",
            &probe,
            "--json",
        ];
        if lazy {
            args.extend(["--strategy", "lazy", "--page-server", &page_server]);
        }
        args.push(&self.id);
        let (_, out) = h
            .output(Host::A, self.step, &args)
            .map_err(|e| self.with_criu_error(e))?;
        let line = out.lines().rev().find(|l| !l.trim().is_empty());
        let report: Value = serde_json::from_str(line.unwrap_or(""))
            .with_context(|| format!("migrate --json printed {out:?}"))?;
        let ms = |k: &str| -> Result<Duration> {
            let v = report[k]
                .as_f64()
                .with_context(|| format!("migrate --json: no {k} in {report}"))?;
            Ok(Duration::from_secs_f64(v.max(0.0) / 1e3))
        };
        let (checkpoint, restore) = (ms("checkpoint_ms")?, ms("restore_ms")?);
        // runtime 0.1.0 takes a plain move's checkpoint_ms after the restore (migrate.rs:
        // `ck_start.elapsed()`), so it includes restore_ms. The parts of a move follow each
        // other and cannot add up to more than its total: when they do, take the restore out.
        let parts = ms("preflight_ms")? + checkpoint + restore;
        if !lazy && parts > ms("total_ms")? {
            return Ok((checkpoint.saturating_sub(restore), restore));
        }
        Ok((checkpoint, restore))
    }

    /// After the move: the container runs on B; `alloc` holds its memory again.
    fn check_on_b(&self) -> Result<()> {
        let pid = self.pid(Host::B).context("after the move")?;
        if self.workload == Workload::Memory {
            let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))?;
            let alloc = children
                .split_whitespace()
                .find(|c| {
                    fs::read_to_string(format!("/proc/{c}/comm")).is_ok_and(|n| n.trim() == "alloc")
                })
                .context("no alloc process in the restored container")?;
            crate::cr::ensure_rss(alloc, MEM_MIB)?;
        }
        Ok(())
    }

    /// Adds the first CRIU errors of the dump (A) and restore (B) logs to `e`.
    fn with_criu_error(&self, e: anyhow::Error) -> anyhow::Error {
        let mut e = e;
        for (host, log) in [(Host::A, "dump.log"), (Host::B, "restore.log")] {
            let file = self.h.host_file(host, &format!("{}/{log}", self.work));
            if let Some(line) = criu::first_errors(&file) {
                e = e.context(format!("CRIU {log} on {}: {line}", host.name()));
            }
        }
        e
    }

    /// Untimed: the container leaves both hosts, and so do its images and work dirs. After a
    /// failure also the service IP and any CRIU lock or quiesce rule, on both hosts, so the next
    /// iteration starts clean.
    fn cleanup(&self, failed: bool) {
        let (h, t) = (self.h, column::timeout());
        let Ok(bin) = self.bin() else { return };
        for host in [Host::B, Host::A] {
            let _ = h.run(
                host,
                t,
                &[bin, "--root", &self.state, "delete", "--force", &self.id],
            );
        }
        if failed {
            let c = &h.cfg;
            let slot = self.workload.slot();
            let ip = format!("{}/{}", c.service_ip(slot), c.prefix_len);
            let hook = format!("{}/bin/service-ip", c.host_local);
            let ns = format!("{}/net/{slot}", c.host_local);
            for host in [Host::A, Host::B] {
                let release = [hook.as_str(), "release", &ip, &c.dev, "--netns-path", &ns];
                let _ = h.run(host, t, &release);
                let _ = h.run(
                    host,
                    t,
                    &["nsenter", &self.slot_ns, "sh", "-c", UNLOCK_SCRIPT],
                );
            }
        }
        let _ = h.run(Host::A, t, &["rm", "-rf", &self.image, &self.work]);
        let _ = h.run(Host::B, t, &["rm", "-rf", &self.work]);
    }

    /// Copies the *.log files of both hosts' work dirs to `dest` (`A-dump.log`, ...).
    fn keep_logs(&self, dest: &Path) {
        let _ = fs::remove_dir_all(dest);
        for host in [Host::A, Host::B] {
            let Ok(entries) = fs::read_dir(self.h.host_file(host, &self.work)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".log") {
                    let _ = fs::create_dir_all(dest);
                    let _ = fs::copy(entry.path(), dest.join(format!("{}-{name}", host.name())));
                }
            }
        }
    }
}

/// Bytes of the regular files under `dir`.
fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += dir_size(&entry.path())?;
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// When each request of the client ended, and whether it got the page.
type ClientLog = Vec<(Instant, bool)>;

/// `PROBES` threads in the bed's client netns, each GETting the page on a new connection over
/// and over, staggered, until stopped.
struct Client {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<ClientLog>>,
    threads: Vec<JoinHandle<()>>,
}

impl Client {
    fn start(netns: &Path, addr: SocketAddr) -> Result<Self> {
        let ns = fs::File::open(netns).with_context(|| format!("open {}", netns.display()))?;
        let mut client = Self {
            stop: Arc::new(AtomicBool::new(false)),
            log: Arc::new(Mutex::new(Vec::new())),
            threads: Vec::new(),
        };
        let (tx, rx) = mpsc::channel();
        for k in 0..PROBES {
            let ns = ns.try_clone()?;
            let (stop, log, tx) = (client.stop.clone(), client.log.clone(), tx.clone());
            client.threads.push(std::thread::spawn(move || {
                // SAFETY: setns(2) on a valid netns fd; a network namespace is per thread.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    let _ = tx.send(Err(std::io::Error::last_os_error()));
                    return;
                }
                let _ = tx.send(Ok(()));
                std::thread::sleep(PAUSE_OK / PROBES * k);
                while !stop.load(Ordering::SeqCst) {
                    let ok = get(addr);
                    log.lock().unwrap().push((Instant::now(), ok));
                    std::thread::sleep(if ok { PAUSE_OK } else { PAUSE_FAILED });
                }
            }));
        }
        for _ in 0..PROBES {
            rx.recv()?
                .with_context(|| format!("setns into {}", netns.display()))?;
        }
        Ok(client)
    }

    /// Waits until a request that ended after `after` got the page.
    fn wait_answer(&self, after: Instant, timeout: Duration) -> Result<()> {
        let t0 = Instant::now();
        loop {
            if self
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|&(t, ok)| ok && t >= after)
            {
                return Ok(());
            }
            ensure!(t0.elapsed() < timeout, "no answer within {timeout:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the threads; returns the log, sorted by time.
    fn stop(mut self) -> ClientLog {
        self.join();
        let mut log = std::mem::take(&mut *self.log.lock().unwrap());
        log.sort_by_key(|&(t, _)| t);
        log
    }

    fn join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.join();
    }
}

/// One `GET /` on a new connection: whether the answer is a 200.
fn get(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(ANSWER_TIMEOUT));
    let _ = s.set_write_timeout(Some(ANSWER_TIMEOUT));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).is_ok()
        && answer.starts_with(b"HTTP/1.")
        && answer.windows(5).any(|w| w == b" 200 ")
}

/// The client-visible downtime of a move that ran from `t0` to `t1`: the longest gap between two
/// successful requests (by end time) that overlaps the move.
fn downtime(log: &ClientLog, t0: Instant, t1: Instant) -> Result<Duration> {
    let ok: Vec<Instant> = log.iter().filter(|(_, ok)| *ok).map(|(t, _)| *t).collect();
    ensure!(
        ok.first().is_some_and(|&t| t < t0),
        "no answer before the move"
    );
    ok.windows(2)
        .filter(|w| w[1] >= t0 && w[0] <= t1)
        .map(|w| w[1] - w[0])
        .max()
        .ok_or_else(|| anyhow!("no answer after the move"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downtime_is_the_gap_around_the_move() {
        let base = Instant::now();
        let at = |ms| base + Duration::from_millis(ms);
        let log = vec![
            (at(0), true),
            (at(10), true),
            (at(20), false),
            (at(100), true), // the move runs from 50 to 80 ms; no answer from 10 to 100
            (at(110), true),
            (at(400), true), // long after the move: not its gap
        ];
        assert_eq!(
            downtime(&log, at(50), at(80)).unwrap(),
            Duration::from_millis(90)
        );
        assert!(downtime(&log, at(0), at(80)).is_err()); // no answer before the move
    }
}
