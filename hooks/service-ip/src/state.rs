//! The OCI state a hook gets on stdin: only the container id (for messages) and the pid (to
//! recognise a restore) are used; a hand-run hook may have no state at all.

use std::io::{IsTerminal, Read};

/// What the hook uses of the OCI state on stdin.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct State {
    pub id: Option<String>,
    pub pid: Option<i32>,
}

fn parse_state(text: &str) -> State {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return State::default();
    };
    State {
        id: v.get("id").and_then(|x| x.as_str()).map(str::to_string),
        pid: v
            .get("pid")
            .and_then(|x| x.as_i64())
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 0),
    }
}

/// The OCI state on stdin, when stdin is not a terminal (a hand-run hook may have none).
pub fn read_state() -> State {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return State::default();
    }
    let mut buf = String::new();
    if stdin.lock().take(1 << 20).read_to_string(&mut buf).is_err() {
        return State::default();
    }
    parse_state(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_from_stdin() {
        assert_eq!(
            parse_state(
                r#"{"ociVersion":"1.0.2","id":"httpd","status":"creating","pid":4242,"bundle":"/b"}"#
            ),
            State {
                id: Some("httpd".into()),
                pid: Some(4242)
            }
        );
        assert_eq!(
            parse_state(r#"{"id":"x","status":"stopped"}"#),
            State {
                id: Some("x".into()),
                pid: None
            }
        );
        assert_eq!(parse_state(r#"{"id":"x","pid":0}"#).pid, None);
        assert_eq!(parse_state(""), State::default());
        assert_eq!(parse_state("not json"), State::default());
    }
}
