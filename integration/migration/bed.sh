#!/usr/bin/env bash
# Two-host migration bed on one machine, built from network namespaces (see README.md):
#   bridge  netns ${BED_NS}br with bridge br0; every other netns has eth0 plugged into it
#   storage netns ${BED_NS}st, $IP_STORAGE: sshd exporting $EXPORT_DIR (STORAGE=sshfs)
#   A, B    netns ${BED_NS}A/${BED_NS}B ($IP_A/$IP_B), each with a long-lived holder process in
#           its own private mount namespace: tmpfs on $HOST_LOCAL (state, work dirs, host-local
#           data), shared storage at $SHARED (same path on both), and one container netns per
#           service slot bound at $HOST_LOCAL/net/<slot> (no address until a container claims it)
#   client  netns ${BED_NS}cl, $IP_CLIENT
# Usage: bed.sh up | down | status | verify | prefix HOST | exec HOST CMD...
#        (HOST: A, B, storage, client; prefix prints the command prefix `exec` uses)
# `up` is idempotent; `down` removes everything in reverse order, even after a failed run.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=config.sh
. "$HERE/config.sh"

log() { printf '[bed] %s\n' "$*" >&2; }
die() {
  printf '[bed] error: %s\n' "$*" >&2
  exit 1
}
usage() {
  sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

netns_path() { echo "/run/netns/$1"; }
alive() { # a zombie is dead (PID 1 here reaps late); builtins only: `exec` is on hot paths
  local line s
  read -r line 2>/dev/null <"/proc/$1/stat" || return 1
  s=${line##*) }
  s=${s%% *}
  [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
}
holder_pid() {
  local f="$BED_DIR/holder-$1.pid" p c
  read -r p 2>/dev/null <"$f" || return 1
  alive "$p" || return 1
  # Still our holder: a sleep whose mount namespace differs from ours.
  read -r c 2>/dev/null <"/proc/$p/comm" || return 1
  [ "$c" = sleep ] || return 1
  [ ! "/proc/$p/ns/mnt" -ef /proc/self/ns/mnt ] || return 1
  echo "$p"
}
# Sets exec_in to the command prefix that runs a command on HOST.
host_prefix() {
  local h=$1 p
  case $h in
    A | B)
      p=$(holder_pid "$h") || die "host $h is not up (no holder process): run bed.sh up"
      # The host's own cgroup too: the hosts share one kernel, and containers with a
      # relative cgroupsPath must not share cgroups across hosts (a lazy migration has the
      # container on both at once, frozen on the source).
      exec_in=(nsenter -t "$p" -m -n -- "$BED_DIR/in-cgroup.sh" "$h")
      ;;
    storage | client | bridge) exec_in=(nsenter "--net=$(netns_path "$(ns_of "$h")")" --) ;;
    *) die "unknown host $h (A, B, storage, client, bridge)" ;;
  esac
}
in_host() { # HOST CMD...: run CMD with the host's mount and network namespaces
  host_prefix "$1"
  shift
  "${exec_in[@]}" "$@"
}

