#!/bin/sh
# Run inside a service slot's network namespace after a container left it: removes CRIU's
# network lock (nft tables `inet CRIU-<uuid>` of the nftables method, chain CRIU of the
# iptables method, for iptables and ip6tables) and the test's quiesce table. Used by test.sh
# (`unlock_source`) and by the benchmark's migration rows (compiled in with include_str!).
for t in $(nft list tables 2>/dev/null | awk '$2 == "inet" && $3 ~ /^CRIU-/ { print $3 }'); do
  nft delete table inet "$t"
done
nft delete table inet mig-quiesce 2>/dev/null
for cmd in iptables ip6tables; do
  while $cmd -w -D INPUT -j CRIU 2>/dev/null; do :; done
  while $cmd -w -D OUTPUT -j CRIU 2>/dev/null; do :; done
  $cmd -w -F CRIU 2>/dev/null
  $cmd -w -X CRIU 2>/dev/null
done
true
