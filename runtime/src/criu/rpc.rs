//! Hand-written prost messages for CRIU's `images/rpc.proto` (proto2), the subset a runc-like runtime uses.
//!
//! Field numbers and wire types follow rpc.proto of CRIU 4.2.1 exactly. proto2 semantics:
//! `required` fields are plain values that are always encoded (even when zero or false), `optional`
//! fields are `Option<T>` so that "unset" is not sent, and enum fields hold the raw `i32` (use the
//! generated getters/setters, e.g. [`CriuOpts::set_manage_cgroups_mode`]): enum value 0
//! (`CriuCgMode::Ignore`, `CriuReqType::Empty`) is a real value that is sent when set.
//! Messages unused by runc (veth pairs, unix_sk_ino, TLS, ...) are left out; prost skips unknown
//! fields when decoding.

/// `criu_req_type`: what a request asks for (and what a response answers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CriuReqType {
    Empty = 0,
    Dump = 1,
    Restore = 2,
    Check = 3,
    PreDump = 4,
    PageServer = 5,
    Notify = 6,
    CpuinfoDump = 7,
    CpuinfoCheck = 8,
    FeatureCheck = 9,
    Version = 10,
    WaitPid = 11,
    PageServerChld = 12,
    SinglePreDump = 13,
}

/// `criu_cg_mode`: how CRIU treats cgroups. `Ignore` (0) is a real choice, not "unset".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CriuCgMode {
    Ignore = 0,
    CgNone = 1,
    Props = 2,
    Soft = 3,
    Full = 4,
    Strict = 5,
    Default = 6,
}

/// `criu_network_lock_method`: how CRIU locks the network during dump and restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CriuNetworkLockMethod {
    Iptables = 1,
    Nftables = 2,
    Skip = 3,
}

/// `criu_pre_dump_mode`: how pre-dump reads memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CriuPreDumpMode {
    Splice = 1,
    VmRead = 2,
}

/// `criu_page_server_info`: where the page server listens (request) or runs (response).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuPageServerInfo {
    #[prost(string, optional, tag = "1")]
    pub address: Option<String>,
    #[prost(int32, optional, tag = "2")]
    pub port: Option<i32>,
    #[prost(int32, optional, tag = "3")]
    pub pid: Option<i32>,
    #[prost(int32, optional, tag = "4")]
    pub fd: Option<i32>,
}

/// `ext_mount_map`: an external mount, key = mountpoint in the images, val = what to use on restore.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExtMountMap {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, required, tag = "2")]
    pub val: String,
}

/// `join_namespace`: join an existing namespace on restore (`ns` = "net", "ipc", ...).
#[derive(Clone, PartialEq, prost::Message)]
pub struct JoinNamespace {
    #[prost(string, required, tag = "1")]
    pub ns: String,
    #[prost(string, required, tag = "2")]
    pub ns_file: String,
    #[prost(string, optional, tag = "3")]
    pub extra_opt: Option<String>,
}

/// `inherit_fd`: an fd of CRIU (by number) that replaces the file named `key` on restore.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InheritFd {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(int32, required, tag = "2")]
    pub fd: i32,
}

/// `cgroup_root`: restore the cgroups of controller `ctrl` (all when unset) under `path`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CgroupRoot {
    #[prost(string, optional, tag = "1")]
    pub ctrl: Option<String>,
    #[prost(string, required, tag = "2")]
    pub path: String,
}

