//! `runtime spec`: write a default config.json (runc's defaults) into the bundle.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::PathBuf;

const DEFAULT: &str = include_str!("../../assets/default-config.json");

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Bundle directory to write config.json into (default: the current directory)
    #[arg(short, long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// A config for running as a non-root user: user namespace mapping your uid/gid to 0,
    /// /sys bound from the host, no network namespace, no cgroup device rules
    #[arg(long)]
    pub rootless: bool,
}

/// The default config, or its rootless variant.
pub fn default_config(rootless: bool) -> Result<Value> {
    let mut v: Value = serde_json::from_str(DEFAULT)?;
    if rootless {
        let (uid, gid) = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let linux = &mut v["linux"];
        linux["uidMappings"] = json!([{ "containerID": 0, "hostID": uid, "size": 1 }]);
        linux["gidMappings"] = json!([{ "containerID": 0, "hostID": gid, "size": 1 }]);
        if let Some(obj) = linux.as_object_mut() {
            obj.remove("resources");
        }
        if let Some(nss) = linux["namespaces"].as_array_mut() {
            nss.retain(|n| n["type"] != "network");
            nss.push(json!({ "type": "user" }));
        }
        for m in v["mounts"].as_array_mut().into_iter().flatten() {
            if m["destination"] == "/sys" {
                *m = json!({ "destination": "/sys", "type": "none", "source": "/sys",
                    "options": ["rbind", "nosuid", "noexec", "nodev", "ro"] });
            }
            if m["destination"] == "/dev/pts" {
                if let Some(o) = m["options"].as_array_mut() {
                    o.retain(|x| x != "gid=5");
                }
            }
        }
    }
    Ok(v)
}

pub fn run(a: Args) -> Result<i32> {
    let dir = a.bundle.unwrap_or_else(|| PathBuf::from("."));
    let path = dir.join("config.json");
    if path.exists() {
        bail!("File {} exists. Remove it first", path.display());
    }
    let text = serde_json::to_string_pretty(&default_config(a.rootless)?)?;
    std::fs::write(&path, text + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_as_oci() {
        for rootless in [false, true] {
            let v = default_config(rootless).unwrap();
            let spec: oci_spec::runtime::Spec = serde_json::from_value(v).unwrap();
            assert_eq!(
                spec.process().as_ref().unwrap().args().as_ref().unwrap()[0],
                "sh"
            );
        }
    }
}
