//! runtime: an OCI container runtime, drop-in for runc, built around checkpoint, restore
//! and live migration. The library holds everything; `main.rs` only parses and reports.

pub mod archive;
pub mod capabilities;
pub mod cgroups;
pub mod checkpoint;
pub mod cli;
pub mod container;
pub mod criu;
pub mod criu_plan;
pub mod devices;
pub mod devices_bpf;
pub mod error;
pub mod exe_seal;
pub mod hooks;
pub mod interrupt;
pub mod lifecycle;
pub mod logging;
pub mod manifest;
pub mod migrate;
pub mod mounts;
pub mod namespaces;
pub mod nftables;
pub mod process;
pub mod restore;
pub mod rootfs;
pub mod safepath;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod sys;
pub mod timefmt;
pub mod tty;

/// The OCI runtime-spec version we implement.
pub const OCI_VERSION: &str = "1.2.0";

/// `runtime --version`, shaped like runc's (containerd parses `commit:` and `spec:`).
pub const VERSION_TEXT: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("RUNTIME_GIT_COMMIT"),
    "\nspec: 1.2.0\nlibseccomp: 2.5.4"
);
