//! `migrate`: move a running container to another host that sees the same bundle (shared
//! storage): check the target can restore it, checkpoint here (TCP connections kept) into
//! the shared image path, restore there; if that fails, restore here again, so nothing is
//! lost. Reports the downtime and each phase's time.

use crate::cli::{CheckpointArgs, Global, MigrateArgs, RestoreArgs};
use crate::container::{Container, Status};
use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How to run a command on the target host.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `ssh://[user@]host[:port]`
    Ssh { dest: String, port: Option<String> },
    /// `exec:PROGRAM ARGS...`: a command prefix (e.g. `nsenter -t PID -m -n --`).
    Exec(Vec<String>),
}

impl Target {
    pub fn parse(s: &str) -> Result<Target> {
        if let Some(rest) = s.strip_prefix("ssh://") {
            let (dest, port) = match rest.rsplit_once(':') {
                Some((d, p)) if p.chars().all(|c| c.is_ascii_digit()) => {
                    (d.to_string(), Some(p.to_string()))
                }
                _ => (rest.to_string(), None),
            };
            if dest.is_empty() {
                bail!("--to {s:?}: no host");
            }
            return Ok(Target::Ssh { dest, port });
        }
        if let Some(rest) = s.strip_prefix("exec:") {
            let argv: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
            if argv.is_empty() {
                bail!("--to {s:?}: no command");
            }
            return Ok(Target::Exec(argv));
        }
        bail!("--to {s:?}: use ssh://[user@]host[:port] or exec:COMMAND (a prefix that runs a command on the target)")
    }

    fn command(&self, args: &[String]) -> Command {
        match self {
            Target::Ssh { dest, port } => {
                let mut c = Command::new("ssh");
                c.args(["-o", "BatchMode=yes"]);
                if let Some(p) = port {
                    c.args(["-p", p]);
                }
                c.arg(dest).arg("--").arg(
                    args.iter()
                        .map(|a| shell_quote(a))
                        .collect::<Vec<_>>()
                        .join(" "),
                );
                c
            }
            Target::Exec(prefix) => {
                let mut c = Command::new(&prefix[0]);
                c.args(&prefix[1..]).args(args);
                c
            }
        }
    }

