#!/usr/bin/env bash
# HTTP requests/s and latency through lbd next to the kernel's own NAT, same
# client, same servers, same machine, one run (DESIGN.md §8: figures over
# veth/TAP are ratios against the kernel taken in the same run).
#
#   sudo bench/e2e_rps.sh [RUNS]        # RUNS rounds, default 3; prints medians
#
# Cases (each run its own fresh set of namespaces, see scripts/netns-lib.sh):
#   lbd NAT       TAP        lbd creates the TAP ports; rr over 2 nginx, -m
#   lbd FULLNAT   TAP        same, --fullnat with one local address
#   lbd NAT       AF_PACKET  lbd bound to veth pairs
#   lbd FULLNAT   AF_PACKET
#   kernel NAT               director = kernel forwarding + nftables DNAT
#                            (numgen round robin), servers route via it
#   kernel FULLNAT           same + SNAT to the local address
# A case may carry lbd settings after `@`, tokens joined by `+`:
#   v2 | v3        af_packet `tpacket:` (the RX ring's TPACKET version)
#   tovN           af_packet `block_timeout_ms: N` (TPACKET_V3 block retire)
#   bcN            af_packet `block_count: N` (ring blocks)
#   busy | backoff workers `idle:` (overrides IDLE)
#   sleepN         workers `idle_sleep_us: N`
#   flushN         workers `tx_flush_us: N`
#   base           run the lbd binary BASE_LBD instead (a build to compare
#                  against, e.g. main before a change), same settings
# e.g. CASES="kernel-nat afp-nat@v3+tov1 afp-nat@v2" compares the two RX
# rings against the kernel in one run.
# Each run: wrk --latency $WRK_ARGS http://VIP/ (nginx, a 4-byte page,
# keep-alive) after a 2 s warm-up. The cases alternate: round 1 runs every
# case once, then round 2, ... (so a disturbance of the shared machine hits
# every case alike). Reported: the median req/s, p50 and p99 latency (ms)
# over the rounds, and every run's req/s.
#
# PING=N: after wrk, N pings from the client to the VIP 10 ms apart (lbd
# answers them itself: receive ring -> worker -> transmit; in the kernel
# case the director's kernel does), reported as their median RTT: the
# latency of one director crossing with no other load, wakeups included.
#
# Environment: WORKERS (lbd workers, default 1), IDLE (busy|backoff, default
# backoff: the machine has 2 cores shared by wrk, two nginx and lbd),
# WRK_ARGS (default "-t1 -c32 -d5s"), CASES (space-separated subset of
# tap-nat tap-fullnat afp-nat afp-fullnat kernel-nat kernel-fullnat, with
# optional @settings), NO_BUILD=1 (use target/release as it is).
# Segmentation offloads are off on every veth in every case (AF_PACKET
# needs frames no larger than the MTU; the kernel case gets the same
# links so that it is the same traffic).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
RUNS=${1:-3}
WORKERS=${WORKERS:-1}
IDLE=${IDLE:-backoff}
WRK_ARGS=${WRK_ARGS:-"-t1 -c32 -d5s"}
CASES=${CASES:-"tap-nat tap-fullnat afp-nat afp-fullnat kernel-nat kernel-fullnat"}
VIP=10.0.0.100
LIP=192.168.10.100

if [ "$(id -u)" -ne 0 ]; then
  echo "bench/e2e_rps.sh needs root (network namespaces)" >&2
  exit 1
fi
for tool in ip nginx curl wrk nft ethtool; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || {
    echo "missing $tool (apt-get install iproute2 nginx-light curl wrk nftables ethtool)" >&2
    exit 1
  }
done

[ "${NO_BUILD:-0}" = 1 ] || cargo build --release --bins --quiet
LBD="$ROOT/target/release/lbd"
LBCTL="$ROOT/target/release/lbctl"

RVS_TMP=$(mktemp -d /tmp/rvs-bench.XXXXXX)
# shellcheck source=scripts/netns-lib.sh
. "$ROOT/scripts/netns-lib.sh"
trap 'rvs_cleanup; rm -rf "$RVS_TMP"' EXIT
trap 'exit 130' INT TERM

