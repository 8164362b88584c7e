//! CRIU RPC layer: talk to `criu swrk`, explain its logs, read its statistics.
//!
//! - [`rpc`]: hand-written prost messages of CRIU's `rpc.proto` (proto2 semantics kept).
//! - [`swrk`]: spawn `criu swrk`, send a request, serve NOTIFY callbacks, version and feature checks.
//! - [`log`]: turn `dump.log` / `restore.log` into a one-line cause with the flag that fixes it.
//! - [`stats`]: read `stats-dump` / `stats-restore` from the work dir.

pub mod log;
pub mod rpc;
pub mod stats;
pub mod swrk;

pub use rpc::{
    CgroupRoot, CriuCgMode, CriuOpts, CriuReq, CriuReqType, CriuResp, ExtMountMap, InheritFd,
};
pub use stats::{read_dump_stats, read_restore_stats, DumpStats, RestoreStats};
pub use swrk::{
    check_features, default_criu_path, require_features, version, AcceptAll, CriuError, Notify,
    Swrk, SwrkOptions,
};
