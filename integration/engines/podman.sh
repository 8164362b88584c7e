# shellcheck shell=bash disable=SC2016,SC2034  # single quotes run in the container; lists used by run.sh
# podman flows (sourced by run.sh). Each flow drives podman 4.3 (+ conmon) through `pm`, which
# uses this run's storage roots, containers.conf and `--runtime $RT_NAME`, and checks effects
# inside the container (a counter file, a TCP stream, tty names) rather than podman's word.

PODMAN_FLOWS=(
  podman/info-by-path
  podman/lifecycle
  podman/tty
  podman/run-rm
  podman/errors
  podman/checkpoint-restore
  podman/checkpoint-leave-running
  podman/checkpoint-tcp
  podman/checkpoint-export-import
  podman/checkpoint-keep
  podman/checkpoint-tty
  podman/checkpoint-network-none
)

# A shell loop writing an increasing number to /tmp/count every 0.2s (write + rename, so a
# reader never sees the file truncated and still empty).
COUNTER_LOOP='i=0; while true; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.2; done'

pm() {
  tmo podman --root "$RT_DIR/podman/root" --runroot "$RT_DIR/podman/runroot" --runtime "$RT_NAME" "$@"
}

# After a restore /tmp/count still holds what the killed or checkpointed process wrote last
# (the rootfs is not part of the images) until the restored process writes again: wait three
# counter periods before reading it, so a counter restarted from 1 cannot pass for a restore.
settle() { sleep 0.6; }

# pm_count NAME: read the counter of container NAME into CNT.
pm_count() {
  run_cmd pm exec "$1" cat /tmp/count
  [ "$RC" = 0 ] || { fail "read counter of $1: exit $RC: $(first_line "$ERR")"; return 1; }
  is_int "$OUT" || { fail "read counter of $1: not a number: $(first_line "$OUT")"; return 1; }
  CNT=$OUT
}

pm_count_ge() { # NAME MIN: true when the counter of NAME is >= MIN
  local v
  v=$(pm exec "$1" cat /tmp/count 2>/dev/null) && is_int "$v" && [ "$v" -ge "$2" ]
}

pm_logs_have() { pm logs "$1" 2>&1 | grep -q -- "$2"; }
pm_state_is() { [ "$(pm inspect -f '{{.State.Status}}' "$1" 2>/dev/null)" = "$2" ]; }

# pm_status NAME WANT: podman's state of NAME must be WANT (running, paused, exited, ...).
pm_status() {
  run_cmd pm inspect -f '{{.State.Status}}' "$1"
  [ "$RC" = 0 ] || { fail "inspect $1: exit $RC: $(first_line "$ERR")"; return 1; }
  [ "$OUT" = "$2" ] || fail "state of $1: expected $2, got '$OUT'"
}

# pm_start_counter NAME [RUN OPTIONS...]: run a counter container and wait until it counted to 5.
pm_start_counter() {
  local name=$1
  shift
  ok "run -d $name" pm run -d --name "$name" "$@" "$IMG" sh -c "$COUNTER_LOOP" || return 1
  wait_until 15 "counter of $name reaches 5" pm_count_ge "$name" 5
}

# pm_advances NAME FROM: the counter of NAME must pass FROM within 10s (the process runs).
pm_advances() {
  wait_until 10 "counter of $1 advances past $2" pm_count_ge "$1" $(($2 + 1))
}

pm_reset() {
  pm rm -a -f -t 0 >/dev/null 2>&1 </dev/null || true
}

# `podman info` runs `RT --version`; `podman --runtime /path/to/RT` (a path, not a name) works too.
flow_podman_info_by_path() {
  ok "info" pm info --format '{{.Host.OCIRuntime.Name}}|{{.Host.OCIRuntime.Path}}|{{.Host.OCIRuntime.Version}}' || return 1
  contains "info names the runtime" "$OUT" "$RT_NAME|$RT_WRAPPER|" || return 1
  contains "info shows the runtime's version (first line of --version)" "$OUT" "version" || return 1
  ok "run --rm with --runtime PATH" tmo podman --root "$RT_DIR/podman/root" --runroot "$RT_DIR/podman/runroot" \
    --runtime "$RT_WRAPPER" run --rm "$IMG" echo by-path || return 1
  [ "$OUT" = by-path ] || fail "run with --runtime PATH: expected by-path, got '$OUT'"
}