/// `criu_opts`: options of a dump, pre-dump or restore request.
///
/// `Default` gives `images_dir_fd = -1` (rpc.proto's default, meaning "use `images_dir`"). Note:
/// CRIU opens `images_dir_fd` and `work_dir_fd` as `/proc/<client pid>/fd/<n>`, i.e. they are fd
/// numbers of the process that sent the request, not of CRIU.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuOpts {
    #[prost(int32, required, tag = "1", default = "-1")]
    pub images_dir_fd: i32,
    #[prost(string, optional, tag = "68")]
    pub images_dir: Option<String>,
    #[prost(int32, optional, tag = "2")]
    pub pid: Option<i32>,
    #[prost(bool, optional, tag = "3")]
    pub leave_running: Option<bool>,
    #[prost(bool, optional, tag = "4")]
    pub ext_unix_sk: Option<bool>,
    #[prost(bool, optional, tag = "5")]
    pub tcp_established: Option<bool>,
    #[prost(bool, optional, tag = "6")]
    pub evasive_devices: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub shell_job: Option<bool>,
    #[prost(bool, optional, tag = "8")]
    pub file_locks: Option<bool>,
    #[prost(int32, optional, tag = "9", default = "2")]
    pub log_level: Option<i32>,
    #[prost(string, optional, tag = "10")]
    pub log_file: Option<String>,
    #[prost(message, optional, tag = "11")]
    pub ps: Option<CriuPageServerInfo>,
    #[prost(bool, optional, tag = "12")]
    pub notify_scripts: Option<bool>,
    #[prost(string, optional, tag = "13")]
    pub root: Option<String>,
    #[prost(string, optional, tag = "14")]
    pub parent_img: Option<String>,
    #[prost(bool, optional, tag = "15")]
    pub track_mem: Option<bool>,
    #[prost(bool, optional, tag = "16")]
    pub auto_dedup: Option<bool>,
    #[prost(int32, optional, tag = "17")]
    pub work_dir_fd: Option<i32>,
    #[prost(bool, optional, tag = "18")]
    pub link_remap: Option<bool>,
    #[prost(message, repeated, tag = "23")]
    pub ext_mnt: Vec<ExtMountMap>,
    #[prost(bool, optional, tag = "24")]
    pub manage_cgroups: Option<bool>,
    #[prost(message, repeated, tag = "25")]
    pub cg_root: Vec<CgroupRoot>,
    #[prost(bool, optional, tag = "26")]
    pub rst_sibling: Option<bool>,
    #[prost(message, repeated, tag = "27")]
    pub inherit_fd: Vec<InheritFd>,
    #[prost(bool, optional, tag = "28")]
    pub auto_ext_mnt: Option<bool>,
    #[prost(bool, optional, tag = "29")]
    pub ext_sharing: Option<bool>,
    #[prost(bool, optional, tag = "30")]
    pub ext_masters: Option<bool>,
    #[prost(string, repeated, tag = "31")]
    pub skip_mnt: Vec<String>,
    #[prost(string, repeated, tag = "32")]
    pub enable_fs: Vec<String>,
    #[prost(enumeration = "CriuCgMode", optional, tag = "34")]
    pub manage_cgroups_mode: Option<i32>,
    #[prost(string, repeated, tag = "37")]
    pub external: Vec<String>,
    /// Bit mask of `CLONE_NEW*` flags of namespaces to restore empty (runc: always CLONE_NEWNET).
    #[prost(uint32, optional, tag = "38")]
    pub empty_ns: Option<u32>,
    #[prost(message, repeated, tag = "39")]
    pub join_ns: Vec<JoinNamespace>,
    #[prost(string, optional, tag = "41")]
    pub cgroup_props: Option<String>,
    #[prost(string, repeated, tag = "43")]
    pub cgroup_dump_controller: Vec<String>,
    #[prost(string, optional, tag = "44")]
    pub freeze_cgroup: Option<String>,
    #[prost(uint32, optional, tag = "45")]
    pub timeout: Option<u32>,
    #[prost(bool, optional, tag = "46")]
    pub tcp_skip_in_flight: Option<bool>,
    #[prost(bool, optional, tag = "47")]
    pub weak_sysctls: Option<bool>,
    #[prost(bool, optional, tag = "48")]
    pub lazy_pages: Option<bool>,
    #[prost(int32, optional, tag = "49")]
    pub status_fd: Option<i32>,
    /// Restore: CRIU creates the pty master and sends it in an "orphan-pts-master" NOTIFY.
    /// Works only with `notify_scripts = Some(true)` (else restore fails with "Don't have tty
    /// to inherit session from"). Dump: allows a pty slave whose master is outside the tree.
    #[prost(bool, optional, tag = "50")]
    pub orphan_pts_master: Option<bool>,
    /// A CRIU config file whose options override those of this request (runc: /etc/criu/runc.conf).
    #[prost(string, optional, tag = "51")]
    pub config_file: Option<String>,
    #[prost(bool, optional, tag = "52")]
    pub tcp_close: Option<bool>,
    #[prost(string, optional, tag = "53")]
    pub lsm_profile: Option<String>,
    #[prost(string, optional, tag = "60")]
    pub cgroup_yard: Option<String>,
    #[prost(
        enumeration = "CriuPreDumpMode",
        optional,
        tag = "61",
        default = "Splice"
    )]
    pub pre_dump_mode: Option<i32>,
    #[prost(string, optional, tag = "63")]
    pub lsm_mount_context: Option<String>,
    #[prost(
        enumeration = "CriuNetworkLockMethod",
        optional,
        tag = "64",
        default = "Iptables"
    )]
    pub network_lock: Option<i32>,
    #[prost(bool, optional, tag = "65")]
    pub mntns_compat_mode: Option<bool>,
    #[prost(bool, optional, tag = "66")]
    pub skip_file_rwx_check: Option<bool>,
    #[prost(bool, optional, tag = "67")]
    pub unprivileged: Option<bool>,
    #[prost(bool, optional, tag = "69")]
    pub leave_stopped: Option<bool>,
    #[prost(bool, optional, tag = "70")]
    pub display_stats: Option<bool>,
    #[prost(bool, optional, tag = "71")]
    pub log_to_stderr: Option<bool>,
}

