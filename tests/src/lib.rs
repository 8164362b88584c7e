//! Helpers shared by the black-box integration tests: which runtime binary to drive
//! (`RUNTIME_BIN`), bundles built from the host's static busybox, runtime invocations with
//! timeouts, a container guard that always cleans up, a console socket, and host-side probes
//! (cgroupfs, mountinfo, /proc).
//!
//! Every test runs as root against a real runtime; nothing is mocked. The same tests pass
//! against runc and must pass against ours:
//!
//! ```text
//! RUNTIME_BIN=/usr/sbin/runc cargo nextest run -p runtime-tests   # validate the tests
//! cargo nextest run -p runtime-tests                              # ours: target/release/runtime
//! ```
//!
//! Conventions: each test owns its containers (`Container` = private `--root`, bundle, unique
//! id, cgroupsPath `/<id>`) and cleans up on drop; every runtime call has a 20 s timeout; a
//! check that cannot run on this host prints `NOT TESTED: <reason>` instead of passing
//! silently; the few tests for behaviour runc 1.1.5 lacks are gated by `ours_only()`.

pub mod bundle;
pub mod checkpoint;
pub mod console;
pub mod container;
pub mod host;
pub mod runtime;

pub use bundle::{default_config, Bundle};
pub use console::{read_until, ConsoleSocket};
pub use container::Container;
pub use runtime::{Call, Output, Runtime, TIMEOUT};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The runtime binary under test: `$RUNTIME_BIN`, else `<workspace>/target/release/runtime`.
pub fn runtime_bin() -> PathBuf {
    match std::env::var_os("RUNTIME_BIN") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target/release/runtime"),
    }
}

/// Basename of the runtime binary (`runc`, `runtime`, ...).
pub fn runtime_name() -> String {
    runtime_bin()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// True when the binary under test is not runc. Gates the few tests about features runc 1.1.5
/// lacks; each such test says so in a comment.
pub fn ours_only() -> bool {
    runtime_name() != "runc"
}

/// A container id unique across the parallel test processes: derived from the test's name
/// (libtest names the test thread after the test), this process id and a counter.
pub fn unique_id() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("test");
    let short = name.rsplit("::").next().unwrap_or(name);
    let clean: String = short
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(32)
        .collect();
    format!("rt-{clean}-{}-{n}", std::process::id())
}
