//! What CRIU leaves in a work dir, read without the runtime crate: the `stats-dump` /
//! `stats-restore` images (freezing and frozen time) and the last timestamp of `dump.log` /
//! `restore.log` (CRIU's own time). Plus the options the raw-CRIU column passes to the criu CLI
//! so that it dumps and restores a runc container the way runc's own CRIU calls do.

use anyhow::{bail, ensure, Context, Result};
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

/// Head magic of CRIU's "service" images (criu/include/magic.h), then the stats image's magic.
const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;
const STATS_MAGIC: u32 = 0x5709_3306;

/// From `stats-dump` (images/stats.proto `dump_stats`; CRIU stores microseconds).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DumpStats {
    /// Time to stop the tree: ptrace seize, or the cgroup freezer and its 100 ms poll steps.
    pub freezing: Duration,
    /// From the tree being stopped to the end of the dump (tasks killed or resumed).
    pub frozen: Duration,
    pub pages_written: u64,
}

/// Reads `<work>/stats-dump`.
pub fn dump_stats(work: &Path) -> Result<DumpStats> {
    let fields = read_stats(&work.join("stats-dump"), 1)?;
    let us = |n| Duration::from_micros(fields.get(&n).copied().unwrap_or(0));
    Ok(DumpStats {
        freezing: us(1),
        frozen: us(2),
        pages_written: fields.get(&7).copied().unwrap_or(0),
    })
}

/// Reads `pages_restored` from `<work>/stats-restore` (checks the file is a restore stats image).
pub fn pages_restored(work: &Path) -> Result<u64> {
    let fields = read_stats(&work.join("stats-restore"), 2)?;
    Ok(fields.get(&5).copied().unwrap_or(0))
}

/// The varint fields of the `stats_entry` sub-message `which` (1 = dump, 2 = restore). Layout
/// (criu/image.c): u32 service magic, u32 stats magic, u32 length, then the protobuf message.
fn read_stats(path: &Path, which: u64) -> Result<HashMap<u64, u64>> {
    let data = fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let word = |i: usize| -> Result<u32> {
        let b = data
            .get(i * 4..i * 4 + 4)
            .context("stats image too short")?;
        Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (head, magic, len) = (word(0)?, word(1)?, word(2)? as usize);
    ensure!(
        head == IMG_SERVICE_MAGIC && magic == STATS_MAGIC,
        "{}: not a CRIU stats image",
        path.display()
    );
    let body = data.get(12..12 + len).context("stats image cut short")?;
    for (field, value) in fields(body)? {
        if let (f, Field::Bytes(msg)) = (field, value) {
            if f == which {
                return Ok(fields(msg)?
                    .into_iter()
                    .filter_map(|(f, v)| match v {
                        Field::Varint(n) => Some((f, n)),
                        Field::Bytes(_) => None,
                    })
                    .collect());
            }
        }
    }
    bail!("{}: no entry {which} in the stats image", path.display())
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The top-level fields of a protobuf message (varint and length-delimited; fixed ones skipped).
fn fields(mut buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>> {
    fn varint(buf: &mut &[u8]) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first().context("truncated varint")?;
            *buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        bail!("varint too long")
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let skip = match key & 7 {
            0 => {
                out.push((key >> 3, Field::Varint(varint(&mut buf)?)));
                0
            }
            2 => {
                let n = varint(&mut buf)? as usize;
                ensure!(n <= buf.len(), "truncated field");
                out.push((key >> 3, Field::Bytes(&buf[..n])));
                n
            }
            1 => 8,
            5 => 4,
            w => bail!("unexpected wire type {w}"),
        };
        ensure!(skip <= buf.len(), "truncated field");
        buf = &buf[skip..];
    }
    Ok(out)
}

/// CRIU's own time: the last `(SS.uuuuuu)` timestamp of a CRIU log (seconds since CRIU opened
/// the log, i.e. since it started on the request). Needs log level 3 or more (runc uses 4).
pub fn log_time(log: &Path) -> Result<Duration> {
    const TAIL: u64 = 64 << 10;
    let mut f = fs::File::open(log).with_context(|| format!("open {}", log.display()))?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(TAIL)))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    let text = String::from_utf8_lossy(&tail);
    text.lines()
        .rev()
        .find_map(timestamp)
        .with_context(|| format!("no timestamp in {}", log.display()))
}

fn timestamp(line: &str) -> Option<Duration> {
    let stamp = line.strip_prefix('(')?.split_once(')')?.0;
    let (secs, micros) = stamp.trim().split_once('.')?;
    let micros: u64 = micros.parse().ok().filter(|_| micros.len() == 6)?;
    Some(Duration::from_secs(secs.parse().ok()?) + Duration::from_micros(micros))
}

/// The first `Error` lines of a CRIU log (up to 3), to say why a dump or restore failed. The
/// first is not always the cause: e.g. a failed RLIMIT_NOFILE raise is harmless.
pub fn first_errors(log: &Path) -> Option<String> {
    let text = fs::read_to_string(log).ok()?;
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error"))
        .map(str::trim)
        .take(3)
        .collect();
    (!errors.is_empty()).then(|| errors.join(" | "))
}