# lbd's YAML for DRIVER (tap | af_packet) and the case's SETTINGS (see the
# header: v2, v3, tovN, busy, backoff, sleepN joined by +).
lbd_yaml() {
  local idle=$IDLE afp="" sleep_us="" flush_us="" tok
  local IFS=+
  for tok in $2; do
    case $tok in
      v2 | v3) afp+="tpacket: $tok, " ;;
      tov*) afp+="block_timeout_ms: ${tok#tov}, " ;;
      bc*) afp+="block_count: ${tok#bc}, " ;;
      busy | backoff) idle=$tok ;;
      sleep*) sleep_us=", idle_sleep_us: ${tok#sleep}" ;;
      flush*) flush_us=", tx_flush_us: ${tok#flush}" ;;
      "") ;;
      *) echo "unknown lbd setting $tok" >&2; return 1 ;;
    esac
  done
  unset IFS
  local port_extra=""
  [ -n "$afp" ] && port_extra=", af_packet: {${afp%, }}"
  cat <<EOF
workers: {count: $WORKERS, idle: $idle$sleep_us$flush_us}
ports:
  - {name: ext, driver: $1, ifname: ext0, addrs: ["$DIP_EXT/24"]$port_extra}
  - {name: int, driver: $1, ifname: int0, addrs: ["$DIP_INT/24"]$port_extra}
EOF
}

# Builds the namespaces and the director for CASE.
setup() {
  local case=${1%%@*} settings="" driver mode lbd=$LBD
  [ "$1" != "$case" ] && settings=${1#*@}
  if [[ "+$settings+" == *+base+* ]]; then
    lbd=${BASE_LBD:?the case $1 needs BASE_LBD=path of the lbd to compare}
    settings=$(tr '+' '\n' <<<"$settings" | { grep -vx base || true; } | paste -sd+ -)
  fi
  RVS_PREFIX="rvs-bench-$$-${RVS_SEQ}-"
  RVS_SEQ=$((RVS_SEQ + 1))
  driver=${case%-*}
  mode=${case#*-}
  rvs_ns_add cli
  rvs_ns_add dir
  rvs_switch_and_servers 2 1
  case $driver in
    tap)
      lbd_yaml tap "$settings" >"$RVS_TMP/lbd.yaml"
      rvs_start_lbd "$lbd" "$LBCTL" "$RVS_TMP/lbd.yaml"
      rvs_adopt_taps ext0 int0
      ;;
    afp)
      rvs_veth_director
      lbd_yaml af_packet "$settings" >"$RVS_TMP/lbd.yaml"
      rvs_start_lbd "$lbd" "$LBCTL" "$RVS_TMP/lbd.yaml"
      ;;
    kernel)
      rvs_veth_director
      ip -n "${RVS_PREFIX}dir" addr add "$DIP_EXT/24" dev ext0
      ip -n "${RVS_PREFIX}dir" addr add "$VIP/32" dev ext0
      ip -n "${RVS_PREFIX}dir" addr add "$DIP_INT/24" dev int0
      ip -n "${RVS_PREFIX}dir" addr add "$LIP/32" dev int0
      rvs_in dir sysctl -qw net.ipv4.ip_forward=1
      {
        echo "table ip lb {"
        echo "  chain pre { type nat hook prerouting priority dstnat; policy accept;"
        echo "    ip daddr $VIP tcp dport 80 dnat to numgen inc mod 2 map { 0 : $(rvs_rip 1), 1 : $(rvs_rip 2) }"
        echo "  }"
        if [ "$mode" = fullnat ]; then
          echo "  chain post { type nat hook postrouting priority srcnat; policy accept;"
          echo "    oifname \"int0\" ip daddr 192.168.10.0/24 snat to $LIP"
          echo "  }"
        fi
        echo "}"
      } | rvs_in dir nft -f -
      ;;
  esac
  rvs_client_addr 1
  rvs_start_nginx 1 rs1
  rvs_start_nginx 2 rs2
  if [ "$driver" != kernel ]; then
    "$LBCTL" -A -t "$VIP:80" -s rr
    local flag=-m
    if [ "$mode" = fullnat ]; then
      flag=--fullnat
      "$LBCTL" -P -t "$VIP:80" -z "$LIP"
    fi
    "$LBCTL" -a -t "$VIP:80" -r "$(rvs_rip 1):80" "$flag"
    "$LBCTL" -a -t "$VIP:80" -r "$(rvs_rip 2):80" "$flag"
  fi
  # Both servers answer through the director before measuring.
  local a b
  a=$(rvs_in cli curl -s --max-time 3 "http://$VIP/")
  b=$(rvs_in cli curl -s --max-time 3 "http://$VIP/")
  if [ "$a$b" != rs1rs2 ] && [ "$a$b" != rs2rs1 ]; then
    echo "$case: requests did not reach both servers ($a, $b)" >&2
    return 1
  fi
}

