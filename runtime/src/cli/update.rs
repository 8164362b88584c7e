//! `runtime update`: change a running container's resources, from flags or an OCI
//! LinuxResources JSON (`--resources FILE`, `-` for stdin). The stored config is updated
//! too, so a later checkpoint/restore keeps the new limits.

use super::Global;
use crate::container::{Container, Status};
use crate::error::Error;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::Read;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// LinuxResources JSON file, or - for stdin
    #[arg(short, long, value_name = "FILE")]
    pub resources: Option<String>,
    /// Memory limit in bytes (suffixes k, m, g allowed); -1 for none
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory + swap limit
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long, allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Kernel memory limit (ignored, as by runc: kernels dropped it)
    #[arg(long, allow_hyphen_values = true)]
    pub kernel_memory: Option<String>,
    /// CPU shares (relative weight); runc spells it --cpu-share
    #[arg(long = "cpu-share", alias = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// CFS period in microseconds
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CFS quota in microseconds (-1 for none)
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// Realtime period in microseconds
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// Realtime runtime in microseconds
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs allowed (e.g. 0-3,5)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes allowed
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (-1 for none)
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block IO weight (10-1000)
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// Container id
    pub id: String,
}

/// `512`, `64k`, `100m`, `2g` (binary units, as runc), or -1.
pub fn parse_size(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.trim_end_matches('b');
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    Ok((n * mul as f64) as i64)
}

fn from_flags(a: &Args) -> Result<Value> {
    let mut r = json!({});
    let mut mem = serde_json::Map::new();
    if let Some(m) = &a.memory {
        mem.insert("limit".into(), parse_size(m)?.into());
    }
    if let Some(m) = &a.memory_swap {
        mem.insert("swap".into(), parse_size(m)?.into());
    }
    if let Some(m) = &a.memory_reservation {
        mem.insert("reservation".into(), parse_size(m)?.into());
    }
    if !mem.is_empty() {
        r["memory"] = Value::Object(mem);
    }
    let mut cpu = serde_json::Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            cpu.insert(k.into(), v);
        }
    };
    put("shares", a.cpu_shares.map(Into::into));
    put("period", a.cpu_period.map(Into::into));
    put("quota", a.cpu_quota.map(Into::into));
    put("realtimePeriod", a.cpu_rt_period.map(Into::into));
    put("realtimeRuntime", a.cpu_rt_runtime.map(Into::into));
    put("cpus", a.cpuset_cpus.clone().map(Into::into));
    put("mems", a.cpuset_mems.clone().map(Into::into));
    if !cpu.is_empty() {
        r["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = a.pids_limit {
        r["pids"] = json!({ "limit": p });
    }
    if let Some(w) = a.blkio_weight {
        r["blockIO"] = json!({ "weight": w });
    }
    Ok(r)
}

pub fn run(g: &Global, a: Args) -> Result<i32> {
    let c = Container::load(&g.store, &a.id)?;
    if c.status() == Status::Stopped {
        return Err(Error::NotRunning {
            id: a.id,
            what: "update",
        }
        .into());
    }
    let patch: Value = match &a.resources {
        Some(src) => {
            let mut text = String::new();
            if src == "-" {
                std::io::stdin().read_to_string(&mut text)?;
            } else {
                text =
                    std::fs::read_to_string(src).with_context(|| format!("cannot read {src}"))?;
            }
            serde_json::from_str(&text).context("invalid resources JSON")?
        }
        None => from_flags(&a)?,
    };
    if !patch.is_object() {
        bail!("resources must be a JSON object");
    }
    let res: oci_spec::runtime::LinuxResources =
        serde_json::from_value(patch.clone()).context("invalid resources")?;
    c.cgroup().apply(&res)?;
    // Merge into the stored config (top-level keys of linux.resources).
    let mut spec = serde_json::to_value(c.spec()?)?;
    let stored = &mut spec["linux"]["resources"];
    if !stored.is_object() {
        *stored = json!({});
    }
    for (k, v) in patch.as_object().into_iter().flatten() {
        match (stored.get_mut(k), v) {
            (Some(Value::Object(old)), Value::Object(new)) => {
                for (kk, vv) in new {
                    old.insert(kk.clone(), vv.clone());
                }
            }
            _ => {
                stored[k] = v.clone();
            }
        }
    }
    crate::state::write_atomic(
        &c.entry.path(crate::state::CONFIG_FILE),
        &serde_json::to_vec(&spec)?,
    )?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100m").unwrap(), 100 << 20);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("-1").unwrap(), -1);
        assert!(parse_size("x").is_err());
    }
}
