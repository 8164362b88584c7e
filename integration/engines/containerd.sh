# shellcheck shell=bash disable=SC2016,SC2034  # single quotes run in the container; lists used by run.sh
# containerd flows (sourced by run.sh). Each flow drives this run's own containerd 1.6 daemon
# through `ct` (ctr on its socket and namespace); containers are created with the runc v2 shim
# and runc options BinaryName = the runtime under test, Root = a directory of this run.

CONTAINERD_FLOWS=(
  containerd/lifecycle
  containerd/run-rm
  containerd/tty
  containerd/errors
  containerd/checkpoint-restore
  containerd/task-checkpoint
)

ct() { tmo ctr --address "$CTD_SOCK" --connect-timeout 10s --namespace "$CTD_NS" "$@"; }

# ct_run ARGS...: `ctr run` with the runc options of the runtime under test.
ct_run() { ct run --runc-binary "$RT_WRAPPER" --runc-root "$RT_DIR/ctd/runc-root" "$@"; }

# ctr run -t needs a terminal on its stdin: `script` provides one.
ct_tty() {
  local cmd
  cmd=$(printf '%q ' ctr --address "$CTD_SOCK" --namespace "$CTD_NS" "$@")
  tmo script -qec "$cmd" /dev/null
}

ct_task_status() { ct task ls 2>/dev/null | awk -v n="$1" '$1 == n { print $3 }'; }
ct_status_is() { [ "$(ct_task_status "$1")" = "$2" ]; }

# ct_status NAME WANT: the task of NAME must be in state WANT (RUNNING, PAUSED, STOPPED).
ct_status() {
  local s
  s=$(ct_task_status "$1")
  [ "$s" = "$2" ] || fail "task $1: expected $2, got '${s:-no task}'"
}

EXEC_N=0
# ct_count NAME: read the counter of container NAME into CNT.
ct_count() {
  EXEC_N=$((EXEC_N + 1))
  run_cmd ct task exec --exec-id "count$EXEC_N" "$1" cat /tmp/count
  [ "$RC" = 0 ] || { fail "read counter of $1: exit $RC: $(first_line "$ERR")"; return 1; }
  is_int "$OUT" || { fail "read counter of $1: not a number: $(first_line "$OUT")"; return 1; }
  CNT=$OUT
}

ct_count_ge() {
  local v
  EXEC_N=$((EXEC_N + 1))
  v=$(ct task exec --exec-id "poll$EXEC_N" "$1" cat /tmp/count 2>/dev/null) && is_int "$v" && [ "$v" -ge "$2" ]
}

ct_advances() {
  wait_until 10 "counter of $1 advances past $2" ct_count_ge "$1" $(($2 + 1))
}

ct_start_counter() {
  local name=$1
  shift
  ok "run -d $name" ct_run -d "$@" "$IMG" "$name" sh -c "trap 'exit 42' TERM; $COUNTER_LOOP" || return 1
  wait_until 15 "counter of $name reaches 5" ct_count_ge "$name" 5
}

# ct_reset: remove every task, container and checkpoint image of this namespace.
ct_reset() {
  local id img
  for id in $(ct task ls -q 2>/dev/null); do
    ct task kill -a -s KILL "$id" >/dev/null 2>&1 || true
    ct task delete -f "$id" >/dev/null 2>&1 || true
  done
  for id in $(ct container ls -q 2>/dev/null); do
    ct container delete "$id" >/dev/null 2>&1 || true
  done
  for img in $(ct image ls -q 2>/dev/null); do
    [ "$img" = "$IMG" ] || ct image rm "$img" >/dev/null 2>&1 || true
  done
}

