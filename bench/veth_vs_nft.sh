#!/usr/bin/env bash
# Forwarded packets per second over veth: the kernel's own NAT (ip_forward +
# nftables DNAT) next to lbd (AF_PACKET ports, NAT service), same traffic from
# lbpktgen, same machine, alternating in one invocation (DESIGN.md §8: veth
# figures are ratios against the kernel taken in the same run).
#
#   sudo bench/veth_vs_nft.sh [--out DIR] [--runs N] [--duration SECS]
#                             [--flows N] [--size BYTES] [--sink WHICH]
#                             [--no-build]
#
#   --out DIR       raw lbpktgen JSON, one compact line per run, into
#                   DIR/veth_vs_nft-<time>-<dut>-<sink>.jsonl, and one line per
#                   run (tab-separated) into DIR/veth_vs_nft-<time>.tsv
#                   (default bench/out)
#   --runs N        runs per DUT and sink, alternating kernel, lbd, kernel, ...
#                   (default 3)
#   --sink WHICH    what counts the forwarded packets: `lbpktgen` (its RX
#                   thread on af_packet:vs, matched packets), `counters` (the
#                   packet counter of vs, nothing reads vs: the generator keeps
#                   its core to itself and can offer more than the DUT
#                   forwards) or `both` (default; lbpktgen first)
#   --duration S    seconds of traffic per run (default 5)
#   --flows N       UDP flows (client address/port pairs, default 1000)
#   --size B        frame size without FCS (default 64)
#   --no-build      use the binaries in target/release as they are
#
# Environment: GEN_CORE (lbpktgen's TX and RX threads, default 0), DUT_CORE
# (lbd's worker, and the kernel's forwarding via RPS, default 1),
# EGRESS_RPS (RPS CPU mask of the tester's `vs`, default 0 = off),
# LBD_INGRESS_RPS (RPS CPU mask of `ve` in the lbd case, default 0 = off;
# 2 = lbd's core reproduces the stall of DESIGN.md §8), LBD_TPACKET (a
# space-separated list of lbd's af_packet rings to compare: `v2`, `v3`,
# optionally `+bcN` (block_count N), e.g. "v3 v2 v2+bc128": each run then
# measures the kernel and lbd with each ring, alternating; default: lbd
# once, with its default ring).
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
#           `workers: {count: 1, cores: [DUT_CORE], idle: busy}`; traffic
#           starts once lbd answers on its socket and its resident size has
#           settled (its worker faults in the connection table first).
# Each run starts with a 1 s warm-up (not measured) that must forward
# something: it creates the FLOWS connections (conntrack / lbd's table).
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
# Output: per run a line on stderr (sent and forwarded pps, loss, how busy
# the generator's and the DUT's core were (/proc/stat), drops in the kernel's
# backlogs (/proc/net/softnet_stat "dropped", all CPUs) and on the egress
# veth pair, and for lbd its port and worker counters, also kept in
# DIR/veth_vs_nft-<time>-lbd-stats.jsonl); a warning when other processes
# used more than 10 % of a core during a run (the machine is shared: such
# runs are disturbed). At the end a table on stdout: median and min–max of
# the forwarded packets per second (over lbpktgen's transmit time), median
# sent pps, loss (1 − forwarded / sent), median busy % of both cores, and
# the ratio lbd/kernel of the median forwarded pps per sink.
#
# Reading it: with 0 % loss the DUT forwarded everything it was offered and
# the generator's core was the limit, so the ratio compares offered loads,
# not the DUTs' capacities; then the DUT core's busy % (kernel) is the
# headroom left (lbd busy-polls: always 100 %). The offered load differs
# between the DUTs because in the lbd case the ingress receive work (the
# copy into lbd's RX ring) runs on the generator's core, while the kernel's
# forwarding is moved off it by RPS.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

OUT_DIR=bench/out
RUNS=3
DURATION=5
FLOWS=1000
SIZE=64
BUILD=1
SINKS=both
while [ $# -gt 0 ]; do
  case $1 in
    --out) OUT_DIR=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --flows) FLOWS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --sink) SINKS=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/veth_vs_nft.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case $SINKS in
  both) SINKS="lbpktgen counters" ;;
  lbpktgen|counters) ;;
  *) echo "--sink: lbpktgen, counters or both" >&2; exit 2 ;;