/// `criu_dump_resp`: `restored` is set when the dumped tree was restored in the same call.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuDumpResp {
    #[prost(bool, optional, tag = "1")]
    pub restored: Option<bool>,
}

/// `criu_restore_resp`: pid of the restored root task (as seen from CRIU's pid namespace).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuRestoreResp {
    #[prost(int32, required, tag = "1")]
    pub pid: i32,
}

/// `criu_notify`: name of the action script being "run" and the pid it concerns.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuNotify {
    #[prost(string, optional, tag = "1")]
    pub script: Option<String>,
    #[prost(int32, optional, tag = "2")]
    pub pid: Option<i32>,
}

/// `criu_features`: features to query (request) or found (response).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuFeatures {
    #[prost(bool, optional, tag = "1")]
    pub mem_track: Option<bool>,
    #[prost(bool, optional, tag = "2")]
    pub lazy_pages: Option<bool>,
    #[prost(bool, optional, tag = "3")]
    pub pidfd_store: Option<bool>,
}

/// `criu_req`: one request to `criu swrk`; `type` is required and always encoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuReq {
    #[prost(enumeration = "CriuReqType", required, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub opts: Option<CriuOpts>,
    #[prost(bool, optional, tag = "3")]
    pub notify_success: Option<bool>,
    #[prost(bool, optional, tag = "4")]
    pub keep_open: Option<bool>,
    #[prost(message, optional, tag = "5")]
    pub features: Option<CriuFeatures>,
    #[prost(uint32, optional, tag = "6")]
    pub pid: Option<u32>,
}

/// `criu_resp`: CRIU's answer; `type` and `success` are required.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuResp {
    #[prost(enumeration = "CriuReqType", required, tag = "1")]
    pub r#type: i32,
    #[prost(bool, required, tag = "2")]
    pub success: bool,
    #[prost(message, optional, tag = "3")]
    pub dump: Option<CriuDumpResp>,
    #[prost(message, optional, tag = "4")]
    pub restore: Option<CriuRestoreResp>,
    #[prost(message, optional, tag = "5")]
    pub notify: Option<CriuNotify>,
    #[prost(message, optional, tag = "6")]
    pub ps: Option<CriuPageServerInfo>,
    #[prost(int32, optional, tag = "7")]
    pub cr_errno: Option<i32>,
    #[prost(message, optional, tag = "8")]
    pub features: Option<CriuFeatures>,
    #[prost(string, optional, tag = "9")]
    pub cr_errmsg: Option<String>,
    #[prost(message, optional, tag = "10")]
    pub version: Option<CriuVersion>,
    #[prost(int32, optional, tag = "11")]
    pub status: Option<i32>,
}

/// `criu_version`: answer to a VERSION request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuVersion {
    #[prost(int32, required, tag = "1")]
    pub major_number: i32,
    #[prost(int32, required, tag = "2")]
    pub minor_number: i32,
    #[prost(string, optional, tag = "3")]
    pub gitid: Option<String>,
    #[prost(int32, optional, tag = "4")]
    pub sublevel: Option<i32>,
    #[prost(int32, optional, tag = "5")]
    pub extra: Option<i32>,
    #[prost(string, optional, tag = "6")]
    pub name: Option<String>,
}

impl CriuReq {
    /// A request of the given type with no options.
    pub fn new(kind: CriuReqType) -> Self {
        CriuReq {
            r#type: kind as i32,
            ..Default::default()
        }
    }