flow_podman_lifecycle() {
  ok "run -d" pm run -d --name life "$IMG" sh -c "echo started; trap 'echo got-term; exit 42' TERM; trap 'echo got-usr1' USR1; $COUNTER_LOOP" || return 1
  wait_until 15 "counter of life reaches 5" pm_count_ge life 5 || return 1
  ok "ps" pm ps --format '{{.Names}} {{.Status}}' || return 1
  contains "ps lists life as Up" "$OUT" "life Up" || return 1
  ok "logs" pm logs life || return 1
  contains "logs" "$OUT" started || return 1
  expect_rc 7 "exec exit code" pm exec life sh -c 'exit 7' || return 1
  ok "exec with user, workdir, env" pm exec --user 65534:65534 --workdir /tmp --env FOO=bar life sh -c 'echo $(id -u):$(pwd):$FOO' || return 1
  [ "$OUT" = "65534:/tmp:bar" ] || { fail "exec --user/--workdir/--env: expected 65534:/tmp:bar, got '$OUT'"; return 1; }
  ok "top" pm top life || return 1
  contains "top lists the init" "$OUT" "sh -c echo started" || return 1
  ok "stats --no-stream" pm stats --no-stream --format '{{.Name}} {{.PIDs}}' life || return 1
  contains "stats" "$OUT" "life" || return 1
  ok "init pid" pm inspect -f '{{.State.Pid}}' life || return 1
  local pid=$OUT
  ok "pause" pm pause life || return 1
  pm_status life paused || return 1
  frozen_counter "$pid" || return 1
  ok "unpause" pm unpause life || return 1
  pm_status life running || return 1
  pm_count life || return 1
  pm_advances life "$CNT" || return 1
  ok "kill -s USR1" pm kill -s USR1 life || return 1
  wait_until 5 "the container got SIGUSR1" pm_logs_have life got-usr1 || return 1
  pm_status life running || return 1
  ok "stop (SIGTERM, trapped)" pm stop -t 20 life || return 1
  pm_status life exited || return 1
  ok "inspect exit code" pm inspect -f '{{.State.ExitCode}}' life || return 1
  [ "$OUT" = 42 ] || { fail "stop: exit code after the TERM trap: expected 42, got '$OUT'"; return 1; }
  ok "logs after stop" pm logs life || return 1
  contains "logs show the trap ran" "$OUT" got-term || return 1
  ok "restart" pm restart -t 20 life || return 1
  pm_status life running || return 1
  wait_until 10 "counter of restarted life reaches 2" pm_count_ge life 2 || return 1
  ok "stop" pm stop -t 20 life || return 1
  ok "rm" pm rm life || return 1
  # PID 1 without a handler ignores SIGTERM: stop escalates to SIGKILL after the timeout.
  ok "run -d stubborn" pm run -d --name stubborn "$IMG" sh -c "$COUNTER_LOOP" || return 1
  wait_until 15 "counter of stubborn reaches 2" pm_count_ge stubborn 2 || return 1
  ok "stop -t 1 (SIGTERM ignored, then SIGKILL)" pm stop -t 1 stubborn || return 1
  ok "inspect exit code" pm inspect -f '{{.State.ExitCode}}' stubborn || return 1
  [ "$OUT" = 137 ] || { fail "stop: exit code after SIGKILL: expected 137, got '$OUT'"; return 1; }
  ok "rm" pm rm stubborn || return 1
  ok "ps -a" pm ps -a -q || return 1
  [ -z "$OUT" ] || fail "containers left after rm: $OUT"
}

flow_podman_tty() {
  ok "run -d -t" pm run -d -t --name tty "$IMG" sh -c 'tty; while true; do sleep 1; done' || return 1
  wait_until 10 "tty container prints its tty" pm_logs_have tty /dev/pts/ || return 1
  ok "exec -t" pm exec -t tty tty || return 1
  contains "exec -t gets a pty" "$OUT" /dev/pts/ || return 1
  expect_rc 1 "exec without -t has no tty" pm exec tty tty || return 1
  contains "exec without -t" "$OUT" "not a tty" || return 1
  ok "stop" pm stop -t 1 tty || return 1
  ok "rm" pm rm tty
}

