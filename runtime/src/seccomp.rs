//! linux.seccomp to a loaded libseccomp filter: default action, architectures, flags,
//! per-syscall actions with errnoRet and argument conditions. Unknown syscall names are
//! skipped (as runc does): profiles list syscalls newer than some kernels.

use anyhow::{anyhow, bail, Result};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction> {
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => {
            ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32)
        }
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16)
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            bail!("seccomp action SCMP_ACT_NOTIFY is not supported (no listener support)")
        }
    })
}

fn op(o: LinuxSeccompOperator, value_two: u64) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value_two),
    }
}

fn arch_name(a: &oci_spec::runtime::Arch) -> String {
    // serde gives the spec's spelling, e.g. "SCMP_ARCH_X86_64".
    serde_json::to_value(a)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Builds the filter (without loading it).
pub fn build(s: &LinuxSeccomp) -> Result<ScmpFilterContext> {
    let default = action(s.default_action(), s.default_errno_ret())?;
    let mut f = ScmpFilterContext::new(default).map_err(|e| anyhow!("seccomp: {e}"))?;
    // The runtime sets no_new_privs itself when the config asks for it.
    f.set_ctl_nnp(false).map_err(|e| anyhow!("seccomp: {e}"))?;
    for a in s.architectures().iter().flatten() {
        let name = arch_name(a);
        let arch: ScmpArch = name
            .parse()
            .map_err(|e| anyhow!("seccomp architecture {name}: {e}"))?;
        f.add_arch(arch)
            .map_err(|e| anyhow!("seccomp architecture {name}: {e}"))?;
    }
    for flag in s.flags().iter().flatten() {
        let name = serde_json::to_value(flag)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        match name.as_str() {
            "SECCOMP_FILTER_FLAG_LOG" => {
                f.set_ctl_log(true).map_err(|e| anyhow!("seccomp: {e}"))?;
            }
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => {
                f.set_ctl_ssb(true).map_err(|e| anyhow!("seccomp: {e}"))?;
            }
            _ => bail!("seccomp flag {name} is not supported"),
        }
    }
    for rule in s.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue; // libseccomp refuses rules equal to the default action
        }
        let conds: Vec<ScmpArgCompare> = rule
            .args()
            .iter()
            .flatten()
            .map(|a| {
                ScmpArgCompare::new(
                    a.index() as u32,
                    op(a.op(), a.value_two().unwrap_or(0)),
                    a.value(),
                )
            })
            .collect();
        for name in rule.names() {
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                crate::debug!("seccomp: unknown syscall {name}, skipped");
                continue;
            };
            f.add_rule_conditional(act, sc, &conds)
                .map_err(|e| anyhow!("seccomp rule for {name}: {e}"))?;
        }
    }
    Ok(f)
}

pub fn load(f: &ScmpFilterContext) -> Result<()> {
    f.load()
        .map_err(|e| anyhow!("cannot load seccomp filter: {e}"))
}
