//! `runtime state`: the OCI state of a container, as runc prints it.

use super::Global;
use crate::container::{Container, Status};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container id
    pub id: String,
}

/// runc's `containerState` (field order kept).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

pub fn view(c: &Container) -> View {
    let status = c.status();
    View {
        oci_version: crate::OCI_VERSION.to_string(),
        id: c.state.id.clone(),
        pid: if status == Status::Stopped {
            0
        } else {
            c.state.pid
        },
        status: status.to_string(),
        bundle: c.state.bundle.clone(),
        rootfs: c.state.rootfs.clone(),
        created: c.state.created.clone(),
        owner: c.state.owner.clone(),
        annotations: c.state.annotations.clone(),
    }
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<i32> {
    let c = Container::load(&g.store, &a.id)?;
    print!("{}", serde_json::to_string_pretty(&view(&c))?);
    Ok(0)
}
