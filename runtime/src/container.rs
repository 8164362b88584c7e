//! A container as the state store knows it: its status (created, running, paused,
//! stopped, worked out from the init's liveness, exec.fifo and the freezer), signals,
//! and destruction (kill, cgroup removal, poststop hooks, state removal).

use crate::cgroups::CgroupPaths;
use crate::error::Error;
use crate::hooks::{self, Kind};
use crate::state::{Entry, State, Store, CONFIG_FILE, EXEC_FIFO};
use crate::sys;
use anyhow::{Context, Result};
use oci_spec::runtime::Spec;
use std::fmt;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// Start time (clock ticks since boot) of a live, non-zombie process.
pub fn start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split(' ');
    let state = f.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    f.nth(18)?.parse().ok()
}

pub struct Container {
    pub entry: Entry,
    pub state: State,
}

impl Container {
    /// Opens and locks container `id`.
    pub fn load(store: &Store, id: &str) -> Result<Container> {
        let entry = store.open(id)?;
        let state = entry.load()?;
        Ok(Container { entry, state })
    }

    pub fn id(&self) -> &str {
        &self.entry.id
    }

    pub fn alive(&self) -> bool {
        start_time(self.state.pid) == Some(self.state.start_time)
    }

    pub fn status(&self) -> Status {
        if !self.alive() {
            return Status::Stopped;
        }
        if self.state.cgroup.is_frozen() {
            return Status::Paused;
        }
        if self.entry.path(EXEC_FIFO).exists() {
            return Status::Created;
        }
        Status::Running
    }

    /// The config.json the container was created (or restored) with.
    pub fn spec(&self) -> Result<Spec> {
        let p = self.entry.path(CONFIG_FILE);
        let data = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        serde_json::from_slice(&data).with_context(|| format!("corrupt {}", p.display()))
    }

    pub fn cgroup(&self) -> &CgroupPaths {
        &self.state.cgroup
    }

    /// Sends `sig` to the init (through a pidfd: never to a recycled pid) or, with
    /// `all`, to every process of the container's cgroup.
    pub fn signal(&self, sig: i32, all: bool) -> Result<()> {
        let status = self.status();
        if status == Status::Stopped {
            return Err(Error::NotRunning {
                id: self.id().to_string(),
                what: "kill",
            }
            .into());
        }
        if all {
            for pid in self.state.cgroup.pids().unwrap_or_default() {
                // SAFETY: kill(2) with a pid from the container's own cgroup.
                unsafe { libc::kill(pid, sig) };
            }
        } else {
            let pidfd = sys::pidfd_open(self.state.pid).map_err(|_| Error::NotRunning {
                id: self.id().to_string(),
                what: "kill",
            })?;
            sys::pidfd_send_signal(pidfd.as_fd(), sig)
                .with_context(|| format!("cannot signal container \"{}\"", self.id()))?;
        }
        // A frozen task only sees SIGKILL once thawed (runc does the same).
        if status == Status::Paused && sig == libc::SIGKILL {
            let _ = self.state.cgroup.thaw();
        }
        Ok(())
    }

    /// Kills every process, waits until the cgroup is empty (bounded), removes the cgroup
    /// and the state, and runs poststop hooks.
    pub fn destroy(self) -> Result<()> {
        self.destroy_with(true)
    }

    /// `destroy`, with or without the poststop hooks (a lazy migration runs them earlier).
    pub fn destroy_with(self, run_poststop: bool) -> Result<()> {
        let cg = &self.state.cgroup;
        if self.alive() || !cg.pids().unwrap_or_default().is_empty() {
            for pid in cg.pids().unwrap_or_default() {
                // SAFETY: kill(2) with pids from the container's own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if self.alive() {
                // SAFETY: as above; the init may sit outside the cgroup (cgroup ignored).
                unsafe { libc::kill(self.state.pid, libc::SIGKILL) };
            }
            let _ = cg.thaw();
            let deadline = Instant::now() + Duration::from_secs(5);
            while (self.alive() || !cg.pids().unwrap_or_default().is_empty())
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let spec = self.spec().ok();
        let cg_result = cg.destroy();
        if let Some(spec) = spec.as_ref().filter(|_| run_poststop) {
            let state = hooks::state_json(
                spec,
                self.id(),
                "stopped",
                self.state.pid,
                &self.state.bundle,
            );
            if let Err(e) = hooks::run(spec, Kind::Poststop, &state) {
                crate::warn!("container \"{}\": {e:#}", self.id());
            }
        }
        self.entry.remove()?;
        cg_result
    }
}
