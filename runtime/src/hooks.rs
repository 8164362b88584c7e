//! OCI hooks: each runs with the container state as JSON on stdin, its own args and env,
//! and an optional timeout; a failure names the hook kind, its index and path.

use crate::sys;
use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::{Hook, Hooks, Spec};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }

    fn select(self, h: &Hooks) -> Option<&Vec<Hook>> {
        #[allow(deprecated)]
        match self {
            Kind::Prestart => h.prestart().as_ref(),
            Kind::CreateRuntime => h.create_runtime().as_ref(),
            Kind::CreateContainer => h.create_container().as_ref(),
            Kind::StartContainer => h.start_container().as_ref(),
            Kind::Poststart => h.poststart().as_ref(),
            Kind::Poststop => h.poststop().as_ref(),
        }
    }
}

/// The state document hooks get on stdin.
pub fn state_json(
    spec: &Spec,
    id: &str,
    status: &str,
    pid: i32,
    bundle: &std::path::Path,
) -> String {
    let mut v = serde_json::json!({
        "ociVersion": spec.version(),
        "id": id,
        "status": status,
        "bundle": bundle,
    });
    if pid > 0 {
        v["pid"] = pid.into();
    }
    if let Some(a) = spec.annotations().as_ref().filter(|a| !a.is_empty()) {
        v["annotations"] = serde_json::to_value(a).unwrap_or_default();
    }
    v.to_string()
}

pub fn has(spec: &Spec, kind: Kind) -> bool {
    spec.hooks()
        .as_ref()
        .and_then(|h| kind.select(h))
        .is_some_and(|v| !v.is_empty())
}

/// Runs every hook of `kind` in order; stops at the first failure.
pub fn run(spec: &Spec, kind: Kind, state: &str) -> Result<()> {
    let Some(hooks) = spec.hooks().as_ref().and_then(|h| kind.select(h)) else {
        return Ok(());
    };
    for (i, h) in hooks.iter().enumerate() {
        run_one(h, state).with_context(|| {
            format!("{} hook #{i} ({}) failed", kind.name(), h.path().display())
        })?;
    }
    Ok(())
}

fn run_one(h: &Hook, state: &str) -> Result<()> {
    let args = h.args().clone().unwrap_or_default();
    let mut cmd = Command::new(h.path());
    if let Some(arg0) = args.first() {
        cmd.arg0(arg0);
    }
    cmd.args(args.iter().skip(1));
    cmd.env_clear();
    for e in h.env().iter().flatten() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("cannot run")?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may exit without reading its stdin: EPIPE is not a failure.
        let _ = stdin.write_all(state.as_bytes());
    }
    let timeout = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64));
    let status = match timeout {
        None => child.wait()?,
        Some(t) => {
            let pidfd = sys::pidfd_open(child.id() as i32)?;
            let deadline = Instant::now() + t;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let mut pfd = [nix::poll::PollFd::new(
                    pidfd.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                let n = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(ms)).unwrap_or(0);
                if n > 0 {
                    break child.wait()?;
                }
                if left.is_zero() {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("timed out after {} s", t.as_secs());
                }
            }
        }
    };
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let err = err.trim();
        return Err(anyhow!(
            "{status}{}{err}",
            if err.is_empty() { "" } else { ": " }
        ));
    }
    Ok(())
}
