//! `runtime`: parse the command line, set up logging, run the command, and turn its
//! outcome into an exit code and one error line (stderr, and --log in its format).

use clap::Parser;
use runtime::cli::{self, Cli, Command};
use runtime::logging::{self, Format};

fn main() {
    let args = cli::normalize_args(std::env::args().collect());
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if e.kind() == ErrorKind::DisplayVersion {
                println!("runtime version {}", runtime::VERSION_TEXT);
                std::process::exit(0);
            }
            let text = e.to_string();
            // podman probes `restore --lsm-mount-context` for runc's exact words.
            if let Some(flag) = missing_value_flag(&text) {
                eprintln!("flag needs an argument: -{flag}");
                std::process::exit(1);
            }
            e.exit();
        }
    };
    let format = if cli.log_format == "json" {
        Format::Json
    } else {
        Format::Text
    };
    if let Err(e) = logging::init(cli.log.as_deref(), format, cli.debug) {
        eprintln!("{e:#}");
        std::process::exit(1);
    }
    // Commands whose own clones enter containers run from a sealed copy of us. (restore
    // does not: CRIU makes its processes; checkpoint never enters a container.)
    if matches!(
        cli.command,
        Command::Create(_) | Command::Run(_) | Command::Exec(_)
    ) {
        if let Err(e) = runtime::exe_seal::ensure_sealed() {
            logging::error(&format!("{e:#}"));
            std::process::exit(1);
        }
    }
    let code = match cli::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            logging::error(&format!("{e:#}"));
            1
        }
    };
    std::process::exit(code);
}

/// "a value is required for '--lsm-mount-context <CONTEXT>'" -> "lsm-mount-context".
fn missing_value_flag(text: &str) -> Option<&str> {
    if !text.contains("a value is required for") {
        return None;
    }
    let start = text.find("'--")? + 3;
    let rest = &text[start..];
    let end = rest.find([' ', '\''])?;
    Some(&rest[..end])
}