    /// Runs `args` on the target; returns (success, stdout, stderr).
    fn output(&self, args: &[String]) -> Result<(bool, String, String)> {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot reach the target to run {}", args.join(" ")))?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }

    /// Runs `args` on the target; an error quotes its stderr.
    fn run(&self, args: &[String]) -> Result<String> {
        let (ok, out, err) = self.output(args)?;
        if !ok {
            return Err(anyhow!(
                "{}",
                if err.is_empty() {
                    out.trim().to_string()
                } else {
                    err
                }
            ));
        }
        Ok(out)
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:=@,+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What a migration did and how long each part took.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub id: String,
    pub to: String,
    pub strategy: String,
    pub image_path: PathBuf,
    pub image_bytes: u64,
    pub preflight_ms: f64,
    pub checkpoint_ms: f64,
    pub frozen_ms: f64,
    pub restore_ms: f64,
    /// Freeze to the first answer of --probe (or to the end of the restore without one).
    pub downtime_ms: f64,
    pub first_answer_ms: Option<f64>,
    pub total_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn run(g: &Global, a: &MigrateArgs) -> Result<i32> {
    let report = migrate(g, a)?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "Migrated container \"{}\" to {} ({}): downtime {:.0} ms{}; image {}; preflight {:.0} ms, checkpoint {:.0} ms (frozen {:.0} ms), restore {:.0} ms, total {:.0} ms",
            report.id,
            report.to,
            report.strategy,
            report.downtime_ms,
            report.first_answer_ms.map(|_| " (freeze to first answer)").unwrap_or(" (freeze to restored)"),
            crate::checkpoint::human_bytes(report.image_bytes),
            report.preflight_ms,
            report.checkpoint_ms,
            report.frozen_ms,
            report.restore_ms,
            report.total_ms
        );
    }
    Ok(0)
}

fn migrate(g: &Global, a: &MigrateArgs) -> Result<Report> {
    let start = Instant::now();
    let target = Target::parse(&a.to)?;
    let c = Container::load(&g.store, &a.id)?;
    if c.status() != Status::Running {
        bail!(
            "cannot migrate container \"{}\": it is {}",
            a.id,
            c.status()
        );
    }
    let bundle = c.state.bundle.clone();
    let image = match &a.image_path {
        Some(p) => p.clone(),
        None => bundle.join("checkpoint"),
    };
    let root = a
        .target_root
        .clone()
        .unwrap_or_else(|| g.store.root().to_path_buf());
    let rt = match &a.target_runtime {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("cannot find our own binary")?,
    };
    let criu_bin = crate::criu_plan::criu_path(g.criu.as_deref());
    match a.strategy.as_str() {
        "plain" => {}
        "precopy" => {
            let f = crate::criu::check_features(&criu_bin, true, false)?;
            if f.mem_track != Some(true) {
                bail!("the precopy strategy needs memory change tracking (soft-dirty), which this kernel lacks (CONFIG_MEM_SOFT_DIRTY is not set): use --strategy plain or lazy");
            }
            bail!("the precopy strategy is not implemented yet: use --strategy plain or lazy");
        }
        "lazy" => {
            if a.page_server.is_none() {
                bail!("--strategy lazy needs --page-server ADDR:PORT: where the target reaches this host's page server");
            }
            crate::criu::require_features(&criu_bin, false, true)?;
        }
        s => bail!("unknown --strategy {s:?}: plain, lazy or precopy"),
    }
    drop(c); // checkpoint takes the container's lock itself

    // 1. Can the target restore it? (bundle, host-local bind sources, namespaces, state dir, CRIU)
    let rt_s = rt.to_string_lossy().into_owned();
    let root_s = root.to_string_lossy().into_owned();
    let bundle_s = bundle.to_string_lossy().into_owned();
    let (_, out, err) = target.output(&[
        rt_s.clone(),
        "--root".into(),
        root_s.clone(),
        "restore".into(),
        "--check".into(),
        "-b".into(),
        bundle_s.clone(),
        a.id.clone(),
    ])?;
    let found: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
    if found["ok"] != true {
        let problems: Vec<String> = found["problems"]
            .as_array()
            .map(|p| {
                p.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let why = if problems.is_empty() {
            err
        } else {
            problems.join("; ")
        };
        bail!("cannot migrate container \"{}\": the target cannot restore it: {why} (nothing was changed)", a.id);
    }
    let (x, y, z) = crate::criu::version(&criu_bin)?;
    let ours = format!("{x}.{y}.{z}");
    if found["criu"] != ours.as_str() {
        bail!(
            "cannot migrate container \"{}\": CRIU {} on the target, {ours} here: images must be restored by the CRIU that wrote them (nothing was changed)",
            a.id,
            found["criu"].as_str().unwrap_or("?")
        );
    }
    let preflight_ms = ms(start.elapsed());

    // 2. Checkpoint here (the container stops here; its poststop hooks release its IP).
    let lazy = a.strategy == "lazy";
    let ck = CheckpointArgs {
        image_path: Some(image.clone()),
        work_path: a.work_path.clone(),
        lazy_pages: lazy,
        page_server: a
            .page_server
            .as_ref()
            .and_then(|p| p.rsplit_once(':'))
            .map(|(_, port)| format!("0.0.0.0:{port}")),
        poststop_done: lazy,
        tcp_established: !a.no_tcp_established,
        // A service under load always has connections mid-handshake: skip them.
        tcp_skip_in_flight: !a.no_tcp_established,
        // One archive on the shared storage instead of dozens of small files, for small
        // containers: large images would be staged in RAM and recompressed for nothing.
        compress: compress_pays(&g.store, &a.id),
        id: a.id.clone(),
        ..CheckpointArgs::default()
    };
    let image_s = image.to_string_lossy().into_owned();
    let mut args = vec![
        rt_s,
        "--root".into(),
        root_s,
        "restore".into(),
        "-d".into(),
        "-b".into(),
        bundle_s.clone(),
        "--image-path".into(),
        image_s.clone(),
    ];
    if !a.no_tcp_established {
        args.push("--tcp-established".into());
    }
    if let Some(w) = &a.target_work_path {
        args.extend(["--work-path".into(), w.to_string_lossy().into_owned()]);
    }
    if lazy {
        args.extend([
            "--lazy-pages".into(),
            "--page-server".into(),
            a.page_server.clone().unwrap_or_default(),
        ]);
    }
    args.push(a.id.clone());
    // Lifted whenever migrate returns: the container runs on the target, or here again.
    let _quiesced = Quiesced(quiesce(&bundle, &a.id, g));
    let ck_start = Instant::now();
    let mut restore_ms = 0.0;
    let mut restored_at = None;
    let mut first_answer = None;
    let mut checkpoint_ms = 0.0;
    // The container moved whatever the probe says: a silent service is reported, not undone.
    let probe_target = |p: &Option<String>| match p {
        Some(p) => probe(p, Duration::from_secs(30))
            .map_err(|e| crate::warn!("migrate {}: {e:#}", a.id))
            .ok(),
        None => None,
    };

    let summary = if lazy {
        // 2+3 lazy: once everything but memory is saved, the IP leaves here (poststop) and
        // the target restores while this host's CRIU serves it the pages on demand. If the
        // target fails, CRIU is stopped, the container goes on here and gets its IP back.
        let (spec, pid) = {
            let c = Container::load(&g.store, &a.id)?;
            (c.spec()?, c.state.pid)
        };
        let spec = &spec;
        let hooks_state =
            |status: &str| crate::hooks::state_json(spec, &a.id, status, pid, &bundle);
        let (target, args) = (&target, &args);
        let (restore_ms, restored_at) = (&mut restore_ms, &mut restored_at);
        let (first_answer, checkpoint_ms) = (&mut first_answer, &mut checkpoint_ms);
        let probe_spec = &a.probe;
        let probe_target = &probe_target;
        let on_ready: crate::checkpoint::OnReady = Box::new(move |_| {
            *checkpoint_ms = ms(ck_start.elapsed());
            crate::hooks::run(spec, crate::hooks::Kind::Poststop, &hooks_state("stopped"))?;
            let r_start = Instant::now();
            match target.run(args) {
                Ok(_) => {
                    *restore_ms = ms(r_start.elapsed());
                    *restored_at = Some(Instant::now());
                    // Now, not once CRIU served every page: that is when clients get answers.
                    *first_answer = probe_target(probe_spec);
                    Ok(())
                }
                Err(e) => {
                    let st = hooks_state("creating");
                    let back =
                        crate::hooks::run(spec, crate::hooks::Kind::Prestart, &st).and_then(|_| {
                            crate::hooks::run(spec, crate::hooks::Kind::CreateRuntime, &st)
                        });
                    Err(anyhow!(
                        "migrate: lazy restore on the target failed: {e:#}; the container goes on running here{}",
                        back.err().map(|e| format!(" (but its hooks failed: {e:#})")).unwrap_or_default()
                    ))
                }
            }
        });
        crate::checkpoint::checkpoint_with(g, &ck, Some(on_ready))?
    } else {
        // 2. Checkpoint here (the container stops here; its poststop hooks release its IP).
        let summary = crate::checkpoint::checkpoint(g, &ck)
            .context("migrate: checkpoint here failed (the container still runs here)")?;
        checkpoint_ms = ms(ck_start.elapsed());
        // 3. Restore there (its prestart hooks claim the IP before the processes run).
        let r_start = Instant::now();
        if let Err(e) = target.run(&args) {
            let back = RestoreArgs {
                detach: true,
                bundle: Some(bundle.clone()),
                image_path: Some(image.clone()),
                tcp_established: !a.no_tcp_established,
                id: a.id.clone(),
                ..RestoreArgs::default()
            };
            return match crate::restore::run(g, &back) {
                Ok(_) => Err(anyhow!("migrate: restore on the target failed: {e:#}; the container was restored here again from {image_s}")),
                Err(e2) => Err(anyhow!(
                    "migrate: restore on the target failed: {e:#}; restoring here again failed too: {e2:#}; the checkpoint is intact in {image_s}"
                )),
            };
        }
        restore_ms = ms(r_start.elapsed());
        restored_at = Some(Instant::now());
        // 4. First answer of the service, if asked to probe it.
        first_answer = probe_target(&a.probe);
        summary
    };
    let freeze_at = ck_start + Duration::from_secs_f64(summary.freeze_start_ms / 1000.0);
    let restored_at = restored_at.unwrap_or_else(Instant::now);
    let end = first_answer.unwrap_or(restored_at);
    Ok(Report {
        id: a.id.clone(),
        to: a.to.clone(),
        strategy: a.strategy.clone(),
        image_path: image,
        image_bytes: summary.image_bytes,
        preflight_ms,
        checkpoint_ms,
        // Lazy: CRIU keeps the source frozen while it serves pages; the service was down
        // only until the target restored.
        frozen_ms: if lazy {
            ms(restored_at.saturating_duration_since(freeze_at))
        } else {
            summary.frozen_ms
        },
        restore_ms,
        downtime_ms: ms(end.saturating_duration_since(freeze_at)),
        first_answer_ms: first_answer.map(|t| ms(t.saturating_duration_since(restored_at))),
        total_ms: ms(start.elapsed()),
    })
}

/// Whether `--compress` pays for this container: below 64 MiB of memory the images are small
/// and one archive saves many round trips to the shared storage; above, the images would be
/// staged in RAM (the state dir) and compressed for little gain.
fn compress_pays(store: &crate::state::Store, id: &str) -> bool {
    let Ok(c) = Container::load(store, id) else {
        return false;
    };
    let cg = c.cgroup();
    let usage = if cg.v2 {
        cg.dirs.get("").map(|d| d.join("memory.current"))
    } else {
        cg.dirs
            .iter()
            .find(|(k, _)| k.split(',').any(|c| c == "memory"))
            .map(|(_, d)| d.join("memory.usage_in_bytes"))
    };
    usage
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_some_and(|b| b < 64 << 20)
}

/// Name of the table that holds new connections off during a migration.
const QUIESCE_TABLE: &str = "runtime-quiesce";

/// Before the freeze: refuse new TCP connections in the container's network namespace (a
/// reset, so clients retry at once) and wait (up to 200 ms) until no connection is left
/// half-open or waiting in an accept queue: CRIU would have to drop those, and their clients
/// would hang. Needs a namespace given by path and `nft`; otherwise it is skipped.
/// Returns the namespace to release afterwards.
fn quiesce(bundle: &std::path::Path, id: &str, g: &Global) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let spec = crate::spec::Bundle::load(bundle).ok()?.spec;
    let ns = crate::criu_plan::netns_path(&spec)?;
    let nsfile = std::fs::File::open(&ns).ok()?;
    let rules = format!(
        "table inet {QUIESCE_TABLE} {{\n chain input {{\n  type filter hook input priority -300; policy accept;\n  tcp flags & (syn | ack) == syn reject with tcp reset\n }}\n}}\n"
    );
    let fd = nsfile.as_raw_fd();
    let mut cmd = Command::new("nft");
    cmd.args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setns in the forked child before exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            crate::warn!("migrate {id}: cannot run nft to quiesce new connections ({e}): skipped");
            return None;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = std::io::Write::write_all(&mut stdin, rules.as_bytes());
    }
    if !child.wait().map(|s| s.success()).unwrap_or(false) {
        crate::warn!("migrate {id}: nft could not add the quiesce rule: skipped");
        return None;
    }
    // Wait for half-open connections and full accept queues to drain.
    let pid = Container::load(&g.store, id).ok()?.state.pid;
    let deadline = Instant::now() + Duration::from_millis(200);
    while Instant::now() < deadline && pending_connections(pid) > 0 {
        std::thread::sleep(Duration::from_millis(2));
    }
    Some(ns)
}

/// Connections in SYN_RECV, plus connections queued on listening sockets, in the network
/// namespace of `pid` (from /proc/<pid>/net/tcp{,6}).
fn pending_connections(pid: i32) -> usize {
    let mut n = 0;
    for f in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(state), Some(queues)) = (cols.get(3), cols.get(4)) else {
                continue;
            };
            let rx = queues
                .split(':')
                .nth(1)
                .and_then(|q| usize::from_str_radix(q, 16).ok())
                .unwrap_or(0);
            if *state == "03" || (*state == "0A" && rx > 0) {
                n += 1;
            }
        }
    }
    n
}

