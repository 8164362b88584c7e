//! Turn a CRIU log (dump.log / restore.log) into a one-line cause a user can act on.
//!
//! CRIU lines look like `(00.034009) Error (criu/sk-inet.c:200): inet: Connected TCP socket, ...`
//! (restorer children add `  1234: ` after the timestamp). We read the file's tail, take the
//! `Error (...)` lines, drop the known-harmless ones, and name the first one we recognise with the
//! option that fixes it. Otherwise we quote the first specific error (not the closing
//! "Dumping FAILED."). Note that `criu_resp.cr_errmsg` is CRIU's *first* error line, which can be
//! harmless (see [`HARMLESS`]), so prefer [`explain`] when the log is at hand.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

/// How much of the end of a log is read; errors come last and level-4 logs can be large.
const TAIL: u64 = 512 * 1024;

/// Error lines that do not explain a failure. CRIU logs the rlimit one whenever it runs without
/// CAP_SYS_RESOURCE (e.g. in a VM sandbox) and carries on.
const HARMLESS: &[&str] = &["Can't setup RLIMIT_NOFILE for self"];

/// Closing lines that only repeat that something failed.
const GENERIC: &[&str] = &[
    "Dumping FAILED",
    "Restoring FAILED",
    "Pre-dumping FAILED",
    "Dump files (pid:",
    "Unable to open fd=",
    "killed by signal",
    "exited, status=",
];

/// (all of these substrings, hint). The first error line matching a rule names the cause.
const RULES: &[(&[&str], &str)] = &[
    (
        &["Connected TCP socket"],
        "established TCP connection: pass --tcp-established",
    ),
    (
        &["In-flight connection"],
        "in-flight TCP connection (accepted by the kernel, not yet by the program): \
         pass --tcp-skip-in-flight",
    ),
    (
        &["External socket is used"],
        "external unix socket (its peer is outside the checkpointed processes): pass --ext-unix-sk",
    ),
    (
        &["half of stream unix connection"],
        "external unix stream socket: --ext-unix-sk covers datagram sockets only; \
         declare it with external unix[<inode>] or close it before checkpointing",
    ),
    (
        &["Unix socket", "external"],
        "external unix socket: pass --ext-unix-sk",
    ),
    (
        &["Can't lookup mount="],
        "an open file lives on a mount CRIU cannot see (container stdio pointing to a host file?)",
    ),
    (
        &["file locks are hold"],
        "a process holds file locks: pass --file-locks",
    ),
    (
        &["Can't bind inet socket", "Cannot assign requested address"],
        "the address the socket was bound to is not present on this host",
    ),
    (
        &["Can't fork for", "File exists"],
        "the pid to restore is already in use here: restore into a new pid namespace or free it",
    ),
    (
        &["is busy"],
        "the pid to restore is already in use here: restore into a new pid namespace or free it",
    ),
    (
        &["Tracking memory is not available"],
        "memory tracking (soft-dirty) is not available in this kernel: pre-dump and \
         --track-mem cannot work, do a plain checkpoint",
    ),
    (
        &["soft-dirty"],
        "memory tracking (soft-dirty) is not available in this kernel: pre-dump cannot work",
    ),
    (
        &["not a session leader"],
        "the process is not a session leader (started from a shell?): pass --shell-job",
    ),
    (
        &["Found dangling tty"],
        "the process uses a terminal of a session outside the checkpoint: pass --shell-job",
    ),
    (
        &["without correspond master peer"],
        "the process uses a pty whose master is outside the checkpoint: pass --shell-job, \
         or give the container a terminal through --console-socket",
    ),
    (
        &["Don't have tty to inherit session from"],
        "the checkpoint was made with --shell-job: restore needs a terminal (or --console-socket)",
    ),
    (
        &["Unable to open dev/ptmx with specified index"],
        "the pty number saved in the checkpoint is taken here: restore with its own /dev/pts \
         (a container with a console)",
    ),
    (
        &["Unable to detach from", "No such process"],
        "the process to checkpoint does not exist (it exited?)",
    ),
    (
        &["Can't seize"],
        "CRIU cannot attach to the process (it exited, or is traced by someone else)",
    ),
    (
        &["Iptables configuration failed"],
        "CRIU could not lock the network with iptables (iptables-restore missing or failing?)",
    ),
    (
        &["Unexpected EOF on (empty-image)"],
        "the images directory holds no complete checkpoint",
    ),
];

/// True for error lines CRIU logs without failing (see [`HARMLESS`]).
pub fn is_harmless(message: &str) -> bool {
    HARMLESS.iter().any(|h| message.contains(h))
}

/// The one-line cause found in the log at `path`; `Ok(None)` if it has no error line.
pub fn explain(path: &Path) -> Result<Option<String>> {
    Ok(explain_text(&read_tail(path)?))
}

/// As [`explain`], on log text.
pub fn explain_text(log: &str) -> Option<String> {
    let errors: Vec<&str> = error_messages(log).filter(|m| !is_harmless(m)).collect();
    for msg in &errors {
        for (needles, hint) in RULES {
            if needles.iter().all(|n| msg.contains(n)) {
                return Some(format!("{hint} (criu: {msg})"));
            }
        }
    }
    let specific = errors
        .iter()
        .find(|m| !GENERIC.iter().any(|g| m.contains(g)));
    specific
        .or(errors.last())
        .map(|m| format!("criu error: {m}"))
}

/// The messages of the `Error (...)` lines of `log`, without timestamp, pid and source location,
/// e.g. `inet: Connected TCP socket, consider using --tcp-established option.`
pub fn error_messages(log: &str) -> impl Iterator<Item = &str> {
    log.lines().filter_map(|line| {
        let at = line.find("Error (")?;
        let rest = &line[at..];
        let msg = rest.find("): ").map_or(rest, |end| &rest[end + 3..]);
        Some(msg.trim())
    })
}

