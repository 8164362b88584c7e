//! The command line, runc's: global flags, one subcommand per file, and the dispatch.
//! Also accepts urfave/cli spellings engines use (`-no-subreaper`, repeated booleans).

use crate::state::Store;
use clap::{ArgAction, Parser, Subcommand};
use std::path::PathBuf;

pub mod checkpoint;
mod create;
mod delete;
mod events;
mod exec;
mod features;
mod kill;
mod list;
pub mod migrate;
mod pause;
mod ps;
pub mod restore;
mod run;
mod spec;
mod start;
mod state;
mod update;

pub use checkpoint::Args as CheckpointArgs;
pub use migrate::Args as MigrateArgs;
pub use restore::Args as RestoreArgs;

pub const DEFAULT_ROOT: &str = "/run/runtime";

#[allow(clippy::manual_non_exhaustive)]
#[derive(Parser, Debug)]
#[command(
    name = "runtime",
    version = crate::VERSION_TEXT,
    about = "An OCI container runtime, drop-in for runc, built for checkpoint, restore and live migration",
    long_about = "runtime runs OCI bundles (a directory with config.json and a root filesystem) the way runc does: \
same commands, flags, output and exit codes, so engines such as podman and containerd can use it in runc's place.\n\n\
A container's life: `create` sets it up and leaves its process waiting, `start` lets it run (`run` does both), \
`kill`/`delete` end it. `checkpoint` saves a running container to disk with CRIU and `restore` brings it back, \
here or on another host that sees the same bundle.",
    args_override_self = true,
    disable_version_flag = true
)]
pub struct Cli {
    /// Directory for container state (a tmpfs, e.g. under /run)
    #[arg(long, global = true, default_value = DEFAULT_ROOT, value_name = "DIR")]
    pub root: PathBuf,
    /// Write the runtime's own log (errors, warnings, debug) to FILE instead of stderr
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Format of --log lines: text or json (one JSON object per line)
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Log debug messages (timings of each step)
    #[arg(long, global = true)]
    pub debug: bool,
    /// Treat cgroupsPath as systemd's "slice:prefix:name"
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Path of the criu binary used by checkpoint and restore
    #[arg(long, global = true, value_name = "PATH")]
    pub criu: Option<PathBuf>,
    /// Accepted for runc compatibility (rootless mode is decided from the config)
    #[arg(long, value_name = "true|false|auto", num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Print the version
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    version: (),
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container: set it up and leave its process waiting for `start`
    Create(create::Args),
    /// Start a created container: its process runs the configured program
    Start(start::Args),
    /// Create and start a container (foreground unless --detach)
    Run(run::Args),
    /// Print the state of a container as JSON
    State(state::Args),
    /// Send a signal to a container's init (or to all its processes)
    Kill(kill::Args),
    /// Delete a stopped container (or any, with --force) and its resources
    Delete(delete::Args),
    /// List containers
    List(list::Args),
    /// List the processes running in a container
    Ps(ps::Args),
    /// Run a new process inside a running container
    Exec(exec::Args),
    /// Freeze every process of a container
    Pause(pause::Args),
    /// Thaw a paused container
    Resume(pause::Args),
    /// Print a container's resource usage, once (--stats) or every --interval
    Events(events::Args),
    /// Write a default config.json for a new bundle
    Spec(spec::Args),
    /// Print the features this runtime supports, as JSON
    Features(features::Args),
    /// Change a running container's resource limits
    Update(update::Args),
    /// Save a running container to disk with CRIU (and stop it unless --leave-running)
    Checkpoint(checkpoint::Args),
    /// Bring a checkpointed container back from its images
    Restore(restore::Args),
    /// Move a running container to another host that sees the same bundle
    Migrate(migrate::Args),
}

/// Options every command may need.
pub struct Global {
    pub store: Store,
    pub systemd_cgroup: bool,
    pub criu: Option<PathBuf>,
}

/// Runs the command; returns the process exit code.
pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let g = Global {
        store: Store::new(&cli.root),
        systemd_cgroup: cli.systemd_cgroup,
        criu: cli.criu,
    };
    match cli.command {
        Command::Create(a) => create::run(&g, a),
        Command::Start(a) => start::run(&g, a),
        Command::Run(a) => run::run(&g, a),
        Command::State(a) => state::run(&g, a),
        Command::Kill(a) => kill::run(&g, a),
        Command::Delete(a) => delete::run(&g, a),
        Command::List(a) => list::run(&g, a),
        Command::Ps(a) => ps::run(&g, a),
        Command::Exec(a) => exec::run(&g, a),
        Command::Pause(a) => pause::pause(&g, a),
        Command::Resume(a) => pause::resume(&g, a),
        Command::Events(a) => events::run(&g, a),
        Command::Spec(a) => spec::run(a),
        Command::Features(a) => features::run(a),
        Command::Update(a) => update::run(&g, a),
        Command::Checkpoint(a) => checkpoint::run(&g, a),
        Command::Restore(a) => restore::run(&g, a),
        Command::Migrate(a) => migrate::run(&g, a),
    }
}

/// urfave/cli (runc) accepts `-flag` for long flags; clap needs `--flag`. Rewrites every
/// single-dash argument whose name is a known long flag, up to a `--`.
pub fn normalize_args(args: Vec<String>) -> Vec<String> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut longs: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    for sub in cmd.get_subcommands() {
        longs.extend(
            sub.get_arguments()
                .filter_map(|a| a.get_long().map(str::to_string)),
        );
    }
    let mut out = Vec::with_capacity(args.len());
    let mut done = false;
    for a in args {
        if a == "--" {
            done = true;
        }
        let rewrite = !done
            && a.len() > 2
            && a.starts_with('-')
            && !a.starts_with("--")
            && longs
                .iter()
                .any(|l| l == a[1..].split('=').next().unwrap_or(""));
        out.push(if rewrite { format!("-{a}") } else { a });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn single_dash_long_flags() {
        let got = normalize_args(v(&[
            "runtime",
            "restore",
            "-no-subreaper",
            "-d",
            "--bundle",
            "b",
            "x",
        ]));
        assert_eq!(
            got,
            v(&[
                "runtime",
                "restore",
                "--no-subreaper",
                "-d",
                "--bundle",
                "b",
                "x"
            ])
        );
        let got = normalize_args(v(&["runtime", "exec", "c", "--", "ls", "-root"]));
        assert_eq!(got[5], "-root");
    }

    #[test]
    fn engine_argv_parse() {
        let argv = v(&[
            "runtime",
            "--log-format=json",
            "--log",
            "/tmp/l",
            "checkpoint",
            "--image-path",
            "/i",
            "--work-path",
            "/w",
            "--leave-running",
            "--leave-running",
            "c1",
        ]);
        Cli::try_parse_from(normalize_args(argv)).unwrap();
        let argv = v(&["runtime", "--root", "/r", "kill", "--all", "c1", "9"]);
        Cli::try_parse_from(argv).unwrap();
        let argv = v(&[
            "runtime",
            "restore",
            "--image-path",
            "/i",
            "--work-path",
            "/w",
            "--detach",
            "--pid-file",
            "/p",
            "-no-subreaper",
            "--bundle",
            "/b",
            "c1",
        ]);
        Cli::try_parse_from(normalize_args(argv)).unwrap();
    }
}
