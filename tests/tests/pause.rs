//! `pause` / `resume`: the v1 freezer state and the reported status; a paused container can
//! still be killed and force-deleted (runc semantics).

use std::time::Duration;

use runtime_tests::host::{pid_alive, wait_for};
use runtime_tests::Container;

#[test]
fn pause_freezes_and_resume_thaws() {
    let c = Container::new(&[
        "sh",
        "-c",
        "while :; do date +%s%N > /tmp/tick; sleep 0.05; done",
    ]);
    c.start_ok();
    c.rt.run(&["pause", &c.id]).success();
    assert_eq!(c.status(), "paused");
    assert_eq!(c.cgroup_read("freezer", "freezer.state"), "FROZEN");
    // Nothing runs while frozen.
    let tick = c.rootfs().join("tmp/tick");
    let before = std::fs::read_to_string(&tick).unwrap_or_default();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(std::fs::read_to_string(&tick).unwrap_or_default(), before);

    c.rt.run(&["resume", &c.id]).success();
    assert_eq!(c.status(), "running");
    assert_eq!(c.cgroup_read("freezer", "freezer.state"), "THAWED");
    wait_for("the loop to run again", Duration::from_secs(5), || {
        std::fs::read_to_string(&tick).unwrap_or_default() != before
    });
}

#[test]
fn pause_twice_fails_and_stays_paused() {
    let c = Container::new(&["sleep", "100"]);
    c.start_ok();
    c.rt.run(&["pause", &c.id]).success();
    c.rt.run(&["pause", &c.id]).failure().one_error_line();
    assert_eq!(c.status(), "paused");
}

#[test]
fn kill_of_a_paused_container_stops_it() {
    let c = Container::new(&["sleep", "100"]);
    c.start_ok();
    let pid = c.pid();
    c.rt.run(&["pause", &c.id]).success();
    c.kill("KILL").success();
    c.wait_status("stopped");
    wait_for("the init to die", Duration::from_secs(5), || {
        !pid_alive(pid)
    });
    c.delete().success();
    c.assert_nothing_left();
}

#[test]
fn delete_force_of_a_paused_container() {
    let c = Container::new(&["sleep", "100"]);
    c.start_ok();
    let pid = c.pid();
    c.rt.run(&["pause", &c.id]).success();
    c.delete_force().success();
    wait_for("the init to die", Duration::from_secs(5), || {
        !pid_alive(pid)
    });
    c.assert_nothing_left();
}