flow_podman_run_rm() {
  expect_rc 5 "run --rm exit code" pm run --rm --name rr "$IMG" sh -c 'echo out; echo err >&2; exit 5' || return 1
  contains "run --rm stdout" "$OUT" out || return 1
  contains "run --rm stderr" "$ERR" err || return 1
  printf 'hello-stdin\n' >"$FLOW_TMP/stdin"
  STDIN="$FLOW_TMP/stdin" ok "run --rm -i (stdin)" pm run --rm -i "$IMG" cat || return 1
  [ "$OUT" = hello-stdin ] || { fail "run -i: expected hello-stdin, got '$OUT'"; return 1; }
  ok "run --rm -t" pm run --rm -t "$IMG" tty || return 1
  contains "run -t gets a pty" "$OUT" /dev/pts/ || return 1
  ok "ps -a" pm ps -a -q || return 1
  [ -z "$OUT" ] || fail "--rm left containers: $OUT"
}

# Error mapping: podman turns the runtime's message into 127 (not found) or 126 (not executable).
flow_podman_errors() {
  expect_rc 127 "run a missing executable" pm run --rm "$IMG" /nonexistent || return 1
  expect_rc 126 "run a non-executable file" pm run --rm "$IMG" /bin/noexec || return 1
  ok "run -d" pm run -d --name err "$IMG" sh -c 'while true; do sleep 1; done' || return 1
  expect_rc 127 "exec a missing executable" pm exec err /nonexistent || return 1
  expect_rc 126 "exec a non-executable file" pm exec err /bin/noexec || return 1
  ok "exec still works" pm exec err true || return 1
  ok "rm -f" pm rm -f -t 0 err
}

flow_podman_checkpoint_restore() {
  pm_start_counter cr || return 1
  local round
  for round in 1 2; do
    note "round $round"
    pm_count cr || return 1
    local before=$CNT
    ok "checkpoint" pm container checkpoint cr || return 1
    # The runtime's stdout reaches podman's: runc prints nothing, so podman prints only the name.
    [ "$OUT" = cr ] || { fail "checkpoint: stdout should be only 'cr' (the runtime must print nothing), got: $(first_line "$OUT")"; return 1; }
    pm_status cr exited || return 1
    ok "restore" pm container restore cr || return 1
    pm_status cr running || return 1
    settle
    pm_count cr || return 1
    [ "$CNT" -ge "$before" ] || { fail "restore round $round: counter restarted ($before before the checkpoint, $CNT after restore)"; return 1; }
    pm_advances cr "$CNT" || return 1
  done
  ok "rm -f" pm rm -f -t 0 cr
}

flow_podman_checkpoint_leave_running() {
  pm_start_counter lr || return 1
  pm_count lr || return 1
  local before=$CNT
  ok "checkpoint --leave-running" pm container checkpoint --leave-running lr || return 1
  pm_status lr running || return 1
  pm_advances lr "$before" || return 1
  pm_advances lr $((before + 10)) || return 1
  ok "kill" pm kill lr || return 1
  wait_until 10 "lr exited" pm_state_is lr exited || return 1
  ok "restore the leave-running checkpoint" pm container restore lr || return 1
  settle
  pm_count lr || return 1
  if [ "$CNT" -lt "$before" ] || [ "$CNT" -ge $((before + 10)) ]; then
    fail "restore: counter $CNT is not the checkpointed value (>= $before, < $((before + 10)))"
    return 1
  fi
  pm_advances lr "$CNT" || return 1
  ok "rm -f" pm rm -f -t 0 lr
}

# A TCP connection inside the container (nc client -> nc server on loopback), streaming numbers.
flow_podman_checkpoint_tcp() {
  ok "run -d tcp pair" pm run -d --name tcp "$IMG" sh -c \
    'sleep 100000 | nc -l -p 5000 > /tmp/recv & sleep 0.3; i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done | nc 127.0.0.1 5000 & wait' || return 1
  wait_until 10 "connection established" pm exec tcp sh -c 'netstat -tn | grep -q ESTABLISHED && [ -s /tmp/recv ]' || return 1
  expect_fail "checkpoint without --tcp-established must fail" pm container checkpoint tcp || return 1
  pm_status tcp running || return 1
  ok "size after the refused checkpoint" pm exec tcp sh -c 'wc -c < /tmp/recv' || return 1
  local size=$OUT
  wait_until 10 "stream still flows after the refused checkpoint" pm exec tcp sh -c "[ \$(wc -c < /tmp/recv) -gt $size ]" || return 1
  ok "checkpoint --tcp-established" pm container checkpoint --tcp-established tcp || return 1
  pm_status tcp exited || return 1
  ok "restore --tcp-established" pm container restore --tcp-established tcp || return 1
  ok "size after restore" pm exec tcp sh -c 'wc -c < /tmp/recv' || return 1
  size=$OUT
  wait_until 10 "stream flows after restore" pm exec tcp sh -c "[ \$(wc -c < /tmp/recv) -gt $size ]" || return 1
  ok "netstat" pm exec tcp netstat -tn || return 1
  contains "connection survived" "$OUT" ESTABLISHED || return 1
  ok "rm -f" pm rm -f -t 0 tcp
}

