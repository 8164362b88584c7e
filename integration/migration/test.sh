#!/usr/bin/env bash
# Live-migration tests on the two-host bed (bed.sh), one column per runtime given as PATH (moved
# by hand: `checkpoint` on the source, `restore` on the target, driven by migrate_step) or
# PATH:migrate (moved by `PATH migrate ID --to exec:<command prefix of the target>`).
# Default: /usr/sbin/runc (the baseline), $RUNTIME_BIN (default target/release/runtime), and
# $RUNTIME_BIN:migrate when that binary has a `migrate` command.
#   http      httpd A->B->A while the client fetches the page every ~50 ms (failed requests,
#             longest gap, downtime per move = last success before the freeze -> first success
#             after it, phase times, image size, and when the service IP left/arrived/was
#             announced, from the hook's log)
#   tmpfs     marker files in /tmp /run /var/log/httpd /run/httpd survive both moves
#   tcp       one established client connection to the counter service survives A->B->A
#             (the numbers keep increasing by one on the same connection)
#   nobind    B lacks the host-local bind source: the pre-flight check refuses (container untouched
#             on A); by hand and forced, the restore on B fails and the container comes back on A
#   rostate   B's runtime state dir is read-only: the container stays on / comes back to A
#   busyport  port 8080 is taken in B's service netns: CRIU fails late (after the hooks claimed
#             the IP on B): container and IP back on A, and the IP not left on B
#   criuver   B runs another CRIU (Debian's 3.17 bound over /usr/local/sbin/criu in B's mount
#             namespace): the move is refused before the freeze, the container stays on A
# Usage: test.sh [PATH[:migrate|:migrate-lazy]...]     env: KEEP_BED=1 (leave the bed up), LOG_DIR
# shellcheck source-path=SCRIPTDIR
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=config.sh
. "$HERE/config.sh"
BED="$HERE/bed.sh"
LOG_DIR=${LOG_DIR:-/tmp/mig-test}
HOOK=$HOST_LOCAL/bin/service-ip