flow_containerd_lifecycle() {
  ct_start_counter life || return 1
  ct_status life RUNNING || return 1
  expect_rc 3 "task exec exit code" ct task exec --exec-id e1 life sh -c 'exit 3' || return 1
  ok "task exec with user and cwd" ct task exec --exec-id e2 --user 65534 --cwd /tmp life sh -c 'echo $(id -u):$(pwd)' || return 1
  [ "$OUT" = "65534:/tmp" ] || { fail "task exec --user/--cwd: expected 65534:/tmp, got '$OUT'"; return 1; }
  ok "task ps" ct task ps life || return 1
  local pid
  pid=$(ct task ls | awk '$1 == "life" { print $2 }')
  contains "task ps lists the init pid" "$OUT" "$pid" || return 1
  ok "task pause" ct task pause life || return 1
  ct_status life PAUSED || return 1
  frozen_counter "$pid" || return 1
  ok "task resume" ct task resume life || return 1
  ct_status life RUNNING || return 1
  ct_count life || return 1
  ct_advances life "$CNT" || return 1
  ok "task kill (SIGTERM, trapped)" ct task kill life || return 1
  wait_until 10 "task life stopped" ct_status_is life STOPPED || return 1
  ok "task delete" ct task delete life || return 1
  contains "task delete reports the exit code" "$ERR" "exit code 42" || return 1
  ok "container delete" ct container delete life || return 1
  # kill --all with SIGKILL, then delete.
  ok "run -d k2" ct_run -d "$IMG" k2 sh -c 'while true; do sleep 1; done' || return 1
  ok "task kill -a -s KILL" ct task kill -a -s KILL k2 || return 1
  wait_until 10 "task k2 stopped" ct_status_is k2 STOPPED || return 1
  ok "task delete" ct task delete k2 || return 1
  contains "task delete reports SIGKILL" "$ERR" "exit code 137" || return 1
  # delete -f of a running task.
  ok "run -d k3" ct_run -d "$IMG" k3 sh -c 'while true; do sleep 1; done' || return 1
  ok "task delete -f (running)" ct task delete -f k3 || return 1
  ok "container delete" ct container delete k2 k3 || return 1
  ok "container ls" ct container ls -q || return 1
  [ -z "$OUT" ] || fail "containers left after delete: $OUT"
}

flow_containerd_run_rm() {
  expect_rc 5 "run --rm exit code" ct_run --rm "$IMG" rr sh -c 'echo out; echo err >&2; exit 5' || return 1
  contains "run --rm stdout" "$OUT" out || return 1
  contains "run --rm stderr" "$ERR" err || return 1
  printf 'hello-stdin\n' >"$FLOW_TMP/stdin"
  # ctr 1.6 never closes the container's stdin at EOF, so read one line instead of `cat`.
  STDIN="$FLOW_TMP/stdin" ok "run --rm (stdin)" ct_run --rm "$IMG" ri sh -c 'read l; echo "got:$l"' || return 1
  [ "$OUT" = got:hello-stdin ] || { fail "run with stdin: expected got:hello-stdin, got '$OUT'"; return 1; }
  ok "container ls" ct container ls -q || return 1
  [ -z "$OUT" ] || fail "--rm left containers: $OUT"
}

flow_containerd_tty() {
  expect_rc 4 "run --rm -t" ct_tty run --runc-binary "$RT_WRAPPER" --runc-root "$RT_DIR/ctd/runc-root" --rm -t "$IMG" rt sh -c 'tty; exit 4' || return 1
  contains "run -t gets a pty" "$OUT" /dev/pts/ || return 1
  ok "run -d" ct_run -d "$IMG" tx sh -c 'while true; do sleep 1; done' || return 1
  ok "task exec -t" ct_tty task exec -t --exec-id t1 tx tty || return 1
  contains "exec -t gets a pty" "$OUT" /dev/pts/ || return 1
  expect_rc 1 "task exec without -t has no tty" ct task exec --exec-id t2 tx tty || return 1
  ok "task delete -f" ct task delete -f tx || return 1
  ok "container delete" ct container delete tx
}

