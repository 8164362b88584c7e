//! `manifest.json`: what a checkpoint holds besides CRIU's images (the container's
//! config, stdio, tmpfs archives, external mounts and namespaces) and the size of every
//! file, so a truncated or foreign checkpoint is refused before CRIU touches anything.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "manifest.json";
/// runc's name for the init's stdio targets; kept for tools that read it.
pub const DESCRIPTORS: &str = "descriptors.json";
/// Bump when the layout changes meaning; a newer manifest is refused.
pub const MANIFEST_VERSION: u32 = 1;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TmpfsArchive {
    pub destination: PathBuf,
    /// File name of the tar archive in the image directory.
    pub archive: String,
    pub options: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Manifest {
    pub version: u32,
    /// Who wrote it (`runtime version`).
    pub runtime: String,
    pub id: String,
    pub created: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// Digest of the parts of config.json the images depend on (process, mounts,
    /// namespaces, rootfs): a restore with a different config is refused.
    pub config_digest: String,
    /// `"pipe:[123]"`-style targets of the init's fds 0-2 at checkpoint time.
    pub stdio: Vec<String>,
    pub terminal: bool,
    pub tmpfs: Vec<TmpfsArchive>,
    /// External mounts given to CRIU at dump: their keys (destinations) and what backs them
    /// (see criu_plan::Source::kind), so restore can provide each on this host.
    pub external_mounts: Vec<ExternalMount>,
    /// Namespaces CRIU saw as external ("net" / "pid"), keyed as CRIU's `external` keys.
    pub external_namespaces: BTreeMap<String, String>,
    /// CRIU's run id of the dump: its network lock table is named after it.
    #[serde(default)]
    pub criu_run_id: String,
    /// The private network namespace was bare (only lo) and checkpointed empty: restore
    /// makes a fresh one and brings lo up.
    #[serde(default)]
    pub bare_netns: bool,
    /// Pre-dump images (memory only, the container kept running).
    #[serde(default)]
    pub pre_dump: bool,
    /// Every file of the checkpoint (but this one) with its size.
    pub files: BTreeMap<String, u64>,
    /// zstd-compressed tar of the images (`--compress`), if any.
    #[serde(default)]
    pub compressed: Option<String>,
    /// The container's program (process.args[0] found in the rootfs) and its size: a
    /// restore onto a rootfs with another program is refused before CRIU runs.
    #[serde(default)]
    pub program: Option<Program>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ExternalMount {
    pub key: PathBuf,
    pub kind: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Program {
    pub path: PathBuf,
    pub size: u64,
}

/// Finds process.args[0] in `rootfs` as the container would (PATH for a bare name), every
/// lookup resolved inside the rootfs.
pub fn program(spec: &oci_spec::runtime::Spec, rootfs: &Path) -> Option<Program> {
    let p = spec.process().as_ref()?;
    let arg0 = p.args().as_ref()?.first()?.clone();
    let root = crate::safepath::Root::open(rootfs).ok()?;
    let candidates: Vec<PathBuf> = if arg0.contains('/') {
        vec![PathBuf::from(&arg0)]
    } else {
        let path = p
            .env()
            .iter()
            .flatten()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .to_string();
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(&arg0))
            .collect()
    };
    candidates.into_iter().find_map(|c| {
        let fd = root.open_at(&c, libc::O_PATH).ok()?;
        let st = crate::safepath::stat_fd(std::os::fd::AsFd::as_fd(&fd)).ok()?;
        (st.st_mode & libc::S_IFMT == libc::S_IFREG).then_some(Program {
            path: c,
            size: st.st_size as u64,
        })
    })
}

impl Manifest {
    /// Lists every regular file of `dir` (but the manifest) with its size.
    pub fn record_files(&mut self, dir: &Path) -> Result<()> {
        self.files.clear();
        for e in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let md = e.metadata()?;
            if md.is_file() && name != MANIFEST {
                self.files.insert(name, md.len());
            }
        }
        Ok(())
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST);
        let data = serde_json::to_vec_pretty(self)?;
        let mut f =
            fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
        std::io::Write::write_all(&mut f, &data)?;
        f.sync_all()?;
        Ok(())
    }

    /// Reads and checks the manifest of the checkpoint in `dir`.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "{} is not a checkpoint made by this runtime ({} is missing)",
                dir.display(),
                MANIFEST
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&data).with_context(|| format!("corrupt {}", path.display()))?;
        let version = v["version"].as_u64().unwrap_or(0);
        if version > MANIFEST_VERSION as u64 {
            bail!(
                "{} has version {version}, this runtime reads up to version {MANIFEST_VERSION}: restore it with a newer runtime",
                path.display()
            );
        }
        let m: Manifest =
            serde_json::from_value(v).with_context(|| format!("corrupt {}", path.display()))?;
        Ok(m)
    }

    /// Every recorded file must be there with its recorded size.
    pub fn verify_files(&self, dir: &Path) -> Result<()> {
        for (name, size) in &self.files {
            let p = dir.join(name);
            let md = fs::symlink_metadata(&p).with_context(|| {
                format!(
                    "checkpoint {} is incomplete: {} is missing",
                    dir.display(),
                    name
                )
            })?;
            if !md.is_file() {
                bail!(
                    "checkpoint {}: {} is not a regular file",
                    dir.display(),
                    name
                );
            }
            if md.len() != *size {
                bail!(
                    "checkpoint {} is damaged: {} has {} bytes, {} were written",
                    dir.display(),
                    name,
                    md.len(),
                    size
                );
            }
        }
        Ok(())
    }
}

/// A stable digest of what the images depend on in config.json.
pub fn config_digest(spec: &oci_spec::runtime::Spec) -> String {
    let v = serde_json::to_value(spec).unwrap_or_default();
    // A set: engines (podman) write the same mounts in another order each time.
    let mut mounts: Vec<String> = v["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| serde_json::json!([m["destination"], m["type"]]).to_string())
        .collect();
    mounts.sort();
    let nss: Vec<serde_json::Value> = v["linux"]["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| n["type"].clone())
        .collect();
    let key = serde_json::json!({
        "args": v["process"]["args"],
        "cwd": v["process"]["cwd"],
        "terminal": v["process"]["terminal"],
        "mounts": mounts,
        "namespaces": nss,
        "readonly": v["root"]["readonly"],
    });
    // FNV-1a: a fingerprint, not a security boundary.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.to_string().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_versions_are_refused_and_sizes_checked() {
        let dir = std::env::temp_dir().join(format!("manifest-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("pages-1.img"), b"12345").unwrap();
        let mut m = Manifest {
            version: MANIFEST_VERSION,
            ..Default::default()
        };
        m.record_files(&dir).unwrap();
        m.save(&dir).unwrap();
        let back = Manifest::load(&dir).unwrap();
        back.verify_files(&dir).unwrap();
        fs::write(dir.join("pages-1.img"), b"123").unwrap();
        let e = back.verify_files(&dir).unwrap_err().to_string();
        assert!(e.contains("pages-1.img has 3 bytes, 5 were written"), "{e}");
        fs::write(dir.join(MANIFEST), br#"{"version": 99}"#).unwrap();
        let e = Manifest::load(&dir).unwrap_err().to_string();
        assert!(e.contains("version 99"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