/// Lifts the quiesce rule when dropped.
struct Quiesced(Option<PathBuf>);

impl Drop for Quiesced {
    fn drop(&mut self) {
        if let Some(ns) = &self.0 {
            let _ = crate::nftables::delete_inet_table(ns, QUIESCE_TABLE);
        }
    }
}

/// Waits until `tcp:HOST:PORT` accepts a connection (the service answers); returns when.
fn probe(spec: &str, timeout: Duration) -> Result<Instant> {
    let addr = spec
        .strip_prefix("tcp:")
        .ok_or_else(|| anyhow!("--probe {spec:?}: use tcp:HOST:PORT"))?;
    let addrs: Vec<std::net::SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .with_context(|| format!("--probe {spec:?}: bad address"))?
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        for sa in &addrs {
            if std::net::TcpStream::connect_timeout(sa, Duration::from_millis(200)).is_ok() {
                return Ok(Instant::now());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "migrated, but {addr} did not answer within {} s",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            Target::parse("ssh://root@b:2222").unwrap(),
            Target::Ssh {
                dest: "root@b".into(),
                port: Some("2222".into())
            }
        );
        assert_eq!(
            Target::parse("ssh://b").unwrap(),
            Target::Ssh {
                dest: "b".into(),
                port: None
            }
        );
        assert_eq!(
            Target::parse("exec:nsenter -t 12 -m -n --").unwrap(),
            Target::Exec(vec![
                "nsenter".into(),
                "-t".into(),
                "12".into(),
                "-m".into(),
                "-n".into(),
                "--".into()
            ])
        );
        assert!(Target::parse("b").is_err());
        assert!(Target::parse("exec:").is_err());
        let args = vec!["runtime".to_string(), "restore".into(), "a b".into()];
        let d = format!("{:?}", Target::parse("ssh://b").unwrap().command(&args));
        assert!(d.contains("'a b'"), "{d}");
    }
}
