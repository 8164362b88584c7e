# Settings of the two-host migration bed, sourced by bed.sh, make-bundle.sh and test.sh.
# Everything can be overridden from the environment; the defaults fit a single Debian 12 machine.
# shellcheck shell=bash disable=SC2034

# Private /24 used only inside the bed's network namespaces (no route to it from the root namespace).
BED_NET=${BED_NET:-10.231.7}
BED_PREFIX_LEN=24
# Root-namespace bookkeeping: holder pids, ssh keys, sshd config, logs.
BED_DIR=${BED_DIR:-/run/mig-bed}
# Netns names (under /run/netns) start with this; keep it short (interface names <= 15 bytes).
BED_NS=${BED_NS:-mig}

# Shared storage, mounted at the SAME path on host A and host B.
#   sshfs                   (default) the bed's storage host exports $EXPORT_DIR over sshd/sftp
#   nfs://SERVER:/EXPORT    `mount -t nfs SERVER:/EXPORT $SHARED` on each host (the server must be
#                           reachable from the hosts: see README.md; needs the kernel NFS client)
#   nfs4://SERVER:/EXPORT   same with -t nfs4
#   bind:/DIR               bind-mount DIR (already shared, e.g. an NFS mount in the root
#                           namespace) at $SHARED on each host
STORAGE=${STORAGE:-sshfs}
STORAGE_OPTS=${STORAGE_OPTS:-}
SHARED=${SHARED:-/mnt/mig-shared}
EXPORT_DIR=${EXPORT_DIR:-/var/tmp/mig-bed-export}

# Host-local root inside each host's private mount namespace (a tmpfs there): the runtime's
# state dirs, CRIU work dirs, the container netns binds, host-local data, installed hooks.
HOST_LOCAL=${HOST_LOCAL:-/run/rt-bed}

# Addresses.
IP_STORAGE=$BED_NET.10
IP_A=$BED_NET.11
IP_B=$BED_NET.12
IP_CLIENT=$BED_NET.20
# Service IPs, one per container network slot; they move with the container.
SVC_SLOTS=(web counter)
declare -A SVC_IP=([web]=$BED_NET.100 [counter]=$BED_NET.101)
# Inside each host, slot S is the netns bound at $HOST_LOCAL/net/S; the container joins that path.
SVC_DEV=eth0

# Host names as used by `bed.sh exec HOST ...`.
HOSTS=(A B)
ns_of() { # A -> migA; B -> migB; storage -> migst; client -> migcl; bridge -> migbr
  case $1 in
    A | B) echo "$BED_NS$1" ;;
    storage) echo "${BED_NS}st" ;;
    client) echo "${BED_NS}cl" ;;
    bridge) echo "${BED_NS}br" ;;
    *) return 1 ;;
  esac
}
slot_ns() { echo "$(ns_of "$1")-$2"; } # A web -> migA-web