    /// A request of the given type with options.
    pub fn with_opts(kind: CriuReqType, opts: CriuOpts) -> Self {
        CriuReq {
            opts: Some(opts),
            ..CriuReq::new(kind)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn required_fields_are_encoded_even_when_zero() {
        // type = EMPTY (0) still goes on the wire: tag 1, varint, 0.
        assert_eq!(
            CriuReq::new(CriuReqType::Empty).encode_to_vec(),
            [0x08, 0x00]
        );
        // images_dir_fd = 0 is sent (tag 1 varint 0), optional fields are not.
        let opts = CriuOpts {
            images_dir_fd: 0,
            ..Default::default()
        };
        assert_eq!(opts.encode_to_vec(), [0x08, 0x00]);
        // The default is -1 (ten-byte varint), not "unset".
        assert_eq!(CriuOpts::default().images_dir_fd, -1);
        assert_eq!(CriuOpts::default().encode_to_vec().len(), 11);
        let resp = CriuResp {
            r#type: CriuReqType::Dump as i32,
            success: false,
            ..Default::default()
        };
        assert_eq!(resp.encode_to_vec(), [0x08, 0x01, 0x10, 0x00]);
    }

    #[test]
    fn cgroup_mode_ignore_is_sent() {
        let mut opts = CriuOpts::default();
        assert_eq!(opts.manage_cgroups_mode, None);
        opts.set_manage_cgroups_mode(CriuCgMode::Ignore);
        let bytes = opts.encode_to_vec();
        // tag 34, wire type 0 => key 0x110 => varint bytes 0x90 0x02, value 0.
        assert!(bytes.ends_with(&[0x90, 0x02, 0x00]), "{bytes:02x?}");
        let back = CriuOpts::decode(bytes.as_slice()).expect("decode");
        assert_eq!(back.manage_cgroups_mode(), CriuCgMode::Ignore);
        assert_eq!(back.manage_cgroups_mode, Some(0));
    }

    #[test]
    fn defaults_of_unset_optionals_follow_rpc_proto() {
        let opts = CriuOpts::default();
        assert_eq!(opts.log_level(), 2);
        assert_eq!(opts.network_lock(), CriuNetworkLockMethod::Iptables);
        assert_eq!(opts.pre_dump_mode(), CriuPreDumpMode::Splice);
        assert!(
            opts.encode_to_vec().len() == 11,
            "only images_dir_fd is sent"
        );
    }

    #[test]
    fn round_trip_full_request() {
        let mut opts = CriuOpts {
            images_dir_fd: 7,
            pid: Some(1234),
            leave_running: Some(false),
            log_level: Some(4),
            log_file: Some("dump.log".into()),
            root: Some("/rootfs".into()),
            work_dir_fd: Some(8),
            ext_mnt: vec![ExtMountMap {
                key: "/etc/hosts".into(),
                val: "/etc/hosts".into(),
            }],
            cg_root: vec![CgroupRoot {
                ctrl: None,
                path: "/a/b".into(),
            }],
            inherit_fd: vec![InheritFd {
                key: "pipe:[42]".into(),
                fd: 0,
            }],
            external: vec!["net[4026531992]:extRootNetNS".into()],
            empty_ns: Some(libc::CLONE_NEWNET as u32),
            join_ns: vec![JoinNamespace {
                ns: "ipc".into(),
                ns_file: "/proc/1/ns/ipc".into(),
                extra_opt: None,
            }],
            ps: Some(CriuPageServerInfo {
                address: Some("127.0.0.1".into()),
                port: Some(27),
                ..Default::default()
            }),
            ..Default::default()
        };
        opts.set_network_lock(CriuNetworkLockMethod::Skip);
        opts.set_manage_cgroups_mode(CriuCgMode::Soft);
        let req = CriuReq {
            notify_success: Some(true),
            ..CriuReq::with_opts(CriuReqType::Restore, opts)
        };
        let back = CriuReq::decode(req.encode_to_vec().as_slice()).expect("decode");
        assert_eq!(back, req);
        assert_eq!(back.r#type(), CriuReqType::Restore);
    }

    #[test]
    fn response_round_trip_and_unknown_fields_skipped() {
        let resp = CriuResp {
            r#type: CriuReqType::Version as i32,
            success: true,
            version: Some(CriuVersion {
                major_number: 4,
                minor_number: 2,
                sublevel: Some(1),
                ..Default::default()
            }),
            cr_errmsg: Some("x".into()),
            ..Default::default()
        };
        let mut bytes = resp.encode_to_vec();
        // An unknown field (tag 99, varint 5) must be ignored.
        bytes.extend_from_slice(&[0x98, 0x06, 0x05]);
        assert_eq!(CriuResp::decode(bytes.as_slice()).expect("decode"), resp);
    }
}
