//! `--log`, `--log-format text|json` and `--debug`: where the runtime's own messages go.
//! Engines read the last `error` line of the log file (one JSON object per line) and the
//! plain message on stderr, so an error is written to both, once, at the top.

use crate::timefmt::rfc3339;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Text,
    Json,
}

struct Logger {
    file: Option<File>,
    format: Format,
    debug: bool,
}

static LOGGER: OnceLock<Mutex<Logger>> = OnceLock::new();

/// Opens the log file (append, close-on-exec: it must never leak into a container).
pub fn init(path: Option<&Path>, format: Format, debug: bool) -> anyhow::Result<()> {
    let file = match path {
        Some(p) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| anyhow::anyhow!("cannot open log file {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let _ = LOGGER.set(Mutex::new(Logger {
        file,
        format,
        debug,
    }));
    Ok(())
}

pub fn debug_enabled() -> bool {
    LOGGER
        .get()
        .and_then(|l| l.lock().ok().map(|l| l.debug))
        .unwrap_or(false)
}

fn line(format: Format, level: &str, msg: &str) -> String {
    let time = if level == "debug" {
        crate::timefmt::rfc3339_nanos(SystemTime::now())
    } else {
        rfc3339(SystemTime::now())
    };
    match format {
        Format::Json => {
            let v = serde_json::json!({ "level": level, "msg": msg, "time": time });
            format!("{v}\n")
        }
        Format::Text => format!("time=\"{time}\" level={level} msg={msg:?}\n"),
    }
}

/// Writes one line at `level` to the log file; without a log file, debug and warning
/// lines go to stderr (only when `--debug` for debug).
pub fn log(level: &str, msg: &str) {
    let Some(lock) = LOGGER.get() else { return };
    let Ok(mut l) = lock.lock() else { return };
    if level == "debug" && !l.debug {
        return;
    }
    let text = line(l.format, level, msg);
    match l.file.as_mut() {
        Some(f) => {
            let _ = f.write_all(text.as_bytes());
        }
        None if level != "error" => {
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
        None => {}
    }
}

/// The final error of a command: one line in the log file, the plain message on stderr.
pub fn error(msg: &str) {
    log("error", msg);
    let _ = writeln!(std::io::stderr(), "{msg}");
}

#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::logging::debug_enabled() {
            $crate::logging::log("debug", &format!($($arg)*));
        }
    };
}

#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => {
        $crate::logging::log("warning", &format!($($arg)*))
    };
}
