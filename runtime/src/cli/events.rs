//! `runtime events`: resource usage as runc's event JSON, once (`--stats`) or every
//! `--interval`, plus an "oom" event when the kernel's OOM killer hits the container.

use super::Global;
use crate::container::{Container, Status};
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print one stats event and exit
    #[arg(long)]
    pub stats: bool,
    /// Time between stats events (e.g. 5s, 500ms)
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Container id
    pub id: String,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?} (use ms, s, m, h)")),
    };
    if secs <= 0.0 {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn stats(c: &Container) -> Result<Value> {
    let s = c.cgroup().stats()?;
    let mut data = json!({});
    if let Some(acct) = &s.cpu.cpu_acct {
        data["cpu"] = json!({ "usage": {
            "total": acct.total_usage, "percpu": acct.usage_percpu,
            "kernel": acct.system_usage, "user": acct.user_usage } });
    }
    if let Some(t) = &s.cpu.cpu_throttling {
        data["cpu"]["throttling"] = json!({ "periods": t.periods,
            "throttledPeriods": t.throttled_periods, "throttledTime": t.throttled_time });
    }
    let mem = |m: &Option<cgroups_rs::stats::MemoryStats>| {
        m.as_ref().map(|m| json!({ "limit": m.limit, "usage": m.usage, "max": m.max_usage, "failcnt": m.fail_cnt }))
    };
    data["memory"] = json!({
        "usage": mem(&s.memory.memory),
        "swap": mem(&s.memory.memory_swap),
        "kernel": mem(&s.memory.kernel_memory),
        "raw": { "cache": s.memory.cache, "rss": s.memory.rss, "shmem": s.memory.shmem,
                 "mapped_file": s.memory.mapped_file, "pgfault": s.memory.pgfault,
                 "pgmajfault": s.memory.pgmajfault },
    });
    data["pids"] = json!({ "current": s.pids.current, "limit": s.pids.limit });
    Ok(json!({ "type": "stats", "id": c.id(), "data": data }))
}

/// OOM kills so far (v1 memory.oom_control, v2 memory.events).
fn oom_kills(c: &Container) -> u64 {
    let cg = c.cgroup();
    let (file, key) = if cg.v2 {
        ("memory.events", "oom_kill")
    } else {
        ("memory.oom_control", "oom_kill")
    };
    let dir = if cg.v2 {
        cg.dirs.get("")
    } else {
        cg.dirs
            .iter()
            .find(|(k, _)| k.split(',').any(|c| c == "memory"))
            .map(|(_, v)| v)
    };
    dir.and_then(|d| std::fs::read_to_string(d.join(file)).ok())
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
        })
        .unwrap_or(0)
}

pub fn run(g: &Global, a: Args) -> Result<i32> {
    let c = Container::load(&g.store, &a.id)?;
    if c.status() == Status::Stopped {
        bail!("container \"{}\" is stopped", a.id);
    }
    if a.stats {
        println!("{}", stats(&c)?);
        return Ok(0);
    }
    let (id, store) = (a.id.clone(), g.store.clone());
    drop(c); // do not hold the container's lock while streaming
    let mut ooms = None;
    loop {
        let Ok(c) = Container::load(&store, &id) else {
            return Ok(0);
        };
        if c.status() == Status::Stopped {
            return Ok(0);
        }
        let n = oom_kills(&c);
        if ooms.is_some_and(|o| n > o) {
            println!("{}", json!({ "type": "oom", "id": id }));
        }
        ooms = Some(n);
        println!("{}", stats(&c)?);
        drop(c);
        std::thread::sleep(a.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1x").is_err());
    }
}