/// A mount in a /proc/<pid>/mountinfo: its filesystem (major:minor), root inside it, mount point
/// and type.
struct MountInfo {
    dev: String,
    root: String,
    point: String,
    fstype: String,
}

fn mountinfo(pid: &str) -> Result<Vec<MountInfo>> {
    let path = format!("/proc/{pid}/mountinfo");
    let text = fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let parse = |line: &str| {
        let f: Vec<&str> = line.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        Some(MountInfo {
            dev: f.get(2)?.to_string(),
            root: f.get(3)?.to_string(),
            point: f.get(4)?.to_string(),
            fstype: f.get(sep + 1)?.to_string(),
        })
    };
    Ok(text.lines().filter_map(parse).collect())
}

/// The `--ext-mount-map` values (`key:value`) runc gives CRIU for a container.
#[derive(Default)]
pub struct ExtMounts {
    pub dump: Vec<String>,
    pub restore: Vec<String>,
}

/// Reads the external mounts of a running container (`pid` is its init) the way runc lists them:
/// - each cgroup v1 mount, a bind of the container's cgroup dir on the host: dumped as
///   `/sys/fs/cgroup/cpu:/sys/fs/cgroup/cpu`, restored as `/sys/fs/cgroup/cpu:<that host dir>`;
/// - each masked path that is a file (`masked`), a bind of /dev/null: dumped as
///   `<path>:/dev/null`, restored with the one map `/dev/null:/dev/null`.
pub fn ext_mounts(pid: i32, masked: &[&str]) -> Result<ExtMounts> {
    let host = mountinfo("self")?;
    let mut maps = ExtMounts::default();
    for m in mountinfo(&pid.to_string())?
        .into_iter()
        .filter(|m| m.fstype == "cgroup")
    {
        let point = m.point.strip_prefix('/').unwrap_or(&m.point);
        let point = format!("/{point}");
        let on_host = host
            .iter()
            .filter(|h| h.fstype == "cgroup" && h.dev == m.dev)
            .find_map(|h| {
                let rel = m.root.strip_prefix(h.root.trim_end_matches('/'))?;
                Some(format!("{}{rel}", h.point.trim_end_matches('/')))
            })
            .with_context(|| format!("no host mount of the cgroup at {point}"))?;
        maps.dump.push(format!("{point}:{point}"));
        maps.restore.push(format!("{point}:{on_host}"));
    }
    // runc's addMaskPaths: masked paths that exist and are not directories.
    let files = masked.iter().filter(|path| {
        fs::metadata(format!("/proc/{pid}/root{path}")).is_ok_and(|meta| !meta.is_dir())
    });
    for path in files {
        maps.dump.push(format!("{path}:/dev/null"));
    }
    if !masked.is_empty() {
        maps.restore.push("/dev/null:/dev/null".into());
    }
    Ok(maps)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stats image: the header and a `stats_entry` whose field `which` holds `body`.
    fn image(which: u8, body: &[u8]) -> Vec<u8> {
        let mut entry = vec![which << 3 | 2, body.len() as u8];
        entry.extend_from_slice(body);
        let mut out = Vec::new();
        for w in [IMG_SERVICE_MAGIC, STATS_MAGIC, entry.len() as u32] {
            out.extend_from_slice(&w.to_ne_bytes());
        }
        out.extend_from_slice(&entry);
        out
    }

    #[test]
    fn reads_dump_stats() {
        let dir = std::env::temp_dir().join(format!("bench-criu-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        // freezing_time=1 (300 µs = 0xac 0x02), frozen_time=2 (5), a fixed64 to skip, pages_written=7.
        let body = [
            0x08, 0xac, 0x02, 0x10, 0x05, 0x19, 1, 2, 3, 4, 5, 6, 7, 8, 0x38, 0x09,
        ];
        fs::write(dir.join("stats-dump"), image(1, &body)).unwrap();
        let stats = dump_stats(&dir).unwrap();
        assert_eq!(
            stats,
            DumpStats {
                freezing: Duration::from_micros(300),
                frozen: Duration::from_micros(5),
                pages_written: 9,
            }
        );
        fs::write(dir.join("stats-restore"), image(2, &[0x28, 0x03])).unwrap();
        assert_eq!(pages_restored(&dir).unwrap(), 3);
        fs::write(dir.join("stats-restore"), image(1, &[0x28, 0x03])).unwrap();
        assert!(pages_restored(&dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn log_timestamps() {
        assert_eq!(
            timestamp("(00.164140) Dumping finished successfully"),
            Some(Duration::from_micros(164_140))
        );
        assert_eq!(
            timestamp("(123.000001) x"),
            Some(Duration::from_micros(123_000_001))
        );
        assert_eq!(timestamp("Warn: no stamp"), None);
    }
}
