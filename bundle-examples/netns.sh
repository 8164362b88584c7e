#!/usr/bin/env bash
# Creates (up) or removes (down) a named network namespace /var/run/netns/NAME reachable from the
# host: a veth pair whose host end is a port of the bridge rt-br0 (10.200.0.1/24 on the host) and
# whose other end is eth0 in the namespace with IP/24, loopback up, default route via the bridge.
# A container joins it by path (config.json: linux.namespaces network "path"). Idempotent both ways.
# Uses `ip -n`, never `ip netns exec` (which remounts /sys and hides the cgroup v1 mounts).
# Usage: bundle-examples/netns.sh up NAME IP   e.g. up rt-httpd 10.200.0.2
#        bundle-examples/netns.sh down NAME
set -euo pipefail

BRIDGE=rt-br0
HOST_CIDR=10.200.0.1/24
GATEWAY=${HOST_CIDR%/*}

usage() { echo "usage: $0 up NAME IP | down NAME" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 name=$2
# Interface names are at most 15 bytes: host end rtv-<name>, temporary peer name rtc-<name>.
host_if="rtv-${name:0:11}"
peer_if="rtc-${name:0:11}"

up() {
  local ip=$1
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$HOST_CIDR" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  [ -e "/var/run/netns/$name" ] || ip netns add "$name"
  if ! ip -n "$name" link show eth0 >/dev/null 2>&1 || ! ip link show "$host_if" >/dev/null 2>&1; then
    ip link del "$host_if" 2>/dev/null || true
    ip -n "$name" link del eth0 2>/dev/null || true
    ip link add "$host_if" type veth peer name "$peer_if"
    ip link set "$peer_if" netns "$name"
    ip -n "$name" link set "$peer_if" name eth0
  fi
  ip link set "$host_if" master "$BRIDGE" up
  ip -n "$name" link set lo up
  ip -n "$name" addr replace "$ip/24" dev eth0
  ip -n "$name" link set eth0 up
  ip -n "$name" route replace default via "$GATEWAY"
  echo "netns $name: eth0 $ip/24, host $BRIDGE $HOST_CIDR"
}

down() {
  ip link del "$host_if" 2>/dev/null || true
  [ -e "/var/run/netns/$name" ] && ip netns del "$name"
  if ip link show "$BRIDGE" >/dev/null 2>&1 && [ -z "$(ip -o link show master "$BRIDGE")" ]; then
    ip link del "$BRIDGE"
  fi
  echo "netns $name: removed"
}

case $cmd in
  up) [ $# -eq 3 ] || usage; up "$3" ;;
  down) [ $# -eq 2 ] || usage; down ;;
  *) usage ;;
esac
