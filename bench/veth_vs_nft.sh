#!/usr/bin/env bash
# Forwarded packets per second over veth: the kernel's own NAT (ip_forward +
# nftables DNAT) next to lbd (AF_PACKET ports, NAT service), same traffic from
# lbpktgen, same machine, alternating in one invocation (DESIGN.md §8: veth
# figures are ratios against the kernel taken in the same run).
#
#   sudo bench/veth_vs_nft.sh [--out DIR] [--runs N] [--duration SECS]
#                             [--flows N] [--size BYTES] [--no-build]
#
#   --out DIR       raw lbpktgen JSON, one compact line per run, into
#                   DIR/veth_vs_nft-<time>-{kernel,lbd}.jsonl (default bench/out)
#   --runs N        runs per DUT, alternating kernel, lbd, kernel, ... (default 3)
#   --duration S    seconds of traffic per run (default 5)
#   --flows N       UDP flows (client address/port pairs, default 1000)
#   --size B        frame size without FCS (default 64)
#   --no-build      use the binaries in target/release as they are
#
# Environment: GEN_CORE (lbpktgen's TX and RX threads, default 0), DUT_CORE
# (lbd's worker, and the kernel's forwarding via RPS, default 1),
# EGRESS_RPS (CPU mask for the tester's `vs`, default 0 = off).
#
# Classic two-port DUT set-up, two namespaces, one veth pair per side:
#
#   tester                                   dut
#   ┌──────────────────────────┐            ┌─────────────────────────────┐
#   │ lbpktgen TX af_packet:vc ├─ vc ── ve ─┤ ext 10.0.0.254   VIP .100:9 │
#   │ lbpktgen RX af_packet:vs ├─ vs ── vi ─┤ int 192.168.10.254          │
#   └──────────────────────────┘            └─────────────────────────────┘
#
# lbpktgen sends UDP from 198.18.x.y:port (FLOWS flows) to VIP 10.0.0.100:9
# with the destination MAC of `ve`; the DUT rewrites the destination to the
# real server RIP 192.168.10.1:9 and sends it out of `vi` to the MAC of `vs`
# (a static neighbour: nothing answers ARP for the RIP). `vc` and `vs` have
# no addresses and the tester does not forward, so the tester's kernel drops
# what it sees and only lbpktgen's sockets count it.
#
# DUTs (each run builds the namespaces afresh and deletes them after):
#   kernel  ip_forward=1, addresses on ve/vi, nftables
#           `ip daddr VIP udp dport 9 dnat to RIP:9` (prerouting), the static
#           neighbour RIP -> vs's MAC, a route back to 198.18.0.0/15.
#   lbd     release build, af_packet ports on ve and vi (no kernel addresses,
#           ip_forward=0, no nftables), the same service as YAML (udp, rr,
#           one masq destination), the same static neighbours and route,
#           `workers: {count: 1, cores: [DUT_CORE], idle: busy}`.
#
# Where the work runs (2 cores; DESIGN.md §8). A veth has no IRQ: veth_xmit
# hands the frame to the peer with netif_rx, which queues it on the backlog
# of the CPU RPS picks, or of the sending CPU when RPS is off, and that
# CPU's NET_RX softirq does the peer's receive work (packet sockets, IP).
# GRO is off on every veth, so the veth NAPI path is not used.
#   * lbpktgen (TX and RX thread) is pinned to GEN_CORE.
#   * lbd: RPS off on `ve`, so the ingress receive work (the copy into lbd's
#     RX ring) runs on GEN_CORE in the sender's context, off lbd's core (a
#     forwarder sharing its core with its own ingress receive work stalls).
#     lbd's worker is pinned to DUT_CORE and busy-polls.
#   * kernel: RPS on `ve` = DUT_CORE, so the kernel's forwarding (IP, conntrack,
#     NAT, routing, transmit on vi) runs on DUT_CORE: one forwarding core,
#     like lbd. (RPS off would put it on the generator's core.)
#   * Egress: a frame sent on `vi` is received by `vs` on the CPU that sent it
#     (RPS off on `vs`, EGRESS_RPS=0): DUT_CORE in both cases, so the copy
#     into lbpktgen's RX ring is charged to the DUT's core alike for both.
#     EGRESS_RPS=1 (mask) moves it to CPU 0 for both.
# Segmentation and receive offloads (tso gso gro) are off on all four veths:
# AF_PACKET needs frames no larger than the MTU; the kernel case gets the
# same links.
#
# Output: per run a line on stderr; at the end a table on stdout: median and
# min–max of forwarded packets per second received on `vs` (lbpktgen's
# matched packets over its transmit time), median loss (lost / sent) and the
# ratio lbd/kernel of the medians. Backlog drops are the sum over CPUs of
# /proc/net/softnet_stat's "dropped" column during the run.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

