//! `events`: `--stats` prints one stats object; `--interval` streams them until killed.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use runtime_tests::Container;
use serde_json::Value;

fn check_stats(line: &str, id: &str) {
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("events output is not one JSON object ({e}): {line:?}"));
    assert_eq!(v["type"], "stats", "{v}");
    assert_eq!(v["id"], id, "{v}");
    assert!(v["data"].is_object(), "{v}");
    assert!(
        v["data"]["pids"]["current"].as_u64().unwrap_or(0) >= 1,
        "pids.current: {v}"
    );
    assert!(
        v["data"]["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "memory.usage.usage: {v}"
    );
}

#[test]
fn events_stats_prints_one_object() {
    let c = Container::new(&["sleep", "100"]);
    c.start_ok();
    let out = c.rt.run(&["events", "--stats", &c.id]).success();
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    check_stats(lines[0], &c.id);
}

#[test]
fn events_interval_streams_stats() {
    let c = Container::new(&["sleep", "100"]);
    c.start_ok();
    let mut child =
        c.rt.call(&["events", "--interval", "1s", &c.id])
            .spawn_piped();
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for _ in 0..2 {
            match lines.next() {
                Some(Ok(line)) => {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10));
    let second = rx.recv_timeout(Duration::from_secs(10));
    // Stop the stream before asserting, so a failure does not leave it running.
    let _ = child.kill();
    let _ = child.wait();
    let first = first.expect("no stats line within 10 s");
    check_stats(&first, &c.id);
    let second = second.expect("the stream stopped after one line");
    check_stats(&second, &c.id);
}