if [ $# -gt 0 ]; then
  BINS=("$@")
else
  BINS=()
  [ -x /usr/sbin/runc ] && BINS+=(/usr/sbin/runc)
  rb=${RUNTIME_BIN:-$REPO/target/release/runtime}
  if [ "$rb" != /usr/sbin/runc ]; then
    BINS+=("$rb")
    "$rb" migrate --help >/dev/null 2>&1 && BINS+=("$rb:migrate" "$rb:migrate-lazy")
  fi
fi

host_ip() { case $1 in A) echo "$IP_A" ;; B) echo "$IP_B" ;; esac; }
log() { printf '[test %s] %s\n' "$(date +%T)" "$*" >&2; }
now_ms() { local t=$EPOCHREALTIME; echo $((${t%.*} * 1000 + 10#${t#*.} / 1000)); }
# Runs CMD on HOST with a timeout (inside the host, so the command itself is stopped).
on() {
  local h=$1 t=$2
  shift 2
  timeout --kill-after=5 "$t" "$BED" exec "$h" timeout --kill-after=5 "$t" "$@"
}

# --- results -----------------------------------------------------------------------------
declare -A RES NUM KEY
TESTS=(http tmpfs tcp nobind rostate busyport criuver)
LABELS=()
FAILED=0
# A test passes unless something in it failed (a later pass does not undo a failure).
pass() {
  [ "${RES[$1,$L]:-}" = FAIL ] && return
  RES[$1,$L]=PASS
  log "$L $1: PASS${2:+ ($2)}"
}
key() { KEY[$1,$L]=$2; } # the few numbers of the summary table
skip() {
  RES[$1,$L]=SKIP
  log "$L $1: SKIP: $2"
  note "$1" "SKIP: $2"
}
fail() {
  RES[$1,$L]=FAIL
  FAILED=1
  log "$L $1: FAIL: $2"
  NUM[$1,$L]="${NUM[$1,$L]:-}${NUM[$1,$L]:+; }FAIL: $2"
}
note() { NUM[$1,$L]="${NUM[$1,$L]:-}${NUM[$1,$L]:+; }$2"; }

# --- bed plumbing ------------------------------------------------------------------------
CLIENT_PIDS=()
cleanup() {
  local p
  for p in "${CLIENT_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  if [ "${KEEP_BED:-0}" = 1 ]; then
    log "KEEP_BED=1: bed left up ($BED down removes it)"
  else
    timeout 60 "$BED" down >/dev/null 2>&1 || log "bed.sh down failed"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

slot_of() { case $1 in httpd) echo web ;; counter) echo counter ;; esac; }
bundle_of() { echo "$SHARED/bundles/$1"; }

# rt HOST TIMEOUT ARGS...: the runtime under test on HOST with that host's state dir.
rt() {
  local h=$1 t=$2
  shift 2
  on "$h" "$t" "$BIN" --root "$STATE" "$@"
}

# Where the service IP of SLOT is: A, B, "A B" or "".
ip_hosts() {
  local slot=$1 h out=""
  for h in "${HOSTS[@]}"; do
    on "$h" 10 nsenter "--net=$HOST_LOCAL/net/$slot" ip -o -4 addr show dev "$SVC_DEV" 2>/dev/null |
      grep -q " ${SVC_IP[$slot]}/" && out+="$h "
  done
  echo "${out% }"
}

# CRIU's network lock stays in the source netns after a dump with --tcp-established (two-host-notes
# pitfall 6): with the iptables method a chain CRIU (iptables and ip6tables: runc), with the
# nftables method a table `inet CRIU-<checkpoint uuid>` (runtime). Restoring another checkpoint
# there later does not remove it (other uuid), so the service would stay blocked: remove it once
# the container left the host.
unlock_source() { # HOST SLOT
  on "$1" 10 nsenter "--net=$HOST_LOCAL/net/$2" sh "$HERE/unlock-netns.sh"
}
# Before the freeze: refuse new inbound TCP connections in the container's netns (a reset, so
# clients retry at once) and wait until the listeners' accept queues are empty. A connection
# still queued at the freeze cannot be dumped (pitfall 4); CRIU's skip-in-flight drops it after
# the kernel already acknowledged the request, and that client then hangs until its own timeout.
QUIESCE_RULES='table inet mig-quiesce {
  chain input {
    type filter hook input priority -200; policy accept;
    tcp flags & (syn | ack) == syn reject with tcp reset
  }
}'
# shellcheck disable=SC2016 # expanded by the host's sh
QUIESCE_SCRIPT='printf "%s\n" "$1" | nft -f - || exit 1
  i=0 empty=0
  while [ $i -lt 200 ] && [ $empty -lt 2 ]; do
    if ss -Hltn | awk "\$2 > 0 { q = 1 } END { exit q }"; then empty=$((empty + 1)); else empty=0; fi
    sleep 0.002; i=$((i + 1))
  done'
quiesce() { # HOST SLOT
  on "$1" 10 nsenter "--net=$HOST_LOCAL/net/$2" sh -c "$QUIESCE_SCRIPT" _ "$QUIESCE_RULES"
}
unquiesce() { # HOST SLOT
  on "$1" 10 nsenter "--net=$HOST_LOCAL/net/$2" sh -c 'nft delete table inet mig-quiesce 2>/dev/null; true'
}
# What CRIU's lock left in SLOT's netns on HOST (empty: nothing).
criu_locks() { # HOST SLOT
  on "$1" 10 nsenter "--net=$HOST_LOCAL/net/$2" sh -c \
    'nft list tables 2>/dev/null | grep -o "CRIU-[^ ]*"; iptables -S 2>/dev/null | grep -q CRIU && echo iptables-CRIU; true' | tr '\n' ' '
}

# The container inherits the runtime's stdio (run -d, restore -d): it must be /dev/null, never a
# pipe we read (we would wait for its EOF forever) nor a file (CRIU cannot dump it). The
# runtime's own errors go to --log.
start_container() { # HOST ID
  local h=$1 id=$2 lg="$HOST_LOCAL/work/$L-run-$2.log"
  rt "$h" 30 --log "$lg" run -d -b "$(bundle_of "$id")" "$id" </dev/null >/dev/null 2>&1 || {
    log "run $id on $h failed: $(on "$h" 5 tail -3 "$lg")"
    return 1
  }
}

remove_container() { # ID: wherever it is
  local h err
  for h in "${HOSTS[@]}"; do
    rt "$h" 10 state "$1" >/dev/null 2>&1 || continue
    err=$(rt "$h" 30 delete -f "$1" 2>&1) || log "$L: delete -f $1 on $h failed: $err"
  done
  return 0
}

wait_http() { # seconds
  local _
  for _ in $(seq $((${1:-5} * 10))); do
    on client 3 curl -s --max-time 1 "http://${SVC_IP[web]}:8080/" 2>/dev/null | grep -q 'migration bed' && return 0
    sleep 0.1
  done
  return 1
}

wait_counter() {
  local _
  for _ in $(seq 50); do
    on client 3 bash -c "exec 3<>/dev/tcp/${SVC_IP[counter]}/9000 && echo x >&3 && read -t 2 n <&3 && [ \"\$n\" = 1 ]" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# Item 5 of the issue, done by hand until `runtime migrate` does it: everything the bundle needs
# from the target host must be there before the container is frozen.
preflight() { # ID FROM TO
  local id=$1 from_host=$2 to=$3 src missing=()
  while read -r src; do
    [ -n "$src" ] || continue
    on "$to" 5 test -e "$src" || missing+=("$src")
  done < <(on A 10 jq -r '(.mounts[] | select(.type == "bind") | .source),
      (.linux.namespaces[] | select(.path) | .path), (.hooks[][]? | .path)' "$(bundle_of "$id")/config.json" | sort -u)
  [ ${#missing[@]} -eq 0 ] || {
    echo "host $to lacks ${missing[*]} (needed by $(bundle_of "$id")/config.json)"
    return 1
  }
  on "$to" 5 sh -c "mkdir -p '$STATE' && t='$STATE/.preflight-\$\$' && touch \"\$t\" && rm -f \"\$t\"" 2>/dev/null ||
    { echo "host $to: runtime state dir $STATE is not writable"; return 1; }
  # Images must be restored by the CRIU that wrote them.
  local here there
  here=$(on "$from_host" 10 criu --version 2>/dev/null | head -1)
  there=$(on "$to" 10 criu --version 2>/dev/null | head -1)
  [ "$here" = "$there" ] || { echo "CRIU differs: '$here' on $from_host, '$there' on $to"; return 1; }
}

# CRIU error lines (with one line of context) from a log on HOST.
criu_errors() { on "$1" 5 grep -B1 -E 'Error|error' "$2" 2>/dev/null | grep -v 'RLIMIT_NOFILE' | tail -4 | tr '\n' ' '; }

SEQ=0
# migrate_step ID FROM TO [force]: move container ID from host FROM to host TO.
# Sets M_FREEZE M_CKPT_MS M_RESTORE_MS M_TOTAL_MS M_IMAGE M_ERR (and M_PHASE on failure).
# On a failed restore it rolls back: the service IP leaves TO, the container is restored on FROM.
# Returns 0 moved, 1 failed (rolled back or not: M_ROLLBACK), 2 refused by the pre-flight check.
migrate_step() {
  local id=$1 from=$2 to=$3 force=${4:-} slot img work t0 t1 t2 out
  slot=$(slot_of "$id")
  SEQ=$((SEQ + 1))
  img="$SHARED/ckpt/$L-$id-$SEQ"
  work="$HOST_LOCAL/work/$L-$id-$SEQ"
  M_ERR="" M_PHASE="" M_ROLLBACK="" M_LOCKS="" M_REPORT="" M_QUIESCE_MS=0 M_DONE=0 M_IMAGE=0 M_CKPT_MS=0 M_RESTORE_MS=0 M_TOTAL_MS=0
  on A 10 mkdir -p "$SHARED/ckpt"
  on "$from" 10 mkdir -p "$work"
  if [ "$MODE" = runtime ]; then
    # `runtime migrate` (issue #6 items 3-5), run on the source: pre-flight on the target,
    # quiesce, checkpoint, restore on the target through the given command prefix (a command
    # on the target host; with real hosts `ssh HOST`), roll back to the source on failure. The
    # target uses the same --root, bundle, image and work paths (same strings on every host).
    # Its output goes to a file; the container it restores on the target must get /dev/null (or
    # its recorded stdio), never this file: CRIU could not dump it the next time.
    local out_file="$LOG_DIR/$L-migrate-$SEQ.out" prefix port
    prefix=$("$BED" prefix "$to") || { M_PHASE=bed M_ERR="no prefix for host $to"; return 1; }
    port=$([ "$slot" = web ] && echo 8080 || echo 9000)
    M_FREEZE=$(now_ms)
    local lazy=()
    # Lazy (post-copy): the target pulls memory pages from the source's page server.
    [ "$STRATEGY" = lazy ] && lazy=(--strategy lazy --page-server "$(host_ip "$from"):27500")
    rt "$from" 120 migrate --to "exec:$prefix" --target-root "$STATE" --image-path "$img" \
      --work-path "$work" --target-work-path "$work" --probe "tcp:${SVC_IP[$slot]}:$port" --json \
      "${lazy[@]}" "$id" </dev/null >"$out_file" 2>&1
    local rc=$?
    M_DONE=$(now_ms)
    M_TOTAL_MS=$((M_DONE - M_FREEZE))
    M_ERR=$(tail -3 "$out_file" | tr '\n' ' ')
    [ $rc = 0 ] || { M_PHASE=migrate; return 1; }
    # Its own report: {"downtime_ms":..,"frozen_ms":..,"checkpoint_ms":..,"restore_ms":..,"image_bytes":..}
    M_REPORT=$(jq -r '"migrate says: downtime \(.downtime_ms|floor) ms, frozen \(.frozen_ms|floor) ms, preflight \(.preflight_ms|floor) ms, checkpoint \(.checkpoint_ms|floor) ms, restore \(.restore_ms|floor) ms, image \(.image_bytes/1024|floor) KiB"' \
      "$out_file" 2>/dev/null | tail -1)
    M_CKPT_MS=$(jq -r '.checkpoint_ms|floor' "$out_file" 2>/dev/null | tail -1)
    M_RESTORE_MS=$(jq -r '.restore_ms|floor' "$out_file" 2>/dev/null | tail -1)
    M_IMAGE=$(jq -r '.image_bytes' "$out_file" 2>/dev/null | tail -1)
    # A CRIU network lock left in the source netns blocks the next restore there (pitfall 6):
    # migrate must remove it once the container runs on the target.
    M_LOCKS=$(criu_locks "$from" "$slot")
    M_LOCKS=${M_LOCKS% }
    M_QUIESCE_MS=-
    unlock_source "$from" "$slot"
    return 0
  fi
  if [ -z "$force" ]; then
    M_ERR=$(preflight "$id" "$from" "$to") || { M_PHASE=preflight; return 2; }
  fi
  on "$to" 10 mkdir -p "$work"
  M_FREEZE=$(now_ms)
  quiesce "$from" "$slot" || log "quiesce on $from failed (going on)"
  t0=$(now_ms)
  M_QUIESCE_MS=$((t0 - M_FREEZE))
  out=$(rt "$from" 60 checkpoint --tcp-established --image-path "$img" --work-path "$work" "$id" 2>&1)
  local rc=$?
  t1=$(now_ms)
  M_CKPT_MS=$((t1 - t0))
  if [ $rc != 0 ]; then
    unquiesce "$from" "$slot"
    M_PHASE=checkpoint
    M_ERR="checkpoint on $from failed (rc $rc): $(echo "$out" | tail -2 | tr '\n' ' ') | dump.log: $(criu_errors "$from" "$work/dump.log")"
    return 1
  fi
  rt "$to" 60 --log "$work/runtime.log" restore -d --tcp-established -b "$(bundle_of "$id")" \
    --image-path "$img" --work-path "$work" "$id" </dev/null >/dev/null 2>&1
  rc=$?
  t2=$(now_ms)
  M_RESTORE_MS=$((t2 - t1))
  M_TOTAL_MS=$((t2 - M_FREEZE))
  M_DONE=$t2
  M_IMAGE=$(on "$to" 10 du -sb "$img" | cut -f1)
  if [ $rc != 0 ]; then
    M_PHASE=restore
    M_ERR="restore on $to failed (rc $rc): $(on "$to" 5 tail -2 "$work/runtime.log" | tr '\n' ' ') | restore.log: $(criu_errors "$to" "$work/restore.log")"
    rollback "$id" "$from" "$to" "$img"
    return 1
  fi
  M_LOCKS=$(criu_locks "$from" "$slot")
  M_LOCKS=${M_LOCKS% }
  unlock_source "$from" "$slot"
  return 0
}

# After a failed restore on TO: the IP must leave TO, the container comes back on FROM.
rollback() { # ID FROM TO IMAGE
  local id=$1 from=$2 to=$3 img=$4 slot where work
  slot=$(slot_of "$id")
  local locks
  where=$(ip_hosts "$slot")
  [[ " $where " == *" $to "* ]] && M_ROLLBACK+="IP was left on $to after the failed restore; "
  # A failed restore can leave CRIU's lock in the target netns too (runc #3146).
  locks=$(criu_locks "$to" "$slot")
  [ -z "$locks" ] || M_ROLLBACK+="CRIU lock left on $to by the failed restore: ${locks% } (removed); "
  unlock_source "$to" "$slot"
  rt "$to" 30 delete -f "$id" >/dev/null 2>&1
  on "$to" 10 "$HOOK" release "${SVC_IP[$slot]}/$BED_PREFIX_LEN" "$SVC_DEV" --netns-path "$HOST_LOCAL/net/$slot" </dev/null
  work="$HOST_LOCAL/work/$L-$id-$SEQ-rollback"
  on "$from" 10 mkdir -p "$work"
  rt "$from" 60 --log "$work/runtime.log" restore -d --tcp-established -b "$(bundle_of "$id")" \
    --image-path "$img" --work-path "$work" "$id" </dev/null >/dev/null 2>&1 || {
    M_ROLLBACK+="ROLLBACK FAILED: restore on $from: $(on "$from" 5 tail -2 "$work/runtime.log" | tr '\n' ' ') $(criu_errors "$from" "$work/restore.log")"
    return 1
  }
  unlock_source "$from" "$slot"
  M_ROLLBACK+="restored on $from"
}

# --- clients -----------------------------------------------------------------------------

# Fetches the page every ~50 ms until STOP exists; one line per request: start end ok|fail.
http_client_start() { # LOG STOP
  # shellcheck disable=SC2016 # expanded by the client's bash
  on client 600 bash -c '
    while [ ! -e "$3" ]; do
      s=$EPOCHREALTIME
      # A dropped SYN (address in transit) fails fast and is retried; an answer on a connection
      # held across the move (--tcp-established) may take up to 2 s.
      out=$(curl -s --connect-timeout 0.1 --max-time 2 "$1")
      rc=$? # curl: 28 timeout, 7 refused, 56 reset
      if [ $rc = 0 ] && [[ $out == *"migration bed"* ]]; then r=ok; else r=fail-$rc; fi
      echo "$s $EPOCHREALTIME $r" >>"$2"
      sleep 0.05
    done' _ "http://${SVC_IP[web]}:8080/" "$1" "$2" &
  CLIENT_PIDS+=($!)
}

# One connection to the counter; a line every ~100 ms, the reply logged: start end number.
tcp_client_start() { # LOG STOP
  # shellcheck disable=SC2016 # expanded by the client's bash
  on client 600 bash -c '
    exec 3<>"/dev/tcp/$1/9000" || { echo "$EPOCHREALTIME $EPOCHREALTIME ERR-connect" >>"$2"; exit 1; }
    while [ ! -e "$3" ]; do
      s=$EPOCHREALTIME
      echo x >&3 || { echo "$s $EPOCHREALTIME ERR-write" >>"$2"; exit 1; }
      if read -t 20 -r n <&3; then echo "$s $EPOCHREALTIME $n" >>"$2"; else echo "$s $EPOCHREALTIME ERR-read" >>"$2"; exit 1; fi
      sleep 0.1
    done
    echo "$EPOCHREALTIME $EPOCHREALTIME END" >>"$2"' _ "${SVC_IP[counter]}" "$1" "$2" &
  CLIENT_PIDS+=($!)
}

clients_stop() { # STOP
  touch "$1"
  local p
  for p in "${CLIENT_PIDS[@]}"; do wait "$p" 2>/dev/null; done
  CLIENT_PIDS=()
}

# From an http client log: "requests failed longest_gap_ms hung" (gap = between successful
# answers; hung = requests that connected, then got no answer for 2 s: curl's code 28 after >1 s).
http_stats() {
  awk '{ n++; e = $2 * 1000 }
       $3 ~ /^fail/ { f++ }
       $3 == "fail-28" && ($2 - $1) > 1 { h++ }
       $3 == "ok" { if (last && e - last > gap) gap = e - last; last = e }
       END { printf "%d %d %d %d\n", n, f, gap, h }' "$1"
}
# Downtime of one move: the longest interval between two consecutive successful answers that
# overlaps [FREEZE_MS, DONE_MS] (the checkpoint command's start to the restore's end). As no
# answer can come while the container is frozen or in transit, this is "last success before the
# freeze -> first success after the restore".
http_downtime() { # LOG FREEZE_MS DONE_MS
  awk -v fz="$2" -v done="$3" '$3 == "ok" { e = $2 * 1000
         if (last && e >= fz && last <= done && e - last > gap) gap = e - last; last = e }
       END { if (gap) printf "%d\n", gap; else print "n/a" }' "$1"
}

# --- tests -------------------------------------------------------------------------------

write_markers() {
  # shellcheck disable=SC2016 # expanded by the container's sh
  rt A 10 exec httpd sh -c 'for d in /tmp /run /var/log/httpd /run/httpd; do echo "mark-$d" >"$d/marker"; done'
}

marker_check() { # HOST -> "ok" or what is missing
  local out
  # shellcheck disable=SC2016 # expanded by the container's sh
  out=$(rt "$1" 10 exec httpd sh -c 'for d in /tmp /run /var/log/httpd /run/httpd; do cat $d/marker 2>/dev/null || echo "missing $d/marker"; done' 2>&1)
  if [ "$out" = "$(printf 'mark-%s\n' /tmp /run /var/log/httpd /run/httpd)" ]; then
    echo ok
  else
    echo "$out" | tr '\n' ' '
  fi
}

# Remembers a move's numbers; the downtime is computed once the client has stopped.
MOVES=()
move_note() { # TEST LABEL
  MOVES+=("$2 $M_FREEZE $M_DONE $M_QUIESCE_MS ${M_CKPT_MS:-0} ${M_RESTORE_MS:-0} $M_TOTAL_MS ${M_IMAGE:-0} ${M_LOCKS// /,}")
  [ -z "$M_REPORT" ] || note "$1" "$2: $M_REPORT"
  if [ "$MODE" = runtime ] && [ -n "$M_LOCKS" ]; then
    fail "$1" "$2: migrate left CRIU's network lock in the source netns ($M_LOCKS): the next restore there would be blocked (pitfall 6); removed by the test"
  fi
}
moves_report() { # TEST LOG SLOT
  MOVE_DOWNS=""
  local m label fz dn qs ck rs tot img locks dt tl hooklog="$LOG_DIR/$L-$1-hooks.log" h
  : >"$hooklog"
  for h in "${HOSTS[@]}"; do
    on "$h" 10 cat "$HOST_LOCAL/service-ip.log" 2>/dev/null | sed "s/^/$h /" >>"$hooklog"
  done
  for m in "${MOVES[@]}"; do
    read -r label fz dn qs ck rs tot img locks <<<"$m"
    dt=$(http_downtime "$2" "$fz" "$dn")
    tl=$(ip_timeline "$hooklog" "${label%%->*}" "${label##*->}" "${SVC_IP[$3]}" "$fz" "$dn")
    MOVE_DOWNS+="${MOVE_DOWNS:+, }$label $dt"
    note "$1" "$label: downtime ${dt} ms (quiesce $qs ms, checkpoint $ck ms, restore $rs ms, total $tot ms, image $((img / 1024)) KiB; $tl${locks:+; CRIU lock left on the source: ${locks%,} (removed)})"
    [[ $tl == *"order ok"* ]] || fail "$1" "$label: service IP hand-over out of order: $tl"
  done
  MOVES=()
}

# From the hooks' logs (lines "HOST time action address ..."): when the address left FROM, was
# added on TO and announced there, in ms after the move started; and whether that order held
# (it must leave FROM before it is added on TO, and be announced only after being added).
ip_timeline() { # HOOKLOG FROM TO IP FREEZE_MS DONE_MS
  awk -v from="$2" -v to="$3" -v ip="$4" -v fz="$5" -v done="$6" '
    { t = $2 * 1000; split($4, a, "/") }
    t < fz || t > done + 3000 || a[1] != ip { next }
    $1 == from && $3 == "release" && !rel { rel = t - fz }
    $1 == to && $3 == "claim" && !clm { clm = t - fz; how = ($0 ~ /deferred/) ? "deferred" : "at once" }
    $1 == to && $3 == "announce" && / announced / && !ann { ann = t - fz }
    END {
      if (!ann && how == "at once") ann = clm
      ok = rel && clm && ann && rel <= clm && clm <= ann
      printf "IP: left %s +%d ms, added on %s +%d ms, announced +%d ms (%s, restore done +%d ms), order %s",
        from, rel, to, clm, ann, how, done - fz, ok ? "ok" : "WRONG"
    }' "$1"
}

test_http() {
  local lg="$LOG_DIR/$L-http.log" stop="$LOG_DIR/$L-http.stop" where m1 m2 ok=1
  rm -f "$lg" "$stop"
  if ! start_container A httpd || ! wait_http 5; then
    fail http "httpd did not answer on A"
    fail tmpfs "not run (httpd did not start)"
    return
  fi
  where=$(ip_hosts web)
  [ "$where" = A ] || { fail http "service IP on '$where' after run on A, expected A"; ok=0; }
  write_markers
  http_client_start "$lg" "$stop"
  sleep 1
  if migrate_step httpd A B; then
    move_note http "A->B"
    wait_http 3 || { fail http "no answer within 3 s after A->B"; ok=0; }
    sleep 1
    where=$(ip_hosts web)
    [ "$where" = B ] || { fail http "service IP on '$where' after A->B, expected B"; ok=0; }
    m1=$(marker_check B)
    if migrate_step httpd B A; then
      move_note http "B->A"
      wait_http 3 || { fail http "no answer within 3 s after B->A"; ok=0; }
      sleep 1
      where=$(ip_hosts web)
      [ "$where" = A ] || { fail http "service IP on '$where' after B->A, expected A"; ok=0; }
      m2=$(marker_check A)
    else
      fail http "B->A failed in $M_PHASE: $M_ERR ${M_ROLLBACK:+(rollback: $M_ROLLBACK)}"
      ok=0
    fi
  else
    fail http "A->B failed in $M_PHASE: $M_ERR ${M_ROLLBACK:+(rollback: $M_ROLLBACK)}"
    ok=0
  fi
  clients_stop "$stop"
  moves_report http "$lg" web
  read -r st_n st_f st_gap st_hung <<<"$(http_stats "$lg")"
  note http "requests $st_n, failed $st_f, longest gap $st_gap ms"
  if [ "${st_hung:-0}" -gt 0 ]; then
    fail http "$st_hung request(s) connected, then got no answer for 2 s: a connection the kernel accepted before the freeze was dropped (in-flight at the dump, pitfall 4)"
    ok=0
  fi
  key http "downtime ${MOVE_DOWNS:-n/a} ms; failed $st_f/$st_n; gap $st_gap ms"
  # The client must get answers again after each move; the gap must stay bounded.
  if [ "$ok" = 1 ] && [ "$(tail -1 "$lg" | awk '{print $3}')" != ok ]; then
    fail http "the last request failed"
    ok=0
  fi
  [ "$ok" = 1 ] && [ "${st_gap:-99999}" -gt 10000 ] && { fail http "longest gap ${st_gap} ms > 10 s"; ok=0; }
  [ "$ok" = 1 ] && pass http
  if [ -n "${m1:-}" ] && [ -n "${m2:-}" ]; then
    if [ "$m1" = ok ] && [ "$m2" = ok ]; then
      pass tmpfs "4 tmpfs markers after A->B and B->A"
      key tmpfs "4/4 markers after each move"
    else
      fail tmpfs "after A->B: $m1; after B->A: $m2"
    fi
  else
    [ "${RES[tmpfs,$L]:-}" ] || fail tmpfs "not checked: a move failed"
  fi
  remove_container httpd
  sleep 0.2
  where=$(ip_hosts web)
  [ -z "$where" ] || { fail http "service IP still on '$where' after delete (poststop release)"; }
}

test_tcp() {
  local lg="$LOG_DIR/$L-tcp.log" stop="$LOG_DIR/$L-tcp.stop" ok=1 n_before n_after stats
  rm -f "$lg" "$stop"
  if ! start_container A counter || ! wait_counter; then
    fail tcp "counter did not answer on A"
    remove_container counter
    return
  fi
  tcp_client_start "$lg" "$stop"
  sleep 1
  n_before=$(wc -l <"$lg")
  if migrate_step counter A B; then
    move_note tcp "A->B"
    note tcp "A->B: checkpoint ${M_CKPT_MS} ms, restore ${M_RESTORE_MS} ms"
    sleep 1.5
    if migrate_step counter B A; then
      move_note tcp "B->A"
      note tcp "B->A: checkpoint ${M_CKPT_MS} ms, restore ${M_RESTORE_MS} ms"
      sleep 1.5
    else
      fail tcp "B->A failed in $M_PHASE: $M_ERR"
      ok=0
    fi
  else
    fail tcp "A->B failed in $M_PHASE: $M_ERR"
    ok=0
  fi
  clients_stop "$stop"
  MOVES=()
  n_after=$(wc -l <"$lg")
  # Every reply must be the previous one plus one, on the one connection, to the END.
  stats=$(awk '$3 ~ /^[0-9]+$/ { if (prev && $3 != prev + 1) bad++; prev = $3; e = $2 * 1000;
                 if (last && e - last > gap) gap = e - last; last = e; n++ }
               $3 ~ /^ERR/ { err = $3 } $3 == "END" { end = 1 }
               END { printf "%d %d %d %s %d\n", n, bad, gap, (err ? err : "-"), end }' "$lg")
  read -r t_n t_bad t_gap t_err t_end <<<"$stats"
  note tcp "replies $t_n on one connection (last $(awk '$3 ~ /^[0-9]+$/ {v=$3} END {print v}' "$lg")), longest gap $t_gap ms"
  if [ "$ok" = 1 ]; then
    if [ "$t_err" != - ]; then
      fail tcp "client connection broke: $t_err ($(grep -c . "$lg") lines)"
    elif [ "$t_bad" != 0 ] || [ "$t_end" != 1 ]; then
      fail tcp "sequence broken ($t_bad jumps, end=$t_end)"
    elif [ "$n_after" -le "$n_before" ]; then
      fail tcp "no replies after the moves"
    else
      pass tcp "$t_n replies, longest gap $t_gap ms"
      key tcp "$t_n replies on 1 connection, gap $t_gap ms"
    fi
  fi
  remove_container counter
}

# A failure on the target: SETUP/UNDO are commands run on B around the attempt.
failure_case() { # TEST DESCRIPTION SETUP UNDO
  local t=$1 what=$2 setup=$3 undo=$4 ok=1
  if ! start_container A httpd || ! wait_http 5; then
    fail "$t" "httpd did not answer on A"
    remove_container httpd
    return
  fi
  write_markers
  on B 10 sh -c "$setup"
  if [ "$MODE" = runtime ]; then
    failure_runtime_migrate "$t" "$what" || ok=0
  else
    failure_manual "$t" "$what" || ok=0
  fi
  on B 10 sh -c "$undo"
  remove_container httpd
  reset_slots
  if [ "$ok" = 1 ]; then
    pass "$t" "refused/rolled back, IP and service back on A"
    local left=""
    [[ $M_ROLLBACK == *"IP was left"* ]] && left=" (IP left on B by the failed restore, released by the test)"
    case $t,$MODE in
      nobind,manual) key "$t" "pre-flight refused; forced: restore failed, back on A$left" ;;
      criuver,manual) key "$t" "pre-flight refused, still on A" ;;
      *,manual) key "$t" "restore failed, back on A$left" ;;
      *) key "$t" "migrate failed, back on A" ;;
    esac
  fi
}

