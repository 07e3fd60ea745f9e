#!/usr/bin/env bash
# lbd on DPDK next to dpdk-testpmd's io forwarding (the I/O limit with no
# processing), same virtual devices, same forwarding core, one invocation,
# runs alternating (DESIGN.md §8: results are ratios taken in the same run).
#
#   bench/dpdk_vs_testpmd.sh [RUNS]     # RUNS per side, default 5
#
# Input: a capture of established NAT flows, FLOWS flows (default 128) of
# PER_FLOW 60-byte frames (64 on the wire with the FCS): a SYN, then ACKs;
# net_pcap replays it forever (infinite_rx=1), so every pass repeats each
# flow's SYN, which finds the existing connection.
#
#   testpmd: net_pcap0 (rx_pcap=FILE,infinite_rx=1) → io forward → net_null0 (no-rx=1)
#   lbd:     net_pcap0 (same)  → worker: NAT 10.0.0.10:80 rr over 2 servers → net_null0
#
# Both: --no-huge --no-pci, one forwarding core CORE (default 1), 16384
# mbufs with a 256 per-core cache, 1024 RX/TX descriptors, bursts of 32.
# testpmd: -l MAIN_CORE,CORE (main lcore MAIN_CORE, default 0, prints its
# stats there), forwarding lcore CORE; rate = its Tx-pps of port 1 (net_null0)
# per 1 s stats period. lbd (release build, --features dpdk): one worker,
# busy polling; the EAL's main lcore is CORE (-l CORE) and workers.cores
# [CORE] (lbd's threads inherit the main lcore's CPU mask, so the EAL's -l
# decides where the worker can run: the script prints the worker thread's
# allowed CPUs); rate = net_null0's transmitted packets (`lbctl
# --port-stats -o json`) sampled every second. Each run: WARMUP s (default
# 2) discarded, then SECS (default 5) one-second rates; the run's figure is
# their median. The table gives, per side, the median of the runs and their
# min–max, and the ratio lbd/testpmd (of the medians, and the min–max of
# the per-pair ratios).
#
# Environment: CORE, MAIN_CORE, SECS, WARMUP, FLOWS, PER_FLOW.
# Needs dpdk-testpmd (Debian: dpdk), python3, and a DPDK build of rvs
# (libdpdk-dev, libclang-dev, pkg-config). Honours CARGO_TARGET_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
RUNS=${1:-5}
CORE=${CORE:-1}
MAIN_CORE=${MAIN_CORE:-0}
SECS=${SECS:-5}
WARMUP=${WARMUP:-2}
FLOWS=${FLOWS:-128}
PER_FLOW=${PER_FLOW:-32}

for tool in dpdk-testpmd python3; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "missing $tool (apt-get install dpdk python3)" >&2
    exit 1
  }
done

cargo build --release --features dpdk --bin lbd --bin lbctl --quiet
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
LBD="$TARGET/release/lbd"
LBCTL="$TARGET/release/lbctl"

TMP=$(mktemp -d /tmp/rvs-dpdk-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CAPTURE="$TMP/flows.pcap"
# The capture: per pass, every flow's SYN first, then its ACKs round robin.
python3 - "$CAPTURE" "$FLOWS" "$PER_FLOW" <<'EOF'
import struct, sys
path, flows, per_flow = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
def frame(flow, syn, seq):
    src = bytes([198, 18, flow >> 8, flow & 0xFF])
    dst = bytes([10, 0, 0, 10])
    eth = bytes([2, 0, 0, 0, 0, 1, 2, 0xAA, 0, 0, 0, 1, 8, 0])
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, flow, 0x4000, 64, 6, 0, src, dst))
    ip[10:12] = struct.pack("!H", csum(bytes(ip)))
    flags, ack = (0x02, 0) if syn else (0x10, 1)
    tcp = bytearray(struct.pack("!HHIIBBHHH", 10000 + flow, 80, seq, ack, 5 << 4, flags, 65535, 0, 0))
    tcp[16:18] = struct.pack("!H", csum(src + dst + struct.pack("!BBH", 0, 6, 20) + bytes(tcp)))
    f = eth + bytes(ip) + bytes(tcp)
    return f + b"\0" * (60 - len(f))
