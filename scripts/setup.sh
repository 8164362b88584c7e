#!/usr/bin/env bash
# Installs everything `make test` and `make bench` need on a fresh Debian 12 machine:
# build deps, busybox, CRIU 4.2.1 (built from Debian's source package), runc and crun
# (peers), podman and containerd (engines). Idempotent: each step is skipped when done.
set -euo pipefail

CRIU_VERSION=4.2.1
log() { printf '[setup] %s\n' "$*"; }
[ "$(id -u)" = 0 ] || { echo "setup: run as root (it installs packages and CRIU)" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
PKGS=(
  build-essential pkg-config git ca-certificates curl
  libseccomp-dev busybox-static zstd tar jq
  iproute2 iptables nftables iputils-arping sshfs openssh-server openssh-client fuse3 psmisc procps curl
  runc crun podman containerd
  hyperfine
)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# CRIU caches its kernel probes (~35 ms a run) only on a tmpfs; /run is not one on these
# machines, so the build puts the cache in /dev/shm (RUNDIR).
CRIU_RUNDIR=/dev/shm
have_criu() {
  /usr/local/sbin/criu --version 2>/dev/null | grep -q "Version: ${CRIU_VERSION}\$" &&
    grep -q "${CRIU_RUNDIR}/criu.kdat" /usr/local/sbin/criu
}
if have_criu; then
  log "criu ${CRIU_VERSION} already installed"
else
  log "building criu ${CRIU_VERSION} from Debian's source package"
  uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  [ -n "$uri" ] || { echo "setup: no URIs in /etc/apt/sources.list.d/debian.sources" >&2; exit 1; }
  cat > /etc/apt/sources.list.d/criu-sid-src.sources <<SRC
Types: deb-src
URIs: ${uri}
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \
    libprotobuf-c-dev protobuf-c-compiler protobuf-compiler python3-protobuf libnl-3-dev \
    libnet1-dev libcap-dev libbsd-dev libaio-dev pkg-config uuid-dev libnftables-dev \
    libgnutls28-dev libdrm-dev libprotobuf-dev iptables dpkg-dev >/dev/null
  work=$(mktemp -d /tmp/criu-build.XXXXXX)
  # Only the orig tarball is on the mirror (the .debian.tar.xz 404s): apt-get fails, the tarball is enough.
  ( cd "$work" && apt-get source --download-only -qq "criu=${CRIU_VERSION}-1" >/dev/null 2>&1 || true )
  tarball=$(ls "$work"/criu_"${CRIU_VERSION}".orig.tar.* 2>/dev/null | head -n1)
  [ -n "$tarball" ] || { echo "setup: could not download criu_${CRIU_VERSION}.orig.tar.* from the sid deb-src entry" >&2; exit 1; }
  tar -C "$work" -xf "$tarball"
  src="$work/criu-${CRIU_VERSION}"
  make -C "$src" -j"$(nproc)" criu RUNDIR="${CRIU_RUNDIR}" >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log" >&2; echo "setup: criu build failed (log: $work/build.log)" >&2; exit 1; }
  install -m 0755 "$src/criu/criu" /usr/local/sbin/criu
  rm -rf "$work"
  have_criu || { echo "setup: criu ${CRIU_VERSION} did not install" >&2; exit 1; }
  log "criu $(/usr/local/sbin/criu --version | head -n1) installed in /usr/local/sbin"
fi

# CRIU's lazy page server sizes its pipes past the default fs.pipe-max-size (1 MiB), which
# needs CAP_SYS_RESOURCE; root here lacks it: raise the limit (and keep it across reboots).
if [ "$(cat /proc/sys/fs/pipe-max-size)" -lt 4194304 ]; then
  sysctl -q -w fs.pipe-max-size=4194304
fi
echo 'fs.pipe-max-size = 4194304' > /etc/sysctl.d/60-runtime-criu.conf

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup" >&2; exit 1; }
log "done"
