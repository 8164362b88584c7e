//! Our hand-written messages against protoc's encoding of CRIU 4.2.1's rpc.proto (tests/fixtures).

use std::io::Write;
use std::process::{Command, Stdio};

use prost::Message;
use runtime::criu::rpc::{
    CgroupRoot, CriuCgMode, CriuNetworkLockMethod, CriuOpts, CriuReq, CriuReqType, CriuResp,
    ExtMountMap, InheritFd, JoinNamespace,
};

/// `protoc --encode=<msg>` of a text-format message (protobuf-compiler must be installed).
fn protoc_encode(message: &str, text: &str) -> Vec<u8> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut child = Command::new("protoc")
        .arg(format!("--encode={message}"))
        .arg("-I")
        .arg(dir)
        .arg("rpc.proto")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("protoc not found: apt-get install protobuf-compiler");
    child
        .stdin
        .take()
        .expect("protoc stdin")
        .write_all(text.as_bytes())
        .expect("write to protoc");
    let out = child.wait_with_output().expect("protoc output");
    assert!(out.status.success(), "protoc failed for {text}");
    out.stdout
}

#[test]
fn dump_request_with_images_dir_fd_0_matches_protoc() {
    let req = CriuReq::with_opts(
        CriuReqType::Dump,
        CriuOpts {
            images_dir_fd: 0,
            ..Default::default()
        },
    );
    let want = protoc_encode("criu_req", "type: DUMP opts { images_dir_fd: 0 }");
    assert_eq!(req.encode_to_vec(), want);
    assert_eq!(want, [0x08, 0x01, 0x12, 0x02, 0x08, 0x00]);
}

#[test]
fn runc_like_requests_match_protoc_byte_for_byte() {
    let mut opts = CriuOpts {
        images_dir_fd: 5,
        images_dir: Some("/img".into()),
        pid: Some(4242),
        leave_running: Some(false),
        ext_unix_sk: Some(true),
        tcp_established: Some(true),
        shell_job: Some(false),
        file_locks: Some(true),
        log_level: Some(4),
        log_file: Some("dump.log".into()),
        notify_scripts: Some(true),
        root: Some("/run/rt/criu-root".into()),
        parent_img: Some("../parent".into()),
        work_dir_fd: Some(6),
        ext_mnt: vec![ExtMountMap {
            key: "/etc/hosts".into(),
            val: "/var/lib/hosts".into(),
        }],
        manage_cgroups: Some(true),
        cg_root: vec![CgroupRoot {
            ctrl: Some("pids".into()),
            path: "/ctr".into(),
        }],
        rst_sibling: Some(true),
        inherit_fd: vec![InheritFd {
            key: "pipe:[123]".into(),
            fd: 0,
        }],
        external: vec!["net[4026531840]:extRootNetNS".into()],
        empty_ns: Some(0x4000_0000),
        join_ns: vec![JoinNamespace {
            ns: "ipc".into(),
            ns_file: "/proc/1/ns/ipc".into(),
            extra_opt: None,
        }],
        freeze_cgroup: Some("/sys/fs/cgroup/freezer/ctr".into()),
        tcp_skip_in_flight: Some(true),
        lazy_pages: Some(false),
        status_fd: Some(9),
        orphan_pts_master: Some(true),
        config_file: Some("/etc/criu/runc.conf".into()),
        lsm_profile: Some("apparmor:foo".into()),
        lsm_mount_context: Some("system_u:object_r:container_file_t:s0".into()),
        mntns_compat_mode: Some(false),
        ..Default::default()
    };
    opts.set_manage_cgroups_mode(CriuCgMode::Ignore);
    opts.set_network_lock(CriuNetworkLockMethod::Nftables);
    let req = CriuReq {
        notify_success: Some(true),
        ..CriuReq::with_opts(CriuReqType::Restore, opts)
    };
    let text = r#"type: RESTORE notify_success: true opts {
        images_dir_fd: 5 images_dir: "/img" pid: 4242 leave_running: false ext_unix_sk: true
        tcp_established: true shell_job: false file_locks: true log_level: 4 log_file: "dump.log"
        notify_scripts: true root: "/run/rt/criu-root" parent_img: "../parent" work_dir_fd: 6
        ext_mnt { key: "/etc/hosts" val: "/var/lib/hosts" } manage_cgroups: true
        cg_root { ctrl: "pids" path: "/ctr" } rst_sibling: true inherit_fd { key: "pipe:[123]" fd: 0 }
        external: "net[4026531840]:extRootNetNS" empty_ns: 1073741824
        join_ns { ns: "ipc" ns_file: "/proc/1/ns/ipc" } freeze_cgroup: "/sys/fs/cgroup/freezer/ctr"
        tcp_skip_in_flight: true lazy_pages: false status_fd: 9 orphan_pts_master: true
        config_file: "/etc/criu/runc.conf" lsm_profile: "apparmor:foo"
        lsm_mount_context: "system_u:object_r:container_file_t:s0" mntns_compat_mode: false
        manage_cgroups_mode: IGNORE network_lock: NFTABLES }"#;
    let want = protoc_encode("criu_req", text);
    assert_eq!(req.encode_to_vec(), want);
    assert_eq!(CriuReq::decode(want.as_slice()).expect("decode"), req);
}

#[test]
fn responses_encoded_by_protoc_decode() {
    let text = r#"type: RESTORE success: false cr_errno: 17 cr_errmsg: "Can't fork"
        restore { pid: 77 } status: 3"#;
    let resp = CriuResp::decode(protoc_encode("criu_resp", text).as_slice()).expect("decode");
    assert_eq!(resp.r#type(), CriuReqType::Restore);
    assert!(!resp.success);
    assert_eq!(resp.cr_errno, Some(17));
    assert_eq!(resp.cr_errmsg.as_deref(), Some("Can't fork"));
    assert_eq!(resp.restore.as_ref().map(|r| r.pid), Some(77));
    assert_eq!(resp.encode_to_vec(), protoc_encode("criu_resp", text));

    let text = r#"type: NOTIFY success: true notify { script: "post-restore" pid: 12 }"#;
    let resp = CriuResp::decode(protoc_encode("criu_resp", text).as_slice()).expect("decode");
    let n = resp.notify.expect("notify");
    assert_eq!(
        (n.script.as_deref(), n.pid),
        (Some("post-restore"), Some(12))
    );

    let text =
        r#"type: VERSION success: true version { major_number: 4 minor_number: 2 sublevel: 1 }"#;
    let resp = CriuResp::decode(protoc_encode("criu_resp", text).as_slice()).expect("decode");
    let v = resp.version.expect("version");
    assert_eq!(
        (v.major_number, v.minor_number, v.sublevel),
        (4, 2, Some(1))
    );
}