flow_podman_checkpoint_export_import() {
  pm_start_counter ex || return 1
  pm_count ex || return 1
  local before=$CNT archive="$FLOW_TMP/ex.tar.gz"
  ok "checkpoint --export" pm container checkpoint --export="$archive" ex || return 1
  [ -s "$archive" ] || { fail "checkpoint --export wrote no archive at $archive"; return 1; }
  ok "rm the original" pm rm ex || return 1
  ok "restore --import" pm container restore --import "$archive" || return 1
  pm_status ex running || return 1
  settle
  pm_count ex || return 1
  [ "$CNT" -ge "$before" ] || { fail "restore --import: counter restarted ($before before, $CNT after)"; return 1; }
  ok "restore --import --name copy2 (second copy)" pm container restore --import "$archive" --name copy2 || return 1
  pm_status copy2 running || return 1
  pm_status ex running || return 1
  settle
  pm_count copy2 || return 1
  [ "$CNT" -ge "$before" ] || { fail "restore --name copy2: counter restarted ($before before, $CNT after)"; return 1; }
  pm_advances copy2 "$CNT" || return 1
  pm_count ex || return 1
  pm_advances ex "$CNT" || return 1
  ok "rm -f" pm rm -f -t 0 ex copy2
}

flow_podman_checkpoint_keep() {
  pm_start_counter keep || return 1
  ok "static dir" pm inspect -f '{{.StaticDir}}' keep || return 1
  local ud=$OUT f
  ok "checkpoint --keep --print-stats" pm container checkpoint --keep --print-stats keep || return 1
  for f in dump.log stats-dump checkpoint/inventory.img; do
    [ -s "$ud/$f" ] || { fail "checkpoint --keep: $ud/$f missing or empty"; return 1; }
  done
  # podman prints JSON built from the runtime's stats-dump; stdout must be only that JSON.
  jq -e '.container_statistics[0].criu_statistics.pages_written > 0' <<<"$OUT" >/dev/null 2>&1 ||
    { fail "checkpoint --print-stats: stdout is not podman's JSON with criu_statistics.pages_written: $(first_line "$OUT")"; return 1; }
  ok "restore --keep --print-stats" pm container restore --keep --print-stats keep || return 1
  for f in restore.log stats-restore; do
    [ -s "$ud/$f" ] || { fail "restore --keep: $ud/$f missing or empty"; return 1; }
  done
  jq -e '.container_statistics[0].criu_statistics.pages_restored > 0' <<<"$OUT" >/dev/null 2>&1 ||
    { fail "restore --print-stats: stdout is not podman's JSON with criu_statistics.pages_restored: $(first_line "$OUT")"; return 1; }
  pm_count keep || return 1
  pm_advances keep "$CNT" || return 1
  ok "rm -f" pm rm -f -t 0 keep
}

flow_podman_checkpoint_tty() {
  pm_start_counter ctty -t || return 1
  pm_count ctty || return 1
  local before=$CNT
  ok "checkpoint" pm container checkpoint ctty || return 1
  ok "restore" pm container restore ctty || return 1
  settle
  pm_count ctty || return 1
  [ "$CNT" -ge "$before" ] || { fail "restore: counter restarted ($before before, $CNT after)"; return 1; }
  pm_advances ctty "$CNT" || return 1
  ok "exec -t after restore" pm exec -t ctty tty || return 1
  contains "exec -t gets a pty" "$OUT" /dev/pts/ || return 1
  ok "rm -f" pm rm -f -t 0 ctty
}

# --network none: podman gives the container a netns with only lo (runc restores lo down; that
# is not checked).
flow_podman_checkpoint_network_none() {
  pm_start_counter nn --network none || return 1
  ok "links before" pm exec nn ip -o link || return 1
  ok "checkpoint" pm container checkpoint nn || return 1
  ok "restore" pm container restore nn || return 1
  settle
  pm_count nn || return 1
  pm_advances nn "$CNT" || return 1
  ok "links after" pm exec nn ip -o link || return 1
  ok "rm -f" pm rm -f -t 0 nn
}
