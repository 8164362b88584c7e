//! Read CRIU's `stats-dump` / `stats-restore` files (written into the work dir) into plain structs.
//!
//! File layout (criu/image.c, criu/protobuf.c): u32 `IMG_SERVICE_MAGIC`, u32 `STATS_MAGIC`, then one
//! u32-length-prefixed `stats_entry` protobuf (images/stats.proto), all little-endian (host order).
//! Times are in microseconds.

use std::fs;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use prost::Message;
use serde::Serialize;

/// Head magic of CRIU's "service" images (stats, irmap-cache).
pub const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;
/// Magic of the stats image.
pub const STATS_MAGIC: u32 = 0x5709_3306;
/// File names CRIU uses in its work dir.
pub const DUMP_STATS_FILE: &str = "stats-dump";
pub const RESTORE_STATS_FILE: &str = "stats-restore";

/// What `stats-dump` says about a dump or pre-dump.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DumpStats {
    /// Time to freeze the tree, µs.
    pub freezing_time: u64,
    /// Time the tree stayed frozen, µs.
    pub frozen_time: u64,
    /// Time to collect memory, µs.
    pub memdump_time: u64,
    /// Time to write memory, µs.
    pub memwrite_time: u64,
    pub pages_scanned: u64,
    pub pages_skipped_parent: u64,
    pub pages_written: u64,
    pub irmap_resolve: u64,
    pub pages_lazy: u64,
    pub page_pipes: u64,
    pub page_pipe_bufs: u64,
    pub shpages_scanned: u64,
    pub shpages_skipped_parent: u64,
    pub shpages_written: u64,
}

/// What `stats-restore` says about a restore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestoreStats {
    pub pages_compared: u64,
    pub pages_skipped_cow: u64,
    /// Time to fork the tree, µs.
    pub forking_time: u64,
    /// Time of the whole restore, µs.
    pub restore_time: u64,
    pub pages_restored: u64,
}

#[derive(Clone, PartialEq, Message)]
struct DumpStatsEntry {
    #[prost(uint32, required, tag = "1")]
    freezing_time: u32,
    #[prost(uint32, required, tag = "2")]
    frozen_time: u32,
    #[prost(uint32, required, tag = "3")]
    memdump_time: u32,
    #[prost(uint32, required, tag = "4")]
    memwrite_time: u32,
    #[prost(uint64, required, tag = "5")]
    pages_scanned: u64,
    #[prost(uint64, required, tag = "6")]
    pages_skipped_parent: u64,
    #[prost(uint64, required, tag = "7")]
    pages_written: u64,
    #[prost(uint32, optional, tag = "8")]
    irmap_resolve: Option<u32>,
    #[prost(uint64, required, tag = "9")]
    pages_lazy: u64,
    #[prost(uint64, optional, tag = "10")]
    page_pipes: Option<u64>,
    #[prost(uint64, optional, tag = "11")]
    page_pipe_bufs: Option<u64>,
    #[prost(uint64, optional, tag = "12")]
    shpages_scanned: Option<u64>,
    #[prost(uint64, optional, tag = "13")]
    shpages_skipped_parent: Option<u64>,
    #[prost(uint64, optional, tag = "14")]
    shpages_written: Option<u64>,
}

#[derive(Clone, PartialEq, Message)]
struct RestoreStatsEntry {
    #[prost(uint64, required, tag = "1")]
    pages_compared: u64,
    #[prost(uint64, required, tag = "2")]
    pages_skipped_cow: u64,
    #[prost(uint32, required, tag = "3")]
    forking_time: u32,
    #[prost(uint32, required, tag = "4")]
    restore_time: u32,
    #[prost(uint64, optional, tag = "5")]
    pages_restored: Option<u64>,
}

#[derive(Clone, PartialEq, Message)]
struct StatsEntry {
    #[prost(message, optional, tag = "1")]
    dump: Option<DumpStatsEntry>,
    #[prost(message, optional, tag = "2")]
    restore: Option<RestoreStatsEntry>,
}