# Installs what the bed needs when missing (Debian packages), like bundle-examples/build-all.sh.
need_tools() {
  [ "$(id -u)" = 0 ] || die "run as root"
  local t pkgs=() want=(ip:iproute2 unshare:util-linux nsenter:util-linux arping:iputils-arping
    iptables:iptables nft:nftables ss:iproute2 jq:jq curl:curl busybox:busybox-static)
  [ "$STORAGE" != sshfs ] || want+=(sshfs:sshfs ssh:openssh-client ssh-keygen:openssh-client /usr/sbin/sshd:openssh-server)
  case $STORAGE in nfs*) want+=(mount.nfs:nfs-common) ;; esac
  for t in "${want[@]}"; do
    command -v "${t%%:*}" >/dev/null || [[ " ${pkgs[*]} " == *" ${t#*:} "* ]] || pkgs+=("${t#*:}")
  done
  [ ${#pkgs[@]} -eq 0 ] && return
  log "apt-get install ${pkgs[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
    ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; then
    die "cannot install ${pkgs[*]}"
  fi
}

# --- network -----------------------------------------------------------------------------

# Netns NAME with eth0 plugged into the bridge (port b-NAME); ADDR optional.
node_net() {
  local name=$1 addr=${2:-} br port="b-$1"
  br=$(ns_of bridge)
  [ -e "$(netns_path "$name")" ] || ip netns add "$name"
  if ! ip -n "$name" link show eth0 >/dev/null 2>&1 || ! ip -n "$br" link show "$port" >/dev/null 2>&1; then
    ip -n "$name" link del eth0 2>/dev/null || true
    ip -n "$br" link del "$port" 2>/dev/null || true
    ip link del "$port" 2>/dev/null || true
    ip link add "$port" type veth peer name "t-$name"
    ip link set "$port" netns "$br"
    ip link set "t-$name" netns "$name"
    ip -n "$name" link set "t-$name" name eth0
  fi
  ip -n "$br" link set "$port" master br0 up
  ip -n "$name" link set lo up
  ip -n "$name" link set eth0 up
  [ -z "$addr" ] || ip -n "$name" addr replace "$addr/$BED_PREFIX_LEN" dev eth0
}

net_up() {
  local br h s
  br=$(ns_of bridge)
  [ -e "$(netns_path "$br")" ] || ip netns add "$br"
  ip -n "$br" link show br0 >/dev/null 2>&1 || ip -n "$br" link add br0 type bridge stp_state 0 forward_delay 0
  ip -n "$br" link set br0 up
  node_net "$(ns_of storage)" "$IP_STORAGE"
  node_net "$(ns_of client)" "$IP_CLIENT"
  node_net "$(ns_of A)" "$IP_A"
  node_net "$(ns_of B)" "$IP_B"
  for h in "${HOSTS[@]}"; do
    for s in "${SVC_SLOTS[@]}"; do node_net "$(slot_ns "$h" "$s")"; done
  done
}

# --- storage -----------------------------------------------------------------------------

sshd_up() {
  local d="$BED_DIR/ssh" st
  st=$(ns_of storage)
  mkdir -p "$d" "$EXPORT_DIR" /run/sshd
  chmod 700 "$d"
  touch "$EXPORT_DIR/.mig-bed-export"
  [ -f "$d/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$d/host_ed25519"
  [ -f "$d/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$d/id_ed25519"
  cp "$d/id_ed25519.pub" "$d/authorized_keys"
  cat >"$d/sshd_config" <<EOF
ListenAddress $IP_STORAGE
Port 22
HostKey $d/host_ed25519
PidFile $BED_DIR/sshd.pid
AuthorizedKeysFile $d/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
Subsystem sftp internal-sftp
EOF
  if [ -f "$BED_DIR/sshd.pid" ] && alive "$(cat "$BED_DIR/sshd.pid")"; then return; fi
  nsenter "--net=$(netns_path "$st")" -- /usr/sbin/sshd -f "$d/sshd_config" -E "$BED_DIR/sshd.log"
  local _
  for _ in $(seq 50); do
    nsenter "--net=$(netns_path "$st")" -- bash -c "exec 3<>/dev/tcp/$IP_STORAGE/22" 2>/dev/null && return
    sleep 0.1
  done
  die "sshd on the storage host did not start: $(tail -3 "$BED_DIR/sshd.log" 2>/dev/null)"
}

# Mounts the shared storage at $SHARED on host H (inside its mount namespace).
storage_mount() {
  local h=$1 src
  in_host "$h" mountpoint -q "$SHARED" && return
  in_host "$h" mkdir -p "$SHARED"
  case $STORAGE in
    sshfs)
      in_host "$h" sshfs "root@$IP_STORAGE:$EXPORT_DIR" "$SHARED" \
        -o "IdentityFile=$BED_DIR/ssh/id_ed25519,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,LogLevel=ERROR" \
        -o "allow_other,default_permissions,dir_cache=no,reconnect,ServerAliveInterval=5,ServerAliveCountMax=3${STORAGE_OPTS:+,$STORAGE_OPTS}"
      ;;
    nfs://* | nfs4://*)
      src=${STORAGE#*://}
      in_host "$h" mount -t "${STORAGE%%://*}" -o "${STORAGE_OPTS:-hard,noac,lookupcache=none}" "$src" "$SHARED"
      ;;
    bind:*)
      src=${STORAGE#bind:}
      [ -d "$src" ] || die "STORAGE=$STORAGE: $src is not a directory"
      in_host "$h" mount --bind "$src" "$SHARED"
      ;;
    *) die "STORAGE=$STORAGE: expected sshfs, nfs://SERVER:/EXPORT, nfs4://SERVER:/EXPORT or bind:/DIR" ;;
  esac
  in_host "$h" mountpoint -q "$SHARED" || die "host $h: $SHARED is not mounted"
}

# --- hosts -------------------------------------------------------------------------------

holder_up() {
  local h=$1 p ns
  if p=$(holder_pid "$h"); then
    log "host $h: holder $p"
  else
    ns=$(netns_path "$(ns_of "$h")")
    # From the root namespace, joining only the netns: `ip netns exec` would remount /sys and
    # hide the cgroup v1 mounts (two-host-notes pitfall 1).
    setsid unshare --mount --propagation private -- nsenter "--net=$ns" -- sleep infinity </dev/null >/dev/null 2>&1 &
    p=$!
    local _
    for _ in $(seq 50); do
      [ "$(cat "/proc/$p/comm" 2>/dev/null)" = sleep ] &&
        [ "$(readlink "/proc/$p/ns/net")" = "$(readlink "$ns")" ] && break
      sleep 0.05
    done
    echo "$p" >"$BED_DIR/holder-$h.pid"
    holder_pid "$h" >/dev/null || die "host $h: holder did not start"
    log "host $h: holder $p started"
  fi
  mkdir -p "$HOST_LOCAL"
  in_host "$h" mountpoint -q "$HOST_LOCAL" || in_host "$h" mount -t tmpfs -o mode=755,size=512m "rt-bed-$h" "$HOST_LOCAL"
  in_host "$h" mkdir -p "$HOST_LOCAL/state" "$HOST_LOCAL/work" "$HOST_LOCAL/net" "$HOST_LOCAL/bin"
  echo "$h" | in_host "$h" tee "$HOST_LOCAL/hostname" >/dev/null
  local s target sp
  for s in "${SVC_SLOTS[@]}"; do
    target="$HOST_LOCAL/net/$s"
    in_host "$h" mountpoint -q "$target" 2>/dev/null && continue
    in_host "$h" touch "$target"
    # Bind through /proc/PID/ns/net of a short-lived process in the slot netns: works whatever
    # the holder's copy of /run/netns shows. Only once nsenter has switched: before that the
    # process is still in OUR netns, and binding that would hand containers (and the hook's
    # addresses) the root namespace.
    ns=$(netns_path "$(slot_ns "$h" "$s")")
    nsenter "--net=$ns" -- sleep 30 &
    sp=$!
    for _ in $(seq 200); do
      [ "/proc/$sp/ns/net" -ef "$ns" ] && break
      sleep 0.01
    done
    [ "/proc/$sp/ns/net" -ef "$ns" ] || die "host $h: helper did not enter $ns"
    in_host "$h" mount --bind "/proc/$sp/ns/net" "$target"
    kill "$sp" 2>/dev/null || true
    wait "$sp" 2>/dev/null || true
  done
  storage_mount "$h"
  verify_host "$h"
}

# Each slot path on host H must be that host's slot netns, never the root namespace.
verify_host() {
  local h=$1 s want got
  for s in "${SVC_SLOTS[@]}"; do
    want=$(stat -L -c %i "$(netns_path "$(slot_ns "$h" "$s")")")
    got=$(in_host "$h" stat -L -c %i "$HOST_LOCAL/net/$s" 2>/dev/null || echo none)
    [ "$want" = "$got" ] || die "host $h: $HOST_LOCAL/net/$s is not netns $(slot_ns "$h" "$s") (inode $got, want $want): run bed.sh down; bed.sh up"
    [ "$got" != "$(stat -L -c %i /proc/$$/ns/net)" ] || die "host $h: $HOST_LOCAL/net/$s is the caller's (root) netns"
  done
}

# Writes the wrapper host_prefix runs A's and B's commands through: it joins the host's
# cgroup (/mig-bed-host/<HOST> in every v1 hierarchy, or the v2 tree) and execs the command.
write_cgroup_wrapper() {
  cat >"$BED_DIR/in-cgroup.sh" <<'SH'
#!/bin/sh
# in-cgroup.sh HOST CMD...: run CMD in host HOST's cgroup (made by migration bed.sh).
h=$1
shift
for d in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
  [ -f "$d/cgroup.procs" ] || continue
  case $d in */unified/) continue ;; esac
  [ "$d" = /sys/fs/cgroup/ ] && [ -d /sys/fs/cgroup/unified ] && continue
  for sub in mig-bed-host "mig-bed-host/$h"; do
    mkdir -p "$d$sub" || exit 1
    for f in cpuset.cpus cpuset.mems; do
      [ -f "$d$sub/$f" ] && [ -z "$(cat "$d$sub/$f")" ] && cat "$(dirname "$d$sub")/$f" >"$d$sub/$f"
    done
  done
  echo $$ >"$d/mig-bed-host/$h/cgroup.procs" || exit 1
done
exec "$@"
SH
  chmod 0755 "$BED_DIR/in-cgroup.sh"
}

up() {
  need_tools
  mkdir -p "$BED_DIR" "$SHARED"
  write_cgroup_wrapper
  net_up
  [ "$STORAGE" != sshfs ] || sshd_up
  local h
  for h in "${HOSTS[@]}"; do holder_up "$h"; done
  # The hosts reach each other and the storage host.
  for h in "${HOSTS[@]}"; do
    in_host "$h" arping -q -c 1 -w 2 -I eth0 "$IP_CLIENT" || die "host $h cannot reach the client $IP_CLIENT"
  done
  log "up: storage=$STORAGE shared=$SHARED host-local=$HOST_LOCAL net=$BED_NET.0/$BED_PREFIX_LEN"
}

# --- down --------------------------------------------------------------------------------

bed_netns() {
  local f n
  for f in /run/netns/"$BED_NS"*; do
    n=${f##*/}
    [[ $n =~ ^${BED_NS}(A|B|st|cl|br)(-|$) ]] && echo "$n"
  done
  return 0
}

# Pids (not in SKIP) whose network namespace is one of the bed's.
pids_in_bed_netns() {
  local inos=() n p link skip=" ${1:-} "
  for n in $(bed_netns); do inos+=("net:[$(stat -L -c %i "$(netns_path "$n")" 2>/dev/null)]"); done
  [ ${#inos[@]} -gt 0 ] || return 0
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [[ $skip == *" $p "* ]] && continue
    link=$(readlink "/proc/$p/ns/net" 2>/dev/null) || continue
    for n in "${inos[@]}"; do [ "$link" = "$n" ] && { echo "$p"; break; }; done
  done
}

down() {
  local h p holders=""
  for h in B A; do p=$(holder_pid "$h") && holders+=" $p"; done
  # 1. Containers, CRIU, runtimes, hooks, clients: everything in the bed's netns but holders.
  for p in $(pids_in_bed_netns "$holders"); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = sshfs ] && continue
    kill -9 "$p" 2>/dev/null || true
  done
  # 2. Shared storage and host-local mounts of each host, then the holders.
  for h in B A; do
    p=$(holder_pid "$h") || continue
    nsenter -t "$p" -m -- umount -l "$SHARED" 2>/dev/null || true
    nsenter -t "$p" -m -- sh -c "grep -o ' ${HOST_LOCAL}[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l" 2>/dev/null || true
    kill -9 "$p" 2>/dev/null || true
    log "host $h: stopped"
  done
  rm -f "$BED_DIR"/holder-*.pid
  # 3. Whatever is left (sshfs, sshd, stray arping), then the namespaces and the bridge.
  sleep 0.1
  for p in $(pids_in_bed_netns); do kill -9 "$p" 2>/dev/null || true; done
  local n
  for n in $(bed_netns | grep -v "^$(ns_of bridge)\$"); do ip netns del "$n" 2>/dev/null || true; done
  [ -e "$(netns_path "$(ns_of bridge)")" ] && ip netns del "$(ns_of bridge)" 2>/dev/null
  # 4. Cgroups the bed's containers left (relative cgroupsPath mig-bed/<name> under each
  # host's /mig-bed-host/<HOST>, see make-bundle.sh), and any process still in them.
  local d
  { find /sys/fs/cgroup/*/mig-bed-host /sys/fs/cgroup/unified/mig-bed /sys/fs/cgroup/*/mig-bed \
      -name cgroup.procs -exec cat {} + 2>/dev/null || true; } |
    sort -u | while read -r p; do kill -9 "$p" 2>/dev/null || true; done
  for d in /sys/fs/cgroup/*/mig-bed-host /sys/fs/cgroup/*/mig-bed /sys/fs/cgroup/unified/mig-bed; do
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  # 5. Bookkeeping; the storage host's disk when the bed made it.
  [ -f "$EXPORT_DIR/.mig-bed-export" ] && rm -rf "$EXPORT_DIR"
  rm -rf "$BED_DIR"
  local left
  left=$(bed_netns)
  [ -z "$left" ] || die "down: netns still present: $left"
  log "down"
}

status() {
  local h s p ip
  echo "netns: $(bed_netns | tr '\n' ' ')"
  [ "$STORAGE" != sshfs ] || {
    p=$(cat "$BED_DIR/sshd.pid" 2>/dev/null || true)
    echo "storage: sshd ${p:-none}$( [ -n "$p" ] && alive "$p" && echo " (alive)") exporting $EXPORT_DIR"
  }
  for h in "${HOSTS[@]}"; do
    if ! p=$(holder_pid "$h"); then
      echo "host $h: down"
      continue
    fi
    echo "host $h: holder $p, shared: $(in_host "$h" findmnt -n -o FSTYPE,SOURCE "$SHARED" | tr -s ' ' || echo 'not mounted')"
    for s in "${SVC_SLOTS[@]}"; do
      ip=$(in_host "$h" nsenter "--net=$HOST_LOCAL/net/$s" ip -o -4 addr show dev "$SVC_DEV" 2>/dev/null | awk '{print $4}' | tr '\n' ' ')
      echo "  slot $s ($HOST_LOCAL/net/$s): ${ip:-no address}"
    done
  done
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
  up) up ;;
  down) down ;;
  status) status ;;
  verify)
    for h in "${HOSTS[@]}"; do verify_host "$h"; done
    ;;
  prefix)
    # The command prefix that runs a command on HOST (for `runtime migrate --to exec:...`).
    [ $# -eq 1 ] || usage
    host_prefix "$1"
    echo "${exec_in[*]}"
    ;;
  exec)
    [ $# -ge 2 ] || usage
    host_prefix "$1"
    shift
    # exec: a `timeout` around bed.sh then stops the command itself.
    exec "${exec_in[@]}" "$@"
    ;;
  *) usage ;;
esac
