#!/usr/bin/env bash
# Builds the bed's bundles ON THE SHARED STORAGE ($SHARED/bundles/<name>, written through host A)
# from bundle-examples/build-all.sh's httpd bundle, and prepares the host-local parts on A and B.
#   httpd    busybox httpd :8080, read-only root, tmpfs on /tmp /run /var/log/httpd /run/httpd,
#            /var/www/html = bind of the HOST-LOCAL $HOST_LOCAL/www (ro): must exist on each host
#   counter  busybox `nc -ll -p 9000`: each connection gets 1, 2, 3, ... one per line it sends
# Both join the network namespace $HOST_LOCAL/net/<slot> by path (the same string on A and B; each
# host binds its own netns there) and carry the service-ip hook: createRuntime claims the slot's
# service IP in that netns (+ gratuitous ARP), poststop releases it. The hook binary is installed
# host-locally at $HOST_LOCAL/bin/service-ip on each host (like any host software).
# Usage: make-bundle.sh [--force]     (needs `bed.sh up`; idempotent)
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=config.sh
. "$HERE/config.sh"
BED="$HERE/bed.sh"
HOOK_SRC=${HOOK_BIN:-$REPO/target/release/service-ip}
HOOK=$HOST_LOCAL/bin/service-ip
# Extra CRIU options for these bundles (file on the shared storage, named by the bundle's
# org.criu.config annotation, honoured by runc and runtime). skip-in-flight: a connection still
# in the listen backlog at the freeze is dropped instead of failing the dump (pitfall 4).
CRIU_CONF=${CRIU_CONF:-skip-in-flight}
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

log() { printf '[bundle] %s\n' "$*" >&2; }
die() {
  printf '[bundle] error: %s\n' "$*" >&2
  exit 1
}
on() { "$BED" exec "$@"; }

if [ -z "${HOOK_BIN:-}" ]; then
  # A no-op when up to date; keeps the installed hook in step with hooks/service-ip.
  (cd "$REPO" && cargo build --release -p service-ip -q) || die "cannot build hooks/service-ip"
fi
[ -x "$HOOK_SRC" ] || die "$HOOK_SRC missing"
"$REPO/bundle-examples/build-all.sh" >/dev/null
SRC="$REPO/bundle-examples/out/httpd"
[ -f "$SRC/config.json" ] || die "$SRC/config.json missing after build-all.sh"

# Host-local parts on each host: the hook, the web content.
for h in "${HOSTS[@]}"; do
  on "$h" install -m 755 "$HOOK_SRC" "$HOOK"
  on "$h" mkdir -p "$HOST_LOCAL/www"
  on "$h" sh -c "cat >'$HOST_LOCAL/www/index.html'" <<'HTML'
<!doctype html>
<html><head><title>mig-bed httpd</title></head>
<body><p>hello from the migration bed (host-local www)</p></body></html>
HTML
done

hook() { # claim|release SLOT
  jq -n --arg p "$HOOK" --arg act "$1" --arg ip "${SVC_IP[$2]}/$BED_PREFIX_LEN" \
    --arg dev "$SVC_DEV" --arg ns "$HOST_LOCAL/net/$2" \
    --arg log "$HOST_LOCAL/service-ip.log" \
    '{path: $p, args: ["service-ip", $act, $ip, $dev, "--netns-path", $ns, "--log", $log], timeout: 10}'
}

# config.json for NAME in SLOT from the example httpd config, edited by the jq program EDIT.
config() {
  local name=$1 slot=$2 edit=$3
  jq --arg ns "$HOST_LOCAL/net/$slot" --arg cg "mig-bed/$name" \
    --arg criu "$SHARED/bundles/$name/criu.conf" \
    --argjson claim "$(hook claim "$slot")" --argjson release "$(hook release "$slot")" '
    .linux.namespaces |= map(if .type == "network" then {type: "network", path: $ns} else . end)
    | .linux.cgroupsPath = $cg
    | .annotations = ((.annotations // {}) + {"org.criu.config": $criu})
    | .hooks = {createRuntime: [$claim], poststop: [$release]}
    | '"$edit" "$SRC/config.json"
}

stamp() {
  { sha256sum "${BASH_SOURCE[0]}" "$HERE/config.sh" "$SRC/config.json" "$SRC/.stamp" | cut -d' ' -f1
    echo "$SHARED $HOST_LOCAL $CRIU_CONF"; } | sha256sum | cut -d' ' -f1
}

build() { # NAME SLOT JQ-EDIT
  local name=$1 final="$SHARED/bundles/$1" tmp="$SHARED/bundles/.$1.new" want cfg
  want=$(stamp)
  if [ "$FORCE" = 0 ] && [ "$(on A cat "$final/.stamp" 2>/dev/null || true)" = "$want" ]; then
    log "$name: up to date in $final"
    return
  fi
  cfg=$(config "$name" "$2" "$3")
  on A rm -rf "$tmp"
  on A mkdir -p "$tmp"
  # sshfs cannot set times or owners on symlinks: files come out root-owned anyway.
  tar -C "$SRC" -cf - rootfs | on A tar -C "$tmp" --no-same-owner --touch -xf -
  printf '%s\n' "$cfg" | on A sh -c "cat >'$tmp/config.json'"
  printf '%s\n' "$CRIU_CONF" | on A sh -c "cat >'$tmp/criu.conf'"
  echo "$want" | on A sh -c "cat >'$tmp/.stamp'"
  on A rm -rf "$final"
  on A mv "$tmp" "$final"
  log "$name: built in $final"
}

on A mkdir -p "$SHARED/bundles"
build httpd web '.hostname = "httpd"
    | .mounts |= map(if .destination == "/var/www/html" then .source = "'"$HOST_LOCAL/www"'" else . end)'
# shellcheck disable=SC2016 # $i is the container shell's
build counter counter '.hostname = "counter"
    | .mounts |= map(select(.destination != "/var/www/html"))
    | .process.args = ["nc", "-ll", "-p", "9000", "-e", "sh", "-c",
                       "i=0; while read -r l; do i=$((i+1)); echo $i; done"]'
# B reads exactly what A wrote.
for n in httpd counter; do
  on B test -f "$SHARED/bundles/$n/config.json" || die "host B does not see $SHARED/bundles/$n/config.json"
done
