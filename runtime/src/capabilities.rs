//! process.capabilities: the five sets, applied the way runc does (bounding before the
//! user switch, the rest after it). Names the kernel or the caps crate do not know are
//! skipped with a warning, as runc does.

use anyhow::{anyhow, Result};
use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::LinuxCapabilities;
use std::str::FromStr;

fn set_of(names: Option<&oci_spec::runtime::Capabilities>) -> CapsHashSet {
    let mut out = CapsHashSet::new();
    for c in names.into_iter().flatten() {
        let name = c.to_string();
        let name = if name.starts_with("CAP_") {
            name
        } else {
            format!("CAP_{name}")
        };
        match Capability::from_str(&name) {
            Ok(cap) => {
                out.insert(cap);
            }
            Err(_) => crate::warn!("unknown capability {name}, ignored"),
        }
    }
    out
}

/// Drops every capability not in the bounding set.
pub fn apply_bounding(c: Option<&LinuxCapabilities>) -> Result<()> {
    let keep = set_of(c.and_then(|c| c.bounding().as_ref()));
    let supported = caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all());
    for cap in supported {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| anyhow!("cannot drop {cap} from the bounding set: {e}"))?;
        }
    }
    Ok(())
}

/// Sets effective, permitted, inheritable and ambient sets (after the user switch).
pub fn apply_rest(c: Option<&LinuxCapabilities>) -> Result<()> {
    let get = |f: fn(&LinuxCapabilities) -> &Option<oci_spec::runtime::Capabilities>| {
        set_of(c.and_then(|c| f(c).as_ref()))
    };
    let (eff, perm, inh, amb) = (
        get(LinuxCapabilities::effective),
        get(LinuxCapabilities::permitted),
        get(LinuxCapabilities::inheritable),
        get(LinuxCapabilities::ambient),
    );
    fn err(s: &'static str) -> impl Fn(caps::errors::CapsError) -> anyhow::Error {
        move |e| anyhow!("cannot set {s} capabilities: {e}")
    }
    // Inheritable while we still hold everything; effective must shrink before permitted.
    caps::set(None, CapSet::Inheritable, &inh).map_err(err("inheritable"))?;
    caps::set(None, CapSet::Effective, &eff).map_err(err("effective"))?;
    caps::set(None, CapSet::Permitted, &perm).map_err(err("permitted"))?;
    caps::clear(None, CapSet::Ambient).map_err(err("ambient"))?;
    for cap in amb {
        // Ambient needs the capability in permitted and inheritable; skip quietly otherwise,
        // like runc.
        let _ = caps::raise(None, CapSet::Ambient, cap);
    }
    Ok(())
}