median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2}'; }

# wrk_ms LABEL OUTPUT: wrk --latency's LABEL percentile (50%, 99%) in ms.
wrk_ms() {
  awk -v l="$1" '$1 == l {
    v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
    f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
    printf "%.3f\n", v * f; exit }' <<<"$2"
}

RVS_SEQ=0
declare -A RATES P50S P99S PINGS
for round in $(seq "$RUNS"); do
  for case in $CASES; do
    setup "$case"
    rvs_in cli wrk -t1 -c32 -d2s "http://$VIP/" >/dev/null
    # shellcheck disable=SC2086
    out=$(rvs_in cli wrk --latency $WRK_ARGS "http://$VIP/")
    if grep -q "Socket errors\|Non-2xx" <<<"$out"; then
      echo "$case: wrk reported errors:" >&2
      echo "$out" >&2
    fi
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(wrk_ms 50% "$out")
    p99=$(wrk_ms 99% "$out")
    RATES[$case]+="$rps "
    P50S[$case]+="$p50 "
    P99S[$case]+="$p99 "
    ping_ms=""
    if [ "${PING:-0}" -gt 0 ]; then
      ping_ms=$({ rvs_in cli ping -n -c "$PING" -i 0.01 -W 1 "$VIP" || true; } | sed -n 's/.* time=\([0-9.]*\) ms.*/\1/p' | median)
      PINGS[$case]+="$ping_ms "
      ping_ms="  ping p50 $ping_ms ms"
    fi
    printf '%-24s round %d: %10s req/s  p50 %7s ms  p99 %7s ms%s\n' "$case" "$round" "$rps" "$p50" "$p99" "$ping_ms" >&2
    rvs_cleanup
  done
done
declare -A RESULT RUNS_OF P50 P99 PINGM
for case in $CASES; do
  RESULT[$case]=$(tr ' ' '\n' <<<"${RATES[$case]}" | grep . | median)
  P50[$case]=$(tr ' ' '\n' <<<"${P50S[$case]}" | grep . | median)
  P99[$case]=$(tr ' ' '\n' <<<"${P99S[$case]}" | grep . | median)
  [ "${PING:-0}" -gt 0 ] && PINGM[$case]=$(tr ' ' '\n' <<<"${PINGS[$case]}" | grep . | median)
  RUNS_OF[$case]="${RATES[$case]% }"
done

echo
echo "wrk --latency $WRK_ARGS http://$VIP/  (lbd: release, $WORKERS worker(s), idle $IDLE unless the case says; $(nproc) cores; $RUNS rounds alternating the cases, medians)"
echo
PING_HEAD="" PING_RULE=""
if [ "${PING:-0}" -gt 0 ]; then
  PING_HEAD=$(printf ' %11s |' "ping p50 ms")
  PING_RULE="-------------|"
fi
printf '| %-40s | %10s | %8s | %8s |%s %-30s |\n' "director" "req/s" "p50 ms" "p99 ms" "$PING_HEAD" "runs (req/s)"
printf '|%s|%s|%s|%s|%s%s|\n' "------------------------------------------" "------------" "----------" "----------" "$PING_RULE" "--------------------------------"
label() {
  local base=${1%%@*} extra=""
  [ "$1" != "$base" ] && extra=" ($(tr '+' ' ' <<<"${1#*@}"))"
  case $base in
    tap-nat) echo "lbd NAT, TAP$extra" ;;
    tap-fullnat) echo "lbd FULLNAT, TAP$extra" ;;
    afp-nat) echo "lbd NAT, AF_PACKET$extra" ;;
    afp-fullnat) echo "lbd FULLNAT, AF_PACKET$extra" ;;
    kernel-nat) echo "kernel nftables DNAT" ;;
    kernel-fullnat) echo "kernel nftables DNAT+SNAT" ;;
  esac
}
for case in $CASES; do
  ping_cell=""
  [ "${PING:-0}" -gt 0 ] && ping_cell=$(printf ' %11s |' "${PINGM[$case]}")
  printf '| %-40s | %10s | %8s | %8s |%s %-30s |\n' "$(label "$case")" "${RESULT[$case]}" "${P50[$case]}" "${P99[$case]}" "$ping_cell" "${RUNS_OF[$case]}"
done