with open(path, "wb") as out:
    out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for k in range(per_flow):
        for flow in range(flows):
            f = frame(flow, k == 0, 1000 + k)
            out.write(struct.pack("<IIII", 0, k, len(f), len(f)) + f)
EOF

VDEVS=("--vdev=net_pcap0,rx_pcap=$CAPTURE,infinite_rx=1" "--vdev=net_null0,no-rx=1")
EAL_COMMON=(--no-huge --no-pci --no-shconf --no-telemetry -m 512 --log-level=lib.eal:warning)

# The median of the numbers on stdin, one per line.
median() {
  sort -g | awk '{v[NR]=$1} END {if (NR==0) {print "nan"} else if (NR%2) {print v[(NR+1)/2]} else {print (v[NR/2]+v[NR/2+1])/2}}'
}

# One testpmd run; prints its median Tx-pps of net_null0.
testpmd_run() {
  local run=$1 out="$TMP/testpmd-$1.out"
  timeout -s INT $((WARMUP + SECS + 2)) dpdk-testpmd "${EAL_COMMON[@]}" \
    --file-prefix="rvs_bench_tpm_$$_$run" -l "$MAIN_CORE,$CORE" --main-lcore="$MAIN_CORE" \
    "${VDEVS[@]}" -- --forward-mode=io --nb-cores=1 --total-num-mbufs=16384 --mbcache=256 \
    --rxd=1024 --txd=1024 --burst=32 --stats-period=1 >"$out" 2>&1 </dev/null || true
  # Tx-pps of port 1, one line per stats period.
  local rates
  rates=$(awk '/NIC statistics for port 1/ {p=1} /NIC statistics for port 0/ {p=0}
               p && /Tx-pps:/ {print $2}' "$out" | tail -n +$((WARMUP + 1)) | head -n "$SECS")
  if [ -z "$rates" ]; then
    echo "testpmd run $run gave no rate; its output:" >&2
    cat "$out" >&2
    exit 1
  fi
  echo "$rates" | median
}

# lbd's transmitted packets on net_null0 (port "int") and the time, "T N".
lbd_sample() {
  "$LBCTL" --socket "$1" --port-stats -o json | python3 -c '
import json, sys, time
t = time.monotonic()
ports = json.load(sys.stdin)["ports"]
print(t, next(p["tx_packets"] for p in ports if p["name"] == "int"))'
}

# One lbd run; prints its median packets/s into net_null0.
lbd_run() {
  local run=$1 sock="$TMP/lbd-$1.sock" conf="$TMP/lbd-$1.yaml" log="$TMP/lbd-$1.log"
  local eal=("${EAL_COMMON[@]}" --file-prefix="rvs_bench_lbd_$$_$run" -l "$CORE" "${VDEVS[@]}")
  local eal_yaml
  eal_yaml=$(printf '%s\n' "${eal[@]}" | python3 -c 'import json, sys; print(json.dumps(sys.stdin.read().split("\n")[:-1]))')
  cat >"$conf" <<EOF
socket: $sock
workers: {count: 1, cores: [$CORE], idle: busy}
ports:
  - {name: ext, driver: dpdk, device: net_pcap0, mac: "02:00:00:00:00:01", addrs: ["10.0.0.254/24"]}
  - {name: int, driver: dpdk, device: net_null0, mac: "02:00:00:00:01:01", addrs: ["192.168.10.254/24"]}
dpdk:
  eal_args: $eal_yaml
neighbours:
  - {addr: 192.168.10.1, mac: "02:b1:00:00:00:01", port: int}
  - {addr: 192.168.10.2, mac: "02:b2:00:00:00:02", port: int}
services:
  - proto: tcp
    vip: 10.0.0.10
    port: 80
    scheduler: rr
    dests:
      - {addr: 192.168.10.1, fwd: masq}
      - {addr: 192.168.10.2, fwd: masq}
EOF
  "$LBD" -c "$conf" >"$log" 2>&1 </dev/null &
  local pid=$!
  PIDS+=("$pid")
  local waited=0
  until "$LBCTL" --socket "$sock" --port-stats >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null || [ $waited -ge 300 ]; then
      echo "lbd run $run did not start; its log:" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  local worker_cpus=""
  for task in /proc/"$pid"/task/*; do
    if [ "$(cat "$task/comm" 2>/dev/null)" = "rvs-worker-0" ]; then
      worker_cpus=$(awk '/Cpus_allowed_list/ {print $2}' "$task/status")
    fi
  done
  echo "$worker_cpus" >"$TMP/lbd-$run.cpus"
  sleep "$WARMUP"
  local samples=()
  for _ in $(seq 0 "$SECS"); do
    samples+=("$(lbd_sample "$sock")")
    sleep 1
  done
  if [ "$run" = 1 ]; then
    "$LBCTL" --socket "$sock" -Ln --stats >"$TMP/lbd-stats.txt" 2>&1 || true
    "$LBCTL" --socket "$sock" --port-stats >>"$TMP/lbd-stats.txt" 2>&1 || true
  fi
  kill -TERM "$pid"
  wait "$pid" || {
    echo "lbd run $run did not stop cleanly; its log:" >&2
    cat "$log" >&2
    exit 1
  }
  printf '%s\n' "${samples[@]}" | awk 'NR>1 {print ($2-n)/($1-t)} {t=$1; n=$2}' | median
}

echo "dpdk-testpmd io vs lbd NAT, $RUNS runs each, alternating; ${SECS}s measured after ${WARMUP}s warm-up per run"
echo "input: $FLOWS flows x $PER_FLOW frames (SYN + ACKs, 60 B + FCS), net_pcap0 infinite_rx -> net_null0; forwarding core $CORE"
TPM=()
LBDR=()
for run in $(seq 1 "$RUNS"); do
  t=$(testpmd_run "$run")
  l=$(lbd_run "$run")
  TPM+=("$t")
  LBDR+=("$l")
  awk -v r="$run" -v t="$t" -v l="$l" -v c="$(cat "$TMP/lbd-$run.cpus")" \
    'BEGIN {printf "run %d: testpmd %.2f Mpps, lbd %.2f Mpps (lbd worker allowed on CPUs %s)\n", r, t / 1e6, l / 1e6, c}'
done

echo
echo "lbd counters after run 1:"
cat "$TMP/lbd-stats.txt"
echo

python3 - "${TPM[*]}" "${LBDR[*]}" "$(dpkg-query -W -f='${Version}' dpdk 2>/dev/null || pkg-config --modversion libdpdk 2>/dev/null || echo '?')" "$(uname -r)" "$(nproc)" <<'EOF'
import statistics, sys
tpm = [float(x) / 1e6 for x in sys.argv[1].split()]
lbd = [float(x) / 1e6 for x in sys.argv[2].split()]
ratios = [l / t for l, t in zip(lbd, tpm)]
print(f"DPDK {sys.argv[3]}, kernel {sys.argv[4]}, {sys.argv[5]} CPUs (shared machine: expect noise)")
print(f"{'':28}{'median':>10}{'min':>9}{'max':>9}   runs")
def row(name, xs, unit):
    runs = " ".join(f"{x:.2f}" for x in xs)
    print(f"{name:28}{statistics.median(xs):>10.2f}{min(xs):>9.2f}{max(xs):>9.2f}   {runs}  {unit}")
row("dpdk-testpmd io forward", tpm, "Mpps")
row("lbd NAT, 1 worker", lbd, "Mpps")
med = statistics.median(lbd) / statistics.median(tpm)
print(f"{'ratio lbd / testpmd':28}{med:>10.3f}{min(ratios):>9.3f}{max(ratios):>9.3f}   (of the medians; min-max of per-run pairs)")
EOF