/// Read `<work_dir>/stats-dump`.
pub fn read_dump_stats(work_dir: &Path) -> Result<DumpStats> {
    let path = work_dir.join(DUMP_STATS_FILE);
    let entry = read_entry(&path)?;
    let d = entry
        .dump
        .with_context(|| format!("{} holds no dump statistics", path.display()))?;
    Ok(DumpStats {
        freezing_time: d.freezing_time.into(),
        frozen_time: d.frozen_time.into(),
        memdump_time: d.memdump_time.into(),
        memwrite_time: d.memwrite_time.into(),
        pages_scanned: d.pages_scanned,
        pages_skipped_parent: d.pages_skipped_parent,
        pages_written: d.pages_written,
        irmap_resolve: d.irmap_resolve.unwrap_or(0).into(),
        pages_lazy: d.pages_lazy,
        page_pipes: d.page_pipes.unwrap_or(0),
        page_pipe_bufs: d.page_pipe_bufs.unwrap_or(0),
        shpages_scanned: d.shpages_scanned.unwrap_or(0),
        shpages_skipped_parent: d.shpages_skipped_parent.unwrap_or(0),
        shpages_written: d.shpages_written.unwrap_or(0),
    })
}

/// Read `<work_dir>/stats-restore`.
pub fn read_restore_stats(work_dir: &Path) -> Result<RestoreStats> {
    let path = work_dir.join(RESTORE_STATS_FILE);
    let entry = read_entry(&path)?;
    let r = entry
        .restore
        .with_context(|| format!("{} holds no restore statistics", path.display()))?;
    Ok(RestoreStats {
        pages_compared: r.pages_compared,
        pages_skipped_cow: r.pages_skipped_cow,
        forking_time: r.forking_time.into(),
        restore_time: r.restore_time.into(),
        pages_restored: r.pages_restored.unwrap_or(0),
    })
}

fn read_entry(path: &Path) -> Result<StatsEntry> {
    let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&data).with_context(|| format!("parsing {}", path.display()))
}

fn parse(data: &[u8]) -> Result<StatsEntry> {
    let word = |at: usize| -> Result<u32> {
        let bytes = data
            .get(at..at + 4)
            .context("file too short for the image header")?;
        let mut w = [0u8; 4];
        w.copy_from_slice(bytes);
        Ok(u32::from_ne_bytes(w))
    };
    let (head, magic) = (word(0)?, word(4)?);
    ensure!(
        head == IMG_SERVICE_MAGIC && magic == STATS_MAGIC,
        "not a CRIU stats image (magic {head:#x} {magic:#x})"
    );
    let len = usize::try_from(word(8)?).context("entry length")?;
    let Some(body) = data.get(12..).and_then(|rest| rest.get(..len)) else {
        bail!("entry of {len} bytes is cut short");
    };
    StatsEntry::decode(body).context("decoding stats_entry")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entry: &StatsEntry) -> Vec<u8> {
        let body = entry.encode_to_vec();
        let mut out = Vec::new();
        out.extend_from_slice(&IMG_SERVICE_MAGIC.to_ne_bytes());
        out.extend_from_slice(&STATS_MAGIC.to_ne_bytes());
        out.extend_from_slice(&(body.len() as u32).to_ne_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn parses_a_restore_entry() {
        let entry = StatsEntry {
            dump: None,
            restore: Some(RestoreStatsEntry {
                pages_compared: 3,
                pages_skipped_cow: 1,
                forking_time: 250,
                restore_time: 9000,
                pages_restored: Some(77),
            }),
        };
        assert_eq!(parse(&image(&entry)).expect("parse"), entry);
    }

    #[test]
    fn rejects_bad_magic_and_short_files() {
        let mut bytes = image(&StatsEntry::default());
        assert!(parse(&bytes[..6]).is_err());
        bytes[0] ^= 1;
        let err = parse(&bytes).expect_err("bad magic accepted");
        assert!(err.to_string().contains("not a CRIU stats image"), "{err}");
        let mut cut = image(&StatsEntry {
            dump: Some(DumpStatsEntry::default()),
            restore: None,
        });
        cut.pop();
        assert!(parse(&cut).is_err());
    }
}
