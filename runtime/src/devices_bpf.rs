//! Device access rules on cgroup v2, which has no devices.allow/deny files: the rules of
//! linux.resources.devices become a small eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE)
//! attached to the container's cgroup. Rules are checked last to first, the first match
//! decides, as v1 applies them in order.

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Insn {
    code: u8,
    regs: u8, // dst (low 4 bits), src (high 4 bits)
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

const LDX_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const AND32_K: u8 = 0x54;
const RSH32_K: u8 = 0x74;
const MOV32_X: u8 = 0xbc;
const MOV32_K: u8 = 0xb4;
const JNE_K: u8 = 0x55;
const JNE_X: u8 = 0x5d;
const EXIT: u8 = 0x95;

fn access_bits(s: &str) -> i32 {
    s.chars().fold(0, |acc, c| {
        acc | match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        }
    })
}

/// The program for `rules`; unmatched accesses are denied.
pub fn program(rules: &[LinuxDeviceCgroup]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),        // r2 = access_type
        insn(AND32_K, 2, 0, 0, 0xffff), // r2 = device type
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH32_K, 3, 0, 0, 16), // r3 = requested access
        insn(LDX_W, 4, 1, 4, 0),    // r4 = major
        insn(LDX_W, 5, 1, 8, 0),    // r5 = minor
    ];
    for r in rules.iter().rev() {
        let mut block = Vec::new();
        match r.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::C | LinuxDeviceType::U => block.push(insn(JNE_K, 2, 0, 0, DEV_CHAR)),
            LinuxDeviceType::B => block.push(insn(JNE_K, 2, 0, 0, DEV_BLOCK)),
            LinuxDeviceType::P => continue, // a fifo is not a device access
            LinuxDeviceType::A => {}
        }
        let acc = access_bits(r.access().as_deref().unwrap_or("rwm"));
        if acc != ACC_READ | ACC_WRITE | ACC_MKNOD {
            // Matches when the requested access is within the rule's.
            block.push(insn(MOV32_X, 1, 3, 0, 0));
            block.push(insn(AND32_K, 1, 0, 0, acc));
            block.push(insn(JNE_X, 1, 3, 0, 0));
        }
        if let Some(major) = r.major().filter(|m| *m >= 0) {
            block.push(insn(JNE_K, 4, 0, 0, major as i32));
        }
        if let Some(minor) = r.minor().filter(|m| *m >= 0) {
            block.push(insn(JNE_K, 5, 0, 0, minor as i32));
        }
        block.push(insn(MOV32_K, 0, 0, 0, i32::from(r.allow())));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let n = block.len();
        if n == 2 {
            // Matches everything: nothing after it could run (the verifier refuses that).
            p.extend(block);
            return p;
        }
        // Every jump skips to the end of this block.
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE_K || ins.code == JNE_X {
                ins.off = (n - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(insn(MOV32_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    _pad: [u8; 64],
}

#[repr(C)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    _pad: [u8; 108],
}

/// Loads the program for `rules` and attaches it to the cgroup v2 directory `dir`,
/// replacing the one attached before (if any).
pub fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let insns = program(rules);
    let mut log = vec![0u8; 4096];
    let mut name = [0u8; 16];
    name[..7].copy_from_slice(b"devices");
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: c"Apache-2.0".as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: BPF_CGROUP_DEVICE,
        _pad: [0; 64],
    };
    // SAFETY: bpf(2) with a properly laid out attribute that outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>(),
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        let verifier = String::from_utf8_lossy(&log)
            .trim_end_matches('\0')
            .trim()
            .to_string();
        bail!(
            "cannot load the device filter for {}: {e} {verifier}",
            dir.display()
        );
    }
    // SAFETY: a new fd from the kernel.
    let prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cg = std::fs::File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    let attach = ProgAttach {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0, // one program per cgroup: attaching again replaces it
        replace_bpf_fd: 0,
        _pad: [0; 108],
    };
    // SAFETY: as above.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attach as *const ProgAttach,
            std::mem::size_of::<ProgAttach>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot attach the device filter to {}", dir.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.into()));
        r
    }

    #[test]
    fn program_shape() {
        let p = program(&[
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rw"),
        ]);
        // prologue (6) + allow block (type, 3 access, major, minor, mov, exit = 8) + deny-all (2)
        assert_eq!(p.len(), 16);
        assert_eq!(p[6], insn(JNE_K, 2, 0, 7, DEV_CHAR));
        assert_eq!(p[12], insn(MOV32_K, 0, 0, 0, 1));
        assert_eq!(p[14], insn(MOV32_K, 0, 0, 0, 0));
        assert_eq!(program(&[]).len(), 8, "no rules: deny by default");
    }

    /// Loads a real program on this host's cgroup2 mount and checks the kernel enforces it.
    #[test]
    fn kernel_enforces_the_filter() {
        let base = if crate::cgroups::is_unified() {
            Path::new("/sys/fs/cgroup")
        } else {
            Path::new("/sys/fs/cgroup/unified")
        };
        if !base.join("cgroup.procs").exists() || !nix::unistd::geteuid().is_root() {
            panic!(
                "this test needs root and a cgroup2 mount at {}",
                base.display()
            );
        }
        let dir = base.join(format!("runtime-bpf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Deny everything but /dev/zero reads.
        apply(
            &dir,
            &[
                rule(false, LinuxDeviceType::A, None, None, "rwm"),
                rule(true, LinuxDeviceType::C, Some(1), Some(5), "r"),
            ],
        )
        .unwrap();
        let child = unsafe { libc::fork() };
        if child == 0 {
            let ok = std::fs::write(dir.join("cgroup.procs"), "0").is_ok()
                && std::fs::File::open("/dev/zero").is_ok()
                && std::fs::File::open("/dev/null").is_err()
                && std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/zero")
                    .is_err();
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        unsafe { libc::waitpid(child, &mut status, 0) };
        std::fs::remove_dir(&dir).unwrap();
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "filter not enforced as written"
        );
    }
}