# Failures to start a program come back through the shim as errors quoting the runtime's message.
flow_containerd_errors() {
  expect_fail "run a missing executable" ct_run --rm "$IMG" e1 /nonexistent || return 1
  contains "run error names the cause" "$ERR" "no such file or directory" || return 1
  ok "container ls" ct container ls -q || return 1
  [ -z "$OUT" ] || { fail "a failed run --rm left containers: $OUT"; return 1; }
  ok "run -d" ct_run -d "$IMG" e2 sh -c 'while true; do sleep 1; done' || return 1
  expect_fail "exec a missing executable" ct task exec --exec-id x1 e2 /nonexistent || return 1
  contains "exec error names the cause" "$ERR" "no such file or directory" || return 1
  expect_fail "exec a non-executable file" ct task exec --exec-id x2 e2 /bin/noexec || return 1
  contains "exec error names the cause" "$ERR" "permission denied" || return 1
  ok "exec still works" ct task exec --exec-id x3 e2 true || return 1
  ct_status e2 RUNNING || return 1
  ok "task delete -f" ct task delete -f e2 || return 1
  ok "container delete" ct container delete e2
}

# The restorable path in 1.6: container checkpoint --task --rw, then container restore --live --rw.
# One round only: ctr 1.6 cannot checkpoint a restored container ("ctr: media type not found",
# with runc as well).
flow_containerd_checkpoint_restore() {
  ct_start_counter cr || return 1
  ct_count cr || return 1
  local before=$CNT ref=checkpoint/cr:1
  ok "container checkpoint --task --rw" ct container checkpoint --task --rw cr "$ref" || return 1
  ct_status cr RUNNING || return 1
  ok "task kill -s KILL" ct task kill -s KILL cr || return 1
  wait_until 10 "task cr stopped" ct_status_is cr STOPPED || return 1
  ok "task delete" ct task delete cr || return 1
  ok "container delete" ct container delete cr || return 1
  ok "container restore --live --rw" ct container restore --live --rw cr "$ref" || return 1
  ct_status cr RUNNING || return 1
  settle
  ct_count cr || return 1
  [ "$CNT" -ge "$before" ] || { fail "restore: counter restarted ($before before the checkpoint, $CNT after restore)"; return 1; }
  ct_advances cr "$CNT" || return 1
  ok "task delete -f" ct task delete -f cr || return 1
  ok "container delete" ct container delete cr
}

flow_containerd_task_checkpoint() {
  ct_start_counter tc || return 1
  ct_count tc || return 1
  local before=$CNT
  ok "task checkpoint (leave running)" ct task checkpoint tc || return 1
  local ref
  ref=$(first_line "$OUT")
  ct_status tc RUNNING || return 1
  ct_advances tc "$before" || return 1
  ok "image ls" ct image ls -q || return 1
  contains "checkpoint image listed" "$OUT" "$ref" || return 1
  local images="$FLOW_TMP/images" work="$FLOW_TMP/work"
  mkdir -p "$images" "$work"
  ok "task checkpoint --image-path --work-path" ct task checkpoint --image-path "$images" --work-path "$work" tc || return 1
  [ -s "$images/inventory.img" ] || { fail "task checkpoint --image-path: no inventory.img in $images"; return 1; }
  [ -s "$work/dump.log" ] || { fail "task checkpoint --work-path: no dump.log in $work"; return 1; }
  ct_status tc RUNNING || return 1
  ct_count tc || return 1
  ct_advances tc "$CNT" || return 1
  mkdir -p "$images.exit" "$work.exit"
  ok "task checkpoint --exit" ct task checkpoint --exit --image-path "$images.exit" --work-path "$work.exit" tc || return 1
  [ -s "$images.exit/inventory.img" ] || { fail "task checkpoint --exit: no inventory.img in $images.exit"; return 1; }
  wait_until 10 "task tc stopped after checkpoint --exit" ct_status_is tc STOPPED || return 1
  ok "task delete" ct task delete tc || return 1
  ok "container delete" ct container delete tc
}