# The service must be back on A, whole: IP, answers, tmpfs contents.
back_on_a() { # TEST
  local where
  where=$(ip_hosts web)
  if [ "$where" != A ]; then
    fail "$1" "afterwards the service IP is on '$where', expected A"
  elif ! wait_http 3; then
    fail "$1" "afterwards the service does not answer on A"
  elif [ "$(marker_check A)" != ok ]; then
    fail "$1" "afterwards tmpfs markers are lost: $(marker_check A)"
  else
    return 0
  fi
  return 1
}

# By hand: the pre-flight check must refuse a missing bind source; forced, the restore on B
# must fail and the rollback bring everything back on A.
failure_manual() { # TEST DESCRIPTION
  local t=$1 what=$2 rc
  # The pre-flight check must refuse these two; criuver ends there, nobind is then forced.
  if [ "$t" = criuver ] || [ "$t" = nobind ]; then
    migrate_step httpd A B
    rc=$?
    if [ $rc != 2 ]; then
      fail "$t" "pre-flight did not refuse although $what (rc $rc${M_PHASE:+, $M_PHASE failed: $M_ERR})"
      return 1
    fi
    note "$t" "pre-flight refused: $M_ERR"
    back_on_a "$t" || return 1
    [ "$t" = criuver ] && return 0
  fi
  migrate_step httpd A B force
  rc=$?
  if [ $rc = 0 ]; then
    fail "$t" "restore on B succeeded although $what"
    return 1
  fi
  note "$t" "$M_PHASE failed: $M_ERR"
  note "$t" "rollback: $M_ROLLBACK"
  if [ "$M_PHASE" != restore ]; then
    fail "$t" "expected the restore on B to fail, got $M_PHASE"
    return 1
  fi
  back_on_a "$t"
}