esac
GEN_CORE=${GEN_CORE:-0}
DUT_CORE=${DUT_CORE:-1}
EGRESS_RPS=${EGRESS_RPS:-0}
LBD_INGRESS_RPS=${LBD_INGRESS_RPS:-0}
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
# off, RPS off everywhere; sets VC_MAC VS_MAC VE_MAC.
topology() {
  rvs_ns_add tester
  rvs_ns_add dut
  ip -n "$T" link add vc type veth peer name ve netns "$D"
  ip -n "$T" link add vs type veth peer name vi netns "$D"
  local ns dev ns_dev
  for ns_dev in "$T:vc" "$T:vs" "$D:ve" "$D:vi"; do
    ns=${ns_dev%%:*}
    dev=${ns_dev#*:}
    ip netns exec "$ns" ethtool -K "$dev" tso off gso off gro off >/dev/null 2>&1 ||
      echo "warning: ethtool -K $dev tso off gso off gro off failed" >&2
    set_rps "$ns" "$dev" 0
    ip -n "$ns" link set "$dev" up
  done
  set_rps "$T" vs "$EGRESS_RPS"
  rvs_in tester sysctl -qw net.ipv4.ip_forward=0
  VC_MAC=$(mac_of "$T" vc)
  VS_MAC=$(mac_of "$T" vs)
  VE_MAC=$(mac_of "$D" ve)
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

# lbd_settle: lbd answers on its socket ~50 ms after its start, but its
# worker then still faults in its connection table (RSS grows to ~140 MB
# over 0.2-0.4 s with the default 1M entries, longer on a loaded machine)
# and traffic in that window overflows the RX ring. Wait until the resident
# size has not changed for 0.3 s (at most 10 s).
lbd_settle() {
  local last=-1 same=0 rss
  for _ in $(seq 100); do
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$LBD_PID/status" 2>/dev/null || echo 0)
    if [ "$rss" = "$last" ]; then
      same=$((same + 1))
      [ "$same" -ge 3 ] && return 0
    else
      same=0
      last=$rss
    fi
    sleep 0.1
  done
  echo "warning: lbd's resident size still changing after 10 s" >&2
}

lbd_up() {
  rvs_in dut sysctl -qw net.ipv4.ip_forward=0
  cat >"$RVS_TMP/lbd.yaml" <<EOF
workers: {count: 1, cores: [$DUT_CORE], idle: busy}
ports:
  - {name: ext, driver: af_packet, ifname: ve, addrs: ["$DIP_EXT/24"]$AFP_EXTRA}
  - {name: int, driver: af_packet, ifname: vi, addrs: ["$DIP_INT/24"]$AFP_EXTRA}
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
  # RPS off on ve (topology) unless LBD_INGRESS_RPS says otherwise.
  [ "$LBD_INGRESS_RPS" = 0 ] || set_rps "$D" ve "$LBD_INGRESS_RPS"
  export LBCTL_SOCKET="$RVS_TMP/lbd.sock"
  rm -f "$LBCTL_SOCKET"
  ip netns exec "$D" "$LBD" -c "$RVS_TMP/lbd.yaml" --socket "$LBCTL_SOCKET" \
    >"$RVS_TMP/lbd.log" 2>&1 &
  LBD_PID=$!
  RVS_PIDS+=("$LBD_PID")
  for _ in $(seq 100); do
    if [ -S "$LBCTL_SOCKET" ] && "$LBCTL" -Ln 2>/dev/null | grep -q "$RIP:$RPORT"; then
      lbd_settle
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

# cpu_ticks CPU: "busy total" jiffies of CPU from /proc/stat (busy: all but
# idle and iowait).
cpu_ticks() {
  awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# busy_pct B0 T0 B1 T1: percentage of the interval the CPU was busy.
busy_pct() { awk -v b=$(($3 - $1)) -v t=$(($4 - $2)) 'BEGIN { printf "%.0f", (t > 0 ? 100 * b / t : 0) }'; }

# proc_ticks: "pid comm user+system-jiffies" of every process. Comm may
# hold spaces: fields are counted from the last ')'.
proc_ticks() {
  awk '{ i = match($0, /\) [A-Za-z] /); if (!i) next
         c = substr($0, index($0, "(") + 1, i - index($0, "(") - 1); gsub(/ /, "_", c)
         split(substr($0, i + 2), f, " "); print $1, c, f[12] + f[13] }' /proc/[0-9]*/stat 2>/dev/null || true
}

# foreign_cpu BEFORE AFTER SECS: processes other than lbd, lbpktgen and the
# kernel's threads that used more than 3 % of a core between the snapshots,
# as "comm(pid) N%" words, and their sum as the first word.
foreign_cpu() {
  awk -v secs="$3" -v hz="$(getconf CLK_TCK)" '
    FNR == NR { t[$1] = $3; next }
    ($1 in t) && $2 !~ /^(lbd|lbpktgen|ksoftirqd\/.*|kworker.*|rcu.*|migration.*|ip|jq|timeout)$/ {
      p = 100 * ($3 - t[$1]) / hz / secs
      if (p > 3) { sum += p; list = list sprintf(" %s(%s) %.0f%%", $2, $1, p) } }
    END { printf "%.0f%s\n", sum, list }' "$1" "$2"
}

# vs_rx: packets `vs` has received (veth counts a frame when its peer `vi`
# queued it to vs's receive backlog).
vs_rx() { ip -n "$T" -s -j link show dev vs | jq '.[0].stats64.rx.packets'; }

# veth_drops: frames the egress veth pair dropped (vi tx + vs rx "dropped":
# the peer was not ready or its backlog was full).
veth_drops() {
  echo $(( $(ip -n "$D" -s -j link show dev vi | jq '.[0].stats64.tx.dropped') \
    + $(ip -n "$T" -s -j link show dev vs | jq '.[0].stats64.rx.dropped') ))
}

# worker_ticks: CPU jiffies (user+system) of lbd's worker thread so far.
worker_ticks() {
  local t
  for t in /proc/"$LBD_PID"/task/*; do
    if [ "$(cat "$t/comm" 2>/dev/null)" = rvs-worker-0 ]; then
      awk '{ i = match($0, /\) [A-Za-z] /); split(substr($0, i + 2), f, " "); print f[12] + f[13] }' "$t/stat"
      return
    fi
  done
  echo 0
}

# lbd_stats: lbd's port and worker counters as one JSON object.
lbd_stats() {
  local ports dp
  ports=$("$LBCTL" --port-stats -o json 2>/dev/null) || ports=null
  dp=$("$LBCTL" --dataplane-stats -o json 2>/dev/null) || dp=null
  jq -cn --argjson p "$ports" --argjson d "$dp" '{port_stats: $p, dataplane_stats: $d}'
}

# pktgen SINK SECS: one lbpktgen run in the tester, JSON summary on stdout.
# SINK lbpktgen: lbpktgen's RX thread reads `vs`; counters: its RX thread
# sits on `vc` (which receives nothing), nothing reads `vs`.
pktgen() {
  local rx=vs
  [ "$1" = counters ] && rx=vc
  timeout --kill-after=5 $(( ${2%.*} + 20 )) \
    ip netns exec "$T" "$PKTGEN" --port af_packet:vc --rx-port "af_packet:$rx" \
    --dst-mac "$VE_MAC" --dst-ip "$VIP" --dst-port "$VPORT" \
    --proto udp --flows "$FLOWS" --size "$SIZE" --duration "$2" \
    --cores "$GEN_CORE,$GEN_CORE" --json --quiet
}

# afp_settings V: lbd's af_packet options for LBD_TPACKET entry V, e.g.
# v2+bc128 -> "tpacket: v2, block_count: 128".
afp_settings() {
  local out="" tok
  for tok in $(tr '+' ' ' <<<"$1"); do
    case $tok in
      v2 | v3) out+="tpacket: $tok, " ;;
      bc*) out+="block_count: ${tok#bc}, " ;;
      *) echo "unknown LBD_TPACKET token $tok" >&2; return 1 ;;
    esac
  done
  echo "${out%, }"
}

# one_run DUT SINK I: fresh namespaces, DUT up, a 1 s warm-up that must
# forward, the measured run, everything torn down.
one_run() {
  local dut=${1%%@*} sink=$2 i=$3 json d0 d1 c0 c1 fwd sent loss key=$1-$2
  AFP_EXTRA=""
  [ "$1" != "$dut" ] && AFP_EXTRA=", af_packet: {$(afp_settings "${1#*@}")}"
  local gb0 gt0 gb1 gt1 db0 dt0 db1 dt1 gen_busy dut_busy other other_list v0 v1
  topology
  "${dut}_up"
  c0=$(vs_rx)
  pktgen "$sink" 1 >/dev/null || { echo "$dut: lbpktgen warm-up failed" >&2; return 1; }
  c1=$(vs_rx)
  if [ "$c1" = "$c0" ]; then
    echo "$dut: nothing forwarded in the warm-up" >&2
    [ "$dut" = lbd ] && cat "$RVS_TMP/lbd.log" >&2
    return 1
  fi
  local pre=null w0=0 w1=0
  if [ "$dut" = lbd ]; then
    pre=$(lbd_stats)
    w0=$(worker_ticks)
  fi
  d0=$(softnet_drops)
  v0=$(veth_drops)
  c0=$(vs_rx)
  read -r gb0 gt0 < <(cpu_ticks "$GEN_CORE")
  read -r db0 dt0 < <(cpu_ticks "$DUT_CORE")
  proc_ticks >"$RVS_TMP/procs0"
  json=$(pktgen "$sink" "$DURATION") || { echo "$dut: lbpktgen failed" >&2; return 1; }
  [ "$dut" = lbd ] && w1=$(worker_ticks)
  proc_ticks >"$RVS_TMP/procs1"
  read -r gb1 gt1 < <(cpu_ticks "$GEN_CORE")
  read -r db1 dt1 < <(cpu_ticks "$DUT_CORE")
  c1=$(vs_rx)
  v1=$(veth_drops)
  d1=$(softnet_drops)
  gen_busy=$(busy_pct "$gb0" "$gt0" "$gb1" "$gt1")
  dut_busy=$(busy_pct "$db0" "$dt0" "$db1" "$dt1")
  read -r other other_list < <(foreign_cpu "$RVS_TMP/procs0" "$RVS_TMP/procs1" "$DURATION")
  if [ "$other" -gt 10 ]; then
    echo "warning: other processes used CPU during this run (% of a core):$other_list" >&2
    OTHER_WARN=1
  fi
  if [ "$dut" = lbd ] && ! kill -0 "$LBD_PID" 2>/dev/null; then
    echo "lbd died during the run:" >&2
    cat "$RVS_TMP/lbd.log" >&2
    return 1
  fi
  jq -c . <<<"$json" >>"$OUT_DIR/veth_vs_nft-$STAMP-$key.jsonl"
  local note=""
  if [ "$dut" = lbd ]; then
    # lbd's own counters (cumulative since its start): after the warm-up
    # and after the run; the note gives the run's share.
    local post
    post=$(lbd_stats)
    jq -cn --arg sink "$sink" --argjson run "$i" --argjson pre "$pre" --argjson post "$post" \
      '{sink: $sink, run: $run, after_warmup: $pre, after_run: $post}' \
      >>"$OUT_DIR/veth_vs_nft-$STAMP-lbd-stats.jsonl"
    note="  lbd (run): $(jq -rn --argjson a "$pre" --argjson b "$post" --arg wpct "$(busy_pct "$w0" "$dt0" "$w1" "$dt1")" '
      def port($s; $n): [$s.port_stats.ports[]? | select(.name == $n)][0] // {};
      def drops($s): [$s.dataplane_stats.workers[]?.drops[]?.packets] | add // 0;
      "ext rx \((port($b; "ext").rx_packets // 0) - (port($a; "ext").rx_packets // 0))"
      + " missed \((port($b; "ext").rx_missed // 0) - (port($a; "ext").rx_missed // 0))"
      + ", int tx \((port($b; "int").tx_packets // 0) - (port($a; "int").tx_packets // 0))"
      + ", worker drops \(drops($b) - drops($a))"
      + ", worker thread ran \($wpct) % of the time"
      + "; warm-up: ext missed \(port($a; "ext").rx_missed // 0), worker drops \(drops($a))"' 2>/dev/null)"
  fi
  # Forwarded packets per second over lbpktgen's transmit time: what its
  # sink matched, or what vs received (counters).
  if [ "$sink" = lbpktgen ]; then
    read -r fwd sent loss < <(jq -r '"\(.matched / .tx.seconds) \(.tx.pps) \(.loss_pct)"' <<<"$json")
  else
    read -r fwd sent loss < <(jq -r --argjson n $((c1 - c0)) \
      '"\($n / .tx.seconds) \(.tx.pps) \(100 * (1 - $n / .tx.packets))"' <<<"$json")
  fi
  printf '%-6s %-8s run %d: sent %8.0f pps  forwarded %8.0f pps  loss %5.1f %%  busy gen %3d %% dut %3d %%  drops: backlog %d veth %d%s\n' \
    "$dut" "$sink" "$i" "$sent" "$fwd" "$loss" "$gen_busy" "$dut_busy" $((d1 - d0)) $((v1 - v0)) "$note" >&2
  printf '%s\t%s\t%d\t%.0f\t%.0f\t%.2f\t%d\t%d\t%d\t%d\t%d\n' "$dut" "$sink" "$i" "$sent" "$fwd" "$loss" \
    "$gen_busy" "$dut_busy" "$other" $((d1 - d0)) $((v1 - v0)) >>"$OUT_DIR/veth_vs_nft-$STAMP.tsv"
  FWD[$key]+="$fwd "
  GBUSY[$key]+="$gen_busy "
  DBUSY[$key]+="$dut_busy "
  LOSS[$key]+="$loss "
  SENT[$key]+="$sent "
  rvs_cleanup
}

printf 'dut\tsink\trun\tsent_pps\tforwarded_pps\tloss_pct\tgen_core_busy_pct\tdut_core_busy_pct\tother_procs_cpu_pct\tbacklog_drops\tveth_drops\n' >"$OUT_DIR/veth_vs_nft-$STAMP.tsv"
declare -A FWD LOSS SENT GBUSY DBUSY
DUTS=kernel
if [ -n "${LBD_TPACKET:-}" ]; then
  for v in $LBD_TPACKET; do DUTS+=" lbd@$v"; done
else
  DUTS+=" lbd"
fi
OTHER_WARN=0
for sink in $SINKS; do
  for i in $(seq "$RUNS"); do
    for dut in $DUTS; do
      one_run "$dut" "$sink" "$i"
    done
  done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
minmax() { tr ' ' '\n' | grep . | sort -g | awk 'NR==1{a=$1} {b=$1} END {printf "%.3f-%.3f", a/1e6, b/1e6}'; }
mpps() { awk -v v="$1" 'BEGIN{printf "%.3f", v/1e6}'; }

echo
echo "lbpktgen UDP, $SIZE-byte frames, $FLOWS flows, ${DURATION} s as fast as possible: af_packet:vc -> DUT (ve -> vi) -> vs"
echo "$(nproc) cores: lbpktgen (TX+RX) on core $GEN_CORE, DUT on core $DUT_CORE (lbd: 1 busy-poll worker; kernel: RPS of ve); $RUNS runs each, alternating"
echo "sink lbpktgen: lbpktgen's RX thread on vs counts (matched); sink counters: vs's packet counter, nothing reads vs"
echo "raw: $OUT_DIR/veth_vs_nft-$STAMP-*.jsonl, per run: $OUT_DIR/veth_vs_nft-$STAMP.tsv"
echo
printf '| %-30s | %-8s | %8s | %13s | %9s | %6s | %8s | %8s |\n' "DUT" "sink" "fwd Mpps" "min-max Mpps" "sent Mpps" "loss %" "gen cpu%" "dut cpu%"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' "--------------------------------" "----------" "----------" "---------------" "-----------" "--------" "----------" "----------"
declare -A MED
for sink in $SINKS; do
  for dut in $DUTS; do
    key=$dut-$sink
    MED[$key]=$(median <<<"${FWD[$key]}")
    label="kernel (ip_forward + nft DNAT)"
    [ "$dut" = lbd ] && label="lbd NAT, AF_PACKET"
    [ "${dut%%@*}" = lbd ] && [ "$dut" != lbd ] && label="lbd NAT, AF_PACKET ${dut#*@}"
    printf '| %-30s | %-8s | %8s | %13s | %9s | %6.1f | %8s | %8s |\n' "$label" "$sink" \
      "$(mpps "${MED[$key]}")" "$(minmax <<<"${FWD[$key]}")" \
      "$(mpps "$(median <<<"${SENT[$key]}")")" "$(median <<<"${LOSS[$key]}")" \
      "$(median <<<"${GBUSY[$key]}")" "$(median <<<"${DBUSY[$key]}")"
  done
done
echo
if [ "$OTHER_WARN" = 1 ]; then
  echo "warning: other processes competed for the cores in some runs (see above); the figures are disturbed"
fi
for sink in $SINKS; do
  for dut in $DUTS; do
    [ "$dut" = kernel ] && continue
    awk -v d="$dut" -v s="$sink" -v l="${MED[$dut-$sink]}" -v k="${MED[kernel-$sink]}" 'BEGIN{
      if (k > 0) printf "%s / kernel, sink %s (median forwarded pps): %.2f\n", d, s, l/k
      else printf "%s / kernel, sink %s: the kernel forwarded nothing\n", d, s }'
  done
done
