//! Terminals: `create --console-socket` with `terminal: true` sends the pty master over the
//! socket and the container's output is readable from it; `exec -t --console-socket` does the
//! same for an exec'd process; a terminal without a console socket is refused when detached.

use std::io::Write;

use runtime_tests::{read_until, ConsoleSocket, Container};

#[test]
fn create_with_console_socket_sends_the_pty_master() {
    let c = Container::new(&[
        "sh",
        "-c",
        "tty; test -t 0 && test -t 1 && echo hello-from-tty",
    ])
    .with(|cfg| cfg["process"]["terminal"] = true.into());
    let sock = ConsoleSocket::new();
    c.rt.run(&[
        "create",
        "--bundle",
        &c.bundle_str(),
        "--console-socket",
        &sock.path_str(),
        &c.id,
    ])
    .success();
    let master = sock.receive_master();
    c.start().success();
    let text = read_until(&master, "hello-from-tty");
    assert!(text.contains("/dev/pts/0"), "tty output: {text:?}");
    assert!(
        text.contains("hello-from-tty\r\n"),
        "pty must translate newlines: {text:?}"
    );
}

#[test]
fn terminal_input_reaches_the_container() {
    let c = Container::new(&["sh", "-c", "read line; echo got-$line"])
        .with(|cfg| cfg["process"]["terminal"] = true.into());
    let sock = ConsoleSocket::new();
    c.rt.run(&[
        "run",
        "--detach",
        "--bundle",
        &c.bundle_str(),
        "--console-socket",
        &sock.path_str(),
        &c.id,
    ])
    .success();
    let master = sock.receive_master();
    let mut f = std::fs::File::from(master.try_clone().unwrap());
    f.write_all(b"ping\n").unwrap();
    read_until(&master, "got-ping");
}

#[test]
fn exec_tty_with_console_socket() {
    let c = Container::new(&["sleep", "100"]);
    c.start_ok();
    let sock = ConsoleSocket::new();
    c.exec_with(
        &["--tty", "--detach", "--console-socket", &sock.path_str()],
        &["sh", "-c", "tty; echo exec-tty-ok"],
    )
    .success();
    let master = sock.receive_master();
    let text = read_until(&master, "exec-tty-ok");
    assert!(text.contains("/dev/pts/"), "tty output: {text:?}");
}

#[test]
fn detached_terminal_without_console_socket_is_refused() {
    let c = Container::new(&["true"]).with(|cfg| cfg["process"]["terminal"] = true.into());
    c.create().failure().one_error_line();
    c.assert_nothing_left();
}

#[test]
fn console_socket_without_terminal_is_refused() {
    let c = Container::new(&["true"]);
    let sock = ConsoleSocket::new();
    c.rt.run(&[
        "create",
        "--bundle",
        &c.bundle_str(),
        "--console-socket",
        &sock.path_str(),
        &c.id,
    ])
    .failure()
    .one_error_line();
    c.assert_nothing_left();
}