# `runtime migrate`: it must refuse a missing bind source before freezing (item 5), and roll
# back by itself when the restore on B fails (item 4), saying which phase failed.
failure_runtime_migrate() { # TEST DESCRIPTION
  local t=$1 what=$2
  if migrate_step httpd A B; then
    fail "$t" "migrate succeeded although $what"
    return 1
  fi
  note "$t" "migrate failed: $M_ERR"
  local locks
  locks=$(criu_locks B web)
  if [ -n "$locks" ]; then
    fail "$t" "migrate left CRIU's lock in B's service netns after the failed restore: $locks (removed by the test)"
    unlock_source B web
    return 1
  fi
  case $t in
    nobind) [[ $M_ERR == *"$HOST_LOCAL/www"* ]] || { fail "$t" "the error does not name $HOST_LOCAL/www"; return 1; } ;;
    criuver) [[ $M_ERR == *CRIU* ]] || { fail "$t" "the error does not name the CRIU versions"; return 1; } ;;
    *) [[ $M_ERR == *restore* ]] || { fail "$t" "the error does not say the restore failed"; return 1; } ;;
  esac
  back_on_a "$t"
}

# Between tests, with no container running: no service IP, CRIU lock or quiesce rule left in any
# slot (a failed test must not decide the next one).
reset_slots() {
  local h sl
  for h in "${HOSTS[@]}"; do
    for sl in "${SVC_SLOTS[@]}"; do
      on "$h" 10 "$HOOK" release "${SVC_IP[$sl]}/$BED_PREFIX_LEN" "$SVC_DEV" --netns-path "$HOST_LOCAL/net/$sl" </dev/null 2>/dev/null
      unlock_source "$h" "$sl"
    done
  done
}

