#!/usr/bin/env bash
# Builds every example OCI bundle into bundle-examples/out/<name>/ (config.json + rootfs/):
# counter, httpd, sleeper. The rootfs is busybox-static plus one symlink per applet; configs are
# an inline `runc spec` template edited with jq. Idempotent: an example is rebuilt only when this
# script, the busybox binary or the output path changed (a stamp file records all three).
# Needs root only to apt-get install busybox-static / jq when they are missing.
# Usage: bundle-examples/build-all.sh [--force]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT="$HERE/out"
BUSYBOX=/bin/busybox
EXAMPLES=(counter httpd sleeper)
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

log() { printf '[examples] %s\n' "$*"; }

ensure_tools() {
  local missing=()
  # busybox-static, not busybox: the dynamic one would not run in a rootfs without libc.
  dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
  command -v jq >/dev/null || missing+=(jq)
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  [ -x "$BUSYBOX" ] || { echo "build-all: $BUSYBOX missing after installing busybox-static" >&2; exit 1; }
}

stamp() {
  { sha256sum "${BASH_SOURCE[0]}" "$BUSYBOX" | cut -d' ' -f1; echo "$OUT"; } | sha256sum | cut -d' ' -f1
}

# busybox rootfs: /bin/busybox + /bin/<applet> symlinks; sbin, usr/bin, usr/sbin point at /bin.
make_rootfs() {
  local r=$1
  mkdir -p "$r"/{bin,dev,proc,sys,etc,root,run,tmp,var/tmp,usr}
  chmod 1777 "$r/tmp" "$r/var/tmp"
  cp "$BUSYBOX" "$r/bin/busybox"
  local a
  for a in $("$BUSYBOX" --list); do
    [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"
  done
  ln -s bin "$r/sbin"
  ln -s ../bin "$r/usr/bin"
  ln -s ../bin "$r/usr/sbin"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
}

# The config `runc spec` writes (runc 1.1), with terminal=false so a detached container keeps the
# caller's stdio (CRIU can dump /dev/null or pipes; see README.md). Inline so the build does not
# need runc.
base_config() {
  cat <<'JSON'
{
  "ociVersion": "1.0.2-dev",
  "process": {
    "terminal": false,
    "user": { "uid": 0, "gid": 0 },
    "args": [ "sh" ],
    "env": [
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "TERM=xterm"
    ],
    "cwd": "/",
    "capabilities": {
      "bounding": [ "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE" ],
      "effective": [ "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE" ],
      "permitted": [ "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE" ],
      "ambient": [ "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE" ]
    },
    "rlimits": [ { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 } ],
    "noNewPrivileges": true
  },
  "root": { "path": "rootfs", "readonly": true },
  "hostname": "runc",
  "mounts": [
    { "destination": "/proc", "type": "proc", "source": "proc" },
    { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
      "options": [ "nosuid", "strictatime", "mode=755", "size=65536k" ] },
    { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
      "options": [ "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5" ] },
    { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
      "options": [ "nosuid", "noexec", "nodev", "mode=1777", "size=65536k" ] },
    { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
      "options": [ "nosuid", "noexec", "nodev" ] },
    { "destination": "/sys", "type": "sysfs", "source": "sysfs",
      "options": [ "nosuid", "noexec", "nodev", "ro" ] },
    { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
      "options": [ "nosuid", "noexec", "nodev", "relatime", "ro" ] }
  ],
  "linux": {
    "resources": { "devices": [ { "allow": false, "access": "rwm" } ] },
    "namespaces": [
      { "type": "pid" }, { "type": "network" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }
    ],
    "maskedPaths": [
      "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
      "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
    ],
    "readonlyPaths": [ "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger" ]
  }
}
JSON
}

# counter: prints 1, 2, 3, ... every 0.2 s to stdout; /data/count holds the latest number (written
# atomically), /data/count.log gets every number appended. /data is the host dir out/counter/data,
# so both are readable from the host and survive checkpoint/restore. A restored counter continues
# the sequence; a restarted one starts again from 1. It traps SIGTERM/SIGINT and exits (as PID 1
# it would otherwise ignore them), so `kill` and Ctrl-C on a foreground `run` stop it.
build_counter() {
  local b=$1 final=$2
  mkdir -p "$b/data"
  # shellcheck disable=SC2016 # expanded by the container's shell
  local script='trap "exit 0" TERM INT; i=0; : >/data/count.log; while :; do i=$((i+1)); echo "$i"; echo "$i" >/data/count.tmp; mv /data/count.tmp /data/count; echo "$i" >>/data/count.log; sleep 0.2; done'
  base_config | jq --arg s "$script" --arg data "$final/data" '
    .process.args = ["sh", "-c", $s]
    | .hostname = "counter"
    | .mounts += [{destination: "/data", type: "bind", source: $data, options: ["rbind", "rw"]}]
  ' >"$b/config.json"
  mkdir -p "$b/rootfs/data"
}

# httpd: busybox httpd on 0.0.0.0:8080 serving out/httpd/www (bind, read-only) at /var/www/html.
# Read-only root, tmpfs on /tmp, /run, /var/log/httpd, /run/httpd. Joins the network namespace
# /var/run/netns/rt-httpd, which `bundle-examples/netns.sh up rt-httpd 10.200.0.2` creates.
build_httpd() {
  local b=$1 final=$2
  mkdir -p "$b/www" "$b/rootfs/var/www/html" "$b/rootfs/var/log/httpd"
  cat >"$b/www/index.html" <<'HTML'
<!doctype html>
<html><head><title>runtime httpd example</title></head>
<body><p>hello from the httpd bundle example</p></body></html>
HTML
  base_config | jq --arg www "$final/www" '
    def tmpfs($d; $mode): {destination: $d, type: "tmpfs", source: "tmpfs",
                           options: ["nosuid", "nodev", "mode=\($mode)", "size=16m"]};
    .process.args = ["httpd", "-f", "-p", "0.0.0.0:8080", "-h", "/var/www/html"]
    | .hostname = "httpd"
    | .root.readonly = true
    | .mounts += [tmpfs("/tmp"; "1777"), tmpfs("/run"; "755"), tmpfs("/var/log/httpd"; "755"),
                  tmpfs("/run/httpd"; "755"),
                  {destination: "/var/www/html", type: "bind", source: $www, options: ["rbind", "ro"]}]
    | .linux.namespaces |= map(if .type == "network" then . + {path: "/var/run/netns/rt-httpd"} else . end)
  ' >"$b/config.json"
}

# sleeper: `sleep 1000000`, nothing else.
build_sleeper() {
  local b=$1
  base_config | jq '.process.args = ["sleep", "1000000"] | .hostname = "sleeper"' >"$b/config.json"
}

build_one() {
  local name=$1 want=$2 final="$OUT/$1"
  if [ "$FORCE" = 0 ] && [ -f "$final/.stamp" ] && [ "$(cat "$final/.stamp")" = "$want" ]; then
    log "$name: up to date"
    return
  fi
  local tmp="$OUT/.$name.new"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  make_rootfs "$tmp/rootfs"
  "build_$name" "$tmp" "$final"
  echo "$want" >"$tmp/.stamp"
  rm -rf "$final"
  mv "$tmp" "$final"
  log "$name: built in $final"
}

ensure_tools
mkdir -p "$OUT"
want=$(stamp)
for e in "${EXAMPLES[@]}"; do build_one "$e" "$want"; done