OUT_DIR=bench/out
RUNS=3
DURATION=5
FLOWS=1000
SIZE=64
BUILD=1
while [ $# -gt 0 ]; do
  case $1 in
    --out) OUT_DIR=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --flows) FLOWS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/veth_vs_nft.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
GEN_CORE=${GEN_CORE:-0}
DUT_CORE=${DUT_CORE:-1}
EGRESS_RPS=${EGRESS_RPS:-0}
VIP=10.0.0.100
VPORT=9
RIP=192.168.10.1
RPORT=9
DIP_EXT=10.0.0.254
DIP_INT=192.168.10.254
CLIENT_GW=10.0.0.1
CLIENT_NET=198.18.0.0/15

if [ "$(id -u)" -ne 0 ]; then
  echo "bench/veth_vs_nft.sh needs root (network namespaces)" >&2
  exit 1
fi
if [ "$(nproc)" -lt 2 ] || [ "$GEN_CORE" = "$DUT_CORE" ]; then
  echo "needs 2 cores and GEN_CORE != DUT_CORE (have $(nproc), $GEN_CORE/$DUT_CORE)" >&2
  exit 1
fi
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
for pair in ethtool:ethtool nft:nftables jq:jq ip:iproute2; do
  have "${pair%%:*}" || {
    echo "installing ${pair#*:}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pair#*:}" >/dev/null
  }
done

if [ "$BUILD" = 1 ]; then
  cargo build --release --bins --quiet
fi
LBD="$ROOT/target/release/lbd"
LBCTL="$ROOT/target/release/lbctl"
PKTGEN="$ROOT/target/release/lbpktgen"
for b in "$LBD" "$LBCTL" "$PKTGEN"; do
  [ -x "$b" ] || { echo "missing $b (cargo build --release)" >&2; exit 1; }
done

mkdir -p "$OUT_DIR"
STAMP=$(date +%Y%m%d-%H%M%S)
RVS_TMP=$(mktemp -d /tmp/rvs-veth-nft.XXXXXX)
RVS_PREFIX="rvs-vnft-$$-"
# shellcheck source=scripts/netns-lib.sh
. "$ROOT/scripts/netns-lib.sh"
trap 'rvs_cleanup; rm -rf "$RVS_TMP"' EXIT
trap 'exit 130' INT TERM

T=${RVS_PREFIX}tester
D=${RVS_PREFIX}dut

mac_of() { ip -n "$1" -j link show dev "$2" | jq -r '.[0].address'; }

# set_rps NS DEV MASK: the RPS CPU mask of every receive queue of DEV.
set_rps() {
  ip netns exec "$1" sh -c "for q in /sys/class/net/$2/queues/rx-*; do echo $3 > \$q/rps_cpus; done"
}