run_one() { # PATH[:migrate|:migrate-lazy]
  BIN=${1%:migrate*}
  L=$(basename "$BIN")
  MODE=manual
  STRATEGY=plain
  if [ "$1" != "$BIN" ]; then
    MODE=runtime
    L+=+migrate
    if [ "${1##*:}" = migrate-lazy ]; then
      STRATEGY=lazy
      L+=-lazy
    fi
  fi
  LABELS+=("$L")
  STATE="$HOST_LOCAL/state/$L"
  log "=== $L ($BIN, moved $([ "$MODE" = runtime ] && echo "by migrate" || echo "by hand")) ==="
  [ -x "$BIN" ] || {
    local t
    for t in "${TESTS[@]}"; do fail "$t" "$BIN is not executable"; done
    return
  }
  timeout 30 "$BED" verify || {
    local t
    for t in "${TESTS[@]}"; do fail "$t" "bed.sh verify failed: a slot netns is wrong"; done
    return
  }
  on A 5 mkdir -p "$STATE"
  on B 5 mkdir -p "$STATE"
  reset_slots  # a clean slate
  test_http
  reset_slots
  test_tcp
  reset_slots
  failure_case nobind "B lacks the bind source $HOST_LOCAL/www" \
    "mv '$HOST_LOCAL/www' '$HOST_LOCAL/www.off'" "mv '$HOST_LOCAL/www.off' '$HOST_LOCAL/www'"
  failure_case rostate "B's state dir $STATE is read-only" \
    "mount --bind '$STATE' '$STATE' && mount -o remount,bind,ro '$STATE'" "umount '$STATE'"
  # Fails late: CRIU cannot bind httpd's listening socket on B, after the hooks claimed the IP.
  failure_case busyport "port 8080 is taken in B's service netns" \
    "nsenter --net='$HOST_LOCAL/net/web' busybox nc -ll -p 8080 -e true </dev/null >/dev/null 2>&1 & echo \$! >'$HOST_LOCAL/busyport.pid'" \
    "kill \$(cat '$HOST_LOCAL/busyport.pid'); rm -f '$HOST_LOCAL/busyport.pid'"
  # B runs another CRIU (Debian's 3.17, bound over /usr/local/sbin/criu in B's mount namespace).
  if [ -n "$ALT_CRIU" ]; then
    failure_case criuver "B runs CRIU $ALT_CRIU_VERSION" \
      "mount --bind '$ALT_CRIU' /usr/local/sbin/criu" "umount /usr/local/sbin/criu"
  else
    skip criuver "$ALT_CRIU_WHY"
  fi
  # Nothing may be left running on either host.
  local h left
  for h in "${HOSTS[@]}"; do
    left=$(rt "$h" 10 list -q 2>/dev/null | tr '\n' ' ')
    [ -z "${left// /}" ] || log "$L: containers left on $h: $left"
  done
}