/// The timestamp of the log's last line: time since CRIU started, i.e. how long CRIU ran.
pub fn last_timestamp(path: &Path) -> Result<Option<Duration>> {
    Ok(last_timestamp_text(&read_tail(path)?))
}

/// As [`last_timestamp`], on log text.
pub fn last_timestamp_text(log: &str) -> Option<Duration> {
    log.lines().rev().find_map(parse_timestamp)
}

/// `(12.345678) ...` -> 12.345678 s.
fn parse_timestamp(line: &str) -> Option<Duration> {
    let inner = line.strip_prefix('(')?.split_once(')')?.0;
    let (secs, micros) = inner.trim().split_once('.')?;
    if micros.len() != 6 {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let micros: u64 = micros.parse().ok()?;
    Some(Duration::from_secs(secs) + Duration::from_micros(micros))
}

/// The last [`TAIL`] bytes of the file, starting at a line boundary, lossily decoded.
fn read_tail(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("stat {}", path.display()))?
        .len();
    let start = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start))
        .with_context(|| format!("seeking in {}", path.display()))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)
        .with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8_lossy(&buf);
    Ok(match (start > 0, text.find('\n')) {
        (true, Some(nl)) => text[nl + 1..].to_string(),
        _ => text.into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Excerpts of real CRIU 4.2.1 logs, made by making CRIU fail on purpose.
    fn fixture(name: &str) -> &'static str {
        match name {
            "tcp" => include_str!("testdata/tcp.log"),
            "inflight" => include_str!("testdata/inflight.log"),
            "unix" => include_str!("testdata/unix.log"),
            "unix_ext" => include_str!("testdata/unix_ext.log"),
            "mount" => include_str!("testdata/mount.log"),
            "lock" => include_str!("testdata/lock.log"),
            "bind" => include_str!("testdata/bind.log"),
            "busy" => include_str!("testdata/busy.log"),
            "predump" => include_str!("testdata/predump.log"),
            "nosession" => include_str!("testdata/nosession.log"),
            "pty" => include_str!("testdata/pty.log"),
            "pty_restore" => include_str!("testdata/pty_restore.log"),
            "nopid" => include_str!("testdata/nopid.log"),
            "iptables" => include_str!("testdata/iptables.log"),
            "empty" => include_str!("testdata/empty_images.log"),
            _ => "",
        }
    }

    fn cause(name: &str) -> String {
        explain_text(fixture(name)).unwrap_or_else(|| format!("no cause found in {name}"))
    }

    #[test]
    fn known_causes_are_named_with_their_fix() {
        let cases = [
            ("tcp", "pass --tcp-established"),
            ("inflight", "--tcp-skip-in-flight"),
            ("unix", "pass --ext-unix-sk"),
            ("unix_ext", "external unix[<inode>]"),
            ("mount", "a mount CRIU cannot see"),
            ("lock", "pass --file-locks"),
            ("bind", "not present on this host"),
            ("busy", "already in use"),
            ("predump", "soft-dirty"),
            ("nosession", "pass --shell-job"),
            ("pty", "--console-socket"),
            ("pty_restore", "pty number"),
            ("nopid", "does not exist"),
            ("iptables", "iptables"),
            ("empty", "no complete checkpoint"),
        ];
        for (name, want) in cases {
            let got = cause(name);
            assert!(got.contains(want), "{name}: {got}");
            assert!(!got.contains('\n'), "{name}: not one line: {got}");
            assert!(
                !got.contains("RLIMIT_NOFILE"),
                "{name}: harmless error chosen: {got}"
            );
        }
    }

    #[test]
    fn cause_quotes_criu_message() {
        assert_eq!(
            cause("mount"),
            "an open file lives on a mount CRIU cannot see (container stdio pointing to a host \
             file?) (criu: Can't lookup mount=24 for fd=0 path=/dev/null)"
        );
    }

    #[test]
    fn unknown_errors_fall_back_to_the_first_specific_line() {
        let log = "(00.000100) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: EPERM\n\
                   (00.010000) Error (criu/foo.c:1): foo: something odd\n\
                   (00.020000) Error (criu/cr-dump.c:1975): Dumping FAILED.\n";
        assert_eq!(
            explain_text(log).as_deref(),
            Some("criu error: foo: something odd")
        );
        let only_generic = "(00.020000) Error (criu/cr-dump.c:1975): Dumping FAILED.\n";
        assert_eq!(
            explain_text(only_generic).as_deref(),
            Some("criu error: Dumping FAILED.")
        );
        assert_eq!(explain_text("(00.000001) Version: 4.2.1\n"), None);
    }

    #[test]
    fn last_timestamp_is_parsed() {
        assert_eq!(
            last_timestamp_text(fixture("tcp")),
            Some(Duration::from_micros(34_327))
        );
        let log = "(00.000001) a\n(123.000450) b\nno stamp\n";
        assert_eq!(
            last_timestamp_text(log),
            Some(Duration::from_micros(123_000_450))
        );
        assert_eq!(last_timestamp_text("garbage\n(1.2) x\n"), None);
    }

    #[test]
    fn tail_starts_at_a_line_boundary() {
        let dir = std::env::temp_dir().join(format!("criu-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("big.log");
        let filler = "(00.000001) filler line that is not an error at all\n".repeat(20_000);
        let text = format!("{filler}{}", fixture("tcp"));
        std::fs::write(&path, text).expect("write log");
        let got = explain(&path).expect("explain").unwrap_or_default();
        assert!(got.contains("--tcp-established"), "{got}");
        assert!(read_tail(&path)
            .expect("tail")
            .starts_with("(00.000001) filler"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