# topology: the two namespaces and the two veth pairs, links up, offloads
# off, RPS off everywhere; sets VC_MAC VS_MAC VE_MAC VI_MAC.
topology() {
  rvs_ns_add tester
  rvs_ns_add dut
  ip -n "$T" link add vc type veth peer name ve netns "$D"
  ip -n "$T" link add vs type veth peer name vi netns "$D"
  local ns dev
  for ns_dev in "$T:vc" "$T:vs" "$D:ve" "$D:vi"; do
    ns=${ns_dev%%:*}
    dev=${ns_dev#*:}
    ip netns exec "$ns" ethtool -K "$dev" tso off gso off gro off >/dev/null 2>&1 || true
    set_rps "$ns" "$dev" 0
    ip -n "$ns" link set "$dev" up
  done
  set_rps "$T" vs "$EGRESS_RPS"
  rvs_in tester sysctl -qw net.ipv4.ip_forward=0
  VC_MAC=$(mac_of "$T" vc)
  VS_MAC=$(mac_of "$T" vs)
  VE_MAC=$(mac_of "$D" ve)
  VI_MAC=$(mac_of "$D" vi)
}

kernel_up() {
  ip -n "$D" addr add "$DIP_EXT/24" dev ve
  ip -n "$D" addr add "$DIP_INT/24" dev vi
  ip -n "$D" neigh replace "$RIP" lladdr "$VS_MAC" nud permanent dev vi
  ip -n "$D" neigh replace "$CLIENT_GW" lladdr "$VC_MAC" nud permanent dev ve
  ip -n "$D" route add "$CLIENT_NET" via "$CLIENT_GW" dev ve
  rvs_in dut sysctl -qw net.ipv4.ip_forward=1
  rvs_in dut nft -f - <<EOF
table ip rvsbench {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr $VIP udp dport $VPORT dnat to $RIP:$RPORT
  }
}
EOF
  # The kernel forwards on DUT_CORE (see the header).
  set_rps "$D" ve "$(printf '%x' $((1 << DUT_CORE)))"
}

lbd_up() {
  rvs_in dut sysctl -qw net.ipv4.ip_forward=0
  cat >"$RVS_TMP/lbd.yaml" <<EOF
workers: {count: 1, cores: [$DUT_CORE], idle: busy}
ports:
  - {name: ext, driver: af_packet, ifname: ve, addrs: ["$DIP_EXT/24"]}
  - {name: int, driver: af_packet, ifname: vi, addrs: ["$DIP_INT/24"]}
routes:
  - {prefix: "$CLIENT_NET", via: $CLIENT_GW, port: ext}
neighbours:
  - {addr: $RIP, mac: "$VS_MAC", port: int}
  - {addr: $CLIENT_GW, mac: "$VC_MAC", port: ext}
services:
  - proto: udp
    vip: $VIP
    port: $VPORT
    scheduler: rr
    dests:
      - {addr: $RIP, port: $RPORT, fwd: masq}
EOF
  "$LBD" --check-config "$RVS_TMP/lbd.yaml" >/dev/null
  export LBCTL_SOCKET="$RVS_TMP/lbd.sock"
  rm -f "$LBCTL_SOCKET"
  ip netns exec "$D" "$LBD" -c "$RVS_TMP/lbd.yaml" --socket "$LBCTL_SOCKET" \
    >"$RVS_TMP/lbd.log" 2>&1 &
  LBD_PID=$!
  RVS_PIDS+=("$LBD_PID")
  for _ in $(seq 100); do
    if [ -S "$LBCTL_SOCKET" ] && "$LBCTL" -Ln 2>/dev/null | grep -q "$RIP:$RPORT"; then
      return 0
    fi
    if ! kill -0 "$LBD_PID" 2>/dev/null; then
      echo "lbd exited:" >&2
      cat "$RVS_TMP/lbd.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "lbd did not answer on $LBCTL_SOCKET within 10 s:" >&2
  cat "$RVS_TMP/lbd.log" >&2
  return 1
}