summary() {
  local t l w=7 row nums
  for l in "${LABELS[@]}"; do [ ${#l} -gt "$w" ] && w=${#l}; done
  echo
  echo "== migration tests (storage: $STORAGE; X+migrate: moved by \`X migrate\`, others by hand) =="
  row=$(printf '%-8s' test)
  for l in "${LABELS[@]}"; do row+=$(printf ' | %-*s' "$w" "$l"); done
  echo "$row | numbers"
  for t in "${TESTS[@]}"; do
    row=$(printf '%-8s' "$t")
    nums=""
    for l in "${LABELS[@]}"; do
      row+=$(printf ' | %-*s' "$w" "${RES[$t,$l]:-n/a}")
      [ -n "${KEY[$t,$l]:-}" ] && nums+="${nums:+ || }$l: ${KEY[$t,$l]}"
    done
    echo "$row | $nums"
  done
  echo
  for l in "${LABELS[@]}"; do
    echo "-- $l"
    for t in "${TESTS[@]}"; do
      [ -n "${NUM[$t,$l]:-}" ] && printf '  %-8s %s\n' "$t" "${NUM[$t,$l]}"
    done
  done
  echo "logs: $LOG_DIR"
}

# Another CRIU for the version-mismatch case: Debian's package, unpacked (not installed) into
# ALT_CRIU_DIR once and kept there. Sets ALT_CRIU (binary), or ALT_CRIU_WHY (why not).
ALT_CRIU_DIR=${ALT_CRIU_DIR:-/var/tmp/mig-bed-criu-alt}
ALT_CRIU="" ALT_CRIU_VERSION="" ALT_CRIU_WHY=""
alt_criu() {
  local bin="$ALT_CRIU_DIR/root/usr/sbin/criu" mine
  if [ ! -x "$bin" ]; then
    mkdir -p "$ALT_CRIU_DIR"
    (cd "$ALT_CRIU_DIR" && timeout 120 apt-get download -q criu >/dev/null 2>&1 &&
      dpkg-deb -x criu_*.deb root) || true
  fi
  [ -x "$bin" ] || { ALT_CRIU_WHY="no other CRIU (apt-get download criu failed)"; return; }
  ALT_CRIU_VERSION=$(timeout 10 "$bin" --version 2>/dev/null | sed -n 's/^Version: //p')
  mine=$(timeout 10 criu --version 2>/dev/null | sed -n 's/^Version: //p')
  if [ -z "$ALT_CRIU_VERSION" ] || [ "$ALT_CRIU_VERSION" = "$mine" ]; then
    ALT_CRIU_WHY="$bin is not another CRIU version (${ALT_CRIU_VERSION:-none} vs $mine)"
    return
  fi
  ALT_CRIU=$bin
}

main() {
  [ "$(id -u)" = 0 ] || { echo "test.sh: run as root" >&2; exit 1; }
  mkdir -p "$LOG_DIR"
  timeout 60 "$BED" down >/dev/null 2>&1
  timeout 120 "$BED" up || { echo "test.sh: bed.sh up failed" >&2; exit 1; }
  timeout 30 "$BED" verify || { echo "test.sh: bed.sh verify failed" >&2; exit 1; }
  timeout 300 "$HERE/make-bundle.sh" || { echo "test.sh: make-bundle.sh failed" >&2; exit 1; }
  alt_criu
  local b
  for b in "${BINS[@]}"; do run_one "$b"; done
  summary | tee "$LOG_DIR/summary.txt"
  return $FAILED
}

main
