#!/usr/bin/env bash
# A namespaced lab network by hand, the same one Tests/WarrenCLITests/NetnsFaultTests.swift
# builds: a hub namespace with bridges br0/br1 and nodes n1…nN on 10.77.0.I/24. Root only.
# Nothing is created in, or changed on, the host's own namespace. See docs/FAULTS.md.
#
#   tools/netns/lab.sh up 6                  # namespaces wnflab-hub, wnflab-n1 … wnflab-n6
#   tools/netns/lab.sh node 1 --peer tcp://10.77.0.2:7000      # warren node in n1, listening on 10.77.0.1:7000
#   tools/netns/lab.sh partition 4 5 6       # n4 n5 n6 to br1: cut off from the others
#   tools/netns/lab.sh heal                  # all back on br0
#   tools/netns/lab.sh impair 10 50          # 10 % loss + 50 ms delay on every packet through the hub (foreground)
#   tools/netns/lab.sh unimpair              # flush the hub's FORWARD rules
#   tools/netns/lab.sh down                  # delete every wnflab-* namespace (and what runs in it)
set -euo pipefail
P=${WARREN_LAB_PREFIX:-wnflab}
HUB=$P-hub
HERE=$(cd "$(dirname "$0")" && pwd)
WARREN=${WARREN:-$(cd "$HERE/../.." && pwd)/.build/debug/warren}

count() { ip -n "$HUB" -o link show type veth | grep -c ': p[0-9]*@' || true; }

case "${1:-}" in
up)
    n=${2:-6}
    ip netns add "$HUB"
    ip -n "$HUB" link set lo up
    for br in br0 br1; do ip -n "$HUB" link add "$br" type bridge; ip -n "$HUB" link set "$br" up; done
    for i in $(seq 1 "$n"); do
        ip netns add "$P-n$i"
        ip -n "$HUB" link add "p$i" type veth peer name veth0 netns "$P-n$i"
        ip -n "$HUB" link set "p$i" master br0 up
        ip -n "$P-n$i" addr add "10.77.0.$i/24" dev veth0
        ip -n "$P-n$i" link set veth0 up
        ip -n "$P-n$i" link set lo up
    done ;;
node)
    i=$2; shift 2
    key=${KEY_DIR:-/tmp}/$P-n$i.key
    [ -f "$key" ] || (umask 077; "$WARREN" genkey > "$key")
    exec ip netns exec "$P-n$i" "$WARREN" node --key-file "$key" --listen "tcp://10.77.0.$i:7000" "$@" ;;
partition)
    shift; for i in "$@"; do ip -n "$HUB" link set "p$i" master br1; done ;;
heal)
    for i in $(seq 1 "$(count)"); do ip -n "$HUB" link set "p$i" master br0; done ;;
impair)
    loss=${2:-10}; delay=${3:-50}
    ip netns exec "$HUB" sh -c 'echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables'
    ip netns exec "$HUB" iptables -w -F FORWARD
    ip netns exec "$HUB" iptables -w -A FORWARD -m statistic --mode random \
        --probability "$(awk "BEGIN{printf \"%.4f\", $loss/100}")" -j DROP
    ip netns exec "$HUB" iptables -w -A FORWARD -j NFQUEUE --queue-num 0
    echo "lab: $loss % loss, $delay ms delay; Ctrl-C ends the delay (then run: $0 unimpair)" >&2
    exec ip netns exec "$HUB" python3 "$HERE/nfq-delay.py" --queue 0 --delay-ms "$delay" ;;
unimpair)
    ip netns exec "$HUB" iptables -w -F FORWARD ;;
down)
    for ns in $(ip netns list | awk '{print $1}' | grep "^$P-" || true); do
        for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns"
    done ;;
*)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