# softnet_drops: the sum over CPUs of softnet_stat's second column (hex).
softnet_drops() {
  local sum=0 d
  while read -r _ d _; do sum=$((sum + 16#$d)); done </proc/net/softnet_stat
  echo "$sum"
}

# pktgen SECS: one lbpktgen run in the tester, JSON summary on stdout.
pktgen() {
  timeout --kill-after=5 $(( ${1%.*} + 20 )) \
    ip netns exec "$T" "$PKTGEN" --port af_packet:vc --rx-port af_packet:vs \
    --dst-mac "$VE_MAC" --dst-ip "$VIP" --dst-port "$VPORT" \
    --proto udp --flows "$FLOWS" --size "$SIZE" --duration "$1" \
    --cores "$GEN_CORE,$GEN_CORE" --json --quiet
}

# one_run DUT I: fresh namespaces, DUT up, a 1 s warm-up that must forward,
# the measured run, everything torn down.
one_run() {
  local dut=$1 i=$2 json d0 d1 warm
  topology
  "${dut}_up"
  warm=$(pktgen 1) || { echo "$dut: lbpktgen warm-up failed" >&2; return 1; }
  if [ "$(jq '.matched' <<<"$warm")" = 0 ]; then
    echo "$dut: nothing forwarded in the warm-up" >&2
    [ "$dut" = lbd ] && cat "$RVS_TMP/lbd.log" >&2
    return 1
  fi
  d0=$(softnet_drops)
  json=$(pktgen "$DURATION") || { echo "$dut: lbpktgen failed" >&2; return 1; }
  d1=$(softnet_drops)
  if [ "$dut" = lbd ] && ! kill -0 "$LBD_PID" 2>/dev/null; then
    echo "lbd died during the run:" >&2
    cat "$RVS_TMP/lbd.log" >&2
    return 1
  fi
  jq -c . <<<"$json" >>"$OUT_DIR/veth_vs_nft-$STAMP-$dut.jsonl"
  # forwarded pps (matched at vs over the transmit time), sent pps, loss %
  read -r fwd sent loss < <(jq -r '"\(.matched / .tx.seconds) \(.tx.pps) \(.loss_pct)"' <<<"$json")
  printf '%-6s run %d: sent %8.0f pps  forwarded %8.0f pps  loss %5.1f %%  backlog drops %d\n' \
    "$dut" "$i" "$sent" "$fwd" "$loss" $((d1 - d0)) >&2
  FWD[$dut]+="$fwd "
  LOSS[$dut]+="$loss "
  SENT[$dut]+="$sent "
  rvs_cleanup
}

declare -A FWD LOSS SENT
for i in $(seq "$RUNS"); do
  one_run kernel "$i"
  one_run lbd "$i"
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
minmax() { tr ' ' '\n' | grep . | sort -g | awk 'NR==1{a=$1} {b=$1} END {printf "%.3f–%.3f", a/1e6, b/1e6}'; }

echo
echo "lbpktgen UDP $SIZE-byte frames, $FLOWS flows, ${DURATION} s, as fast as possible, af_packet:vc -> DUT -> af_packet:vs"
echo "$(nproc) cores, lbpktgen on core $GEN_CORE, DUT on core $DUT_CORE (lbd: 1 busy worker; kernel: RPS on ve), $RUNS runs each, alternating; raw JSON: $OUT_DIR/veth_vs_nft-$STAMP-*.jsonl"
echo
printf '| %-28s | %10s | %13s | %11s | %8s |\n' "DUT" "fwd Mpps" "min–max Mpps" "sent Mpps" "loss %"
printf '|%s|%s|%s|%s|%s|\n' "------------------------------" "------------" "---------------" "-------------" "----------"
declare -A MED
for dut in kernel lbd; do
  MED[$dut]=$(median <<<"${FWD[$dut]}")
  label="kernel (ip_forward + nft DNAT)"
  [ "$dut" = lbd ] && label="lbd NAT, AF_PACKET"
  printf '| %-28s | %10.3f | %13s | %11.3f | %8.1f |\n' "$label" \
    "$(awk -v v="${MED[$dut]}" 'BEGIN{print v/1e6}')" "$(minmax <<<"${FWD[$dut]}")" \
    "$(awk -v v="$(median <<<"${SENT[$dut]}")" 'BEGIN{print v/1e6}')" \
    "$(median <<<"${LOSS[$dut]}")"
done
echo
awk -v l="${MED[lbd]}" -v k="${MED[kernel]}" 'BEGIN{ if (k > 0) printf "lbd / kernel (median forwarded pps): %.2f\n", l/k; else print "lbd / kernel: kernel forwarded nothing" }'
