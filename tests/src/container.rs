//! `Container`: one test container = its own runtime root, its own bundle and a unique id,
//! with a cgroupsPath of `/<id>` so its cgroup directories can be checked from the host.
//! Dropping it runs `delete --force` (even when the test failed), then removes the bundle.

use std::path::PathBuf;

use serde_json::Value;

use crate::bundle::Bundle;
use crate::host::{self, CHECKED_CONTROLLERS};
use crate::runtime::{Output, Runtime};

pub struct Container {
    pub id: String,
    // Field order matters for drop: the runtime root goes after `delete --force` ran.
    pub rt: Runtime,
    pub bundle: Bundle,
}

impl Container {
    /// A container whose process runs `args`, not yet created.
    pub fn new(args: &[&str]) -> Container {
        Container::in_runtime(Runtime::new(), args)
    }

    /// A container in an existing runtime root (several containers sharing one `--root`).
    pub fn in_runtime(rt: Runtime, args: &[&str]) -> Container {
        let id = crate::unique_id();
        let mut bundle = Bundle::new(args);
        let cgroups_path = format!("/{id}");
        bundle.configure(|c| c["linux"]["cgroupsPath"] = cgroups_path.into());
        Container { id, rt, bundle }
    }

    /// Changes config.json before the container is created (builder style).
    pub fn with(mut self, f: impl FnOnce(&mut Value)) -> Container {
        self.bundle.configure(f);
        self
    }

    /// Changes config.json in place.
    pub fn configure(&mut self, f: impl FnOnce(&mut Value)) {
        self.bundle.configure(f);
    }

    pub fn config(&self) -> &Value {
        self.bundle.config()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.bundle.rootfs()
    }

    /// `linux.cgroupsPath` from the config.
    pub fn cgroups_path(&self) -> String {
        self.config()["linux"]["cgroupsPath"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// `/sys/fs/cgroup/<controller>/<cgroupsPath>`.
    pub fn cgroup_dir(&self, controller: &str) -> PathBuf {
        host::cgroup_dir(controller, &self.cgroups_path())
    }

    /// A cgroup file of this container, trimmed.
    pub fn cgroup_read(&self, controller: &str, file: &str) -> String {
        host::cgroup_read(controller, &self.cgroups_path(), file)
    }

    pub fn create(&self) -> Output {
        self.rt.create(&self.id, self.bundle.path())
    }

    pub fn start(&self) -> Output {
        self.rt.start(&self.id)
    }

    /// `run --detach`.
    pub fn run_detached(&self) -> Output {
        self.rt.run_detached(&self.id, self.bundle.path())
    }

    /// `run` in the foreground: the runtime returns when the container exits.
    pub fn run_fg(&self) -> Output {
        self.rt
            .run(&["run", "--bundle", &self.bundle_str(), &self.id])
    }

    pub fn bundle_str(&self) -> String {
        self.bundle.path().to_string_lossy().into_owned()
    }

    pub fn state(&self) -> Value {
        self.rt.state(&self.id)
    }

    pub fn status(&self) -> String {
        self.rt.status(&self.id)
    }

    /// The init pid from `state`; fails the test if it is not a positive number.
    pub fn pid(&self) -> i32 {
        let state = self.state();
        let pid = state["pid"].as_i64().unwrap_or(0);
        assert!(pid > 0, "state has no positive pid: {state}");
        pid as i32
    }

    pub fn kill(&self, signal: &str) -> Output {
        self.rt.kill(&self.id, signal)
    }

    pub fn delete(&self) -> Output {
        self.rt.delete(&self.id)
    }

    pub fn delete_force(&self) -> Output {
        self.rt.delete_force(&self.id)
    }

    /// `exec <id> <cmd...>` in the foreground.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        self.rt.exec(&self.id, cmd)
    }

    /// `exec <flags...> <id> <cmd...>`.
    pub fn exec_with(&self, flags: &[&str], cmd: &[&str]) -> Output {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        args.push(&self.id);
        args.extend_from_slice(cmd);
        self.rt.run(&args)
    }

    pub fn wait_status(&self, want: &str) {
        self.rt.wait_status(&self.id, want)
    }

    /// `create` + `start`, both must succeed and the status must then be "running".
    #[track_caller]
    pub fn start_ok(&self) {
        self.create().success();
        self.start().success();
        assert_eq!(self.status(), "running", "status after start");
    }

    /// `create` + `start` of a short-lived program, then waits for the status "stopped".
    #[track_caller]
    pub fn run_to_exit(&self) {
        self.create().success();
        self.start().success();
        self.wait_status("stopped");
    }

    /// Asserts the runtime left nothing behind for this container: no state directory under
    /// --root, no cgroup directory in the checked controllers, no mount mentioning the bundle.
    #[track_caller]
    pub fn assert_nothing_left(&self) {
        let state_dir = self.rt.root().join(&self.id);
        assert!(
            !state_dir.exists(),
            "state directory {} left behind",
            state_dir.display()
        );
        let cgroups_path = self.cgroups_path();
        if !cgroups_path.is_empty() {
            for controller in CHECKED_CONTROLLERS {
                let dir = host::cgroup_dir(controller, &cgroups_path);
                assert!(
                    !dir.exists(),
                    "cgroup directory {} left behind",
                    dir.display()
                );
            }
        }
        let mounts = host::mountinfo_mentions(&self.bundle.path().to_string_lossy());
        assert!(
            mounts.is_empty(),
            "mounts left behind:\n{}",
            mounts.join("\n")
        );
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        match self.rt.call(&["delete", "--force", &self.id]).try_run() {
            // A checkpointed (or never created) container is already gone: nothing to say.
            Ok(out) if out.code != Some(0) && !out.stderr.contains("does not exist") => {
                eprintln!("cleanup: delete --force {} failed\n{out}", self.id)
            }
            Ok(_) => {}
            Err(e) => eprintln!("cleanup: delete --force {}: {e}", self.id),
        }
    }
}
