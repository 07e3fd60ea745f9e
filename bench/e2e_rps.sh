#!/usr/bin/env bash
# HTTP requests/s through lbd next to the kernel's own NAT, same client, same
# servers, same machine, one run (DESIGN.md §8: figures over veth/TAP are
# ratios against the kernel taken in the same run).
#
#   sudo bench/e2e_rps.sh [RUNS]        # RUNS per case, default 3; prints medians
#
# Cases (each its own fresh set of namespaces, see scripts/netns-lib.sh):
#   lbd NAT       TAP        lbd creates the TAP ports; rr over 2 nginx, -m
#   lbd FULLNAT   TAP        same, --fullnat with one local address
#   lbd NAT       AF_PACKET  lbd bound to veth pairs
#   lbd FULLNAT   AF_PACKET
#   kernel NAT               director = kernel forwarding + nftables DNAT
#                            (numgen round robin), servers route via it
#   kernel FULLNAT           same + SNAT to the local address
# Each case: wrk -t1 -c50 -d5s http://VIP/ (nginx, a 6-byte page,
# keep-alive), after a 2 s warm-up; req/s of every run and the median.
#
# Environment: WORKERS (lbd workers, default 1), IDLE (busy|backoff, default
# backoff: the machine has 2 cores shared by wrk, two nginx and lbd),
# WRK_ARGS (default "-t1 -c50 -d5s"), CASES (space-separated subset of
# tap-nat tap-fullnat afp-nat afp-fullnat kernel-nat kernel-fullnat).
# Segmentation offloads are off on every veth in every case (AF_PACKET
# needs frames no larger than the MTU; the kernel case gets the same
# links so that it is the same traffic).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
RUNS=${1:-3}
WORKERS=${WORKERS:-1}
IDLE=${IDLE:-backoff}
WRK_ARGS=${WRK_ARGS:-"-t1 -c50 -d5s"}
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

cargo build --release --bins --quiet
LBD="$ROOT/target/release/lbd"
LBCTL="$ROOT/target/release/lbctl"

RVS_TMP=$(mktemp -d /tmp/rvs-bench.XXXXXX)
# shellcheck source=scripts/netns-lib.sh
. "$ROOT/scripts/netns-lib.sh"
trap 'rvs_cleanup; rm -rf "$RVS_TMP"' EXIT
trap 'exit 130' INT TERM

# lbd's YAML for DRIVER (tap | af_packet).
lbd_yaml() {
  cat <<EOF
workers: {count: $WORKERS, idle: $IDLE}
ports:
  - {name: ext, driver: $1, ifname: ext0, addrs: ["$DIP_EXT/24"]}
  - {name: int, driver: $1, ifname: int0, addrs: ["$DIP_INT/24"]}
EOF
}

# Builds the namespaces and the director for CASE.
setup() {
  local case=$1 driver mode
  RVS_PREFIX="rvs-bench-$$-${case}-"
  driver=${case%-*}
  mode=${case#*-}
  rvs_ns_add cli
  rvs_ns_add dir
  rvs_switch_and_servers 2 1
  case $driver in
    tap)
      lbd_yaml tap >"$RVS_TMP/lbd.yaml"
      rvs_start_lbd "$LBD" "$LBCTL" "$RVS_TMP/lbd.yaml"
      rvs_adopt_taps ext0 int0
      ;;
    afp)
      rvs_veth_director
      lbd_yaml af_packet >"$RVS_TMP/lbd.yaml"
      rvs_start_lbd "$LBD" "$LBCTL" "$RVS_TMP/lbd.yaml"
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

median() { sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2}'; }

declare -A RESULT RUNS_OF
for case in $CASES; do
  setup "$case"
  # shellcheck disable=SC2086
  rvs_in cli wrk -t1 -c50 -d2s "http://$VIP/" >/dev/null
  rates=()
  for _ in $(seq "$RUNS"); do
    # shellcheck disable=SC2086
    out=$(rvs_in cli wrk $WRK_ARGS "http://$VIP/")
    if grep -q "Socket errors\|Non-2xx" <<<"$out"; then
      echo "$case: wrk reported errors:" >&2
      echo "$out" >&2
    fi
    rates+=("$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")")
  done
  RESULT[$case]=$(printf '%s\n' "${rates[@]}" | median)
  RUNS_OF[$case]="${rates[*]}"
  printf '%-16s median %10s req/s   runs: %s\n' "$case" "${RESULT[$case]}" "${RUNS_OF[$case]}" >&2
  rvs_cleanup
done

echo
echo "wrk $WRK_ARGS http://$VIP/  (lbd: release, $WORKERS worker(s), idle $IDLE; $(nproc) cores; $RUNS runs, median)"
echo
printf '| %-26s | %12s | %-28s |\n' "director" "req/s" "runs"
printf '|%s|%s|%s|\n' "----------------------------" "--------------" "------------------------------"
label() {
  case $1 in
    tap-nat) echo "lbd NAT, TAP" ;;
    tap-fullnat) echo "lbd FULLNAT, TAP" ;;
    afp-nat) echo "lbd NAT, AF_PACKET" ;;
    afp-fullnat) echo "lbd FULLNAT, AF_PACKET" ;;
    kernel-nat) echo "kernel nftables DNAT" ;;
    kernel-fullnat) echo "kernel nftables DNAT+SNAT" ;;
  esac
}
for case in $CASES; do
  printf '| %-26s | %12s | %-28s |\n' "$(label "$case")" "${RESULT[$case]}" "${RUNS_OF[$case]}"
done
